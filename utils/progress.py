"""Progress bars that leave a result, not a snapshot.

A long loop shows a bar while it runs; when it ends, the bar is replaced by one line that says
what the loop did (``bar.finish("GPT: 500 steps, final loss ≈1.23 nats")``)::

    bar = progress(range(steps), "training")
    for step in bar:
        ...
        bar.set_postfix(loss=f"{loss:.3f}")
    bar.finish(f"training: {steps} steps, final loss {measured(loss, '.3f')}")

Why not ``tqdm.auto``: in a notebook it draws an ipywidgets bar, and what a notebook stores of a
widget is a snapshot: the text of its first frame (``0%| | 0/500``, what static viewers show),
and a widget state whose text lags the bar (``88% 7/8`` next to a full bar, because the text is
refreshed at most every ``mininterval``). ``leave=False`` hides the widget when the loop ends,
but the snapshot stays in the file. Here, in a Jupyter kernel, the bar is an ordinary output
(text and HTML, with a display id): tqdm redraws it by updating that output in place
(``update_display_data``, which JupyterLab, Colab, VS Code and nbclient all honour) and
:meth:`Progress.finish` updates it once more, to the summary line. The stored notebook then holds
that line and nothing else; it needs no widget, no widget state and no ipywidgets.

Outside a kernel (a script, a terminal) the bar is tqdm's own text bar on stderr, erased when the
loop ends, and the summary is printed.
"""
from __future__ import annotations

import html
import sys

from tqdm.std import tqdm


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (which can show and update outputs), not a terminal."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and hasattr(shell, "kernel")


class Progress(tqdm):
    """A tqdm bar that :meth:`finish` replaces with a one-line summary. Use :func:`progress` to make one."""

    def __init__(self, iterable=None, desc: str | None = None, total=None, **kwargs):
        self._handle = None
        self._finished = False
        kernel = in_kernel()
        kwargs.setdefault("mininterval", 0.5)  # a redraw is a message to the front end: a few per second
        kwargs.setdefault("leave", False)  # the summary line, not the bar, is what stays
        if kernel:
            kwargs["gui"] = True  # tqdm then leaves the drawing to display() below, never writes to a file
        super().__init__(iterable, desc=desc, total=total, **kwargs)
        if kernel and not self.disable:
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict:
        meter = self.format_meter(**{**self.format_dict, "ncols": 0})  # text only, no bar characters
        total = self.total or 1
        bar = f'<progress value="{min(self.n, total)}" max="{total}" style="width: 12em"></progress>'
        return {"text/plain": meter,
                "text/html": f'<div class="course-progress"><code>{html.escape(self.desc or "")}</code> {bar} '
                             f'<code>{html.escape(meter.removeprefix((self.desc or "") + ": "))}</code></div>'}

    def display(self, msg=None, pos=None):
        """Redraw (tqdm calls this at most every ``mininterval``)."""
        if self._handle is None:
            return super().display(msg, pos)
        if not self._finished:
            self._handle.update(self._bundle(), raw=True)
        return True

    def close(self):
        """End the bar (tqdm calls it when the loop ends); in a kernel, draw its last state."""
        if self._handle is not None and not self.disable:
            self.display()
        super().close()

    def finish(self, summary: str) -> None:
        """Close the bar and leave ``summary`` in its place: in a notebook the bar's output becomes this line."""
        self.close()
        if self._handle is not None:
            self._handle.update({"text/plain": summary}, raw=True)
        else:
            print(summary)
        self._finished = True


def progress(iterable=None, desc: str | None = None, total=None, **kwargs) -> Progress:
    """A progress bar over ``iterable`` (tqdm's arguments); call ``.finish(summary)`` when the loop is done."""
    return Progress(iterable, desc=desc, total=total, **kwargs)

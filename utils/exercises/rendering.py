"""What the learner sees: a check's verdict (:class:`CheckResult`), hints and the reference solution."""
from __future__ import annotations

import html
import inspect
import sys
import textwrap
from dataclasses import dataclass

from utils.exercises.registry import LessonError, all_ids, find, get

_ICONS = {"pass": "✅", "fail": "❌", "not attempted": "⏳", "unknown": "❓"}
_COLOURS = {"pass": "#009E73", "fail": "#D55E00", "not attempted": "#0072B2", "unknown": "#999999"}


@dataclass
class CheckResult:
    """The verdict of :func:`check`. ``bool(result)`` is True when the candidate passes."""

    id: str
    status: str  # "pass", "fail", "not attempted" or "unknown"
    message: str
    title: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __bool__(self) -> bool:
        return self.passed

    def _heading(self) -> str:
        label = {"pass": "passed", "fail": "not yet", "not attempted": "not attempted yet", "unknown": "unknown exercise"}[self.status]
        return f"{_ICONS[self.status]} Exercise {self.id}{' (' + self.title + ')' if self.title else ''}: {label}"

    def __repr__(self) -> str:
        return f"{self._heading()}\n{self.message}"

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.status]
        return (f'<div style="border-left:4px solid {colour};padding:4px 10px">'
                f"<b>{html.escape(self._heading())}</b><br>"
                f'<span style="white-space:pre-wrap">{html.escape(self.message)}</span></div>')


def name(obj) -> str:
    """How a message names a function or class: `` `Encoder` ``, `` `split_heads` and `merge_heads` ``."""
    if isinstance(obj, tuple):
        return " and ".join(name(o) for o in obj)
    return f"`{getattr(obj, '__name__', repr(obj))}`"


def show(markdown: str) -> None:
    """Markdown in a notebook, plain text elsewhere."""
    ipython = sys.modules.get("IPython")  # never imported here: a script has no notebook to show it in
    if ipython is not None and ipython.get_ipython() is not None:
        ipython.display.display(ipython.display.Markdown(markdown))
        return
    print(markdown)


def _found(id: str):
    """Exercise ``id``, or None after saying why there is none."""
    try:
        ex = find(id)
    except LessonError as err:
        show(f"The checks for {id!r} could not be loaded: {err}")
        return None
    if ex is None:
        show(f"There is no exercise `{id}`. Known: {', '.join(all_ids())}.")
    return ex


def hint(id: str, level: int = 1) -> None:
    """Show hint number ``level`` (1 = a nudge, the last = nearly the answer) for exercise ``id``."""
    ex = _found(id)
    if ex is None:
        return
    level = max(1, min(int(level), len(ex.hints)))
    more = f" More: `utils.hint(\"{id}\", {level + 1})`." if level < len(ex.hints) else f" That was the last hint: `utils.solution(\"{id}\")` shows the answer."
    show(f"**Hint {level}/{len(ex.hints)} for exercise {id}** ({ex.title}): {ex.hints[level - 1]}\n\n_{more.strip()}_")


def reference_source(id: str) -> str:
    """The source code of the reference solution of exercise ``id``."""
    refs = get(id).reference
    refs = refs if isinstance(refs, tuple) else (refs,)
    return "\n\n".join(textwrap.dedent(inspect.getsource(r)).strip() for r in refs)


def solution(id: str) -> None:
    """Show the reference solution of exercise ``id``."""
    ex = _found(id)
    if ex is None:
        return
    show(f"**Solution of exercise {id}** ({ex.title}):\n\n```python\n{reference_source(id)}\n```")

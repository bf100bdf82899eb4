"""Execute a notebook with nbclient, without nbclient's rare stall on cells that show widgets.

Under load, nbclient can miss the kernel's reply to a cell that displays an ipywidget: the kernel is
idle, the reply has arrived, and the client sleeps until the cell's whole timeout (600 or 900 s)
has passed, then carries on as if nothing had happened (jupyter/nbclient#312). We saw it twice on a
busy 2-core machine, once in the exercise-notebook test and once in the benchmark (lesson 05's
widget cell): ten to fifteen lost minutes each time, with nothing failing.

nbclient waits with one long ``poll`` on an asyncio ZeroMQ socket; a wake-up missed there is never
retried. :class:`PromptNotebookClient` waits in slices of ``POLL_SECONDS`` instead, and each new
``poll`` looks at the socket first, so a reply that has arrived is taken within a second. Timeouts
keep their meaning: a cell that really runs too long still raises ``CellTimeoutError``.

    from tools.run_notebook import PromptNotebookClient
    PromptNotebookClient(nb, timeout=600, kernel_name="python3").execute()
"""
from __future__ import annotations

import time
from queue import Empty

from nbclient import NotebookClient

POLL_SECONDS = 1.0


def sliced(get_msg, poll_seconds: float = POLL_SECONDS):
    """``get_msg(timeout)`` (an async channel method) as a loop of waits of at most ``poll_seconds``."""

    async def get_msg_in_slices(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll_seconds if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=min(poll_seconds, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get_msg_in_slices


class PromptNotebookClient(NotebookClient):
    """nbclient's ``NotebookClient`` whose shell and IOPub waits never sleep past a message."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = sliced(channel.get_msg)
        return kc

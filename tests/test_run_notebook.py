"""tools.run_notebook: nbclient's waits cut into one-second slices (a missed wake-up costs a second,
not the cell's whole timeout), with the timeouts still honoured."""
import asyncio
import time
from queue import Empty

import nbformat
import pytest
from nbclient.exceptions import CellTimeoutError

from tools.run_notebook import PromptNotebookClient, sliced


class FakeChannel:
    """A channel whose message arrives after ``ready_after`` seconds; records each wait it is asked for."""

    def __init__(self, ready_after):
        self.ready_at = time.monotonic() + ready_after
        self.waits = []

    async def get_msg(self, timeout=None):
        self.waits.append(timeout)
        if time.monotonic() >= self.ready_at:
            return {"msg_type": "execute_reply"}
        if timeout:
            await asyncio.sleep(timeout)
        raise Empty  # even if it arrived during the wait: the wake-up was missed


def test_a_message_that_arrives_during_a_wait_is_taken_at_the_next_slice():
    channel = FakeChannel(ready_after=0.15)
    start = time.monotonic()
    msg = asyncio.run(sliced(channel.get_msg, poll_seconds=0.1)(timeout=600))
    assert msg["msg_type"] == "execute_reply"
    assert time.monotonic() - start < 1.0  # not the 600 s one long wait would have slept
    assert len(channel.waits) >= 2 and max(channel.waits) <= 0.1


def test_no_timeout_still_waits_until_the_message_comes():
    channel = FakeChannel(ready_after=0.25)
    assert asyncio.run(sliced(channel.get_msg, poll_seconds=0.1)(timeout=None))["msg_type"] == "execute_reply"


def test_the_timeout_is_still_a_timeout():
    channel = FakeChannel(ready_after=60)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(sliced(channel.get_msg, poll_seconds=0.1)(timeout=0.35))
    assert 0.3 < time.monotonic() - start < 1.0
    assert sum(channel.waits) == pytest.approx(0.35, abs=0.05)  # the last slice is what was left


def _notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_a_notebook_with_a_widget_runs_and_keeps_its_outputs():
    nb = _notebook("import ipywidgets as widgets\nw = widgets.IntSlider(value=3)\nw", "print(w.value * 2)")
    PromptNotebookClient(nb, timeout=60, kernel_name="python3").execute()
    widget_output, printed = nb.cells[0].outputs[0], nb.cells[1].outputs[0]
    assert "application/vnd.jupyter.widget-view+json" in widget_output["data"]
    assert printed["text"] == "6\n"


def test_a_cell_that_runs_too_long_still_times_out():
    nb = _notebook("import time\ntime.sleep(30)")
    start = time.monotonic()
    with pytest.raises(CellTimeoutError):
        PromptNotebookClient(nb, timeout=3, kernel_name="python3").execute()
    assert time.monotonic() - start < 25

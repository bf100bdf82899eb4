"""nbval, taught to update an output in place, as every Jupyter front end does.

A cell may show an output with a display id and later replace it (IPython's
``display(..., display_id=True)`` and ``handle.update(...)``: the kernel sends
``update_display_data``). JupyterLab, Colab and nbclient (which builds the stored notebooks) show
and store the *last* version; nbval 0.11 drops the update ("unhandled iopub msg") and compares the
*first*. The course's progress bars (:mod:`utils.progress`) are such outputs: a bar while the loop
runs, then one summary line, which is what the stored notebook holds and what nbval must compare.

This plugin watches the kernel messages nbval reads for the cell under test: it remembers at which
position each output with a display id was stored, and applies each update to it, so nbval compares
what a reader of the notebook sees. An update of an output from an earlier cell is ignored (that
cell was already compared).
"""
from __future__ import annotations

import nbval.plugin

_get_kernel_message = nbval.plugin.IPyNbFile.get_kernel_message
_runtest = nbval.plugin.IPyNbCell.runtest


def runtest(self):
    self.parent._course_cell = self
    self._course_displays = {}  # display id -> index of its output in self.test_outputs
    self._course_parent = None  # the msg_id of this cell's execute request
    try:
        return _runtest(self)
    finally:
        self.parent._course_cell = None


def get_kernel_message(self, timeout=None, stream="iopub"):
    msg = _get_kernel_message(self, timeout=timeout, stream=stream)
    cell = getattr(self, "_course_cell", None)
    if cell is None or stream != "iopub":
        return msg
    kind, parent = msg["msg_type"], msg["parent_header"].get("msg_id")
    if kind == "execute_input" and cell._course_parent is None:
        cell._course_parent = parent
    if parent is None or parent != cell._course_parent:
        return msg
    display_id = msg["content"].get("transient", {}).get("display_id")
    if kind == "display_data" and display_id:
        cell._course_displays[display_id] = len(cell.test_outputs)  # nbval appends it next
    elif kind == "update_display_data":
        index = cell._course_displays.get(display_id)
        if index is not None:
            output = cell.test_outputs[index]
            output["data"], output["metadata"] = msg["content"]["data"], msg["content"]["metadata"]
        return {**msg, "msg_type": "comm_msg"}  # handled: nbval skips comm messages silently
    return msg


def pytest_configure(config):
    nbval.plugin.IPyNbCell.runtest = runtest
    nbval.plugin.IPyNbFile.get_kernel_message = get_kernel_message

"""Build solution notebooks from their jupytext text files, execute them in full, and regenerate
the exercise notebooks. Usage, from the repository root::

    python -m tools.build_solutions 01 03      # lessons 01 and 03
    python -m tools.build_solutions            # every lesson
    python -m tools.build_solutions 01 --force # also where a learner worked in notebooks/ (see tools.make_exercises)

The text file ``solutions/NN_name.py`` (jupytext percent format) is what you edit and review;
``solutions/NN_name.ipynb`` is written from it, executed in a fresh kernel (full budgets, never
the quick setting), and saved with its outputs.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time

import jupytext
import nbformat

from tools.make_exercises import ROOT, fold_titled_cells, main as make_exercises, stable_cell_ids
from tools.run_notebook import PromptNotebookClient

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def stable_widget_ids(nb, name: str):
    """Rename the widgets' model ids (random in each kernel) after their order in the notebook, in place.

    The new id of the k-th model, in the order the outputs and then the models' references reach
    them, is 32 hex digits of the SHA-1 of ``name`` and ``k``: the same widgets built again get
    the same ids, so an unchanged lesson's widget state does not change in a rebuild.
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    if not state:
        return nb
    order: list = []

    def visit(model_id):
        if model_id in state and model_id not in order:
            order.append(model_id)
            for ref in re.findall(r"[0-9a-f]{32}", json.dumps(state[model_id], sort_keys=True)):
                visit(ref)  # children ("IPY_MODEL_<id>") and widgets shown in an Output widget

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view:
                visit(view.get("model_id"))
    def content(model_id):  # a model's state without the (random) ids it names
        return re.sub(r"[0-9a-f]{32}", "", json.dumps(state[model_id], sort_keys=True))

    for model_id in sorted(state, key=content):  # models that no output shows
        visit(model_id)
    new = {old: hashlib.sha1(f"{name}:{k}".encode()).hexdigest()[:32] for k, old in enumerate(order)}
    text = re.sub(r"[0-9a-f]{32}", lambda m: new.get(m.group(0), m.group(0)), json.dumps(nb))
    renamed = nbformat.from_dict(json.loads(text))
    nb.metadata, nb.cells = renamed.metadata, renamed.cells
    return nb


def build(py_path) -> float:
    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    fold_titled_cells(nb)  # the setup cell opens folded, under its one-line title (JupyterLab and Colab)
    os.environ.pop("COURSE_QUICK", None)  # solutions always run in full
    # One thread, as under test (tests/conftest.py): the thread count can change the last bits of
    # a training run, and so the stored numbers that nbval compares.
    os.environ["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    PromptNotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False,
                         resources={"metadata": {"path": str(py_path.parent)}}).execute()
    seconds = time.perf_counter() - start
    stable_widget_ids(stable_cell_ids(nb), py_path.stem)  # reviewable: a rebuild keeps every id
    nbformat.write(nb, py_path.with_suffix(".ipynb"))
    jupytext.write(nb, py_path, fmt="py:percent")  # keep the text file's header in step
    return seconds


def main(args) -> int:
    """Build the lessons named in ``args`` (every lesson if none), then the exercise notebooks: 1 when
    one of them holds a learner's work and was not overwritten (``--force`` passes on)."""
    lessons = [a for a in args if a != "--force"]
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))
    for path in paths:
        if not lessons or path.name[:2] in lessons:
            print(f"executing {path.name} ...", flush=True)
            print(f"  done in {build(path):.1f} s", flush=True)
    return make_exercises(["--force"] if "--force" in args else [])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Build solution notebooks from their jupytext text files, execute them in full, and regenerate
the exercise notebooks. Usage, from the repository root::

    python -m tools.build_solutions 01 03      # lessons 01 and 03
    python -m tools.build_solutions            # every lesson

The text file ``solutions/NN_name.py`` (jupytext percent format) is what you edit and review;
``solutions/NN_name.ipynb`` is written from it, executed in a fresh kernel (full budgets, never
the quick setting), and saved with its outputs.
"""
from __future__ import annotations

import os
import sys
import time

import jupytext
import nbformat
from nbclient import NotebookClient

from tools.make_exercises import ROOT, main as make_exercises


def build(py_path) -> float:
    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.pop("COURSE_QUICK", None)  # solutions always run in full
    # One thread, as under test (tests/conftest.py): the thread count can change the last bits of
    # a training run, and so the stored numbers that nbval compares.
    os.environ["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(py_path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, py_path.with_suffix(".ipynb"))
    jupytext.write(nb, py_path, fmt="py:percent")  # keep the text file's header in step
    return seconds


def main(lessons) -> None:
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))
    for path in paths:
        if not lessons or path.name[:2] in lessons:
            print(f"executing {path.name} ...", flush=True)
            print(f"  done in {build(path):.1f} s", flush=True)
    make_exercises([])


if __name__ == "__main__":
    main(sys.argv[1:])

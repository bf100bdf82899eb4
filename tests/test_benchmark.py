"""The benchmark (benchmarks/run.py) runs a lesson, records its load and keeps the other rows on a partial rerun."""
import json

import nbformat

from benchmarks import run
from benchmarks.timing import BusyCores, load, spread


def _lesson(folder, stem):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(sum(range(10)))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{stem}.ipynb")


def test_a_partial_rerun_replaces_its_own_rows_and_keeps_the_others(tmp_path):
    for stem in ("01_first", "02_second"):
        _lesson(tmp_path, stem)
    out = (tmp_path / "results.json", tmp_path / "results.md")
    data = {}
    run.measure_lessons(data, [], ["idle"], quick=False, folder=tmp_path, out=out)
    first = data["lessons"]["01_first"]["idle"]
    assert first["error"] == "" and first["seconds"] > 0 and first["peak_mib"] > 0
    assert {"load_before", "load_after", "date", "machine"} <= set(first)
    run.measure_lessons(data, ["02"], ["idle"], quick=False, folder=tmp_path, out=out)
    assert data["lessons"]["01_first"]["idle"] == first  # kept
    stored = json.loads(out[0].read_text())
    assert set(stored["lessons"]) == {"01_first", "02_second"}
    md = out[1].read_text()
    assert "| 01_first |" in md and "| 02_second |" in md and "load before -> after" in md


def test_busy_cores_load_the_machine_and_stop():
    with BusyCores(1) as busy:
        assert all(p.poll() is None for p in busy.procs)
        procs = busy.procs
    assert all(p.poll() is not None for p in procs)
    assert spread([3, 1, 2]) == (1, 2, 3) and load() >= 0

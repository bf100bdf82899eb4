"""Progress bars leave a result, not a snapshot (utils/progress.py), and nbval compares that result.

In a Jupyter kernel the bar is an output with a display id that the finished loop replaces by its
summary line: the stored notebook holds that one line, no widget and no frozen "88%" bar. nbval,
which ignores display updates, is taught to apply them (tests/nbval_displays.py)."""
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import nbformat

from tools.run_notebook import PromptNotebookClient
from utils.progress import progress

ROOT = Path(__file__).resolve().parent.parent
CELL = f"""import sys, time
sys.path.insert(0, {str(ROOT)!r})
from utils.progress import progress
from utils.runtime import measured
print("before")
bar = progress(range(8), "loop")
for i in bar:
    time.sleep(0.15)
    bar.set_postfix(loss=f"{{1 / (i + 1):.3f}}")
bar.finish(f"loop: 8 steps, final loss {{measured(0.125, '.3f')}}")
print("after")"""


def _executed(source: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    PromptNotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def test_outside_a_kernel_the_bar_goes_to_stderr_and_the_summary_is_printed(capsys):
    bar = progress(range(3), "loop")
    for _ in bar:
        pass
    bar.finish("loop: 3 steps")
    out, err = capsys.readouterr()
    assert out == "loop: 3 steps\n"
    assert "loop:" in err  # tqdm's text bar, erased when the loop ended (leave=False)


def test_in_a_notebook_the_bar_becomes_one_line(tmp_path):
    nb = _executed(CELL)
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data", "stream"], outputs
    assert outputs[1].data == {"text/plain": "loop: 8 steps, final loss ≈0.125"}  # the bar's place, now its summary
    assert "widgets" not in nb.metadata  # no widget state to store


def test_nbval_compares_the_summary_line(tmp_path, plugins=("tests.measured_outputs", "tests.nbval_displays")):
    """Stored as nbclient builds it, nbval passes the cell; it fails when the stored summary says otherwise."""
    nb = _executed(CELL)
    nb.cells[0].execution_count = 1
    wrong = nbformat.reads(nbformat.writes(nb), 4).cells[0]
    wrong.outputs[1].data["text/plain"] = "loop: 9 steps, final loss ≈0.125"
    wrong.id = "stored-wrong"
    nb.cells.append(wrong)
    nb.cells[1].execution_count = 2
    path = tmp_path / "bars.ipynb"
    nbformat.write(nb, path)
    report = tmp_path / "report.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
                          *(a for p in plugins for a in ("-p", p)), "--nbval", "--nbval-current-env",
                          "-o", "addopts=", f"--junitxml={report}", "--rootdir", str(ROOT), "-c", str(ROOT / "pytest.ini"),
                          str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    results = [case.find("failure") is None for case in ElementTree.parse(report).iter("testcase")]
    assert results == [True, False], run.stdout[-3000:]
    assert "unhandled iopub msg" not in run.stdout

"""Every exercise notebook runs top to bottom unfilled (in the quick setting), with the fallbacks.

When this session's browser test (tests/test_browser.py) runs the same unfilled notebook in
JupyterLab, with Chromium there to do it, the run here is skipped: the browser test runs it in the
same setting and asserts everything below (no error, "not attempted yet", the fallback note, the
quick setting) and more, and running every lesson twice cost a fifth of the suite's time. Run
alone (``python -m pytest tests/test_exercise_notebooks.py``), or without Chromium, it runs here.
"""
import importlib.util
from pathlib import Path

import nbformat
import pytest

from tools.run_notebook import PromptNotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _text(nb):
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def run_by_the_browser_test(session, path: Path) -> bool:
    """Whether ``session`` also runs the browser test of this unfilled notebook, with a browser to run it."""
    nodeid = f"tests/test_browser.py::test_lesson_runs_in_jupyterlab[notebooks/{path.name}]"
    if not any(item.nodeid == nodeid for item in session.items):
        return False
    from tests.test_browser import _chromium
    return importlib.util.find_spec("playwright") is not None and _chromium() is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_unfilled_exercise_notebook_runs_to_the_end(path, monkeypatch, request):
    if run_by_the_browser_test(request.session, path):
        pytest.skip(f"tests/test_browser.py runs notebooks/{path.name} unfilled in JupyterLab in this session")
    monkeypatch.setenv("COURSE_QUICK", "1")
    nb = nbformat.read(path, as_version=4)
    PromptNotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]["ename"] + ": " + errors[0]["evalue"]
    text = _text(nb)
    assert "not attempted yet" in text, "the checks should say the skeletons are not attempted"
    assert "uses the course's reference" in text, "the lesson should say it falls back to the reference"
    assert "quick setting" in text

"""One source: solutions/ is paired with its text files, notebooks/ is generated from it, and the
solution code shown in a lesson is exactly the reference that the checks and fallbacks use."""
import ast
import inspect
import re
import textwrap
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks
from nbval.plugin import find_comment_markers

from grading.ids import checked_ids
from tools.make_exercises import exercise_notebook, has_solution, render, strip_solutions
from utils import exercises

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
LESSON_IDS = [p.stem for p in SOLUTIONS]


def test_every_lesson_has_all_its_files():
    assert SOLUTIONS, "no solution notebooks found"
    for path in SOLUTIONS:
        assert path.with_suffix(".py").exists(), f"{path.name} has no paired text file"
        assert (ROOT / "notebooks" / path.name).exists(), f"notebooks/{path.name} is missing"


@pytest.mark.parametrize("path", SOLUTIONS, ids=LESSON_IDS)
def test_text_file_is_paired(path):
    compare_notebooks(jupytext.read(path.with_suffix(".py")), nbformat.read(path, as_version=4), fmt="py:percent")


@pytest.mark.parametrize("path", SOLUTIONS, ids=LESSON_IDS)
def test_exercise_notebook_is_generated_from_the_solution(path):
    expected = render(exercise_notebook(nbformat.read(path, as_version=4)))
    assert (ROOT / "notebooks" / path.name).read_text() == expected, "run `python -m tools.make_exercises`"


@pytest.mark.parametrize("path", SOLUTIONS, ids=LESSON_IDS)
def test_solutions_keep_their_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "execute it: python -m tools.build_solutions " + path.name[:2]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def _definitions(source):
    return {node.name: node for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("path", SOLUTIONS, ids=LESSON_IDS)
def test_solution_cells_equal_the_references_and_every_exercise_is_checked(path):
    nb = nbformat.read(path, as_version=4)
    lesson = path.name[:2]
    ids = [i for i in exercises.all_ids() if i.startswith(lesson + ".")]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    checked = set(checked_ids(code))
    assert checked == set(ids), f"check cells {sorted(checked)} vs registered exercises {ids}"
    shown = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and has_solution(cell.source):
            shown.update(_definitions(cell.source))
    for id in ids:
        refs = exercises.get(id).reference
        for ref in refs if isinstance(refs, tuple) else (refs,):
            if ref.__name__ not in shown:
                continue  # an exercise may be solved outside a marked cell (e.g. a count)
            want = _definitions(textwrap.dedent(inspect.getsource(ref)))[ref.__name__]
            assert ast.dump(shown[ref.__name__]) == ast.dump(want), (
                f"{path.name}: the solution of `{ref.__name__}` differs from the reference in utils")


@pytest.mark.parametrize("path", SOLUTIONS, ids=LESSON_IDS)
def test_nbval_markers_are_alone_on_their_lines(path):
    """nbval obeys ``# NBVAL_IGNORE_OUTPUT`` only as the whole comment: with a reason after it on the
    same line the marker does nothing, and the cell's output is compared exactly after all. Asked of
    nbval's own reader of markers."""
    nb = nbformat.read(path, as_version=4)
    comments = [
        (i, line.strip().lstrip("#").strip())
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if line.strip().startswith("#")
    ]
    bad = [
        f"cell {i}: {text!r}"
        for i, text in comments
        if re.match(r"(NBVAL|PYTEST_VALIDATE)_", text) and not list(find_comment_markers(f"# {text}"))
    ]
    assert not bad, "a marker with more text on its line (put the reason on the next line): " + "; ".join(bad)


def test_strip_solutions_keeps_indentation_and_signature():
    src = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
    out = strip_solutions(src)
    assert out == "def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    with pytest.raises(ValueError):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")

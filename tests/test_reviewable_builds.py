"""Reviewable builds: a rebuild of an unchanged lesson changes nothing but measured outputs.

Cell ids are derived from the cells' sources (``tools.make_exercises.stable_cell_ids``) and widget
model ids from their order in the notebook (``tools.build_solutions.stable_widget_ids``), instead
of being drawn at random on each build; the exercise notebooks carry no widget state. The last
test builds a small lesson with widgets twice, in fresh kernels, and compares the bytes.
"""
import copy
import json
from pathlib import Path

import jupytext
import nbformat
import pytest

from tools.build_solutions import WIDGET_STATE, build, stable_widget_ids
from tools.make_exercises import exercise_notebook, render, stable_cell_ids

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in SOLUTIONS]
REBUILD = "run `python -m tools.build_solutions {}` (ids and widget ids are now derived, not random)"


def _ids(nb):
    return [c.get("id") for c in nb.cells]


def test_ids_come_from_the_sources_not_from_chance():
    path = SOLUTIONS[0].with_suffix(".py")
    first, second = jupytext.read(path), jupytext.read(path)
    assert _ids(first) != _ids(second), "jupytext's ids are random: without stable_cell_ids every build rewrites them"
    assert _ids(stable_cell_ids(first)) == _ids(stable_cell_ids(second))
    ids = _ids(first)
    assert len(set(ids)) == len(ids) and all(nbformat.validator.isvalid(nbformat.v4.new_notebook(cells=[c])) for c in first.cells)
    edited = copy.deepcopy(second)
    edited.cells[3].source += "\n# an edit"
    changed = [a != b for a, b in zip(_ids(stable_cell_ids(edited)), ids)]
    assert changed.count(True) == 1 and changed[3], "an edit changes the id of the edited cell only"


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_exercise_notebook_is_the_same_whatever_ids_the_solution_had(path):
    solution = nbformat.read(path, as_version=4)
    shuffled = copy.deepcopy(solution)
    for i, cell in enumerate(shuffled.cells):
        cell["id"] = f"random-{i}"
    assert render(exercise_notebook(solution)) == render(exercise_notebook(shuffled))


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_exercise_notebook_has_no_widget_state_and_the_solutions_ids(path):
    exercise = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    assert "widgets" not in exercise.metadata, "the exercise notebook carries widget state: run `python -m tools.make_exercises`"
    solution = stable_cell_ids(nbformat.read(path, as_version=4))
    assert _ids(exercise) == _ids(solution), "run `python -m tools.make_exercises`"


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_solution_notebook_has_derived_cell_and_widget_ids(path):
    stored = nbformat.read(path, as_version=4)
    again = stable_widget_ids(stable_cell_ids(copy.deepcopy(stored)), path.stem)
    assert _ids(stored) == _ids(again), REBUILD.format(path.name[:2])
    state = stored.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    assert sorted(state) == sorted(again.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})), \
        REBUILD.format(path.name[:2])


LESSON = '''# %% [markdown]
# # A small lesson
#
# With maths, $x^2$, and widgets.

# %%
import ipywidgets as widgets
from IPython.display import display

# %%
widgets.interact(lambda n: print("n squared is", n * n), n=widgets.IntSlider(value=3, min=0, max=9));

# %%
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION


display(widgets.VBox([widgets.Button(description="go"), widgets.HTML(value=str(double(21)))]))

# %%
print("done")
'''


def test_rebuilding_an_unchanged_lesson_is_byte_identical(tmp_path):
    """Build a small lesson with widgets twice (fresh kernels): the same solution and exercise notebooks, to the byte."""
    py = tmp_path / "99_small.py"
    py.write_text(LESSON)
    build(py)
    first = py.with_suffix(".ipynb").read_bytes()
    build(py)
    second = py.with_suffix(".ipynb").read_bytes()
    nb = nbformat.reads(second.decode(), as_version=4)
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    assert len(state) >= 5 and any(o.get("data", {}).get("application/vnd.jupyter.widget-view+json")
                                   for c in nb.cells for o in c.get("outputs", [])), "the lesson made no widgets"
    assert first == second, "a rebuild of an unchanged lesson changed the solution notebook"
    exercise = render(exercise_notebook(nbformat.reads(first.decode(), as_version=4)))
    assert exercise == render(exercise_notebook(nbformat.reads(second.decode(), as_version=4)))
    assert "widget-state" not in exercise and "".join(json.loads(exercise)["cells"][3]["source"]).count("NotImplementedError") == 1


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_widget_ids_do_not_depend_on_the_kernels_random_ids(path):
    """The same widgets under other random model ids (as from another kernel) get the same stable ids."""
    import re
    import uuid

    stored = nbformat.read(path, as_version=4)
    state = stored.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    if not state:
        pytest.skip("no widgets")
    other = {old: uuid.uuid4().hex for old in state}
    text = re.sub(r"[0-9a-f]{32}", lambda m: other.get(m.group(0), m.group(0)), json.dumps(stored))
    relabelled = nbformat.from_dict(json.loads(text))
    assert relabelled != stored
    assert render(stable_widget_ids(relabelled, path.stem)) == render(stable_widget_ids(stored, path.stem))

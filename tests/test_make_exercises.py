"""`python -m tools.make_exercises` (and so a lesson's build) never destroys a learner's work: an exercise
notebook with an answer filled in, or a cell edited or added, is named and left as it is; `--force`
saves it beside the new one first. An untouched notebook of an older version is simply rewritten."""
import shutil
from pathlib import Path

import nbformat
import pytest

from grading.reading import answer_id
from tools import make_exercises

ROOT = Path(__file__).resolve().parent.parent
LESSON = "03_qkv_attention.ipynb"


@pytest.fixture()
def course(tmp_path):
    """A course of one lesson, its exercise notebook generated."""
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "solutions" / LESSON, tmp_path / "solutions" / LESSON)
    assert make_exercises.write_exercises(tmp_path / "solutions", tmp_path / "notebooks") == 0
    return tmp_path


def _edit(path: Path, change) -> bytes:
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)
    return path.read_bytes()


def _fill(nb, id="03.2", source="def causal_mask(n, device=None):\n    return 'my answer'\n"):
    next(c for c in nb.cells if answer_id(c) == id).source = source


def _change_the_lesson(course: Path) -> None:
    """The author edits the lesson: a new markdown cell, and another docstring in an answer cell."""
    solution = course / "solutions" / LESSON
    nb = nbformat.read(solution, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("A new paragraph of the lesson."))
    cell = next(c for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source)
    cell.source = cell.source.replace('"""', '"""Edited. ', 1)
    nbformat.write(nb, solution)


def test_an_untouched_notebook_of_an_older_version_is_rewritten(course, capsys):
    _change_the_lesson(course)
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks") == 0
    assert "A new paragraph" in (course / "notebooks" / LESSON).read_text()
    assert "Edited. " in (course / "notebooks" / LESSON).read_text()
    assert "(1 updated)" in capsys.readouterr().out
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks", check=True) == 0


@pytest.mark.parametrize("edit,named", [
    (_fill, "exercise 03.2"),  # an answer written in place
    (lambda nb: nb.cells.append(nbformat.v4.new_code_cell("my_experiment = 1")), "cell "),  # a cell of one's own
    (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source + "\nMy notes."), "cell 1"),  # notes in the text
])
def test_a_notebook_with_a_learner_s_work_is_not_overwritten(course, capsys, edit, named):
    target = course / "notebooks" / LESSON
    mine = _edit(target, edit)
    _change_the_lesson(course)
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks") == 1
    out, err = capsys.readouterr()
    assert target.read_bytes() == mine  # byte for byte
    assert f"notebooks/{LESSON}: refused: " in out and named in out
    assert "NOT OVERWRITTEN" in err and "--force" in err
    assert sorted(p.name for p in (course / "notebooks").iterdir()) == [LESSON]


def test_force_saves_the_learner_s_copy_beside_it_first(course, capsys):
    target = course / "notebooks" / LESSON
    mine = _edit(target, _fill)
    _change_the_lesson(course)
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks", force=True) == 0
    spare = course / "notebooks" / f"mine-{LESSON}"
    assert spare.read_bytes() == mine
    assert "Edited. " in target.read_text() and "my answer" not in target.read_text()
    assert f"saved as mine-{LESSON}" in capsys.readouterr().out
    # A second forced rewrite of a second learner's edit keeps the first copy too.
    _edit(target, _fill)
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks", force=True) == 0
    assert spare.read_bytes() == mine and (course / "notebooks" / f"mine-{LESSON[:-6]}-2.ipynb").exists()


def test_a_notebook_written_before_skeletons_were_recorded(course):
    """notebooks/ of an older build carry no skeleton hash: an unfilled answer cell is the generator's, a filled one is not."""
    target = course / "notebooks" / LESSON

    def strip_hashes(nb):
        for c in nb.cells:
            c.metadata.pop("course", None)

    _edit(target, strip_hashes)
    _change_the_lesson(course)
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks") == 0
    _edit(target, strip_hashes)
    _edit(target, _fill)
    _change_the_lesson(course)
    assert make_exercises.write_exercises(course / "solutions", course / "notebooks") == 1


def test_the_lesson_build_stops_too(monkeypatch, course):
    """tools.build_solutions regenerates the exercises the same way, and passes --force on."""
    from tools import build_solutions

    calls = []
    monkeypatch.setattr(build_solutions, "make_exercises", lambda argv: calls.append(argv) or 1)
    monkeypatch.setattr(build_solutions, "build", lambda path: 0.0)
    assert build_solutions.main(["99"]) == 1 and calls == [[]]
    assert build_solutions.main(["99", "--force"]) == 1 and calls[-1] == ["--force"]

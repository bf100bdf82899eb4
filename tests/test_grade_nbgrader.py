"""The README's nbgrader steps, with the real nbgrader: generate the assignment, fake two learners'
submissions in `submitted/`, `nbgrader autograde` them, and compare the points with `python -m grading`'s.

Lesson 03 (its notebook runs in seconds); one learner, bob, has two exercises right, one wrong and
one not attempted (a second learner would double the test's time, about a minute on an idle CPU). nbgrader runs every cell, training included (in the
quick setting: `utils` turns it on under NBGRADER_EXECUTION), with its own 30 s cell timeout.
"""
import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grading import classroom, reading
from grading.ids import check_grade_id
from grading.notebook import Options
from utils.exercises import get

pytest.importorskip("nbgrader", reason="nbgrader is installed by requirements.txt (and CI); not here")

ROOT = Path(__file__).resolve().parent.parent
LESSON = "03_qkv_attention"
IDS = ["03.1", "03.2", "03.3", "03.4"]
WRONG_CAUSAL = '''def causal_mask(n: int, device=None):
    return torch.ones(n, n, dtype=torch.bool, device=device).triu()  # the future, not the past
'''


def solutions() -> dict:
    nb = nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    strip = lambda s: "\n".join(l for l in s.splitlines() if "### BEGIN SOLUTION" not in l and "### END SOLUTION" not in l)
    return dict(zip(IDS, map(strip, cells)))


def nbgrader(course: Path, *args, env=None):
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"],
                         cwd=course, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # as the README says: the course importable where nbgrader runs
    # 1. The source, with nbgrader's metadata; nbgrader releases the skeletons.
    subprocess.run([sys.executable, "-m", "tools.make_exercises", "--nbgrader-source", str(course / "source")],
                   cwd=ROOT, check=True, capture_output=True)
    nbgrader(course, "generate_assignment", LESSON, env=env)
    release = nbformat.read(course / "release" / LESSON / f"{LESSON}.ipynb", as_version=4)
    # 2. Two learners' submissions, collected as `nbgrader collect` lays them out.
    sol = solutions()
    answers = {"bob": {"03.1": sol["03.1"], "03.2": WRONG_CAUSAL, "03.4": sol["03.4"]}}
    for learner, given in answers.items():
        nb = copy.deepcopy(release)
        for cell in nb.cells:
            if reading.answer_id(cell) in given:
                cell.source = given[reading.answer_id(cell)]
        path = course / "submitted" / learner / LESSON / f"{LESSON}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    # 3. nbgrader's points, and the course grader's verdicts, for the same submissions.
    autograde = nbgrader(course, "autograde", LESSON, "--create", env=env)
    from nbgrader.api import Gradebook

    points = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for learner in answers:
            notebook = gb.find_submission_notebook(LESSON, LESSON, learner)
            points[learner] = {g.name: (g.score, g.max_score) for g in notebook.grades}
    out = course / "grades"
    rows = classroom.grade([course / "submitted"], out, Options(lesson="03"), jobs=2, log=lambda *a: None)
    csv_rows = {r["learner"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
    validate = subprocess.run([sys.executable, "-m", "nbgrader", "validate",
                               str(course / "submitted" / "bob" / LESSON / f"{LESSON}.ipynb")],
                              cwd=course, capture_output=True, text=True, timeout=600, env=env)
    return dict(points=points, rows={r.learner: r for r in rows}, csv=csv_rows, autograde=autograde, validate=validate)


def test_nbgrader_gives_the_points_the_course_grader_gives(round_trip):
    for learner, row in round_trip["rows"].items():
        assert row.status == "graded", row.problem
        nbgrader_points = round_trip["points"][learner]
        assert sorted(nbgrader_points) == [check_grade_id(id) for id in IDS]
        for id in IDS:
            score, max_score = nbgrader_points[check_grade_id(id)]
            assert max_score == get(id).difficulty  # points: the exercise's difficulty
            assert (score == max_score) == (row.results[id]["status"] == "pass"), (learner, id, score, row.results[id])
            assert score in (0, max_score)
        total = sum(s for s, _ in nbgrader_points.values()), sum(m for _, m in nbgrader_points.values())
        assert round_trip["csv"][learner]["points"] == f"{total[0]:g}/{total[1]:g}"
    assert [round_trip["rows"]["bob"].results[id]["status"] for id in IDS] == ["pass", "fail", "not attempted", "pass"]
    assert round_trip["csv"]["bob"]["points"] == f"{get('03.1').difficulty + get('03.4').difficulty}/5"


def test_no_cell_hits_nbgrader_s_timeout(round_trip):
    log = round_trip["autograde"].stdout + round_trip["autograde"].stderr
    assert "Timeout waiting" not in log and "CellTimeoutError" not in log, log[-3000:]


def test_validate_reports_the_failing_checks(round_trip):
    run = round_trip["validate"]
    text = run.stdout + run.stderr
    assert "Success!" not in text, text[-3000:]
    assert "Exercise 03.2" in text and "not yet" in text, text[-3000:]

"""A class on every core, and nothing graded lost: the grader killed mid-class (SIGKILL: a laptop lid, a
batch system's `kill -9`) leaves a whole gradebook of what it finished, and a rerun into the same folder
grades only the rest, says so, and ends with the gradebook of an uninterrupted run.

Also: the default number of notebooks at once, the progress line, atomic writes, and which rows a
rerun keeps (unchanged content and course version) or grades again (--regrade, an edited notebook,
a problem of the grader's own).
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from grading import capacity, classroom, gradebook
from grading.notebook import Options, Row
from grading.roster import Submission
from test_grade import DECODER_SOFTMAX, ENCODER_NO_PACKING, SHIFT_ROLL, solutions, submission

ROOT = Path(__file__).resolve().parent.parent
NAME = "01_lstm_bottleneck.ipynb"


def make_class(folder: Path) -> None:
    sol = solutions()
    learners = {"ann": submission(sol), "ben": submission({"01.1": ENCODER_NO_PACKING, "01.2": SHIFT_ROLL}),
                "cat": submission({}), "dan": submission({"01.2": sol["01.2"], "01.3": DECODER_SOFTMAX})}
    for learner, nb in learners.items():
        (folder / learner).mkdir(parents=True)
        nbformat.write(nb, folder / learner / NAME)
    (folder / "eve").mkdir()
    (folder / "eve" / NAME).write_text('{"cells": [')  # half saved: not graded, and kept as such


def grader(folder: Path, out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "grading", str(folder), "--out", str(out), "--lesson", "01", "--cell-timeout", "30",
            *extra]


def run(folder: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(grader(folder, out, *extra), cwd=ROOT, capture_output=True, text=True, timeout=900)


def _started(pid: int) -> str | None:
    """When process ``pid`` started (so that a reused process id is not taken for it), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in "ZX" else fields[19]  # a zombie is dead, only not yet reaped


def descendants(pid: int) -> dict[int, str]:
    """Process id -> start time, of every process under ``pid``."""
    found, todo = {}, [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()} - set(found)
            except OSError:
                continue
            todo += list(children)
            found.update({c: _started(c) for c in children})
    return found


def rows_in(out: Path) -> list[dict]:
    path = out / "gradebook.csv"
    return list(csv.DictReader(open(path))) if path.exists() else []


def records_in(out: Path) -> list[dict]:
    path = out / "gradebook.json"
    return json.loads(path.read_text()) if path.exists() else []


def without_timings(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")}
            for r in json.loads((out / "gradebook.json").read_text())]


def feedback(out: Path) -> dict:
    return {p.name: p.read_text() for p in sorted((out / "feedback").glob("*"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    make_class(folder)
    full, part = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("part")
    uninterrupted = run(folder, full, "--jobs", "2")
    # The same class, one notebook at a time, killed once two notebooks are in its gradebook.
    proc = subprocess.Popen(grader(folder, part, "--jobs", "1"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, kernels = time.monotonic() + 600, {}
    while len(records_in(part)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        kernels.update(descendants(proc.pid))
        time.sleep(0.05)
    kernels.update(descendants(proc.pid))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = {"csv": rows_in(part), "json": records_in(part),
               "files": sorted(str(p.relative_to(part)) for p in part.rglob("*"))}
    time.sleep(3)
    survivors = [pid for pid, started in kernels.items() if started is not None and _started(pid) == started]
    resumed = run(folder, part)  # the default number of notebooks at once
    again = run(folder, part)
    return dict(folder=folder, full=full, part=part, uninterrupted=uninterrupted, at_kill=at_kill,
                kernels=kernels, survivors=survivors, resumed=resumed, again=again)


def test_the_gradebook_of_a_killed_grader_is_whole(runs):
    """Both files parse, and hold whole rows equal to the uninterrupted run's; the JSON, from which a rerun
    resumes, is written first, so the CSV may lack the last notebook, never the reverse."""
    at_kill = runs["at_kill"]
    full = {r["learner"]: r for r in rows_in(runs["full"])}
    full_records = {r["learner"]: r for r in without_timings(runs["full"])}
    assert 2 <= len(at_kill["json"]) < 5, at_kill["json"]  # killed mid-class
    learners = [r["learner"] for r in at_kill["json"]]
    assert [r["learner"] for r in at_kill["csv"]] in (learners, learners[:-1])
    for row in at_kill["csv"]:
        assert row == full[row["learner"]]  # each finished notebook, exactly as in the uninterrupted run
    for record in at_kill["json"]:
        assert {k: v for k, v in record.items() if k not in ("seconds", "cpu_seconds")} == full_records[record["learner"]]
    assert "gradebook.csv" in at_kill["files"] and "gradebook.json" in at_kill["files"]


def test_no_kernel_outlives_the_killed_grader(runs):
    """It was killed with a kernel running or starting (one notebook at a time, never idle): nothing the
    grader started is left, however far that kernel's start had gone (the lifeline, grading/sandbox.py)."""
    assert runs["kernels"], "no kernel was seen running"
    assert runs["survivors"] == []


def test_the_rerun_grades_the_rest_and_ends_with_the_uninterrupted_gradebook(runs):
    resumed, full, part = runs["resumed"], runs["full"], runs["part"]
    kept = len(runs["at_kill"]["json"])
    assert runs["uninterrupted"].returncode == resumed.returncode == 1  # eve's notebook is not graded
    assert f"{kept} notebook(s) unchanged since the last run" in resumed.stdout, resumed.stdout
    assert (part / "gradebook.csv").read_text() == (full / "gradebook.csv").read_text()
    assert without_timings(part) == without_timings(full)
    assert feedback(part) == feedback(full)
    assert sorted(p.name for p in part.iterdir()) == ["feedback", "gradebook.csv", "gradebook.json"]  # no leftovers
    graded_now = [line for line in resumed.stdout.splitlines() if line.startswith("[")]
    assert len(graded_now) == 5 - kept and graded_now[-1].startswith(f"[{5 - kept}/{5 - kept}]")


def test_a_second_rerun_grades_nothing(runs):
    again = runs["again"]
    assert "5 notebook(s) unchanged since the last run" in again.stdout and "[1/" not in again.stdout
    assert (runs["part"] / "gradebook.csv").read_text() == (runs["full"] / "gradebook.csv").read_text()


def test_an_edited_notebook_is_graded_again_and_regrade_grades_all(runs, tmp_path):
    folder, part = runs["folder"], runs["part"]
    (folder / "eve" / NAME).write_text(nbformat.writes(submission({})))  # eve saves her notebook whole
    rerun = run(folder, part)
    assert "4 notebook(s) unchanged" in rerun.stdout and "[1/1]" in rerun.stdout and "eve" in rerun.stdout
    assert rerun.returncode == 0 and {r["learner"]: r["status"] for r in rows_in(part)}["eve"] == "graded"
    # --regrade: kept rows are not kept (a class of one unreadable notebook, so nothing needs a kernel)
    lone, out = tmp_path / "lone", tmp_path / "out"
    (lone / "zed").mkdir(parents=True)
    (lone / "zed" / NAME).write_text("{")
    assert "unchanged" not in run(lone, out).stdout
    assert "1 notebook(s) unchanged" in run(lone, out).stdout
    assert "unchanged" not in run(lone, out, "--regrade").stdout


# ------------------------------------------------------------------ without a kernel
def test_a_row_not_graded_for_the_grader_s_own_reason_is_graded_again(tmp_path):
    sub = Submission(tmp_path / "a.ipynb", "ann", "a.ipynb")
    book = gradebook.Gradebook(tmp_path, [sub], version="v1")
    book.add(sub, Row("ann", "a.ipynb", problem="the grader could not start a Python kernel: ...", retry=True), "sha")
    book2 = gradebook.Gradebook(tmp_path, [sub], version="v1")
    assert book2.unchanged(sub, "sha") is None
    book2.add(sub, Row("ann", "a.ipynb", problem="not a valid notebook: ..."), "sha")
    assert gradebook.Gradebook(tmp_path, [sub], version="v1").unchanged(sub, "sha").problem == "not a valid notebook: ..."
    assert gradebook.Gradebook(tmp_path, [sub], version="v2").unchanged(sub, "sha") is None  # another course version
    assert gradebook.Gradebook(tmp_path, [sub], version="v1").unchanged(sub, "edited") is None


def test_the_course_version_follows_the_course_and_the_settings():
    a = classroom.course_version(Options(lesson="01"))
    assert a == classroom.course_version(Options(lesson="01"))
    assert a != classroom.course_version(Options(lesson="02")) != classroom.course_version(Options(lesson="01", cell_timeout=5))


def test_a_write_is_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "gradebook.csv"
    gradebook.write_atomically(target, "old\n")

    def crash(*args):
        raise KeyboardInterrupt  # killed between writing the new file and renaming it

    monkeypatch.setattr(gradebook.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        gradebook.write_atomically(target, "new\n" * 1000)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["gradebook.csv"]
    (tmp_path / ".writing-gradebook.json.x").write_text("[{")  # what a SIGKILL can leave
    gradebook.Gradebook(tmp_path, [], version="v").clean()
    assert [p.name for p in tmp_path.iterdir()] == ["gradebook.csv"]


def test_jobs_default_to_what_the_machine_holds(monkeypatch):
    gib = 2 ** 30
    for cores, free, memory_mb, expected in [(64, 1024 * gib, 4096, 64),  # no fixed cap
                                             (64, 10 * gib, 4096, 2),  # memory: 10 GiB / 4 GiB per kernel
                                             (3, 100 * gib, 4096, 3), (8, 1 * gib, 4096, 1), (8, 16 * gib, 1024, 8)]:
        monkeypatch.setattr(capacity, "cores", lambda: cores)
        monkeypatch.setattr(capacity, "free_memory", lambda: free)
        assert capacity.default_jobs(memory_mb) == expected, (cores, free, memory_mb)


def test_this_machine_s_capacity_is_read():
    assert capacity.cores() >= 1 and (capacity.free_memory() or 1) > 0


def test_the_progress_line_gives_the_count_and_the_time_left(monkeypatch):
    lines, now = [], [100.0]
    monkeypatch.setattr(classroom.time, "monotonic", lambda: now[0])
    progress = classroom.Progress(4, lines.append, bar=False)
    for step in range(4):
        now[0] += 90  # 90 s per notebook
        progress.finished(f"notebook {step}")
    assert lines == ["[1/4, about 4 min left] notebook 0", "[2/4, about 3 min left] notebook 1",
                     "[3/4, about 2 min left] notebook 2", "[4/4] notebook 3"]


def test_a_stopped_grader_stops_its_kernels_and_says_so(runs, tmp_path):
    """SIGTERM (a batch system stopping a job) or Ctrl-C: the kernels are stopped at once, the notebooks
    finished are in the gradebook, and the grader says how to go on (exit status 130)."""
    out = tmp_path / "out"
    proc = subprocess.Popen(grader(runs["folder"], out, "--jobs", "2"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, kernels = time.monotonic() + 600, {}
    while not records_in(out) and proc.poll() is None and time.monotonic() < deadline:
        kernels.update(descendants(proc.pid))
        time.sleep(0.05)
    kernels.update(descendants(proc.pid))
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and time.monotonic() - stopped < 30, err
    assert f"interrupted: {len(records_in(out))} notebook(s) graded are in the gradebook" in err
    assert "run the same command again" in err
    time.sleep(2)
    assert kernels and [pid for pid, started in kernels.items() if started is not None and _started(pid) == started] == []

"""The gradebook of one output folder, written as each notebook finishes, and never half-written.

* ``gradebook.csv``: one row per learner and notebook; ``learner``, ``notebook``, ``lesson``,
  ``status`` (``graded`` / ``not graded``), one column per exercise id (``pass`` / ``fail`` /
  ``not attempted``), ``score`` (exercises passed / exercises), ``points`` (nbgrader's: an
  exercise's difficulty), ``problem`` and ``feedback`` (the file);
* ``gradebook.json``: the same, with every diagnosis in full, each notebook's SHA-256 and the
  course version it was graded with (so that a rerun keeps what is unchanged);
* ``feedback/<learner>.md``: each learner's feedback, with the diagnoses ``utils.check`` gives.

Each file is written to a temporary file beside it and renamed over it (``os.replace``): a grader
killed at any moment leaves either the previous gradebook or the new one, never a mixture.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import textwrap
from pathlib import Path

from grading.notebook import Row
from grading.planning import course_ids
from grading.roster import Submission, feedback_name
from utils.exercises import CheckResult, get
from utils.exercises.registry import id_key

_TEMP = ".writing-"  # the prefix of a file being written; one left by a killed run is removed


def write_atomically(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole, or what it held before: never a part of it."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP + path.name + ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def points(row: Row) -> str:
    """Points as nbgrader gives them (an exercise's difficulty, 1 to 3, when it passes): ``"5/7"``."""
    if row.status != "graded":
        return ""
    worth = {id: get(id).difficulty for id in row.results}
    return f"{sum(w for id, w in worth.items() if row.results[id]['status'] == 'pass')}/{sum(worth.values())}"


def feedback(learner: str, rows: list[Row]) -> str:
    """A learner's feedback, in Markdown: each notebook, each exercise, the diagnosis."""
    lines = [f"# Feedback for {learner}", ""]
    for row in rows:
        lesson = f"assignment: lesson {row.lesson}" if row.lesson else "assignment unknown"
        lines += [f"## Submission `{row.notebook}` ({lesson})", ""]
        if row.status != "graded":
            lines += [f"**Not graded:** {row.problem}", ""]
            continue
        lines += [f"**Score: {row.score}** exercises passed.", ""]
        for id in sorted(row.results, key=id_key):
            r = row.results[id]
            text = repr(CheckResult(id, r["status"], r["message"], r.get("title", "")))
            heading, _, message = text.partition("\n")
            lines += [f"### {heading}", "", *(f"    {line}" if line else "" for line in message.splitlines()), ""]
        if row.problem:
            lines += [f"_Note: {row.problem}_", ""]
    return "\n".join(lines).rstrip() + "\n"


def record(row: Row, feedback_file: str, sha256: str, version: str) -> dict:
    """A row as ``gradebook.json`` keeps it; ``sha256`` and ``course`` only where a rerun may keep it."""
    out = {"learner": row.learner, "notebook": row.notebook, "lesson": row.lesson, "status": row.status,
           "score": row.score, "points": points(row), "problem": row.problem, "feedback": feedback_file,
           "seconds": round(row.seconds, 1), "cpu_seconds": round(row.cpu_seconds, 1), "exercises": row.results}
    if not row.retry:
        out.update(sha256=sha256, course=version)
    return out


def row_of(record: dict) -> Row:
    """The row a ``gradebook.json`` record holds."""
    return Row(record["learner"], record["notebook"], record.get("lesson", ""), record.get("status", "not graded"),
               record.get("exercises", {}), record.get("problem", ""), record.get("seconds", 0.0),
               record.get("cpu_seconds", 0.0))


class Gradebook:
    """The gradebook of ``out`` for a class (``submissions``, in the gradebook's order)."""

    def __init__(self, out: Path, submissions: list[Submission], version: str):
        self.out, self.version, self.order = out, version, list(submissions)
        self.files = {s.learner: f"feedback/{feedback_name(s.learner)}" for s in submissions}
        assert len(set(self.files.values())) == len(self.files), "two learners would share a feedback file"
        self.previous = self._read_previous()
        self.done: dict[Submission, tuple[Row, dict, str]] = {}  # the row, its record, the record as JSON

    def _read_previous(self) -> dict:
        """(learner, notebook) -> its record in the gradebook a previous run left in ``out`` (if any)."""
        try:
            records = json.loads((self.out / "gradebook.json").read_text(encoding="utf-8"))
            return {(r["learner"], r["notebook"]): r for r in records}
        except (OSError, ValueError, TypeError, KeyError):
            return {}

    def unchanged(self, sub: Submission, sha256: str) -> Row | None:
        """The row of the previous run for this same notebook and course version, if there is one."""
        old = self.previous.get((sub.learner, sub.shown))
        if old and old.get("sha256") == sha256 and old.get("course") == self.version:
            return row_of(old)
        return None

    def add(self, sub: Submission, row: Row, sha256: str, write: bool = True) -> None:
        """Record a finished notebook and (``write``) rewrite the gradebook and that learner's feedback, atomically."""
        rec = record(row, self.files[sub.learner], sha256, self.version)
        self.done[sub] = (row, rec, textwrap.indent(json.dumps(rec, indent=1, ensure_ascii=False), " "))
        if write:
            self._write_feedback(sub.learner)
            self.write()

    def _write_feedback(self, learner: str) -> None:
        (self.out / "feedback").mkdir(parents=True, exist_ok=True)
        mine = [self.done[s][0] for s in self.order if s in self.done and s.learner == learner]
        write_atomically(self.out / self.files[learner], feedback(learner, mine))

    def write_all(self) -> None:
        """The gradebook, and the feedback of every learner with a notebook finished."""
        for learner in dict.fromkeys(s.learner for s in self.order if s in self.done):
            self._write_feedback(learner)
        self.write()

    def rows(self) -> list[Row]:
        return [self.done[s][0] for s in self.order if s in self.done]

    def write(self) -> None:
        """gradebook.json and gradebook.csv, with every notebook finished so far, in the class's order."""
        finished = [self.done[s] for s in self.order if s in self.done]
        rows = [row for row, _, _ in finished]
        lessons = {r.lesson for r in rows if r.status == "graded"}
        ids = sorted({i for r in rows for i in r.results} | {i for lesson in lessons for i in course_ids(lesson)},
                     key=id_key)
        # The JSON first: a rerun resumes from it, so it never holds fewer notebooks than the CSV.
        parts = [as_json for _, _, as_json in finished]
        write_atomically(self.out / "gradebook.json", ("[\n" + ",\n".join(parts) + "\n]" if parts else "[]") + "\n")
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["learner", "notebook", "lesson", "status", *ids, "score", "points", "problem", "feedback"])
        for row, rec, _ in finished:
            writer.writerow([row.learner, row.notebook, row.lesson, row.status,
                             *(row.results.get(i, {}).get("status", "") for i in ids), row.score, rec["points"],
                             row.problem, rec["feedback"]])
        write_atomically(self.out / "gradebook.csv", text.getvalue())

    def clean(self) -> None:
        """Remove what a killed run left half-written, and the feedback of learners no longer in the class."""
        for folder in (self.out, self.out / "feedback"):
            for temp in folder.glob(_TEMP + "*") if folder.is_dir() else ():
                temp.unlink(missing_ok=True)
        current = set(self.files.values())
        for old in self.previous.values():
            name = str(old.get("feedback", ""))
            if name.startswith("feedback/") and "/" not in name[9:] and name not in current:
                (self.out / name).unlink(missing_ok=True)

"""Grading one notebook: read it, plan it, run its definitions and its checks in a fresh kernel.

A check that does not finish (an endless loop) or that kills the kernel (``os._exit``, a crash) is a
``fail`` with that reason; the grader starts a new kernel and goes on with the other exercises.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from grading.kernel import Kernel
from grading.planning import ROOT, Step, course_ids, plan, title
from grading.reading import lesson_of, read_notebook
from utils.exercises import LessonError

_LOST = {"timeout": "it did not finish within {limit:.0f} s (an endless loop?)",
         "died": "it stopped the Python process (os._exit, or a crash)"}
_CHECK_LOST = {"timeout": "checking your code did not finish within {limit:.0f} s: is there an endless loop?",
               "died": "checking your code stopped the Python process (os._exit, or a crash): nothing after it could run."}
_BOOT = ("import sys\nsys.path.insert(0, {root!r})\nimport utils, utils.exercises\nutils.seed_everything(0)\n"
         "from utils.integrity import boot\n__course_check__ = boot({ids!r}, {nonce!r})\ndel boot\n")


@dataclass
class Row:
    learner: str
    notebook: str
    lesson: str = ""
    status: str = "not graded"
    results: dict = field(default_factory=dict)  # id -> {"status", "message", "title"}
    problem: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of its kernels (Linux)
    retry: bool = False  # not graded for a reason of the grader's, not the notebook's: a rerun grades it again

    @property
    def score(self) -> str:
        if self.status != "graded":
            return ""
        return f"{sum(r['status'] == 'pass' for r in self.results.values())}/{len(self.results)}"


@dataclass
class Options:
    timeout: float = 300.0
    cell_timeout: float = 60.0
    startup_timeout: float = 120.0
    lesson: str | None = None
    sandbox: bool = True  # see grading.sandbox; False only with --no-sandbox
    memory_mb: int = 4096  # address space of a kernel's process
    cpu_seconds: int | None = None  # CPU time of a kernel's process (default: the notebook's time limit + 60 s)


def _screen(row: Row, nb, path: Path, options: Options) -> list[str]:
    """The notebook's exercise ids, or [] after setting ``row.problem`` (another lesson, another version)."""
    lesson, found = lesson_of(nb, path)
    if lesson is None:
        row.problem = "not a notebook of this course: it has no `utils.check(\"NN.k\", ...)` cell"
        return []
    row.lesson = lesson
    if options.lesson and lesson != options.lesson:
        row.problem = (f"this is a notebook of lesson {lesson}, not of the assignment (lesson {options.lesson}): "
                       "was the wrong file submitted?")
        return []
    try:
        ids = course_ids(lesson)
    except LessonError as err:
        row.problem, row.retry = f"the course's checks could not be loaded: {err}", True
        return []
    if not ids:
        row.problem = f"lesson {lesson} has no exercises in this version of the course"
        return []
    unknown = [i for i in found if i not in ids]
    if unknown:
        row.problem = (f"from another version of the course: it has exercise(s) {', '.join(unknown)}, but lesson {lesson} "
                       f"of this version has {', '.join(ids)}. Ask the learner to copy their answers into the current "
                       "notebook.")
        return []
    return ids


class NotebookGrader:
    """Grades one notebook: ``NotebookGrader(...).grade()`` -> its :class:`Row`."""

    def __init__(self, path: Path, learner: str, shown: str, options: Options, assignments: dict, stop=None):
        self.path, self.options, self.assignments = path, options, assignments
        self.stop = stop  # a threading.Event: once set, nothing more is run (the grader was interrupted)
        self.row = Row(learner, shown)
        self.start = time.monotonic()
        self.deadline = self.start + options.timeout
        self.ids: list[str] = []
        self.steps: list[Step] = []
        self.failed_cells: dict[int, str] = {}  # cell index -> why it did not run
        self.skip: set[int] = set()  # steps not to run again in a fresh kernel
        self.lost_cells: set[int] = set()  # cells that looped or killed the kernel

    def grade(self) -> Row:
        try:
            nb = read_notebook(self.path)
        except (OSError, ValueError) as err:
            self.row.problem = str(err)
            return self.row
        self.ids = _screen(self.row, nb, self.path, self.options)
        if not self.ids:
            return self.row
        _, calls, names = self.assignments.get(self.row.lesson, ("", [], {}))
        self.steps = plan(nb, calls, self.ids, names)
        outcome = "done"
        while time.monotonic() <= self.deadline and not self._stopped():
            outcome = self._kernel_pass()  # one pass per kernel: a kernel lost to a learner's code is replaced
            if outcome != "lost":
                break
        self.row.seconds = time.monotonic() - self.start
        return self.row if outcome == "stop" else self._finish()

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _kernel_pass(self) -> str:
        """Run what is left of the plan in a new kernel: "done", "lost" (the kernel was lost) or "stop"."""
        try:
            kernel = Kernel(self.options.startup_timeout, sandbox=self.options.sandbox, submission=self.path,
                            memory_mb=self.options.memory_mb,
                            cpu_seconds=self.options.cpu_seconds or int(self.options.timeout) + 60)
        except Exception as err:  # noqa: BLE001
            self.row.problem = f"the grader could not start a Python kernel: {type(err).__name__}: {err}"
            self.row.retry = True
            return "stop"
        try:
            nonce = secrets.token_hex(16)  # a verdict the learner's code displays itself is not the grader's
            boot = kernel.run(_BOOT.format(root=str(ROOT), ids=self.ids, nonce=nonce),
                              max(5.0, min(self.options.startup_timeout, self.deadline - time.monotonic())))
            if boot.state != "ok":
                self.row.problem = f"the course's code did not load in the kernel ({boot.state}: {boot.error})"
                self.row.retry = True
                return "stop"
            return self._run_steps(kernel, nonce)
        finally:
            kernel.close()
            self.row.cpu_seconds += kernel.cpu_seconds

    def _run_steps(self, kernel: Kernel, nonce: str) -> str:
        for k, step in enumerate(self.steps):
            if self._stopped():
                return "stop"
            if k in self.skip or (step.check and step.check.id in self.row.results):
                continue
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                break
            limit = min(self.options.cell_timeout, remaining)
            outcome = self._check(kernel, k, step, limit, nonce) if step.check else self._define(kernel, k, step, limit)
            if outcome in ("lost", "stop"):
                return outcome
        return "done"

    def _define(self, kernel: Kernel, k: int, step: Step, limit: float) -> str:
        """Run a cell's definitions; note why the cell failed, if it did."""
        out = kernel.run(step.code, limit)
        if out.state == "ok":
            self.failed_cells.pop(step.cell, None)
            return "ok"
        self.failed_cells[step.cell] = _LOST[out.state].format(limit=limit) if out.state in _LOST else out.error
        if out.state in _LOST:
            self.skip.add(k)
            self.lost_cells.add(step.cell)
            return "lost"
        return "ok"

    def _check(self, kernel: Kernel, k: int, step: Step, limit: float, nonce: str) -> str:
        """Grade one exercise at its check cell: "ok", "lost" (the kernel) or "stop" (the notebook alters the checks)."""
        id, expr = step.check.id, step.check.expr
        if expr is None:
            self.row.results[id] = {"status": "not attempted", "message": "There is no check cell for this exercise, "
                                    "and the grader does not know what to check.", "title": title(id)}
            return "ok"
        final = not any(s.check for s in self.steps[k + 1:])
        out = kernel.run(f"__course_check__({id!r}, lambda: ({expr}), {step.renamed!r}, {final})", limit)
        verdicts = [v for v in out.verdicts if v.get("nonce") == nonce and v.get("id") == id]
        verdict = verdicts[-1] if verdicts else None
        if verdict is None and out.state == "error" and "__course_check__" in out.error:
            verdict = {"altered": "it deletes or replaces the grader's own check function"}
        if verdict is not None and "altered" in verdict:
            self.row.problem = f"the notebook alters the course's checks ({verdict['altered']}): not graded"
            self.row.results = {}
            return "stop"
        if out.state in _CHECK_LOST or verdict is None:
            why = _CHECK_LOST[out.state].format(limit=limit) if out.state in _CHECK_LOST \
                else f"the check could not run: {out.error}"
            self.row.results[id] = {"status": "fail", "message": why[0].upper() + why[1:], "title": title(id)}
            self.skip.add(k)
            return "lost" if out.state in _CHECK_LOST else "ok"
        if "undefined" in verdict:
            status, message = self._undefined(k, verdict["undefined"], id)
            verdict = {"status": status, "message": message, "title": title(id)}
        self.row.results[id] = {key: verdict.get(key, "") for key in ("status", "message", "title")}
        return "ok"

    def _undefined(self, k: int, name: str, id: str) -> tuple[str, str]:
        """(status, message) for a check whose candidate the notebook does not define."""
        earlier = [self.steps[j] for j in range(k) if self.steps[j].cell in self.failed_cells]
        mine = [s for s in earlier if s.answer_of == id] or [s for s in earlier if name and re.search(
            rf"\b(def|class)\s+{re.escape(name)}\b|\b{re.escape(name)}\s*=", s.code)]
        if mine:
            return "fail", f"`{name}` is not defined, because the cell that defines it did not run: {self.failed_cells[mine[-1].cell]}"
        return "not attempted", f"`{name}` is not defined in this notebook: write it (or run its cell) before checking it."

    def _finish(self) -> Row:
        row = self.row
        missing = [i for i in self.ids if i not in row.results]
        if missing:
            row.problem = (f"the notebook's time limit ({self.options.timeout:.0f} s) ran out before exercise(s) "
                           f"{', '.join(missing)} could be checked")
            row.retry = True
            return row
        row.status = "graded"
        # Worth the instructor's attention: an answer cell that failed, or any cell that looped or crashed
        # (a definition that merely needs a skipped computation fails harmlessly).
        answers = {step.cell for step in self.steps if step.answer_of}
        troubles = [f"cell {c + 1}: {why}" for c, why in sorted(self.failed_cells.items())
                    if c in answers or c in self.lost_cells]
        row.problem = "; ".join(troubles)[:500]
        return row


def grade_notebook(path: Path, learner: str, shown: str, options: Options, assignments: dict, stop=None) -> Row:
    """Grade one learner's notebook (see :class:`NotebookGrader`); ``stop``: an Event that interrupts it."""
    return NotebookGrader(path, learner, shown, options, assignments, stop).grade()

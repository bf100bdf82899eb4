"""Grading a class: every notebook under the paths given, on every core, with a progress bar, into a
gradebook that is written as each notebook finishes and that a rerun resumes.

A rerun on the same output folder keeps the grade of every notebook whose content and course version
(the course's code, its exercise notebooks, the grader, the grading settings) are unchanged, and says
so; ``regrade=True`` (``--regrade``) grades them all again. Interrupted (Ctrl-C, SIGTERM), the grader
stops its kernels and keeps every notebook finished so far; killed outright, the gradebook on disk
still holds them (each write is atomic), and the next run grades only the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm.std import tqdm  # the text bar: never a notebook widget (utils.progress says why)

from grading import sandbox
from grading.capacity import default_jobs
from grading.gradebook import Gradebook
from grading.kernel import Kernel
from grading.notebook import Options, Row, grade_notebook
from grading.planning import ROOT, course_assignments
from grading.roster import Submission, submissions
from utils.exercises.registry import id_key


def course_version(options: Options) -> str:
    """A digest of everything a grade depends on besides the notebook: the course's code (``utils/``), its
    exercise notebooks, the grader (``grading/``), the grading settings and the numerics' environment."""
    digest = hashlib.sha256()
    for folder, pattern in (("utils", "**/*.py"), ("grading", "**/*.py"), ("notebooks", "[0-9][0-9]_*.ipynb")):
        for path in sorted((ROOT / folder).glob(pattern)):
            digest.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes() + b"\0")
    settings = {"lesson": options.lesson, "timeout": options.timeout, "cell_timeout": options.cell_timeout,
                "sandbox": options.sandbox, "memory_mb": options.memory_mb, "cpu_seconds": options.cpu_seconds,
                "env": {k: os.environ.get(k) for k in sandbox.PASS_THROUGH}}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _time_left(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute left"
    return f"about {minutes} min left" if minutes < 60 else f"about {minutes // 60} h {minutes % 60:02d} min left"


class Progress:
    """The count of notebooks graded and an estimate of the time left: a bar on a terminal, and in each line."""

    def __init__(self, total: int, log, bar: bool):
        self.total, self.done, self.start, self.log = total, 0, time.monotonic(), log
        self.bar = tqdm(total=total, unit="notebook", file=sys.stderr, dynamic_ncols=True) if bar and total else None

    def left(self) -> str:
        if not self.done or self.done == self.total:
            return ""
        return ", " + _time_left((self.total - self.done) * (time.monotonic() - self.start) / self.done)

    def finished(self, text: str) -> None:
        self.done += 1
        line = f"[{self.done}/{self.total}{self.left()}] {text}"
        if self.bar is not None:
            self.bar.update(1)
            tqdm.write(line, file=sys.stdout)
        else:
            self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _line(row: Row, seconds: float) -> str:
    cells = " ".join(f"{i} {r['status']}" for i, r in sorted(row.results.items(), key=lambda kv: id_key(kv[0])))
    return f"{row.status:>10}  {row.learner:<16} {row.notebook}  ({seconds:.0f} s)  {cells or row.problem}"


class Interrupted(Exception):
    """The grader was interrupted; what was graded is in the gradebook."""


def _grade_one(sub: Submission, options: Options, assignments: dict, stop: threading.Event) -> Row | None:
    if stop.is_set():
        return None
    try:
        return grade_notebook(sub.path, sub.learner, sub.shown, options, assignments, stop)
    except Exception as err:  # noqa: BLE001 -- one notebook must never stop the class
        return Row(sub.learner, sub.shown, problem=f"the grader failed on this notebook: {type(err).__name__}: {err}",
                   retry=True)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _run_pool(todo: list, book: Gradebook, options: Options, assignments: dict, jobs: int, progress: Progress,
              hashes: dict) -> None:
    """Grade ``todo`` on ``jobs`` threads (one kernel each); each finished notebook goes into ``book`` at once."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1)))
    pending = {pool.submit(_grade_one, sub, options, assignments, stop): sub for sub in todo}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                sub, row = pending.pop(future), future.result()
                if stop.is_set() or row is None:
                    continue
                book.add(sub, row, hashes[sub])
                progress.finished(_line(row, row.seconds))
    except KeyboardInterrupt:
        stop.set()  # no new notebook starts; the kernels running now are stopped, their notebooks dropped
        Kernel.kill_all()
        raise Interrupted(f"interrupted: {len(book.done)} notebook(s) graded are in the gradebook; "
                          "run the same command again to grade the rest") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def grade(paths: list[Path], out: Path, options: Options, jobs: int | None = None, log=print,
          regrade: bool = False, bar: bool = False) -> list[Row]:
    """Grade every notebook under ``paths`` into the gradebook and feedback in ``out``; returns the rows.

    jobs: notebooks at once (default: :func:`grading.capacity.default_jobs`). Raises RuntimeError when
    ``options.sandbox`` is set and the sandbox cannot run here, :class:`Interrupted` on Ctrl-C.
    """
    if options.sandbox and sandbox.problem():
        raise RuntimeError(f"no sandbox: {sandbox.problem()} (Options(sandbox=False) grades without it)")
    assignments = course_assignments()
    names = [name for name, *_ in assignments.values()]
    subs = submissions(paths, out, names)
    if not subs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    book = Gradebook(out, subs, course_version(options))
    book.clean()
    hashes = {sub: _sha256(sub.path) for sub in subs}
    todo = []
    for sub in subs:
        kept = None if regrade else book.unchanged(sub, hashes[sub])
        if kept is None:
            todo.append(sub)
        else:
            book.add(sub, kept, hashes[sub], write=False)
    if len(todo) < len(subs):
        log(f"{len(subs) - len(todo)} notebook(s) unchanged since the last run into {out} (same content, same "
            "course version): their grades are kept (--regrade grades them again)")
    book.write_all()
    progress = Progress(len(todo), log, bar)
    try:
        _run_pool(todo, book, options, assignments, jobs or default_jobs(options.memory_mb), progress, hashes)
    finally:
        progress.close()
    return book.rows()

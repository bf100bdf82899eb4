"""The command line: ``python -m grading PATH... --out DIR [--lesson NN] ...`` (``--help`` lists the options)."""
from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path

from grading import sandbox
from grading.capacity import default_jobs
from grading.classroom import Interrupted, grade
from grading.notebook import Options

NO_SANDBOX = """
*** NOT GRADING: the sandbox is not available here. ***
{problem}.
Each learner's notebook runs in a sandbox so that it cannot read or change the course, the other
submissions or the gradebook, reach the network, or leave processes behind. Install bubblewrap and
grade again, or, knowing that learner code will then run with your rights, pass --no-sandbox
(on macOS, better grade in a Linux container or VM).
"""
NO_SANDBOX_WARNING = ("WARNING: --no-sandbox: each learner's code runs with your user's rights; it can read and change "
                      "your files, the other submissions and the output, and start processes that outlive grading.")


def parser(prog: str = "python -m grading") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Grade a class's notebooks with the course's own checks.",
                                epilog="The README ('Grading a class') and the docstring of the package `grading` say more.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a learner's notebook, or a folder of them")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write gradebook.csv and feedback/")
    p.add_argument("--lesson", metavar="NN", help="the assignment's lesson (e.g. 01): notebooks of another lesson are not graded")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="time limit per notebook, seconds (300)")
    p.add_argument("--cell-timeout", type=float, default=60.0, metavar="S", help="time limit per cell, seconds (60)")
    p.add_argument("--jobs", type=int, metavar="N", help="notebooks graded at once (default: what this machine holds: "
                   "one per core, as many as its free memory holds kernels of --memory-mb)")
    p.add_argument("--memory-mb", type=int, default=4096, metavar="MB", help="address space of each kernel process, MB (4096)")
    p.add_argument("--regrade", action="store_true",
                   help="grade every notebook again, even those unchanged since the last run into DIR")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run the kernels without the sandbox (where bubblewrap is missing: macOS); "
                        "learner code then runs with your rights")
    return p


def _options(args, fail) -> Options:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}")
    if args.lesson is not None and not re.fullmatch(r"\d\d", args.lesson):
        fail(f"--lesson takes a lesson number such as 01, not {args.lesson!r}")
    if args.jobs is not None and args.jobs < 1:
        fail("--jobs takes a number of notebooks, 1 or more")
    return Options(timeout=args.timeout, cell_timeout=args.cell_timeout, lesson=args.lesson,
                   sandbox=not args.no_sandbox, memory_mb=args.memory_mb)


def _report(rows, args, seconds: float) -> int:
    bad = [r for r in rows if r.status != "graded"]
    print(f"graded {len(rows) - len(bad)} of {len(rows)} notebooks in {seconds:.0f} s: "
          f"{args.out / 'gradebook.csv'}, feedback in {args.out / 'feedback'}")
    if bad:
        print(f"{len(bad)} notebook(s) could not be graded:", file=sys.stderr)
        for r in bad:
            print(f"  {r.notebook} ({r.learner}): {r.problem}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a batch system's kill) stops the grader as Ctrl-C does


def main(argv=None, prog: str = "python -m grading") -> int:
    """Exit status: 0 when every notebook was graded, 1 when one was not (each is named), 2 for a usage
    error or a missing sandbox, 130 when interrupted."""
    p = parser(prog)
    args = p.parse_args(argv)
    options = _options(args, p.error)
    if options.sandbox and sandbox.problem():
        print(NO_SANDBOX.format(problem=sandbox.problem()), file=sys.stderr)
        return 2
    if not options.sandbox:
        print(NO_SANDBOX_WARNING, file=sys.stderr)
    jobs = args.jobs or default_jobs(options.memory_mb)
    print(f"grading {jobs} notebook(s) at a time", file=sys.stderr)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    start = time.monotonic()
    try:
        rows = grade(args.paths, args.out, options, jobs=jobs, regrade=args.regrade, bar=sys.stderr.isatty())
    except Interrupted as err:
        print(err, file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    if not rows:
        print(f"no notebooks (*.ipynb) found under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    return _report(rows, args, time.monotonic() - start)

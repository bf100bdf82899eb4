"""Running a check: the learner's candidate against an exercise's checker, under a time limit and a
memory guard, turned into a :class:`CheckResult` whatever the candidate does.

Every check runs under a time limit (``TIME_LIMIT_S``, ``$COURSE_CHECK_SECONDS``) and a memory
guard (``MEMORY_LIMIT_MB``, ``$COURSE_CHECK_MEMORY_MB``): a candidate that loops or keeps growing
gets a message naming the likely cause, and the notebook goes on (see :class:`checking.Guard`).
"""
from __future__ import annotations

import os

import torch

from utils.exercises import checking
from utils.exercises.checking import CheckMemory, CheckTimeout, Guard, Mistake
from utils.exercises.diagnosis import describe_exception
from utils.exercises.registry import all_ids, find
from utils.exercises.rendering import CheckResult

# Generous for any machine: every check takes well under a few seconds on a slow CPU.
TIME_LIMIT_S = float(os.environ.get("COURSE_CHECK_SECONDS", "30") or 30)
MEMORY_LIMIT_MB = float(os.environ.get("COURSE_CHECK_MEMORY_MB", "2048") or 2048)
_TIMEOUT = ("Your code did not finish within {seconds:g} s (the course's answer takes well under a second here). "
            "Is there a loop that never ends?")
_MEMORY = ("Your code made this process grow by more than {mb:g} MB while being checked (the course's answer "
           "needs a few MB). A loop that never ends while it keeps appending to a list or growing a tensor does "
           "this, and so does a tensor far larger than the inputs (e.g. (n, n, n) where (n, n) belongs).")


def check(id: str, candidate=None) -> CheckResult:
    """Check the learner's ``candidate`` for exercise ``id``. Never raises; see :class:`CheckResult`."""
    try:
        ex = find(id)
    except Exception as err:  # a broken lesson module must not break the learner's notebook
        return CheckResult(str(id), "unknown", f"The checks for {id!r} could not be loaded: {err}")
    if ex is None:
        return CheckResult(str(id), "unknown", f"There is no exercise {id!r}. Known: {', '.join(all_ids())}.")
    if candidate is None:
        return CheckResult(id, "not attempted", "Pass your function or class to check, e.g. utils.check(\"%s\", my_answer)." % id, ex.title)
    guard = Guard(TIME_LIMIT_S, MEMORY_LIMIT_MB)
    checking.CURRENT.update(id=id, reference=ex.reference)
    threads = torch.get_num_threads()
    try:
        # Small tensors: one thread is fastest, and never collapses on a busy machine (utils.setup's reason too).
        if threads != 1:
            torch.set_num_threads(1)
        # The checks draw random inputs; forking the RNG keeps the lesson's own random stream
        # (and so its results) identical whether or not the learner runs a check.
        with guard, torch.random.fork_rng(devices=[]), torch.enable_grad(), checking.inputs_kept(candidate) as watched:
            ex.checker(watched)  # every call of the candidate keeps its input tensors unchanged (checking.inputs_kept)
    except Mistake as m:
        return CheckResult(id, "fail", str(m), ex.title)
    except CheckTimeout:
        message = _TIMEOUT.format(seconds=TIME_LIMIT_S)
        return CheckResult(id, "fail", message + (f" Likely: {ex.on_timeout}." if ex.on_timeout else ""), ex.title)
    except CheckMemory:
        return CheckResult(id, "fail", _MEMORY.format(mb=MEMORY_LIMIT_MB)
                           + (f" Likely here: {ex.on_timeout}." if ex.on_timeout else ""), ex.title)
    except (Exception, SystemExit) as err:
        status, message = describe_exception(err, candidate, ex)
        return CheckResult(id, status, message, ex.title)
    finally:
        checking.CURRENT.update(id=None, reference=None)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return CheckResult(id, "pass", "Well done: every check passed.", ex.title)

"""Shared code of the course "Attention and Transformers, from the LSTM bottleneck to the full model".

One module per concern:

* :mod:`utils.data`      -- the generated tasks (symbol sequences, dates, the standard library's text), batches
* :mod:`utils.training`  -- the training loop, evaluation by length, parameter counts
* :mod:`utils.progress`  -- progress bars that leave one summary line
* :mod:`utils.plots`     -- figures in one colour-blind-safe style
* :mod:`utils.widgets`   -- the interactive widgets
* :mod:`utils.exercises` -- ``check``, ``hint``, ``solution``, ``use``
* :mod:`utils.runtime`   -- device, seeds, the quick setting, claims
* :mod:`utils.versions`  -- the library versions the lessons support (read by every setup cell)
* :mod:`utils.cost`      -- FLOP and memory counts, timing
* :mod:`utils.rnn`, :mod:`utils.attention`, :mod:`utils.transformer`, :mod:`utils.gpt`, :mod:`utils.modern`,
  :mod:`utils.modern_gpt` -- the reference models, lesson by lesson
* :mod:`utils.integrity` -- what the grader (``python -m grading``) runs inside a learner's kernel
"""
import os as _os
import sys as _sys

# nbgrader sets NBGRADER_EXECUTION while it runs a notebook (validate, autograde): train in the quick
# setting there (nbgrader gives a cell 30 s), and let a check cell raise when its exercise does not pass.
if _os.environ.get("NBGRADER_EXECUTION"):
    _os.environ.setdefault("COURSE_QUICK", "1")

from utils.exercises import check as _check
from utils.exercises import hint, solution, use
from utils.runtime import QUICK, budget, claim, device, fmt_time, measured, seed_everything, set_threads


def check(id: str, candidate=None):
    """:func:`utils.exercises.check`; under nbgrader, a check cell's failure also raises (0 points).

    Only a check cell's own call raises: one at a cell's top level, of the candidate the exercise
    names (a lesson's check of a deliberately wrong variant, shown for its diagnosis, never raises).
    """
    result = _check(id, candidate)
    if _os.environ.get("NBGRADER_EXECUTION") and not result and _sys._getframe(1).f_code.co_name == "<module>":
        from utils.exercises import get

        names = lambda obj: tuple(getattr(o, "__name__", None) for o in (obj if isinstance(obj, tuple) else (obj,)))
        try:
            graded = names(candidate) == names(get(id).reference)
        except KeyError:
            graded = False
        if graded:
            raise AssertionError(repr(result))
    return result


def setup(seed: int = 0, threads: int | None = None):
    """Start a lesson: seed everything, choose PyTorch's thread count, set the figure style, say where it runs.

    threads: PyTorch's CPU threads; by default ``$COURSE_THREADS``, else 1 (see
    :func:`utils.runtime.set_threads` for why one; ``COURSE_THREADS=0`` keeps PyTorch's default).
    """
    from utils.plots import set_style

    import torch

    seed_everything(seed)
    set_threads(threads)
    set_style()
    where = device().type.upper()
    if where == "CPU" and torch.cuda.is_available():  # say so: the lessons are verified on the CPU only
        where += " (a GPU is here, but the lessons are verified on the CPU: COURSE_DEVICE=cuda uses it; README, Start)"
    print(f"Running on {where}" + (" -- quick setting (COURSE_QUICK=1): smaller training budgets" if QUICK else ""))


__all__ = ["check", "hint", "solution", "use", "setup", "device", "seed_everything", "budget", "claim", "fmt_time", "measured", "set_threads", "QUICK"]

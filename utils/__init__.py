"""Shared code of the course "Attention and Transformers, from the LSTM bottleneck to the full model".

One module per concern:

* :mod:`utils.data`      -- the generated tasks (symbol sequences, dates), vocabularies, batches
* :mod:`utils.training`  -- the training loop, evaluation by length, parameter counts
* :mod:`utils.plots`     -- figures in one colour-blind-safe style
* :mod:`utils.widgets`   -- the interactive widgets
* :mod:`utils.exercises` -- ``check``, ``hint``, ``solution``, ``use``
* :mod:`utils.runtime`   -- device, seeds, the quick setting, claims
* :mod:`utils.rnn`, :mod:`utils.attention`, :mod:`utils.transformer` -- the reference models
"""
from utils.exercises import check, hint, solution, use
from utils.runtime import QUICK, budget, claim, device, fmt_time, measured, seed_everything, set_threads


def setup(seed: int = 0, threads: int | None = None):
    """Start a lesson: seed everything, choose PyTorch's thread count, set the figure style, say where it runs.

    threads: PyTorch's CPU threads; by default ``$COURSE_THREADS``, else 1 (see
    :func:`utils.runtime.set_threads` for why one; ``COURSE_THREADS=0`` keeps PyTorch's default).
    """
    from utils.plots import set_style

    seed_everything(seed)
    set_threads(threads)
    set_style()
    print(f"Running on {device().type.upper()}" + (" -- quick setting (COURSE_QUICK=1): smaller training budgets" if QUICK else ""))


__all__ = ["check", "hint", "solution", "use", "setup", "device", "seed_everything", "budget", "claim", "fmt_time", "measured", "set_threads", "QUICK"]

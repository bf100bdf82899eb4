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
from utils.runtime import QUICK, budget, claim, device, fmt_time, seed_everything


def setup(seed: int = 0):
    """Start a lesson: seed everything, set the figure style, and say where it runs."""
    from utils.plots import set_style

    seed_everything(seed)
    set_style()
    print(f"Running on {device().type.upper()}" + (" -- quick setting (COURSE_QUICK=1): smaller training budgets" if QUICK else ""))


__all__ = ["check", "hint", "solution", "use", "setup", "device", "seed_everything", "budget", "claim", "fmt_time", "QUICK"]

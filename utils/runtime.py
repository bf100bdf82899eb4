"""Where the lessons run: device, seeds, the quick setting, claims and time formatting.

The quick setting
-----------------
``COURSE_QUICK=1`` in the environment shrinks training budgets (see :func:`budget`) so
that the unfilled exercise notebooks and the browser test execute every cell fast.
Claims that need a fully trained model are then reported, not asserted (see
:func:`claim`). The solution notebooks always run in full, under nbval, where every
claim is asserted.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

QUICK = os.environ.get("COURSE_QUICK", "0") not in ("", "0", "false", "False")


def device() -> torch.device:
    """CUDA when there is a GPU, else the CPU. The course never needs a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so that a lesson gives the same numbers every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def budget(full, quick):
    """``full`` normally, ``quick`` under ``COURSE_QUICK=1`` (smaller training budgets)."""
    return quick if QUICK else full


def claim(holds: bool, statement: str, *, needs_training: bool = True) -> None:
    """Assert a claim the lesson's text makes, and say so.

    In the quick setting a claim that ``needs_training`` is reported but not asserted,
    since the smaller budget may not reach it. Claims that need no training
    (``needs_training=False``: exact equalities, masking invariances) are always asserted.
    """
    holds = bool(holds)
    if holds:
        print(f"✔ claim holds: {statement}")
    elif QUICK and needs_training:
        print(f"… quick setting, claim not asserted: {statement}")
    else:
        raise AssertionError(f"The lesson claims: {statement} -- but the numbers above say otherwise.")


def fmt_time(seconds: float) -> str:
    """A duration in the one format the course prints (tests sanitise it): '1.23 s', '45.6 ms'."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"

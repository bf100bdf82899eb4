"""Where the lessons run: device, seeds, the quick setting, claims and time formatting.

The quick setting
-----------------
``COURSE_QUICK=1`` in the environment shrinks training budgets (see :func:`budget`) so
that the unfilled exercise notebooks and the browser test execute every cell fast.
A claim whose evidence needs the full budget is then not checked, and says so, with the
budget it got (see :func:`claim`): it never prints that it holds on a model that barely
trained. The solution notebooks always run in full, under nbval, where every claim is asserted.
"""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

QUICK = os.environ.get("COURSE_QUICK", "0") not in ("", "0", "false", "False")


def device() -> torch.device:
    """Where :func:`utils.training.train` trains: the CPU, unless ``$COURSE_DEVICE`` names another device
    (``cuda``, ``cuda:1``).

    The CPU even where a GPU exists, because every claim of every lesson was calibrated and is tested
    on the CPU, and no GPU run has yet confirmed every lesson (benchmarks/compat.md records the one
    CUDA run and says how to make another). ``COURSE_DEVICE=cuda`` opts in: ``train`` then runs on
    the GPU and hands the model back to the CPU, and its numbers differ in their last digits. Lessons
    08 and 10 train their language models where the model is (the CPU), and the timing experiments
    (lessons 04, 05 and 09) measure on the CPU, whatever this says. The course never needs a GPU.
    """
    name = os.environ.get("COURSE_DEVICE", "").strip() or "cpu"
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise ValueError(f"COURSE_DEVICE={name!r} is not a device PyTorch knows: use cpu (the default) or cuda") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"COURSE_DEVICE={name} but PyTorch sees no GPU here: unset COURSE_DEVICE to run on the CPU")
    return chosen


def set_threads(threads: int | None = None) -> int:
    """Give PyTorch ``threads`` CPU threads (default: ``$COURSE_THREADS``, else 1) and return it.

    One thread is the course's default because it never collapses: on a 2-core machine that
    another process keeps busy (Binder, Colab, a laptop with a browser open), PyTorch's default
    of one thread per core made lesson 01 run 7x slower (296 s against 44 s), while on an idle
    machine one thread costs lesson 01 about 1.4x (124 s against 87 s here; benchmarks/results.md).
    ``COURSE_THREADS=0`` leaves PyTorch's own default; any other number is used as it is.
    """
    if threads is None:
        threads = int(os.environ.get("COURSE_THREADS", "1") or 1)
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so that a lesson gives the same numbers every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Budget(int):
    """A whole-number budget from :func:`budget` that remembers the full run's, so that a claim resting on
    it can say what the quick setting ran instead: ``Budget(40, full=500, unit="steps")`` reads
    "40 of 500 steps". It is an ``int`` everywhere else (``range(STEPS)``, slicing, arithmetic)."""

    def __new__(cls, value: int, *, full: int, unit: str = "steps"):
        self = super().__new__(cls, value)
        self.full, self.unit = int(full), unit
        return self

    def shortfall(self) -> str:
        return f"{int(self)} of {self.full} {self.unit}"


def budget(full, quick, unit: str = "steps"):
    """``full`` normally, ``quick`` under ``COURSE_QUICK=1`` (smaller training budgets).

    Whole numbers come back as a :class:`Budget` (an ``int``) that remembers ``full`` and ``unit`` (what is
    counted: "steps", "runs", "sequences"), for :func:`claim`'s ``budget=``. Other values come back as they are.
    """
    value = quick if QUICK else full
    whole = lambda x: isinstance(x, int) and not isinstance(x, bool)  # noqa: E731
    return Budget(value, full=full, unit=unit) if whole(full) and whole(quick) else value


CLAIM_HOLDS = "✔ claim holds"  # what claim() prints; tools.compat and the tests count these two
NOT_CHECKED = "… not checked in the quick setting"


def claim(holds: bool, statement: str, *, needs_training: bool = True, budget=None) -> None:
    """Assert a claim the lesson's text makes, and say so.

    needs_training: the claim's evidence needs the full budget (training, or a measurement the quick setting
    cuts short). In the quick setting such a claim is **not checked**: it prints "… not checked in the quick
    setting (40 of 500 steps): statement", whatever ``holds`` is, since a model that barely trained proves
    nothing either way. ``budget``: what that evidence ran on, a value of :func:`budget` (or a pair
    ``(quick, full)``), for the "40 of 500 steps". In a full run every claim is asserted: a claim that does
    not hold raises AssertionError. Claims that need no training (``needs_training=False``: exact equalities,
    masking invariances, byte counts) are asserted in both settings.
    """
    if QUICK and needs_training:
        if isinstance(budget, Budget):
            ran = budget.shortfall()
        elif isinstance(budget, tuple) and len(budget) == 2:
            ran = f"{budget[0]} of {budget[1]} steps"
        else:
            ran = "a shorter run than the full one"
        print(f"{NOT_CHECKED} ({ran}): {statement}")
        return
    if bool(holds):
        print(f"{CLAIM_HOLDS}: {statement}")
        return
    exercises = sys.modules.get("utils.exercises")  # not imported here: utils.exercises imports this module
    note = exercises.learner_note() if exercises is not None else ""  # names the learner's code in use, if any
    raise AssertionError(f"The lesson claims: {statement} -- but the numbers above say otherwise.{note}")


MEASURED_MARK = "≈"


def measured(value: float, spec: str = ".3g") -> str:
    """A *measured* number as the course prints it: ``measured(0.971, ".1%") -> '≈97.1%'``.

    Measured means downstream of training, timing or float summation order: its last digits
    change with the CPU, PyTorch's kernel set (``ATEN_CPU_CAPABILITY``) and the thread count.
    The mark ``≈`` tells the reader so, and tells the tests (``tests/measured_outputs.py``) to
    compare the number with the stored one within a tolerance instead of digit for digit
    (CONTRIBUTING.md, "Exact and measured outputs"). Exact results (shapes, counts of
    deterministic code, booleans, bounds such as ``< 1e-5``) are printed plainly.
    """
    return MEASURED_MARK + format(float(value), spec)


def fmt_time(seconds: float) -> str:
    """A duration in the one format the course prints (tests sanitise it): '1.23 s', '45.6 ms'."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"

"""Exact and measured outputs under nbval (CONTRIBUTING.md, "Exact and measured outputs").

A solution notebook stores two kinds of output:

* **exact** ones -- shapes, counts, masks, token strings of deterministic code, booleans and
  bounds (``< 1e-5: True``) -- which any machine reproduces character for character; nbval
  compares them as they are;
* **measured** ones -- numbers downstream of training, timing or float summation order, whose
  last digits change with the CPU, PyTorch's kernel set and the thread count. The lessons print
  them through :func:`utils.measured`, which marks them with ``≈`` (``≈97.1%``).

This plugin teaches nbval the difference. Before nbval compares a cell, every marked number of
the fresh run is paired, in order, with the stored one and must agree within a tolerance:

* a percentage within :data:`PERCENT_POINTS` percentage points (``≈97.1%`` against ``≈95.0%``);
* any other number within a factor of :data:`FACTOR` (``≈0.031`` against ``≈0.05``), or within
  ten units of the stored number's last printed digit (so ``≈0.0`` against ``≈0.3`` passes);
* the same count of marked numbers in the cell.

A cell whose numbers are known to spread more (an undertrained baseline, kept short for the time
budget) may widen its own tolerance with a cell tag, ``tolerance-points=20`` or
``tolerance-factor=3``, next to the reason in the lesson's text.

Then the marked numbers are replaced by ``≈<measured>`` and nbval compares the rest of the
output exactly, text around the numbers included. A measured number can drift only so far from
what the code does; the claim each cell asserts (``utils.claim``) guards the conclusion itself.
"""
from __future__ import annotations

import math
import re

import nbval.plugin

PERCENT_POINTS = 10.0
FACTOR = 2.0

# '≈' then a number; a '%' right after makes it a percentage. utils.runtime.MEASURED_MARK is '≈'.
MEASURED = re.compile(r"≈\s?([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(%?)")
SANITIZED = "≈<measured>"
_TEXT_KEYS = ("text/plain", "text/html", "text/markdown")


def measured_numbers(outputs) -> list[tuple[str, bool]]:
    """Every marked number of a cell's outputs, in order: ``[(literal, is_percent), ...]``."""
    found = []
    for out in outputs:
        texts = [out.get("text", "")] + [out.get("data", {}).get(k, "") for k in _TEXT_KEYS]
        for text in texts:
            if isinstance(text, list):
                text = "".join(text)
            if isinstance(text, str):
                found += [(m.group(1), m.group(2) == "%") for m in MEASURED.finditer(text)]
    return found


def _last_digit(literal: str) -> float:
    """The value of one unit in the last printed digit: '97.1' -> 0.1, '3.6e-07' -> 1e-08, '12' -> 1."""
    mantissa, _, exponent = literal.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def agree(stored: str, fresh: str, percent: bool, points: float = PERCENT_POINTS, factor: float = FACTOR) -> bool:
    """Whether a fresh measured number is within the tolerance of the stored one."""
    a, b = float(stored), float(fresh)
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b or (math.isnan(a) and math.isnan(b))
    if percent:
        return abs(a - b) <= points
    if abs(a - b) <= 10 * _last_digit(stored):
        return True
    return a * b > 0 and max(abs(a), abs(b)) <= factor * min(abs(a), abs(b))


def tolerances(tags) -> tuple[float, float]:
    """(percentage points, factor) for a cell: the defaults, or its ``tolerance-points=`` / ``tolerance-factor=`` tags."""
    points, factor = PERCENT_POINTS, FACTOR
    for tag in tags or ():
        name, _, value = tag.partition("=")
        if name == "tolerance-points":
            points = float(value)
        elif name == "tolerance-factor":
            factor = float(value)
    return points, factor


def disagreements(stored_outputs, fresh_outputs, tags=()) -> list[str]:
    """What differs beyond tolerance between two runs of one cell (empty when they agree)."""
    stored, fresh = measured_numbers(stored_outputs), measured_numbers(fresh_outputs)
    if len(stored) != len(fresh):
        return [f"the stored output has {len(stored)} measured numbers (≈...), the fresh run {len(fresh)}"]
    points, factor = tolerances(tags)
    problems = []
    for (s, percent), (f, _) in zip(stored, fresh):
        if not agree(s, f, percent, points, factor):
            tolerance = f"{points:g} percentage points" if percent else f"a factor of {factor:g}"
            unit = "%" if percent else ""
            problems.append(f"measured ≈{s}{unit} stored, ≈{f}{unit} now: further apart than {tolerance}")
    return problems


_nbval_compare = nbval.plugin.IPyNbCell.compare_outputs


def compare_outputs(self, test, ref, skip_compare=None):
    """nbval's comparison, after the measured numbers passed their tolerance test."""
    patterns = self.parent.sanitize_patterns
    padded = r"[ \t]*" + MEASURED.pattern  # a column's padding changes with the number's width
    if padded not in patterns:  # first of the notebook's patterns, before nbval's own
        items = list(patterns.items())
        patterns.clear()
        patterns[padded] = " " + SANITIZED
        patterns.update(items)
    problems = disagreements(ref, test, self.cell.metadata.get("tags", ()))
    if problems:
        self.comparison_traceback = [
            "Measured outputs drifted beyond their tolerance (tests/measured_outputs.py):",
            *("  " + p for p in problems),
            "If the code changed on purpose, rebuild the lesson: python -m tools.build_solutions NN",
        ]
        return False
    return _nbval_compare(self, test, ref, skip_compare)


def pytest_configure(config):
    nbval.plugin.IPyNbCell.compare_outputs = compare_outputs

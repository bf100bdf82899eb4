"""The library versions the lessons support: the one list that every lesson's setup cell, the README's
test (tests/test_environment.py) and ``python -m tools.compat`` read.

This file imports nothing but the standard library, PyTorch least of all: the setup cell runs it by
path (``runpy.run_path``), before ``import utils``, so that a learner whose Colab or laptop has a
library outside the range reads what will not work and what to do *before* anything fails.

``oldest`` is the lowest version the lessons have been run with (``python -m tools.compat oldest``),
``newest`` the newest release series they have been run with (``tools.compat newest``): a version
below ``oldest`` gets a warning that names what will break; one in a newer series than ``newest``
gets a note that it is untested but should work. ``None``: no upper limit is checked (libraries
whose new releases have not broken notebooks like these).
"""
from __future__ import annotations

import platform
import re
import sys

# name: (oldest, newest series, what goes wrong outside the range). Names as pip knows them.
SUPPORTED = {
    "python": ("3.11", "3.12", "the course's code has not been run on it"),
    "torch": ("2.10", "2.14", "a cell that uses a newer PyTorch API stops with an AttributeError or TypeError"),
    "numpy": ("2.0", "2.4", "PyTorch and matplotlib built for NumPy 2 may fail to import"),
    "matplotlib": ("3.10", "3.11", "figures may fail to draw"),
    "ipywidgets": ("7.7", "8", "the sliders may not show (\"Error displaying widget\"); every other cell still runs"),
    "ipython": ("7.34", None, "the kernel may fail to start or to show figures"),
    "ipykernel": ("6.17", None, "the kernel may fail to start"),
    "tqdm": ("4.67", None, "the progress bars may fail"),
}
# In the range but not run by tools.compat, and why.
UNTESTED = {"python": ("3.12", "Colab's Python; the course's machines have Python 3.11 only, so tools.compat's stacks "
                               "run 3.11; the one CUDA run, lessons run as scripts on Python 3.12.3, is its only record")}
ISSUES = "https://github.com/attention-course/attention-transformers/issues"


def parse(version: str) -> tuple:
    """The numeric release of a version string: ``'2.11.0+cu128' -> (2, 11, 0)``, ``'9.0.0rc1' -> (9, 0, 0)``."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in m.group(1).split("."))


def status(name: str, version: str | None) -> str:
    """``'ok'``, ``'missing'``, ``'old'`` (below ``oldest``) or ``'new'`` (a newer series than ``newest``)."""
    if version is None:
        return "missing"
    oldest, newest, _ = SUPPORTED[name]
    have = parse(version)
    if have < parse(oldest):
        return "old"
    if newest is not None and have[:len(parse(newest))] > parse(newest):
        return "new"
    return "ok"


def installed() -> dict:
    """The versions installed here, read from package metadata (nothing is imported), ``None`` if absent."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in SUPPORTED:
        if name != "python":
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = None
    return found


def describe(name: str) -> str:
    """``'torch 2.10 to 2.14'``, ``'ipython 7.34 or newer'``: the range as the README states it."""
    oldest, newest, _ = SUPPORTED[name]
    return f"{name} {oldest} to {newest}.x" if newest else f"{name} {oldest} or newer"


def problems(found: dict | None = None, colab: bool | None = None) -> list[str]:
    """One message for each library outside the range: what will not work and what to do."""
    found = installed() if found is None else found
    colab = ("google.colab" in sys.modules) if colab is None else colab
    restart = " then Runtime > Restart session and run this cell again" if colab else ""
    bang = "!" if colab else ""
    messages = []
    for name, (oldest, newest, breaks) in SUPPORTED.items():
        version = found.get(name)
        state = status(name, version)
        if state == "ok":
            continue
        if name == "python":
            if state == "old":
                messages.append(f"⚠️ Python {version} is older than {oldest}, the oldest the course supports: "
                                f"{breaks}. Use Python {oldest} or newer (README, Start).")
            else:
                messages.append(f"ℹ️ Python {version} is newer than the newest the course has run on ({newest}): "
                                f"it should work; if a cell fails, tell us at {ISSUES}.")
        elif state == "missing":
            messages.append(f"⚠️ {name} is not installed; the lessons need it ({describe(name)}). "
                            f"Install it: {bang}pip install \"{name}>={oldest}\"{restart}.")
        elif state == "old":
            messages.append(f"⚠️ {name} {version} is older than {oldest}, the oldest the lessons have run with: "
                            f"{breaks}. Upgrade it: {bang}pip install \"{name}>={oldest}\"{restart}.")
        else:
            messages.append(f"ℹ️ {name} {version} is newer than the newest the lessons have run with ({newest}.x): "
                            f"they should work; if a cell fails, tell us at {ISSUES} and meanwhile "
                            f"{bang}pip install \"{name}<{_next(newest)}\"{restart}.")
    return messages


def _next(series: str) -> str:
    """The first release after a series: ``'2.14' -> '2.15'``, ``'8' -> '9'``."""
    parts = list(parse(series))
    parts[-1] += 1
    return ".".join(map(str, parts))


def check_versions(found: dict | None = None, colab: bool | None = None) -> list[str]:
    """Print a message for each library outside the supported range (nothing when all are inside)."""
    messages = problems(found, colab)
    if messages:
        print("The course supports " + "; ".join(describe(name) for name in SUPPORTED) + ".")
        for message in messages:
            print(message)
    return messages

"""The exercise system: ``check``, ``hint``, ``solution`` and ``use``.

Every exercise has a stable id ``"NN.k"`` (lesson NN, exercise k), registered by the module
``utils/exercises/lessonNN.py`` with its reference solution, its hints (in levels) and a checker.

* ``check(id, candidate)`` runs the checker on the learner's function or class and returns a
  :class:`CheckResult`: true when it passes, with a ``.message`` naming the likely mistake
  otherwise. It never raises: an unfilled skeleton reads "not attempted yet", an exception in
  the learner's code is reported with the learner's own failing line.
* ``hint(id, level)`` and ``solution(id)`` show a hint and the reference solution.
* ``use(id, candidate)`` returns the candidate once it passes, else the reference (and says
  so), so that a learner who is stuck can still run the rest of the lesson.
"""
from __future__ import annotations

import html
import importlib
import inspect
import linecache
import os
import sys
import textwrap
import traceback
from dataclasses import dataclass
from typing import Callable

import torch

from utils.exercises.checking import Mistake

__all__ = ["check", "hint", "solution", "use", "CheckResult", "Exercise", "exercise", "get", "all_ids"]

_UTILS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REGISTRY: dict[str, "Exercise"] = {}
LESSONS = ("01", "02", "03", "04", "05", "06", "07", "08", "09")


@dataclass
class Exercise:
    id: str
    title: str
    reference: object  # a function, a class, or a tuple of them
    checker: Callable  # checker(candidate) -> None, raising Mistake("what is likely wrong")
    hints: list
    difficulty: int  # 1 (warm-up) to 3 (challenging)
    minutes: int  # expected time for a learner

    @property
    def badge(self) -> str:
        return f"{'★' * self.difficulty}{'☆' * (3 - self.difficulty)}, about {self.minutes} min"


def exercise(id: str, title: str, *, reference, hints, difficulty: int, minutes: int):
    """Decorator that registers a checker function as exercise ``id``."""

    def register(checker):
        _REGISTRY[id] = Exercise(id, title, reference, checker, list(hints), difficulty, minutes)
        return checker

    return register


def _load(id: str) -> Exercise | None:
    if id not in _REGISTRY and isinstance(id, str) and id[:2] in LESSONS:
        try:
            importlib.import_module(f"utils.exercises.lesson{id[:2]}")
        except ModuleNotFoundError:
            pass
    return _REGISTRY.get(id)


def get(id: str) -> Exercise:
    """The registered exercise ``id``; raises KeyError with the known ids otherwise."""
    ex = _load(id)
    if ex is None:
        raise KeyError(f"no exercise {id!r}; known: {', '.join(all_ids())}")
    return ex


def all_ids() -> list[str]:
    """Every exercise id of every lesson, in order."""
    for lesson in LESSONS:
        _load(f"{lesson}.1")
    return sorted(_REGISTRY)


# ------------------------------------------------------------------ results
_ICONS = {"pass": "✅", "fail": "❌", "not attempted": "⏳", "unknown": "❓"}
_COLOURS = {"pass": "#009E73", "fail": "#D55E00", "not attempted": "#0072B2", "unknown": "#999999"}


@dataclass
class CheckResult:
    """The verdict of :func:`check`. ``bool(result)`` is True when the candidate passes."""

    id: str
    status: str  # "pass", "fail", "not attempted" or "unknown"
    message: str
    title: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __bool__(self) -> bool:
        return self.passed

    def _heading(self) -> str:
        label = {"pass": "passed", "fail": "not yet", "not attempted": "not attempted yet", "unknown": "unknown exercise"}[self.status]
        return f"{_ICONS[self.status]} Exercise {self.id}{' (' + self.title + ')' if self.title else ''}: {label}"

    def __repr__(self) -> str:
        return f"{self._heading()}\n{self.message}"

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.status]
        return (f'<div style="border-left:4px solid {colour};padding:4px 10px">'
                f"<b>{html.escape(self._heading())}</b><br>"
                f'<span style="white-space:pre-wrap">{html.escape(self.message)}</span></div>')


def _learner_frame(tb):
    """The deepest traceback frame that belongs to the learner (not to utils, not to a library)."""
    learner = None
    for frame in traceback.extract_tb(tb):
        path = os.path.abspath(frame.filename) if not frame.filename.startswith("<") else frame.filename
        if path.startswith(_UTILS_DIR) or "site-packages" in path or "/lib/python" in path or path.startswith("<frozen"):
            continue
        learner = frame
    return learner


def _describe_exception(err: BaseException) -> tuple[str, str]:
    """(status, message) for an exception raised while checking."""
    frame = _learner_frame(err.__traceback__)
    if isinstance(err, NotImplementedError) and frame is not None:
        return "not attempted", "Replace `raise NotImplementedError()` with your code, run the cell, then check again."
    what = f"{type(err).__name__}: {err}".strip()
    if frame is None:
        return "fail", (f"Calling your code failed with {what}\n"
                        "Check that you pass the right thing (the function or class itself, not a call to it) "
                        "and that it has the signature of the skeleton.")
    line = (frame.line or linecache.getline(frame.filename, frame.lineno) or "").strip()
    where = f"line {frame.lineno} of your cell (in `{frame.name}`)" if frame.name != "<module>" else f"line {frame.lineno}"
    return "fail", f"Your code raised {what}\n  at {where}:  {line}"


def check(id: str, candidate=None) -> CheckResult:
    """Check the learner's ``candidate`` for exercise ``id``. Never raises; see :class:`CheckResult`."""
    try:
        ex = _load(id)
    except Exception as err:  # a broken lesson module must not break the learner's notebook
        return CheckResult(str(id), "unknown", f"The checks for {id!r} could not be loaded: {err}")
    if ex is None:
        return CheckResult(str(id), "unknown", f"There is no exercise {id!r}. Known: {', '.join(all_ids())}.")
    if candidate is None:
        return CheckResult(id, "not attempted", "Pass your function or class to check, e.g. utils.check(\"%s\", my_answer)." % id, ex.title)
    try:
        # The checks draw random inputs; forking the RNG keeps the lesson's own random stream
        # (and so its results) identical whether or not the learner runs a check.
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            ex.checker(candidate)
    except Mistake as m:
        return CheckResult(id, "fail", str(m), ex.title)
    except (Exception, SystemExit) as err:
        status, message = _describe_exception(err)
        return CheckResult(id, status, message, ex.title)
    return CheckResult(id, "pass", "Well done: every check passed.", ex.title)


def use(id: str, candidate=None):
    """The learner's ``candidate`` if it passes exercise ``id``, else the course's reference.

    Later cells of a lesson call this, so that a learner who is stuck can still run the lesson.
    """
    ex = get(id)
    result = check(id, candidate)
    name = _name(ex.reference)
    if result:
        print(f"✔ Using your {name} (it passes {id}).")
        return candidate
    state = "not attempted yet" if result.status == "not attempted" else "not passing yet"
    print(f"ℹ Exercise {id} is {state}: the rest of this lesson uses the course's reference {name}. "
          f"Come back to it any time: utils.check(\"{id}\", ...).")
    return ex.reference


def _name(obj) -> str:
    if isinstance(obj, tuple):
        return " and ".join(_name(o) for o in obj)
    return f"`{getattr(obj, '__name__', repr(obj))}`"


def _show(markdown: str) -> None:
    """Markdown in a notebook, plain text elsewhere."""
    if "IPython" in sys.modules:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(markdown))
            return
    print(markdown)


def hint(id: str, level: int = 1) -> None:
    """Show hint number ``level`` (1 = a nudge, the last = nearly the answer) for exercise ``id``."""
    ex = _load(id)
    if ex is None:
        _show(f"There is no exercise `{id}`. Known: {', '.join(all_ids())}.")
        return
    level = max(1, min(int(level), len(ex.hints)))
    more = f" More: `utils.hint(\"{id}\", {level + 1})`." if level < len(ex.hints) else f" That was the last hint: `utils.solution(\"{id}\")` shows the answer."
    _show(f"**Hint {level}/{len(ex.hints)} for exercise {id}** ({ex.title}): {ex.hints[level - 1]}\n\n_{more.strip()}_")


def reference_source(id: str) -> str:
    """The source code of the reference solution of exercise ``id``."""
    refs = get(id).reference
    refs = refs if isinstance(refs, tuple) else (refs,)
    return "\n\n".join(textwrap.dedent(inspect.getsource(r)).strip() for r in refs)


def solution(id: str) -> None:
    """Show the reference solution of exercise ``id``."""
    ex = _load(id)
    if ex is None:
        _show(f"There is no exercise `{id}`. Known: {', '.join(all_ids())}.")
        return
    _show(f"**Solution of exercise {id}** ({ex.title}):\n\n```python\n{reference_source(id)}\n```")

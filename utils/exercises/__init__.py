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

Every check runs under a time limit (``TIME_LIMIT_S``, ``$COURSE_CHECK_SECONDS``) and a memory
guard (``MEMORY_LIMIT_MB``, ``$COURSE_CHECK_MEMORY_MB``): a candidate that loops or keeps growing
gets a message naming the likely cause, and the notebook goes on (see :class:`checking.Guard`).
"Not attempted" means the learner's own skeleton still raises ``NotImplementedError``: every
part of the exercise (``parts``) still has the skeleton's body. A half-done answer, or a
NotImplementedError from somewhere else, is a "fail" that says where it came from.
"""
from __future__ import annotations

import ast
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

from utils.exercises import checking
from utils.exercises.checking import CheckMemory, CheckTimeout, Guard, Mistake

__all__ = ["check", "hint", "solution", "use", "CheckResult", "Exercise", "exercise", "get", "all_ids"]

_UTILS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REGISTRY: dict[str, "Exercise"] = {}
LESSONS = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10")
# Generous for any machine: every check takes well under a few seconds on a slow CPU.
TIME_LIMIT_S = float(os.environ.get("COURSE_CHECK_SECONDS", "30") or 30)
MEMORY_LIMIT_MB = float(os.environ.get("COURSE_CHECK_MEMORY_MB", "2048") or 2048)
_TIMEOUT = ("Your code did not finish within {seconds:g} s (the course's answer takes well under a second here). "
            "Is there a loop that never ends?")
_MEMORY = ("Your code made this process grow by more than {mb:g} MB while being checked (the course's answer "
           "needs a few MB). A loop that never ends while it keeps appending to a list or growing a tensor does "
           "this, and so does a tensor far larger than the inputs (e.g. (n, n, n) where (n, n) belongs).")


@dataclass
class Exercise:
    id: str
    title: str
    reference: object  # a function, a class, or a tuple of them
    checker: Callable  # checker(candidate) -> None, raising Mistake("what is likely wrong")
    hints: list
    difficulty: int  # 1 (warm-up) to 3 (challenging)
    minutes: int  # expected time for a learner
    on_timeout: str = ""  # the likely cause when a candidate runs past the time limit
    parts: tuple = ("__init__", "forward")  # a class's methods the learner writes (see _unfilled)

    @property
    def badge(self) -> str:
        return f"{'★' * self.difficulty}{'☆' * (3 - self.difficulty)}, about {self.minutes} min"


def exercise(id: str, title: str, *, reference, hints, difficulty: int, minutes: int, on_timeout: str = "",
             parts: tuple = ("__init__", "forward")):
    """Decorator that registers a checker function as exercise ``id``.

    on_timeout: the likely cause, added to the message when a candidate runs past the time limit
    (e.g. "a decoding loop that ignores max_len"); parts: for a class, the methods the learner
    writes (the others are given in the skeleton).
    """

    def register(checker):
        _REGISTRY[id] = Exercise(id, title, reference, checker, list(hints), difficulty, minutes, on_timeout,
                                 tuple(parts))
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


def _is_learners(filename: str) -> bool:
    """Code in a notebook cell or a learner's file: not the course's utils, not a library."""
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    return not (path.startswith(_UTILS_DIR) or "site-packages" in path or "/lib/python" in path
                or path.startswith("<frozen"))


def _learner_frame(tb):
    """The deepest traceback frame that belongs to the learner (not to utils, not to a library)."""
    learner = None
    for frame in traceback.extract_tb(tb):
        if _is_learners(frame.filename):
            learner = frame
    return learner


def _is_skeleton_raise(stmt) -> bool:
    exc = getattr(stmt, "exc", None)
    exc = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(stmt, ast.Raise) and isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _unfilled(fn) -> bool | None:
    """True when ``fn``'s body is still the skeleton's: an optional docstring, an optional
    ``super().__init__()``, then ``raise NotImplementedError()``. None when its source is unknown."""
    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(fn)))
        node = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError, ValueError):
        return None
    body = list(getattr(node, "body", []))
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    if body and isinstance(body[0], ast.Expr) and "super()" in ast.unparse(body[0]):
        body = body[1:]  # super().__init__()
    return len(body) == 1 and _is_skeleton_raise(body[0])


def _parts(candidate, ex: Exercise | None) -> list:
    """The functions of ``candidate`` the learner writes: the function itself, each of a tuple, a class's parts."""
    if isinstance(candidate, tuple):
        return [p for c in candidate for p in _parts(c, ex)]
    if isinstance(candidate, type):
        names = ex.parts if ex is not None else ("__init__", "forward")
        found = (inspect.unwrap(getattr(candidate, n, None) or (lambda: None)) for n in names)
        return [f for f in found if inspect.isfunction(f) and _is_learners(f.__code__.co_filename)]
    return [candidate] if callable(candidate) else []


def _not_attempted(err: BaseException, candidate, ex: Exercise | None) -> bool:
    """The learner's own skeleton raised: every part still has its skeleton body (or, when the source is
    unknown, the NotImplementedError was raised by the learner's own code, not by a library)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not isinstance(err, NotImplementedError) or not frames:
        return False
    innermost = frames[-1]
    if _learner_frame(err.__traceback__) is None or _learner_frame(err.__traceback__) != innermost:
        return False  # raised inside PyTorch or the course (e.g. calling a module that has no forward)
    states = [_unfilled(p) for p in _parts(candidate, ex)]
    if any(s is None for s in states) or not states:
        return True
    return all(states)


def _describe_exception(err: BaseException, candidate=None, ex: Exercise | None = None) -> tuple[str, str]:
    """(status, message) for an exception raised while checking."""
    frame = _learner_frame(err.__traceback__)
    if _not_attempted(err, candidate, ex):
        return "not attempted", "Replace `raise NotImplementedError()` with your code, run the cell, then check again."
    what = f"{type(err).__name__}: {err}".strip()
    if isinstance(err, NotImplementedError):
        innermost = traceback.extract_tb(err.__traceback__)[-1]
        if frame is not None and frame == innermost:
            what += ("\nA part of your answer still raises NotImplementedError: finish it (the other parts ran); "
                     "then check again")
        else:
            what += ("\nThis NotImplementedError comes from PyTorch or the course, not from your skeleton: "
                     "typically a module called with `module(...)` that has no `forward`; follow the docstring's "
                     "interface")
    if isinstance(err, RecursionError):
        what += "\nA function that calls itself (directly or through another one) without end"
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
    guard = Guard(TIME_LIMIT_S, MEMORY_LIMIT_MB)
    checking.CURRENT.update(id=id, reference=ex.reference)
    threads = torch.get_num_threads()
    try:
        # Small tensors: one thread is fastest, and never collapses on a busy machine (utils.setup's reason too).
        if threads != 1:
            torch.set_num_threads(1)
        # The checks draw random inputs; forking the RNG keeps the lesson's own random stream
        # (and so its results) identical whether or not the learner runs a check.
        with guard, torch.random.fork_rng(devices=[]), torch.enable_grad():
            ex.checker(candidate)
    except Mistake as m:
        return CheckResult(id, "fail", str(m), ex.title)
    except CheckTimeout:
        message = _TIMEOUT.format(seconds=TIME_LIMIT_S)
        return CheckResult(id, "fail", message + (f" Likely: {ex.on_timeout}." if ex.on_timeout else ""), ex.title)
    except CheckMemory:
        return CheckResult(id, "fail", _MEMORY.format(mb=MEMORY_LIMIT_MB)
                           + (f" Likely here: {ex.on_timeout}." if ex.on_timeout else ""), ex.title)
    except (Exception, SystemExit) as err:
        status, message = _describe_exception(err, candidate, ex)
        return CheckResult(id, status, message, ex.title)
    finally:
        checking.CURRENT.update(id=None, reference=None)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
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
        _IN_USE[id] = _name(candidate) if not isinstance(candidate, tuple) else name
        return candidate
    _IN_USE.pop(id, None)
    state = "not attempted yet" if result.status == "not attempted" else "not passing yet"
    print(f"ℹ Exercise {id} is {state}: the rest of this lesson uses the course's reference {name}. "
          f"Come back to it any time: utils.check(\"{id}\", ...).")
    return ex.reference


_IN_USE: dict[str, str] = {}  # exercise id -> the learner's code that this process's lesson runs


def learner_note() -> str:
    """A sentence naming the learner's code that the lesson now runs ('' when it runs only the course's).

    utils.claim adds it to a failing claim, so that the message points at the learner's code, not the lesson.
    """
    if not _IN_USE:
        return ""
    which = ", ".join(f"{i} ({n})" for i, n in sorted(_IN_USE.items()))
    return (f"\nThis run uses your code for exercise {which}. It passed its check, but the claim fails with it: "
            "the likely cause is a difference between your code and the course's that the check does not test "
            f"(compare with utils.solution(\"{sorted(_IN_USE)[-1]}\")), not the lesson. Please report it too: the check "
            "should have caught it.")


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

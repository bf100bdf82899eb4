"""Reading what went wrong in the learner's code: whose frame is whose, the learner's own line, and
whether an exception is only the unfilled skeleton ("not attempted").

:func:`frame_kind` is the one rule for "the learner's code" (a notebook cell, a learner's file), used
here to quote the learner's line and by :mod:`utils.integrity` to see who calls the reference.
"""
from __future__ import annotations

import ast
import inspect
import linecache
import os
import sys
import textwrap
import traceback

COURSE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # utils/
_LIBRARY = tuple(dict.fromkeys(p.rstrip(os.sep) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)))


def frame_kind(filename: str) -> str:
    """'course' (``utils/``), 'library' (Python, site-packages) or 'learner' (a notebook cell, ``exec``'d text)."""
    path = filename if filename.startswith("<") else os.path.abspath(filename)
    if path.startswith(COURSE_DIR + os.sep):
        return "course"
    if (path.startswith("<frozen") or path.startswith(_LIBRARY) or "site-packages" in path
            or f"{os.sep}lib{os.sep}python" in path):
        return "library"
    return "learner"


def is_learners(filename: str) -> bool:
    """Code in a notebook cell or a learner's file: not the course's utils, not a library."""
    return frame_kind(filename) == "learner"


def learner_frame(tb):
    """The deepest traceback frame that belongs to the learner (not to utils, not to a library)."""
    learner = None
    for frame in traceback.extract_tb(tb):
        if is_learners(frame.filename):
            learner = frame
    return learner


def _is_skeleton_raise(stmt) -> bool:
    exc = getattr(stmt, "exc", None)
    exc = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(stmt, ast.Raise) and isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def unfilled(fn) -> bool | None:
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


def parts(candidate, ex=None) -> list:
    """The functions of ``candidate`` the learner writes: the function itself, each of a tuple, a class's parts."""
    if isinstance(candidate, tuple):
        return [p for c in candidate for p in parts(c, ex)]
    if isinstance(candidate, type):
        names = ex.parts if ex is not None else ("__init__", "forward")
        found = (inspect.unwrap(getattr(candidate, n, None) or (lambda: None)) for n in names)
        return [f for f in found if inspect.isfunction(f) and is_learners(f.__code__.co_filename)]
    return [candidate] if callable(candidate) else []


def not_attempted(err: BaseException, candidate, ex=None) -> bool:
    """The learner's own skeleton raised: every part still has its skeleton body (or, when the source is
    unknown, the NotImplementedError was raised by the learner's own code, not by a library)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not isinstance(err, NotImplementedError) or not frames:
        return False
    innermost = frames[-1]
    if learner_frame(err.__traceback__) is None or learner_frame(err.__traceback__) != innermost:
        return False  # raised inside PyTorch or the course (e.g. calling a module that has no forward)
    states = [unfilled(p) for p in parts(candidate, ex)]
    if any(s is None for s in states) or not states:
        return True
    return all(states)


def _what(err: BaseException, frame) -> str:
    """The exception, and what it likely means for this kind of error."""
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
    return what


def describe_exception(err: BaseException, candidate=None, ex=None) -> tuple[str, str]:
    """(status, message) for an exception raised while checking."""
    frame = learner_frame(err.__traceback__)
    if not_attempted(err, candidate, ex):
        return "not attempted", "Replace `raise NotImplementedError()` with your code, run the cell, then check again."
    what = _what(err, frame)
    if frame is None:
        return "fail", (f"Calling your code failed with {what}\n"
                        "Check that you pass the right thing (the function or class itself, not a call to it) "
                        "and that it has the signature of the skeleton.")
    line = (frame.line or linecache.getline(frame.filename, frame.lineno) or "").strip()
    where = f"line {frame.lineno} of your cell (in `{frame.name}`)" if frame.name != "<module>" else f"line {frame.lineno}"
    return "fail", f"Your code raised {what}\n  at {where}:  {line}"

"""The grader's hooks inside a learner's kernel: honest verdicts from code that the learner controls.

The grader (the top-level package ``grading``, for instructors) runs each submission in a kernel of its
own and, before any learner code, calls :func:`boot` there. :class:`Referee` keeps what grading needs
(the course's ``check``, each exercise's checker and reference, a fingerprint of the checking
machinery), so that a notebook that later replaces ``utils.check``, an exercise's checker, or a
function of torch the checks use cannot change its grade unnoticed; it also fails a candidate that
*is* the course's reference, or calls it while being checked. Only this module of the grader runs in
the learner's kernel; the sandbox shows the kernel the course's ``utils/`` and nothing of ``grading/``.
"""
from __future__ import annotations

import builtins
import functools
import inspect
import sys
import types

import torch
from IPython import get_ipython
from IPython.display import display

from utils import exercises
from utils.exercises import registry
from utils.exercises.diagnosis import COURSE_DIR, frame_kind

MIME = "application/vnd.course.check+json"  # how the kernel sends a verdict back to the grader
REFERENCE = ("This is the course's reference, not your code (it is imported from, or calls, "
             "the course's own solution): write the exercise yourself.")


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _own_functions(reference) -> list:
    """The functions of a reference: itself, or a class's methods (of the course's own classes)."""
    todo = []
    for ref in _as_tuple(reference):
        if inspect.isclass(ref):
            for klass in ref.__mro__:
                if klass.__module__.split(".")[0] == "utils":
                    todo += [getattr(v, "__func__", v) for v in vars(klass).values()]
        else:
            todo.append(ref)
    return todo


def reference_codes(reference) -> set:
    """The code objects of an exercise's reference: its functions, its classes' methods, nested code."""
    codes, todo = set(), _own_functions(reference)
    for obj in todo:
        if isinstance(obj, property):
            todo += [obj.fget, obj.fset]
        for _ in range(10):  # a decorated function (@torch.no_grad()): its own code is inside
            if getattr(obj, "__wrapped__", None) is None:
                break
            obj = obj.__wrapped__
        code = getattr(obj, "__code__", None)
        # Only the course's own code: a decorator's wrapper (torch's) is shared by every decorated function.
        stack = [code] if isinstance(code, types.CodeType) and code.co_filename.startswith(COURSE_DIR) else []
        while stack:
            c = stack.pop()
            codes.add(c)
            stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    return codes


def _uses_code(cand, codes: set) -> bool:
    """A function whose code, or a class one of whose methods' code, is the reference's."""
    if inspect.isclass(cand):
        return any(getattr(getattr(value, "__func__", value), "__code__", None) in codes
                   for klass in cand.__mro__ for value in vars(klass).values())
    return getattr(getattr(cand, "__func__", cand), "__code__", None) in codes


def is_reference(candidate, reference, codes: set) -> bool:
    """The candidate *is* the course's reference: the same object, a subclass of it, or its code."""
    refs = _as_tuple(reference)
    for cand in _as_tuple(candidate):
        for _ in range(10):  # through decorators and functools.partial
            if any(cand is ref for ref in refs):
                return True
            if not (isinstance(cand, functools.partial) or hasattr(cand, "__wrapped__")):
                break
            cand = cand.func if isinstance(cand, functools.partial) else cand.__wrapped__
        if inspect.isclass(cand) and any(inspect.isclass(ref) and issubclass(cand, ref) for ref in refs):
            return True
        if _uses_code(cand, codes):
            return True
    return False


def _spoil(value):
    """Every number in ``value`` changed: tensors + 1 (booleans negated), numbers + 1."""
    if isinstance(value, torch.Tensor):
        return ~value if value.dtype == torch.bool else value + 1
    if isinstance(value, (tuple, list)):
        return type(value)(_spoil(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value + 1
    return value


def wrong_variant(reference):
    """A known-wrong answer: the reference with every number it returns changed (tensors + 1)."""
    if isinstance(reference, tuple):
        return tuple(wrong_variant(r) for r in reference)
    if inspect.isclass(reference):
        forward = reference.forward
        return type(reference.__name__, (reference,), {"forward": lambda self, *a, **k: _spoil(forward(self, *a, **k))})

    def wrong(*args, **kwargs):
        return _spoil(reference(*args, **kwargs))

    wrong.__name__ = getattr(reference, "__name__", "wrong")
    return wrong


def machinery() -> list:
    """The namespaces whose contents the checks rely on: the course's modules, torch's, Python's builtins."""
    spaces = [(name, module) for name, module in sorted(sys.modules.items())
              if module is not None and (name == "utils" or name.startswith("utils."))]
    spaces += [("builtins", builtins), ("torch", torch), ("torch.nn.functional", torch.nn.functional),
               ("torch.testing", torch.testing), ("torch.Tensor", torch.Tensor), ("torch.nn.Module", torch.nn.Module)]
    return spaces


def _identity(space_name: str, key: str, value):
    code = getattr(value, "__code__", None)
    return (id(code), id(getattr(value, "__defaults__", None))) if key.endswith(".__code__") else id(value)


def fingerprint(spaces) -> dict:
    """(namespace, name) -> the identity of what it holds; for the course's functions, also of their code."""
    out = {}
    for name, space in spaces:
        for key, value in list(vars(space).items()):
            if name == "builtins" and key in ("_", "__", "___", "input", "raw_input"):
                continue  # the last results, and the kernel's own input(), replaced at each execution
            out[(name, key)] = id(value)
            if name.startswith("utils") and getattr(value, "__code__", None) is not None:
                out[(name, key + ".__code__")] = _identity(name, key + ".__code__", value)
    return out


class Tripwires:
    """For one check: every name that holds an exercise's reference holds a tripwire instead, which
    notes a call from the learner's code and then runs the reference. The checker's own calls come
    from the course's code and are not counted."""

    def __init__(self, ex, candidate):
        self.ex, self.candidate, self.calls, self.undo = ex, candidate, [], []
        self.saved = ex.reference
        self.wires = {id(ref): self._wire(ref) for ref in _as_tuple(ex.reference)}

    def _note(self):
        frame = sys._getframe(2)  # 0: here, 1: the tripwire, 2: its caller
        while frame is not None and frame_kind(frame.f_code.co_filename) == "library":
            frame = frame.f_back
        if frame is not None and frame_kind(frame.f_code.co_filename) == "learner":
            self.calls.append(frame.f_code.co_name)

    def _wire(self, ref):
        note = self._note
        if inspect.isclass(ref):
            def __init__(self, *args, **kwargs):
                note()
                ref.__init__(self, *args, **kwargs)
            return type(ref.__name__, (ref,), {"__init__": __init__, "__module__": ref.__module__,
                                                "__qualname__": ref.__qualname__})

        @functools.wraps(ref)
        def wrapper(*args, **kwargs):
            note()
            return ref(*args, **kwargs)
        return wrapper

    def __enter__(self):
        spaces = [vars(m) for name, m in list(sys.modules.items())
                  if m is not None and (name == "utils" or name.startswith("utils."))]
        shell = get_ipython()
        if shell is not None:
            spaces.append(shell.user_ns)
        for space in spaces:
            for key, value in list(space.items()):
                if id(value) in self.wires and value is not self.candidate:
                    self.undo.append((space, key, value))
                    space[key] = self.wires[id(value)]
        wired = tuple(self.wires[id(r)] for r in _as_tuple(self.saved))
        self.ex.reference = wired if isinstance(self.saved, tuple) else wired[0]
        return self

    def __exit__(self, *exc_info):
        self.ex.reference = self.saved
        for space, key, value in self.undo:
            space[key] = value
        return False


class Referee:
    """Grades the check cells of one notebook, in its kernel; made by :func:`boot` before any learner code."""

    def __init__(self, ids: list, nonce: str):
        self.nonce = nonce
        self.check = exercises.check
        self.kept = {id: exercises.get(id) for id in ids}
        self.saved = {id: (ex.checker, ex.reference) for id, ex in self.kept.items()}
        self.codes = {id: reference_codes(ex.reference) for id, ex in self.kept.items()}
        self.wrong = {id: wrong_variant(ex.reference) for id, ex in self.kept.items()}
        self.spaces = dict(machinery())
        self.fingerprint = fingerprint(self.spaces.items())
        self.passed = []  # the exercises this kernel passed: their reference is checked again at the end

    def _now(self, name: str, key: str):
        """What (namespace, key) holds now, as :func:`fingerprint` identifies it (None if it is gone)."""
        missing = object()
        value = vars(self.spaces[name]).get(key[:-9] if key.endswith(".__code__") else key, missing)
        return None if value is missing else _identity(name, key, value)

    def altered(self, id: str, final: bool) -> str:
        """What of the checking machinery the notebook changed ("" when nothing)."""
        changed = [f"{name}.{key}" for (name, key), value in self.fingerprint.items() if self._now(name, key) != value]
        if changed:
            return f"it replaces {', '.join(changed[:3])}"
        for i, ex in self.kept.items():
            if (ex.checker, ex.reference) != self.saved[i] or registry.registered(i) is not ex:
                return f"it replaces the checker of exercise {i}"
        # The same check, in the same kernel, on a known-wrong answer (each time) and on the course's
        # reference (after the last exercise): a check that passes anything, or nothing, was tampered with.
        spoiled = self.check(id, self.wrong[id])
        if spoiled.status != "fail":
            return f"after it, the check of {id} gives '{spoiled.status}' to a known-wrong answer"
        for i in self.passed if final else ():
            right = self.check(i, self.kept[i].reference)
            if right.status != "pass":
                return f"after it, the check of {i} gives '{right.status}' to the course's own answer"
        return ""

    def delegates(self, id: str, candidate) -> bool:
        """Checking ``candidate`` again, does learner code call the reference of ``id``?"""
        with Tripwires(self.kept[id], candidate) as wires:
            try:
                self.check(id, candidate)
            except BaseException:  # noqa: BLE001 -- only the calls matter here
                pass
        return bool(wires.calls)

    def verdict(self, id: str, thunk, renamed: str) -> dict:
        """The check of ``id`` on what ``thunk`` returns: status, message, title (or what went wrong)."""
        try:
            candidate = thunk()
        except NameError as err:
            return {"undefined": getattr(err, "name", None) or str(err)}
        except BaseException as err:  # noqa: BLE001 -- the candidate expression itself failed
            return {"status": "fail", "message": f"Evaluating the checked expression raised {type(err).__name__}: {err}"}
        result = self.check(id, candidate)
        verdict = {"status": result.status, "message": result.message, "title": result.title}
        if result.status == "pass":
            self.passed.append(id)
            ex = self.kept[id]
            if is_reference(candidate, ex.reference, self.codes[id]) or self.delegates(id, candidate):
                verdict = {"status": "fail", "title": result.title, "message": REFERENCE}
        if renamed and verdict["status"] != "not attempted":
            verdict["message"] = renamed + "\n" + verdict["message"]
        return verdict

    def __call__(self, id: str, thunk, renamed: str = "", final: bool = False) -> None:
        """Grade the check cell of ``id`` and send the verdict to the grader (as display data)."""
        verdict = self.verdict(id, thunk, renamed)
        problem = self.altered(id, final)
        if problem:
            verdict = {"altered": problem}
        verdict.update(id=id, nonce=self.nonce)
        display({MIME: verdict}, raw=True)


def boot(ids: list, nonce: str) -> Referee:
    """Run in the kernel before any learner code; returns what grades a check cell (see :class:`Referee`)."""
    return Referee(ids, nonce)

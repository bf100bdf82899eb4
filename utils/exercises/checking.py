"""Small tools the checkers share: raise a :class:`Mistake` that names the likely cause.

A checker runs the learner's candidate on several shapes and seeds, compares with the
reference, and when they differ compares with the outputs of *known mistakes* (a missing
transpose, the wrong softmax axis, ...) to name the one the learner most likely made.
It never prints the expected tensor.
"""
from __future__ import annotations

import ast
import contextlib
import ctypes
import functools
import inspect
import linecache
import os
import signal
import threading
import time
import traceback

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from utils.exercises.diagnosis import is_learners


class Mistake(Exception):
    """Raised by a checker; its message is shown to the learner as the diagnosis."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mistake(message)


def expect_tensor(x, what: str) -> torch.Tensor:
    expect(torch.is_tensor(x), f"{what} should be a torch.Tensor, but it is {type(x).__name__}"
           + (" (did you forget a `return`?)" if x is None else "")
           + (" (`.item()`, `float()` or NumPy turn a tensor into a plain number: return the tensor itself, which "
              "keeps its gradient)" if isinstance(x, (float, int)) and not isinstance(x, bool) else "") + ".")
    return x


def expect_shape(x, shape, what: str, hint: str = "") -> torch.Tensor:
    """``x`` is a tensor of exactly ``shape``; the message gives expected vs got."""
    expect_tensor(x, what)
    expect(tuple(x.shape) == tuple(shape),
           f"{what} has shape {tuple(x.shape)}, expected {tuple(shape)}." + (f" {hint}" if hint else ""))
    return x


def expect_finite(x, what: str) -> None:
    if torch.is_tensor(x) and x.is_floating_point():
        n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        expect(n_nan == 0 and n_inf == 0,
               f"{what} contains {n_nan} NaN and {n_inf} infinite values. NaN usually comes from a softmax over a "
               "row that is all -inf, a division by zero, or log of 0.")


def close(a, b, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values (within float error)."""
    return torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and torch.allclose(
        a.detach().double(), b.detach().double(), atol=atol, rtol=rtol, equal_nan=False)


def expect_close(got, want, what: str, *, mistakes: dict | None = None, otherwise: str = "", atol=1e-5, rtol=1e-4) -> None:
    """``got`` equals ``want``; else name the first known mistake whose output ``got`` matches.

    mistakes: ``{message: output that mistake would give}`` (entries may be None) or a list of such pairs (when
    several mistakes share a message), or a function that returns either, called only when ``got`` differs (the
    mistakes' outputs can cost more than the check).
    """
    expect_shape(got, want.shape, what)
    expect_finite(got, what)
    if close(got, want, atol, rtol):
        return
    if callable(mistakes):
        mistakes = mistakes()
    for message, output in (mistakes.items() if isinstance(mistakes, dict) else mistakes or ()):
        if output is not None and close(got, output, atol, rtol):
            raise Mistake(message)
    raise Mistake(f"{what} has the right shape but the wrong values. {otherwise}".strip())


# The exercise being checked (set by ``check``), so that messages can name what it expects.
CURRENT = {"id": None, "reference": None}


def _expected_name(default: str) -> str:
    ref = CURRENT.get("reference")
    return getattr(ref, "__name__", default) if ref is not None and not isinstance(ref, tuple) else default


def instantiate(Candidate, *args, **kwargs):
    """Build ``Candidate(*args)``; a class (an nn.Module subclass) is expected."""
    want = _expected_name(getattr(Candidate, "__name__", "MyModule"))
    exercise_id = CURRENT.get("id") or "..."
    if isinstance(Candidate, nn.Module):
        raise Mistake(f"You passed an instance of {type(Candidate).__name__}; pass the class itself: "
                      f'`utils.check("{exercise_id}", {type(Candidate).__name__})`, without the parentheses.')
    if not isinstance(Candidate, type):
        what = (f"the function `{Candidate.__name__}`" if callable(Candidate) and hasattr(Candidate, "__name__")
                else f"a {type(Candidate).__name__}")
        raise Mistake(f"This exercise expects your class `{want}` (an nn.Module), but you passed {what}. "
                      f'Pass the class itself: `utils.check("{exercise_id}", {want})`.')
    module = Candidate(*args, **kwargs)
    expect(isinstance(module, nn.Module), "Your class should subclass nn.Module.")
    return module


def copy_weights(source: nn.Module, target: nn.Module, what: str) -> None:
    """Load ``source``'s parameters into ``target``, naming any layer that is missing or mis-shaped.

    Buffers of the learner's own that the course's module has not (``self.register_buffer("mask", ...)``,
    nanoGPT's habit) are kept as they are: they are not weights, and the checks compare behaviour.
    """
    want, got = source.state_dict(), target.state_dict()
    own_buffers = {name for name, _ in target.named_buffers()} - set(want)
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want and k not in own_buffers]
    expect(not missing and not extra,
           f"{what} should have exactly the layers its docstring names, with the same names (the check, and the "
           "lesson's later cells, find them by name). "
           + (f"Missing: {', '.join(missing)}. " if missing else "") + (f"Unexpected: {', '.join(extra)}." if extra else "")
           + (" A bias where the docstring says bias=False (or none where the layer has one)?" if all(
               k.endswith("bias") for k in missing + extra) else ""))
    for k in want:
        expect(want[k].shape == got[k].shape,
               f"{what}: `{k}` has shape {tuple(got[k].shape)}, expected {tuple(want[k].shape)}. Check the sizes you pass to the layer.")
    expect_own_modules(target, what)
    target.load_state_dict(want, strict=not own_buffers)


def expect_own_modules(module: nn.Module, what: str) -> None:
    """No two of ``module``'s layers are the same object (``self.norm2 = self.norm1`` shares one LayerNorm)."""
    seen = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        if name and any(True for _ in sub.parameters(recurse=False)):
            if id(sub) in seen and seen[id(sub)] != name:
                raise Mistake(f"{what}: `{name}` and `{seen[id(sub)]}` are the same module object, so they share their "
                              "weights. Each sublayer needs its own: create a new layer for each name.")
            seen.setdefault(id(sub), name)


def residual_stack(x, sublayers: dict, norms: dict, order, *, pre_ln: bool, residual=None, unnormed=()):
    """x through ``sublayers`` in ``order``, each wrapped in its residual connection and LayerNorm: the blocks of
    lessons 06 and 07 written with one realistic mistake (the order, which norm, a residual left out).

    sublayers: {kind: f(h, stream)}, h the sublayer's input (normalised in pre-LN), stream the residual stream
    (x so far); norms: {kind: LayerNorm}; pre-LN: x + f(LN(x)), post-LN: LN(x + f(x)). residual: the kinds that
    keep their residual connection (all by default); unnormed: kinds whose pre-LN input is x itself.
    Returns None when the mistake cannot run (shapes that do not fit).
    """
    residual = set(order) if residual is None else set(residual)
    try:
        for kind in order:
            keep = x if kind in residual else 0
            if pre_ln:
                x = keep + sublayers[kind](x if kind in unnormed else norms[kind](x), x)
            else:
                x = norms[kind](keep + sublayers[kind](x, x))
    except (RuntimeError, ValueError):
        return None
    return x


def callable_candidate(candidate, what: str) -> None:
    expect(callable(candidate), f"Pass your {what} itself (a function), not {type(candidate).__name__}.")
    if isinstance(candidate, type):
        raise Mistake(f"This exercise expects your function `{what}`, but you passed the class `{candidate.__name__}`.")


# ----------------------------------------------------------------- time limit and memory guard
class CheckTimeout(BaseException):
    """Raised inside a candidate that runs past the check's time limit.

    A BaseException, so that a learner's ``except Exception`` does not swallow it.
    """


class CheckMemory(BaseException):
    """Raised inside a candidate whose memory grows past the check's guard."""


def _rss_bytes() -> int | None:
    """This process's resident memory now (Linux /proc, else psutil), or None when unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # noqa: PLC0415

        return psutil.Process().memory_info().rss
    except Exception:
        return None


class Guard:
    """Run a block under a time limit and a memory guard; the block gets CheckTimeout / CheckMemory.

    The time limit is SIGALRM (``signal.setitimer``) when the block runs in the main thread of a
    process that has no timer of its own set (a Jupyter kernel, a script): the signal also interrupts
    a blocking call. Elsewhere (a thread, Windows, a timer already in use) a watchdog thread raises
    the exception in the block's thread with ``PyThreadState_SetAsyncExc``; it fires at the next
    Python bytecode, so it stops Python loops, not one long C call. The memory guard is the same
    watchdog, polling the resident memory every 20 ms: no ``setrlimit``, which would make PyTorch's
    own allocations fail. Nothing is left behind: the previous SIGALRM handler is restored, and an
    exception that fired too late to be raised is cancelled.
    """

    def __init__(self, seconds: float, memory_mb: float):
        self.seconds, self.memory_mb = float(seconds), float(memory_mb)
        self.fired = None  # "time" or "memory" once the guard has fired

    def __enter__(self):
        self._thread_id = threading.get_ident()
        self._active = True
        self._use_signal = (self.seconds > 0 and hasattr(signal, "setitimer")
                            and threading.current_thread() is threading.main_thread()
                            and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
        if self._use_signal:
            try:
                self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
            except (ValueError, OSError):  # not allowed here after all: use the watchdog
                self._use_signal = False
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="check-guard", daemon=True)
        self._watcher.start()
        return self

    def _on_alarm(self, signum, frame):
        if self._active and self.fired is None:
            self.fired = "time"
            raise CheckTimeout()

    def _watch(self):
        start, baseline = time.monotonic(), _rss_bytes()
        limit = None if baseline is None or self.memory_mb <= 0 else baseline + self.memory_mb * 2 ** 20
        while not self._stop.wait(0.02):
            if self.fired is not None:
                return
            if limit is not None and (_rss_bytes() or 0) > limit:
                self._interrupt("memory", CheckMemory)
                return
            # with SIGALRM the signal is the limit; the watchdog is a backstop a little later
            late = self.seconds + (1.0 if self._use_signal else 0.0)
            if self.seconds > 0 and time.monotonic() - start > late:
                self._interrupt("time", CheckTimeout)
                return

    def _interrupt(self, what, exc):
        if self._active and self.fired is None:
            self.fired = what
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), ctypes.py_object(exc))

    def __exit__(self, *exc_info):
        self._active = False
        self._stop.set()
        if self._use_signal:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler)
        self._watcher.join()
        # An asynchronous exception set just as the block ended would be raised later, anywhere: cancel it.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)
        return False


def _backward(out, weight, what: str) -> None:
    try:
        (out * weight).sum().backward()
    except RuntimeError as err:
        text = str(err)
        if "inplace" in text or "in-place" in text:
            raise Mistake(f"{what}: backpropagation fails, because an in-place operation (`+=`, `/=`, `.div_()`, "
                          "`masked_fill_`, `x[...] = ...`) changed a tensor that the gradient needs. The forward values "
                          "are right, but the lesson trains this code: use the out-of-place form "
                          "(`x = x / s`, `masked_fill`).") from None
        if "does not require grad" in text:
            raise Mistake(f"{what} has no gradient: the lesson trains through it. Remove torch.no_grad(), "
                          ".detach(), .data or .item() from the computation.") from None
        raise


def expect_same_gradients(cand: nn.Module, ref: nn.Module, run_cand, run_ref, what: str) -> None:
    """Backpropagate the same random projection of both outputs: every parameter gets the reference's gradient.

    This catches what forward values cannot show: in-place operations that break backpropagation, and
    .detach() / .data / torch.no_grad() that cut a path the lesson trains.
    """
    for m in (cand, ref):
        m.zero_grad(set_to_none=True)
    out_c, out_r = run_cand(), run_ref()
    weight = torch.randn(out_r.shape, generator=torch.Generator().manual_seed(0))
    expect(torch.is_tensor(out_c) and out_c.shape == out_r.shape, f"{what} has the wrong shape.")
    _backward(out_c, weight, what)
    _backward(out_r, weight, "the course's answer")
    params = dict(cand.named_parameters())
    for name, p in ref.named_parameters():
        q = params.get(name)
        if q is None or p.grad is None:
            continue
        expect(q.grad is not None, f"{what}: `{name}` gets no gradient, so training would never change it. Remove "
               "the .detach(), .data or torch.no_grad() on its path.")
        expect(close(q.grad, p.grad, atol=1e-4, rtol=1e-3),
               f"{what}: the forward values are right, but the gradient of `{name}` is not; something on its path is "
               "cut (.detach(), .data) or changed in place.")
    for m in (cand, ref):
        m.zero_grad(set_to_none=True)


# ----------------------------------------------------------------- the candidate's inputs are never changed
# ``check`` calls every candidate through :func:`inputs_kept`: each call of a learner's function, or of the
# forward of a learner's nn.Module class, watches the tensors it was given. An in-place operation on one of
# them (``logits /= t``, ``x.masked_fill_(...)``, ``x[..., 0] = ...``, ``out=``, ``inplace=True``), also
# through a view (slicing, .view and .reshape do not copy), stops the check with a message that names the
# input, the learner's line and the out-of-place way to write it. The rest of a lesson runs the learner's
# code on its own tensors (logits it keeps, a cache it reuses): a changed input breaks it silently.
_VERBS = {"add": "added to", "sub": "subtracted from", "out=": "wrote a result into", "inplace=True": "changed", "mul": "multiplied", "div": "divided", "floor_divide": "divided",
          "true_divide": "divided", "remainder": "took the remainder of", "pow": "raised", "masked_fill": "filled",
          "fill": "filled", "zero": "zeroed", "setitem": "wrote into", "copy": "copied into", "clamp": "clamped",
          "index_put": "wrote into", "scatter": "wrote into", "masked_scatter": "wrote into", "index_fill": "filled"}
_IN_PLACE_OPERATORS = {f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and",
                                                "or", "xor", "lshift", "rshift")}
_NOT_DATA = {"requires_grad_", "retain_grad", "share_memory_", "pin_memory", "record_stream", "register_hook"}


class InputChanged(BaseException):
    """Raised when a candidate changes a tensor it was given. A BaseException, like CheckTimeout, so that
    neither the learner's ``except Exception`` nor a checker's catches it; :func:`inputs_kept` turns it
    into a :class:`Mistake`."""


def _storage(t) -> int | None:
    """An id of the memory ``t`` lives in (views share it), or None for an empty tensor."""
    try:
        return t.untyped_storage().data_ptr() if t.numel() else None
    except (RuntimeError, NotImplementedError):
        return None


def _version(t):
    try:
        return t._version  # PyTorch bumps it at every in-place operation on the tensor or a view of it
    except (RuntimeError, AttributeError):  # inference tensors keep no version counter
        return None


def _named_tensors(fn, args, kwargs) -> list:
    """[(name, tensor)] of every tensor among the arguments, named by ``fn``'s parameters (``state[0]``)."""
    try:
        items = list(inspect.signature(fn).bind_partial(*args, **kwargs).arguments.items())
    except (TypeError, ValueError):  # a call that does not fit the signature fails on its own, elsewhere
        items = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    found = []

    def visit(name, value, depth=0):
        if torch.is_tensor(value):
            found.append((name, value))
        elif isinstance(value, (tuple, list)) and depth < 2:
            for i, item in enumerate(value):
                visit(f"{name}[{i}]", item, depth + 1)
        elif isinstance(value, dict) and depth < 2:
            for key, item in value.items():
                visit(f"{name}[{key!r}]", item, depth + 1)

    for name, value in items:
        visit(name, value)
    return found


def _in_place_target(func, args, kwargs):
    """(the tensor an operation changes in place, the operation's name), or (None, name)."""
    name = getattr(func, "__name__", "") or ""
    out = kwargs.get("out")
    if out is not None:
        return (out[0] if isinstance(out, (tuple, list)) and out else out), "out="
    if kwargs.get("inplace") is True:
        return (args[0] if args else kwargs.get("input")), "inplace=True"
    if name == "__setitem__" or name in _IN_PLACE_OPERATORS or (
            name.endswith("_") and not name.startswith("_") and name not in _NOT_DATA):
        return (args[0] if args else None), name
    return None, name


def _learner_line():
    """The innermost frame of the learner's code on the stack now (a FrameSummary), or None."""
    for frame in reversed(traceback.extract_stack()):
        if is_learners(frame.filename):
            return frame
    return None


def _base(op: str) -> str:
    """'div_' -> 'div', '__iand__' -> 'and', '__setitem__' -> 'setitem'."""
    if op in ("out=", "inplace=True"):
        return op
    if op in _IN_PLACE_OPERATORS:
        return {"truediv": "div", "floordiv": "floor_divide", "mod": "remainder"}.get(op[3:-2], op[3:-2])
    return op.strip("_")


def _rewrite(line: str, op: str):
    """From the learner's line: (the tensor expression changed, how it is written, the advice), or Nones."""
    try:
        stmt = ast.parse(line.strip()).body[0]
    except (SyntaxError, IndexError):
        return None, None, None
    keep = "a new tensor, and the caller's stays as it was"
    if isinstance(stmt, ast.AugAssign):
        target, sign = ast.unparse(stmt.target), line.strip()[len(ast.unparse(stmt.target)):].split()[0]
        if isinstance(stmt.target, ast.Name):
            return target, f"`{sign}`", f"Write `{target} = {ast.unparse(ast.BinOp(stmt.target, stmt.op, stmt.value))}`: {keep}."
        root = ast.unparse(stmt.target.value) if isinstance(stmt.target, (ast.Subscript, ast.Attribute)) else target
        return root, f"`{sign}` on a part of it", f"Copy it first, `{root} = {root}.clone()`, or build a new tensor."
    if op == "__setitem__":
        subscripts = [t for t in getattr(stmt, "targets", []) if isinstance(t, ast.Subscript)]
        if subscripts:
            root = ast.unparse(subscripts[0].value)
            return root, "`x[...] = ...`", (f"Copy it first, `{root} = {root}.clone()`, or build a new tensor "
                                            "(torch.where, torch.cat, masked_fill).")
        return None, "`x[...] = ...`", None
    if op in ("out=", "inplace=True"):
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and any(k.arg in ("out", "inplace") for k in node.keywords):
                given = next(k for k in node.keywords if k.arg in ("out", "inplace"))
                node.keywords = [k for k in node.keywords if k.arg not in ("out", "inplace")]
                if op == "out=":
                    target = ast.unparse(given.value)
                    return target, f"`out={target}`", f"Write `{target} = {ast.unparse(node)}`: {keep}."
                target = ast.unparse(node.args[0]) if node.args else None
                return target, "`inplace=True`", f"Drop `inplace=True`: `{ast.unparse(node)}` returns {keep}."
        return None, f"`{op}`", None
    for node in ast.walk(stmt):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == op:
            target = ast.unparse(node.func.value)
            node.func.attr = op[:-1]  # masked_fill_ -> masked_fill: a new tensor
            fixed = f"{target} = {ast.unparse(stmt.value)}" if isinstance(stmt, ast.Expr) else ast.unparse(stmt)
            return target, f"`.{op}(...)`", f"Write `{fixed}` (`{op[:-1]}` without the `_` returns {keep})."
    return None, f"`{op}`", None


def _changed_message(who: str, name: str, op: str | None, frame) -> str:
    if op is None:
        return (f"{who} changed `{name}` in place: after the call the `{name}` it was given is not what it was. "
                "The lesson uses its tensors again after your code has run: compute new tensors instead (no `+=`, "
                "`/=`, `x[...] = ...`, or methods ending in `_` on your inputs or their views).")
    line = (frame.line or linecache.getline(frame.filename, frame.lineno) or "").strip() if frame is not None else ""
    target, how, advice = _rewrite(line, op) if line else (None, None, None)
    how = how or (f"`{op}`" if op != "__setitem__" else "`x[...] = ...`")
    verb = _VERBS.get(_base(op), "changed")
    what = f"`{name}` itself"
    if target is not None and target != name:
        what = f"`{target}` (a view of `{name}`: slicing, .view and .reshape do not copy)"
    where = ""
    if frame is not None:
        place = f"line {frame.lineno} of your cell" + (f" (in `{frame.name}`)" if frame.name != "<module>" else "")
        where = f", at {place}" + (f": `{line}`" if line else "")
    advice = advice or ("Compute a new tensor instead (`x = x / t` rather than `x /= t`, `masked_fill` rather than "
                        "`masked_fill_`), so that the caller's stays as it was.")
    return (f"{who} changed `{name}` in place: it {verb} {what} with {how}, which works in place{where}. The "
            f"lesson uses the `{name}` it passed again after your code has run. {advice}")


class _InPlaceWatch(TorchFunctionMode):
    """Within a candidate's call: stop at the first in-place operation on the memory of one of its inputs."""

    def __init__(self, who: str, named: list):
        super().__init__()
        self.who = who
        self.memory = {}
        for name, t in named:
            ptr = _storage(t)
            if ptr is not None:
                self.memory.setdefault(ptr, name)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target, op = _in_place_target(func, args, kwargs)
        if torch.is_tensor(target) and self.memory:
            name = self.memory.get(_storage(target))
            if name is not None:
                raise InputChanged(_changed_message(self.who, name, op, _learner_line()))
        return func(*args, **kwargs)


@contextlib.contextmanager
def _watching(who: str, named: list):
    versions = [(name, t, _version(t)) for name, t in named]
    with _InPlaceWatch(who, named):
        yield
    for name, t, version in versions:  # what the watch cannot see: an operation inside a library, .data = ...
        if version is not None and _version(t) != version:
            raise InputChanged(_changed_message(who, name, None, None))


def _watched_function(fn):
    who = f"Your `{getattr(fn, '__name__', 'function')}`" if getattr(fn, "__name__", "<lambda>") != "<lambda>" else "Your function"

    @functools.wraps(fn)
    def watched(*args, **kwargs):
        with _watching(who, _named_tensors(fn, args, kwargs)):
            return fn(*args, **kwargs)

    return watched


def _watched_class(cls):
    class Watched(cls):
        def __call__(self, *args, **kwargs):
            with _watching(f"Your `{cls.__name__}`'s forward", _named_tensors(self.forward, args, kwargs)):
                return super().__call__(*args, **kwargs)

    Watched.__name__, Watched.__qualname__, Watched.__module__, Watched.__doc__ = (
        cls.__name__, cls.__qualname__, cls.__module__, cls.__doc__)
    return Watched


def watch_inputs(candidate):
    """``candidate`` as the checks call it: a function, a tuple of them, or an nn.Module class whose forward
    raises :class:`InputChanged` when it changes a tensor it was given. Anything else is returned as it is."""
    if isinstance(candidate, tuple):
        return tuple(watch_inputs(c) for c in candidate)
    if isinstance(candidate, type):
        return _watched_class(candidate) if issubclass(candidate, nn.Module) else candidate
    if callable(candidate) and not isinstance(candidate, nn.Module):
        return _watched_function(candidate)
    return candidate


@contextlib.contextmanager
def inputs_kept(candidate):
    """``with inputs_kept(candidate) as watched: checker(watched)``: a changed input becomes a Mistake."""
    try:
        yield watch_inputs(candidate)
    except InputChanged as err:
        raise Mistake(str(err)) from None

"""Small tools the checkers share: raise a :class:`Mistake` that names the likely cause.

A checker runs the learner's candidate on several shapes and seeds, compares with the
reference, and when they differ compares with the outputs of *known mistakes* (a missing
transpose, the wrong softmax axis, ...) to name the one the learner most likely made.
It never prints the expected tensor.
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

import torch
import torch.nn as nn


class Mistake(Exception):
    """Raised by a checker; its message is shown to the learner as the diagnosis."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mistake(message)


def expect_tensor(x, what: str) -> torch.Tensor:
    expect(torch.is_tensor(x), f"{what} should be a torch.Tensor, but it is {type(x).__name__}"
           + (" (did you forget a `return`?)" if x is None else "") + ".")
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

    mistakes: ``{message: output that mistake would give}`` (entries may be None), or a function that
    returns it, called only when ``got`` differs (the mistakes' outputs can cost more than the check).
    """
    expect_shape(got, want.shape, what)
    expect_finite(got, what)
    if close(got, want, atol, rtol):
        return
    if callable(mistakes):
        mistakes = mistakes()
    for message, output in (mistakes or {}).items():
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
    """Load ``source``'s parameters into ``target``, naming any layer that is missing or mis-shaped."""
    want, got = source.state_dict(), target.state_dict()
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
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
    target.load_state_dict(want)


def expect_own_modules(module: nn.Module, what: str) -> None:
    """No two of ``module``'s layers are the same object (``self.norm2 = self.norm1`` shares one LayerNorm)."""
    seen = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        if name and any(True for _ in sub.parameters(recurse=False)):
            if id(sub) in seen and seen[id(sub)] != name:
                raise Mistake(f"{what}: `{name}` and `{seen[id(sub)]}` are the same module object, so they share their "
                              "weights. Each sublayer needs its own: create a new layer for each name.")
            seen.setdefault(id(sub), name)


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

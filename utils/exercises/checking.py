"""Small tools the checkers share: raise a :class:`Mistake` that names the likely cause.

A checker runs the learner's candidate on several shapes and seeds, compares with the
reference, and when they differ compares with the outputs of *known mistakes* (a missing
transpose, the wrong softmax axis, ...) to name the one the learner most likely made.
It never prints the expected tensor.
"""
from __future__ import annotations

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

    mistakes: ``{message: output that mistake would give}`` (entries may be None).
    """
    expect_shape(got, want.shape, what)
    expect_finite(got, what)
    if close(got, want, atol, rtol):
        return
    for message, output in (mistakes or {}).items():
        if output is not None and close(got, output, atol, rtol):
            raise Mistake(message)
    raise Mistake(f"{what} has the right shape but the wrong values. {otherwise}".strip())


def instantiate(Candidate, *args, **kwargs):
    """Build ``Candidate(*args)``; a class is expected."""
    expect(isinstance(Candidate, type), f"Pass the class itself (e.g. `{getattr(Candidate, '__name__', 'MyModule')}`), "
           f"not {'an instance' if isinstance(Candidate, nn.Module) else type(Candidate).__name__}.")
    module = Candidate(*args, **kwargs)
    expect(isinstance(module, nn.Module), "Your class should subclass nn.Module.")
    return module


def copy_weights(source: nn.Module, target: nn.Module, what: str) -> None:
    """Load ``source``'s parameters into ``target``, naming any layer that is missing or mis-shaped."""
    want, got = source.state_dict(), target.state_dict()
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    expect(not missing and not extra,
           f"{what} should have exactly the layers of the skeleton, with the same names. "
           + (f"Missing: {', '.join(missing)}. " if missing else "") + (f"Unexpected: {', '.join(extra)}." if extra else ""))
    for k in want:
        expect(want[k].shape == got[k].shape,
               f"{what}: `{k}` has shape {tuple(got[k].shape)}, expected {tuple(want[k].shape)}. Check the sizes you pass to the layer.")
    target.load_state_dict(want)


def callable_candidate(candidate, what: str) -> None:
    expect(callable(candidate), f"Pass your {what} itself (a function), not {type(candidate).__name__}.")

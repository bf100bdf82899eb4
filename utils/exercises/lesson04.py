"""Exercises of lesson 04, the cost of attention: 04.1 attention_flops, 04.2 lstm_flops, 04.3 attention_memory.

The candidates are counting functions of integers. A checker compares them with the course's counts
(:mod:`utils.cost`) at several sizes; when they differ it compares with the counts that realistic
mistakes give (the factor 2 of a multiply-add forgotten, Q K^T counted but not A V, n where n^2
belongs, ...), and otherwise says how the learner's count *grows* with n and d, without printing
the expected number.

What the rest of the lesson relies on (stated in the docstrings, checked below): each function returns one
finite number (a Python int or float; a 0-d tensor or NumPy scalar works too), equal to the course's count at
every size; 04.1 and 04.2 also for float arguments (the plot evaluates them at n = r * d for fractional r),
so a formula of n and d, not a ``range(n)`` loop; 04.3 uses its ``batch`` and ``bytes_per_element`` keywords.
"""
from __future__ import annotations

import math
import numbers

import torch

from utils import cost
from utils.exercises import exercise
from utils.exercises.checking import Mistake, callable_candidate, expect

# (n, d) pairs: short and long sequences, narrow and wide models, and n != d everywhere, so that a
# count with n and d swapped cannot pass by luck.
_SIZES = [(8, 16), (100, 10), (512, 64), (3, 7), (1024, 48)]


def _number(value, what: str) -> float:
    """The candidate's result as a float; a clear Mistake if it is not a single number."""
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "size", 0) == 1:  # a NumPy scalar or 1-element array
        value = value.item()
    expect(value is not None, f"{what} returned None: did you forget a `return`?")
    expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
           f"{what} should return one number, not {type(value).__name__}.")
    expect(math.isfinite(value), f"{what} returned {value}: a count is a finite number.")
    return float(value)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _diagnose(values: dict, want: dict, mistakes: dict) -> None:
    """Raise the message of the first mistake whose count matches the candidate's at every size."""
    for message, formula in mistakes.items():
        if all(_same(values[s], formula(*s)) for s in values):
            raise Mistake(message)


def _growth(candidate, what: str, grows_in_n: float, grows_in_d: float, call) -> None:
    """Compare how the candidate grows with n (n >> d) and with d (d >> n) with how the count grows."""
    def exponent(a, b, factor=2):
        va, vb = call(candidate, *a), call(candidate, *b)
        return math.log(vb / va, factor) if va > 0 and vb > 0 else float("nan")

    def describe(k, var):
        k = round(k)
        return "does not grow" if k == 0 else f"grows like {var}" if k == 1 else f"grows like {var}^{k}"

    in_n = exponent((4096, 4), (8192, 4))
    in_d = exponent((4, 4096), (4, 8192))
    if not math.isnan(in_n) and round(in_n) != grows_in_n:
        raise Mistake(f"For long sequences (n much larger than d) your {what} {describe(in_n, 'n')}, "
                      f"but it should {describe(grows_in_n, 'n').replace('grows', 'grow')}. "
                      "Check which factors depend on n.")
    if not math.isnan(in_d) and round(in_d) != grows_in_d:
        raise Mistake(f"For wide models (d much larger than n) your {what} {describe(in_d, 'd')}, "
                      f"but it should {describe(grows_in_d, 'd').replace('grows', 'grow')}. "
                      "Check which factors depend on d.")


def _call_nd(candidate, n, d):
    return _number(candidate(n, d), "your function")


def _expect_float_sizes(candidate, reference) -> None:
    """The lesson's plot calls the count with a float n (n = r * d): it must work and agree there too."""
    n, d = 100.5, 64.0  # n / d = 1.57..., as on the plot's x axis
    try:
        value = _number(candidate(n, d), "your function")
    except Mistake:
        raise
    except Exception as err:
        raise Mistake(f"Your function fails for n = {n}, a float ({type(err).__name__}: {err}): the lesson's plot "
                      "evaluates the counts at fractional n / d. Write the count as a formula of n and d "
                      "(no `range(n)` loop, no integer-only operations).") from None
    expect(_same(value, reference(n, d)), f"Your function gives a different count for n = {n}, a float (the lesson's "
           "plot uses fractional n / d): write it as a formula of n and d, without rounding (no // or int()).")


# ----------------------------------------------------------------- 04.1 self-attention FLOPs
@exercise("04.1", "the FLOPs of a self-attention layer", reference=cost.attention_flops, difficulty=1, minutes=10, hints=[
    "Write down every matrix product with its shapes: three projections (n, d) @ (d, d), then "
    "Q K^T = (n, d) @ (d, n) and A V = (n, n) @ (n, d). A product (a, b) @ (b, c) costs 2*a*b*c FLOPs.",
    "The three projections cost 3 * 2*n*d*d together; Q K^T costs 2*n*n*d; so does A V. "
    "Leave out the scale and the softmax: the course counts matrix products only.",
    "`return 3 * 2 * n * d * d + 2 * n * n * d + 2 * n * n * d`",
])
def check_attention_flops(candidate):
    callable_candidate(candidate, "attention_flops")
    values = {s: _call_nd(candidate, *s) for s in _SIZES}
    want = {s: cost.attention_flops(*s) for s in _SIZES}
    if all(_same(values[s], want[s]) for s in _SIZES):
        _expect_float_sizes(candidate, cost.attention_flops)
        return
    ref = cost.attention_flops
    _diagnose(values, want, {
        "Your count is exactly half the course's: a multiply-add is 2 FLOPs (one multiplication, one addition), "
        "so a product (a, b) @ (b, c) costs 2*a*b*c.": lambda n, d: ref(n, d) / 2,
        "You counted the scores Q K^T but not the weighted sum A V: that is a second (n, n) @ (n, d) product, "
        "as expensive as the first.": lambda n, d: 6 * n * d * d + 2 * n * n * d,
        "You counted Q K^T and A V but not the projections Q = X W_q, K = X W_k, V = X W_v: three products "
        "(n, d) @ (d, d), the O(n d^2) part of the layer's cost.": lambda n, d: 4 * n * n * d,
        "Half the products of Q K^T and A V, and no projections: a product (a, b) @ (b, c) costs 2*a*b*c, and "
        "the projections Q, K, V are products too.": lambda n, d: 2 * n * n * d,
        "There are three projections (Q, K and V), each (n, d) @ (d, d): count all three.":
            lambda n, d: 2 * n * d * d + 4 * n * n * d,
        "There are three projections (Q, K and V), each (n, d) @ (d, d): count all three. ":
            lambda n, d: 4 * n * d * d + 4 * n * n * d,
        "The course's SelfAttention has no output projection W_O (it comes with multi-head attention in "
        "lesson 05): count Q, K and V only.": lambda n, d: 8 * n * d * d + 4 * n * n * d,
        "Q K^T has n x n entries, each a dot product of length d: its cost is 2*n*n*d, not 2*n*d. "
        "The same holds for A V.": lambda n, d: 6 * n * d * d + 4 * n * d,
        "n and d are swapped: the projections cost O(n d^2) (n positions, each multiplied by a (d, d) matrix) "
        "and Q K^T and A V cost O(n^2 d).": lambda n, d: 6 * n * n * d + 4 * n * d * d,
    })
    extra = [(values[s] - want[s]) / (s[0] ** 2) for s in _SIZES]
    if all(_same(e, round(extra[0])) for e in extra) and 1 <= round(extra[0]) <= 12:
        raise Mistake("You counted the scale and the softmax too (a few FLOPs per score, O(n^2)). That is right in "
                      "spirit, but the course counts matrix products only, as the docstring says.")
    _growth(candidate, "count", 2, 2, _call_nd)
    raise Mistake("Your count grows the right way with n and d but its constants are off. List the five "
                  "matrix products with their shapes and add 2*a*b*c for each (a, b) @ (b, c).")


# ----------------------------------------------------------------- 04.2 LSTM FLOPs
@exercise("04.2", "the FLOPs of an LSTM layer", reference=cost.lstm_flops, difficulty=1, minutes=10, hints=[
    "An LSTM step computes 4 gates (input, forget, cell candidate, output). Each gate multiplies the input "
    "x_t by one (d, d) matrix and the previous state h_{t-1} by another.",
    "One gate at one step: 2*d*d FLOPs for W_i x_t and 2*d*d for W_h h_{t-1}. Four gates per step, n steps. "
    "Leave out the biases and the sigmoids: the course counts matrix products only.",
    "`return n * 4 * (2 * d * d + 2 * d * d)`",
])
def check_lstm_flops(candidate):
    callable_candidate(candidate, "lstm_flops")
    values = {s: _call_nd(candidate, *s) for s in _SIZES}
    want = {s: cost.lstm_flops(*s) for s in _SIZES}
    if all(_same(values[s], want[s]) for s in _SIZES):
        _expect_float_sizes(candidate, cost.lstm_flops)
        return
    _diagnose(values, want, {
        "Your count is half the course's. Either a multiply-add was counted as 1 FLOP (it is 2: a product "
        "(a, b) @ (b, c) costs 2*a*b*c), or each gate has only one product: it needs two, W_i x_t (the input) and "
        "W_h h_{t-1} (the previous state).": lambda n, d: 8 * n * d * d,
        "Your count is a quarter of the course's: that is one gate, as in a plain RNN. An LSTM has 4 gates "
        "(input, forget, cell candidate, output), each with its own matrices.": lambda n, d: 4 * n * d * d,
        "An eighth of the course's count: an LSTM has 4 gates, each gate two products (input and previous state), "
        "and a multiply-add is 2 FLOPs.": lambda n, d: 2 * n * d * d,
        "That is a GRU's count (3 gates); the LSTM has 4: input, forget, cell candidate and output.":
            lambda n, d: 12 * n * d * d,
        "That is the cost of one step. The layer runs n steps, one per position.": lambda n, d: 16 * d * d,
        "Each of the n steps costs the same (it does not look at the other positions): the total grows like n, "
        "not n^2.": lambda n, d: 16 * n * n * d * d,
    })
    extra = [(values[s] - want[s]) / (s[0] * s[1]) for s in _SIZES]
    if all(_same(e, round(extra[0])) for e in extra) and 1 <= round(extra[0]) <= 64:
        raise Mistake("You counted the biases or the gate nonlinearities too (O(n d)). Right in spirit, but the "
                      "course counts matrix products only, as the docstring says.")
    _growth(candidate, "count", 1, 2, _call_nd)
    raise Mistake("Your count grows the right way with n and d but its constants are off: 4 gates, 2 products "
                  "of a (d, d) matrix with a vector per gate, 2*d*d FLOPs each, n steps.")


# ----------------------------------------------------------------- 04.3 memory of attention
_MEMORY_CASES = [(8, 16, 1, 4), (100, 10, 3, 4), (512, 64, 2, 2), (3, 7, 5, 8), (1024, 48, 1, 4)]


def _call_memory(candidate, n, d, batch=1, bytes_per_element=4):
    return _number(candidate(n, d, batch=batch, bytes_per_element=bytes_per_element), "your function")


@exercise("04.3", "the memory of naive attention", reference=cost.attention_memory, difficulty=1, minutes=10, hints=[
    "List the tensors that softmax(Q K^T / sqrt(d)) V creates, with their shapes: the scores S, the weights A "
    "and the output. Q, K and V are its inputs: they are not counted.",
    "S and A are both (batch, n, n) and exist at the same time (the softmax writes a new tensor); the output "
    "is (batch, n, d). Multiply the number of elements by bytes_per_element.",
    "`return batch * (2 * n * n + n * d) * bytes_per_element`",
])
def check_attention_memory(candidate):
    callable_candidate(candidate, "attention_memory")
    values = {c: _call_memory(candidate, *c) for c in _MEMORY_CASES}
    want = {c: cost.attention_memory(*c) for c in _MEMORY_CASES}
    if all(_same(values[c], want[c]) for c in _MEMORY_CASES):
        return
    _diagnose(values, want, {
        "You counted elements, not bytes: multiply by bytes_per_element (4 for float32).":
            lambda n, d, b, e: b * (2 * n * n + n * d),
        "You counted bits, not bytes: bytes_per_element is already in bytes.":
            lambda n, d, b, e: 8 * b * (2 * n * n + n * d) * e,
        "Use the bytes_per_element argument rather than a fixed 4: half precision has 2 bytes per element, "
        "float64 has 8.": lambda n, d, b, e: b * (2 * n * n + n * d) * 4,
        "Every sequence of the batch has its own scores, weights and output: multiply by batch.":
            lambda n, d, b, e: (2 * n * n + n * d) * e,
        "The scores S and the weights A = softmax(S) are two (n, n) tensors that exist at the same time "
        "(the softmax writes a new tensor): count both.": lambda n, d, b, e: b * (n * n + n * d) * e,
        "Count the output A V (batch, n, d) too: it is created while S and A still exist.":
            lambda n, d, b, e: b * 2 * n * n * e,
        "Q, K and V are the inputs of attention, not tensors it creates: count only S, A and the output.":
            lambda n, d, b, e: b * (2 * n * n + 4 * n * d) * e,
        "Q, K and V are the inputs of attention, not tensors it creates: count only S, A and the output. ":
            lambda n, d, b, e: b * (2 * n * n + 3 * n * d) * e,
        "The scores S = Q K^T are (n, n), one per pair of positions, not (n, d): that n x n matrix is the "
        "point of this exercise.": lambda n, d, b, e: b * 3 * n * d * e,
    })
    _growth(candidate, "memory count", 2, 1, lambda c, n, d: _call_memory(c, n, d))
    raise Mistake("Your count grows the right way with n and d but its constants are off: S and A are "
                  "(batch, n, n) each, the output (batch, n, d), times bytes_per_element.")

"""Exercises of lesson 03, queries, keys and values: 03.1 scaled dot-product attention, 03.2 the causal mask,
03.3 a padding mask from lengths, 03.4 a self-attention layer with three projections.

What the rest of the lesson (and lessons 05 to 07, which call it again) relies on; each is stated in the
skeleton's docstring or the exercise's text and checked below:

03.1 scaled_dot_product_attention(q, k, v, mask=None)
  * any number of leading batch dims; returns (output (..., Lq, d_v), weights (..., Lq, Lk)) in that order;
  * a bool mask broadcasting against the scores, True = may attend; a fully masked row gives zeros, not NaN;
  * the dtype of its inputs (the lesson compares with F.scaled_dot_product_attention in float64);
  * large scores do not overflow (softmax, not exp / sum); q, k, v and mask are not changed in place;
  * gradients reach q, k and v (the model trains through it).
03.2 causal_mask(n, device=None): (n, n) bool, True on and below the diagonal, on ``device``.
03.3 padding_mask(lengths, max_len): (B, max_len) bool, True at the real positions; lengths unchanged.
03.4 SelfAttention(d_model, d_k=None)
  * layers ``W_q``, ``W_k``, ``W_v`` = Linear(d_model, d_k, bias=False): the widget reads ``attention.W_q`` ...;
  * forward(x, mask=None) -> (output (B, L, d_k), weights (B, L, L)); gradients reach every projection.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from utils import attention
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_finite, expect_same_gradients, expect_shape, expect_tensor, instantiate)


# ----------------------------------------------------------------------------- helpers
def _same(got, want, atol=1e-5, rtol=1e-4) -> bool:
    """Same shape and values; NaN where the other has NaN (a mistake's output may hold NaN too)."""
    return (torch.is_tensor(got) and torch.is_tensor(want) and got.shape == want.shape
            and torch.allclose(got.detach().double(), want.detach().double(), atol=atol, rtol=rtol, equal_nan=True))


def _random_mask(shape, seed: int):
    """A random bool mask in which every row (query) has at least one allowed and one masked key."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) > 0.5
    Lk = shape[-1]
    allowed = torch.randint(0, Lk, (*shape[:-1], 1), generator=g)
    masked = (allowed + torch.randint(1, Lk, (*shape[:-1], 1), generator=g)) % Lk  # a different key
    mask.scatter_(-1, allowed, True)
    mask.scatter_(-1, masked, False)
    return mask


def _attend(q, k, v, mask=None, *, scale=None, fill=float("-inf"), dim=-1, mask_sign=1, after_softmax=False,
            weights_times=None):
    """Attention written the way a learner might, with one thing changed. -> (output, weights)."""
    scale = math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and not after_softmax:
        scores = scores.masked_fill(~mask if mask_sign > 0 else mask, fill)
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and after_softmax:
        weights = weights * mask  # zeroes the masked weights, but the rows no longer sum to 1
    return weights @ (v if weights_times is None else weights_times), weights


def _sdpa_mistakes(q, k, v, mask):
    """{message: (output, weights)} of realistic mistakes in scaled dot-product attention."""
    d_k, d_v = q.shape[-1], v.shape[-1]
    mistakes = {
        "The scores are not scaled: divide q @ k^T by sqrt(d_k) before the softmax. Without it the scores grow "
        "with d_k and the softmax saturates (section 2 measures it).": _attend(q, k, v, mask, scale=1.0),
        "The scores are divided by d_k; the scale is sqrt(d_k) (`math.sqrt(d_k)`), which keeps their variance "
        "near 1.": _attend(q, k, v, mask, scale=d_k),
        "The softmax runs over the wrong axis: over the queries (dim=-2). Each query's weights must sum to 1 over "
        "the keys: softmax over the last axis (dim=-1).": _attend(q, k, v, mask, dim=-2),
        "The weights are applied to the keys: the output is weights @ v, the values, not weights @ k.":
            _attend(q, k, v, mask, weights_times=k) if d_v == d_k else None,
    }
    if d_v != d_k:
        mistakes["The scale uses the size of the values; it is sqrt(d_k), d_k = q.shape[-1] = k.shape[-1]."] = \
            _attend(q, k, v, mask, scale=math.sqrt(d_v))
    if mask is not None:
        mistakes.update({
            "The mask is applied with the wrong sign: you masked the keys where the mask is True. In the course (as in "
            "F.scaled_dot_product_attention) True means *may attend*: fill the scores where the mask is False "
            "(`scores.masked_fill(~mask, float('-inf'))`).": _attend(q, k, v, mask, mask_sign=-1),
            "The mask is applied after the softmax: the masked weights are 0, but each row no longer sums to 1. "
            "Mask the *scores* with -inf before the softmax, so the softmax renormalises over the allowed keys.":
                _attend(q, k, v, mask, after_softmax=True),
            "The masked scores are filled with 0, but exp(0) = 1: a masked key still gets weight. Fill them with "
            "float('-inf'), so that exp(-inf) = 0.": _attend(q, k, v, mask, fill=0.0),
            "The mask is ignored: the masked keys still get weight. Fill their scores with float('-inf') before the "
            "softmax.": _attend(q, k, v),
            "Return the weights *after* the softmax (they sum to 1 over the keys), not the scores.":
                (_attend(q, k, v, mask)[0], (q @ k.transpose(-2, -1) / math.sqrt(d_k)).masked_fill(~mask, float("-inf"))),
        })
    else:
        mistakes["Return the weights *after* the softmax (they sum to 1 over the keys), not the scores."] = \
            (_attend(q, k, v)[0], q @ k.transpose(-2, -1) / math.sqrt(d_k))
    return mistakes


def _call_sdpa(candidate, q, k, v, mask, what):
    """Run the candidate and check that it returns (output, weights) of the right shapes."""
    inputs = [t.clone() for t in (q, k, v)] + ([mask.clone()] if mask is not None else [])
    out = candidate(q, k, v) if mask is None else candidate(q, k, v, mask)
    for name, now, then in zip(("q", "k", "v", "mask"), (q, k, v, mask), inputs):
        if not torch.equal(now, then):
            if name == "q" and torch.allclose(now, then / math.sqrt(q.shape[-1])):
                raise Mistake("Your function divided `q` itself by sqrt(d_k), in place (`q.div_(...)` or `q /= ...`): "
                              "the caller's query changes at every call. Scale the scores instead, "
                              "`q @ k.transpose(-2, -1) / math.sqrt(d_k)`, a new tensor.")
            raise Mistake(f"Your function changed its input `{name}` in place (`{name}.div_()`, `{name} /= ...`, "
                          f"`{name}.masked_fill_(...)`): the caller reuses it. Compute new tensors instead.")
    expect(isinstance(out, tuple) and len(out) == 2,
           "scaled_dot_product_attention should return a pair `(output, weights)`"
           + (", not a single tensor." if torch.is_tensor(out) else f", not {type(out).__name__}."))
    output, weights = out
    lead, Lq, Lk, d_k, d_v = q.shape[:-2], q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    want_out, want_w = (*lead, Lq, d_v), (*lead, Lq, Lk)
    expect_tensor(output, "output")
    expect_tensor(weights, "weights")
    if tuple(output.shape) == want_w and tuple(weights.shape) == want_out and want_w != want_out:
        raise Mistake("The pair is in the wrong order: return `(output, weights)`.")
    if tuple(output.shape) == (*lead, Lq, d_k) and d_k != d_v:
        raise Mistake(f"output has shape {tuple(output.shape)}, the size of the keys: the weights are applied to the "
                      "keys. The output is weights @ v, a weighted sum of the *values*.")
    if tuple(weights.shape) == (*lead, Lk, Lq) and Lq != Lk:
        raise Mistake(f"weights has shape {tuple(weights.shape)}, (..., Lk, Lq): the product is the wrong way round. "
                      "The scores are q @ k^T, one row per query: (..., Lq, Lk).")
    expect_shape(output, want_out, f"output ({what})")
    expect_shape(weights, want_w, f"weights ({what})")
    return output, weights


def _diagnose_sdpa(output, weights, q, k, v, mask, what):
    """Raise a Mistake naming the likely cause when (output, weights) differ from the reference."""
    want_out, want_w = attention.scaled_dot_product_attention(q, k, v, mask)
    if _same(output, want_out) and _same(weights, want_w):
        return
    for message, mistake in _sdpa_mistakes(q, k, v, mask).items():
        if mistake is not None and _same(output, mistake[0]) and _same(weights, mistake[1]):
            raise Mistake(message)
    expect_finite(weights, f"weights ({what})")
    expect_finite(output, f"output ({what})")
    if not _same(weights.sum(-1), torch.ones_like(want_w.sum(-1))):
        raise Mistake(f"The weights ({what}) of a query do not sum to 1 over the keys: apply the softmax to the "
                      "scores over the last axis (dim=-1), after masking.")
    if mask is not None and bool((weights.detach().abs() * ~mask).sum() > 0):
        raise Mistake(f"Some masked keys ({what}) get a non-zero weight: fill their scores with float('-inf') "
                      "before the softmax (the mask is True where attention is allowed).")
    if _same(weights, want_w):
        raise Mistake(f"The weights are right ({what}) but the output is not: it is weights @ v.")
    raise Mistake(f"The weights have the wrong values ({what}). They are softmax(q @ k^T / sqrt(d_k)) over the keys; "
                  "use k.transpose(-2, -1) so that any number of leading batch dimensions works.")


# ----------------------------------------------------------------------------- 03.1
@exercise("03.1", "scaled dot-product attention", reference=attention.scaled_dot_product_attention,
          difficulty=2, minutes=15, hints=[
    "Three steps: the scores q @ k^T / sqrt(d_k), a shape (..., Lq, Lk); the softmax over the keys (the last axis) "
    "gives the weights; the output is weights @ v. `k.transpose(-2, -1)` swaps only the last two axes, so any "
    "leading batch dimensions work.",
    "The mask is True where attention is allowed. Before the softmax, `scores.masked_fill(~mask, float('-inf'))` "
    "gives the masked keys a weight of exp(-inf) = 0, and the softmax renormalises over the others.",
    "A query whose keys are all masked has a row of -inf, and softmax gives 0/0 = NaN there. After the softmax, "
    "`weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)` gives such rows zero weights (and so a "
    "zero output).",
])
def check_sdpa(candidate):
    callable_candidate(candidate, "scaled_dot_product_attention")
    # 1. No mask, Lq != Lk and d_k != d_v, so that a transposed product or the wrong operand shows in the shapes.
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 4)
    output, weights = _call_sdpa(candidate, q, k, v, None, "no mask, q (2, 3, 8), k (2, 5, 8), v (2, 5, 4)")
    _diagnose_sdpa(output, weights, q, k, v, None, "without a mask")
    # 2. d_k == d_v, so that "weights @ k" has the right shape but the wrong values.
    q, k, v = torch.randn(3, 4, 6), torch.randn(3, 6, 6), torch.randn(3, 6, 6)
    output, weights = _call_sdpa(candidate, q, k, v, None, "no mask, d_k = d_v = 6")
    _diagnose_sdpa(output, weights, q, k, v, None, "without a mask, d_k = d_v")
    # 3. A full (B, Lq, Lk) mask; every row has an allowed and a masked key.
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 3)
    mask = _random_mask((2, 4, 6), 1)
    output, weights = _call_sdpa(candidate, q, k, v, mask, "mask (2, 4, 6)")
    _diagnose_sdpa(output, weights, q, k, v, mask, "with a (B, Lq, Lk) mask")
    # 4. Masks that broadcast: one (Lq, Lk) mask for the batch, and a (B, 1, Lk) key padding mask.
    for mask in (_random_mask((4, 6), 2), _random_mask((2, 1, 6), 3)):
        what = f"mask {tuple(mask.shape)} broadcast against the scores (2, 4, 6)"
        output, weights = _call_sdpa(candidate, q, k, v, mask, what)
        _diagnose_sdpa(output, weights, q, k, v, mask, "with a " + what)
    # 5. Any number of leading batch dimensions: none, and (B, h).
    for shape in ((), (2, 3)):
        q, k, v = torch.randn(*shape, 3, 4), torch.randn(*shape, 5, 4), torch.randn(*shape, 5, 2)
        mask = _random_mask((*shape, 3, 5), 4)
        what = f"q of shape {tuple(q.shape)}"
        try:
            output, weights = _call_sdpa(candidate, q, k, v, mask, what)
        except Mistake:
            raise
        except Exception as err:
            raise Mistake(f"Your function works with one batch dimension but fails with {what}: "
                          f"{type(err).__name__}: {err}. Use operations that work for any number of leading dimensions: "
                          "q @ k.transpose(-2, -1) (not torch.bmm, k.transpose(1, 2) or k.T) and softmax(dim=-1).") from None
        _diagnose_sdpa(output, weights, q, k, v, mask, what)
    # 6. A fully masked row: query 1 of example 0 may attend to nothing.
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    mask = _random_mask((2, 3, 5), 5)
    mask[0, 1] = False
    output, weights = _call_sdpa(candidate, q, k, v, mask, "a fully masked row")
    row_w, row_out = weights[0, 1].detach(), output[0, 1].detach()
    if torch.isnan(row_w).any() or torch.isnan(row_out).any():
        raise Mistake("A query whose keys are *all* masked (a fully masked row) gives NaN: softmax over a row of -inf "
                      "is 0/0. The course gives such a query all-zero weights and a zero output: after the softmax, "
                      "`weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)`.")
    if _same(row_w, torch.full_like(row_w, 1 / row_w.numel())):
        raise Mistake("A query whose keys are all masked spreads its weight evenly over the masked keys: you filled "
                      "the scores with a large negative number instead of float('-inf'). Elsewhere that gives the "
                      "same weights, but here the masked values leak into the output. Use float('-inf'), and give "
                      "fully masked rows zero weights: `torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)`.")
    expect(_same(row_w, torch.zeros_like(row_w)) and _same(row_out, torch.zeros_like(row_out)),
           "A query whose keys are all masked should get all-zero weights and a zero output (see the docstring).")
    _diagnose_sdpa(output, weights, q, k, v, mask, "with a fully masked row")
    # 7. float64 in, float64 out (the lesson compares with PyTorch in double precision).
    q, k, v = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    output, weights = _call_sdpa(candidate, q, k, v, _random_mask((2, 3, 5), 6), "float64 inputs")
    expect(output.dtype == torch.float64 and weights.dtype == torch.float64,
           f"With float64 inputs your function returns {output.dtype} / {weights.dtype}: keep the inputs' dtype "
           "(no torch.tensor(...) or .float() inside).")
    # 8. Large scores (a confident query): softmax is stable, exp(scores) / sum overflows to inf / inf = NaN.
    q, k, v = 40 * torch.randn(2, 3, 8), 40 * torch.randn(2, 6, 8), torch.randn(2, 6, 3)
    output, weights = _call_sdpa(candidate, q, k, v, None, "large scores (q and k scaled by 40)")
    if torch.isnan(weights).any() or torch.isinf(weights).any():
        raise Mistake("With large scores your weights are NaN or infinite: exp(score) overflows. Use torch.softmax "
                      "(it subtracts each row's maximum first).")
    _diagnose_sdpa(output, weights, q, k, v, None, "with large scores")
    # 9. The model trains through it: gradients reach q, k and v, as the course's do.
    q, k, v = (torch.randn(2, L, d, requires_grad=True) for L, d in ((3, 4), (5, 4), (5, 3)))
    mask = _random_mask((2, 3, 5), 7)
    weight = torch.randn(2, 3, 3)
    try:
        ((candidate(q, k, v, mask)[0]) * weight).sum().backward()
    except RuntimeError as err:
        if "inplace" in str(err) or "in-place" in str(err) or "does not require grad" in str(err):
            raise Mistake("Backpropagation through your attention fails: an in-place operation (`masked_fill_`, "
                          "`.div_()`, `weights[...] = 0`) changed a tensor the gradient needs, or the output was "
                          f"detached ({err}). Use out-of-place forms.") from None
        raise
    got = [t.grad for t in (q, k, v)]
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    (attention.scaled_dot_product_attention(q2, k2, v2, mask)[0] * weight).sum().backward()
    for name, g, want in zip("qkv", got, (q2.grad, k2.grad, v2.grad)):
        expect(g is not None and close(g, want, atol=1e-4, rtol=1e-3),
               f"The gradient with respect to `{name}` is wrong or missing: is something detached (.detach(), .data), "
               "or changed in place?")


# ----------------------------------------------------------------------------- 03.2
@exercise("03.2", "the causal mask", reference=attention.causal_mask, difficulty=1, minutes=5, hints=[
    "Query i may attend to keys 0, 1, ..., i (itself and the past) and not to i+1, ...: True on and below the "
    "diagonal.",
    "`torch.ones(n, n, dtype=torch.bool)` is all True; `.tril()` keeps the lower triangle, diagonal included.",
    "`torch.ones(n, n, dtype=torch.bool, device=device).tril()`",
])
def check_causal_mask(candidate):
    callable_candidate(candidate, "causal_mask")
    for n in (5, 1, 2, 7):
        got = candidate(n)
        expect_tensor(got, f"causal_mask({n})")
        expect_shape(got, (n, n), f"causal_mask({n})")
        want = attention.causal_mask(n)
        if got.dtype != torch.bool:
            if got.is_floating_point() and bool(torch.isinf(got).any()):
                raise Mistake("This is an *additive* float mask (0 where allowed, -inf where not), as "
                              "nn.Transformer.generate_square_subsequent_mask returns. The course's masks are bool, "
                              "True where attention is allowed.")
            if torch.equal(got.bool(), want):
                raise Mistake(f"The pattern is right but the dtype is {got.dtype}: return a bool tensor "
                              "(`dtype=torch.bool`); masked_fill and ~mask need one.")
            raise Mistake(f"Return a bool tensor (True = may attend), not {got.dtype}.")
        if torch.equal(got, want):
            continue
        if torch.equal(got, want.tril(-1)):
            raise Mistake("The diagonal is excluded: a query may attend to its own position (key i for query i). "
                          "Use .tril(), not .tril(-1).")
        if torch.equal(got, ~want):
            raise Mistake("True where attention is *forbidden*: that is the convention of nn.MultiheadAttention's "
                          "attn_mask and nn.Transformer. In the course (as in F.scaled_dot_product_attention) True "
                          "means *may attend*: True on and below the diagonal.")
        if torch.equal(got, want.T):
            raise Mistake("The triangle is inverted: True above the diagonal lets query i see the *future* keys "
                          "i+1, ..., n-1. Use the lower triangle (.tril()): row i = query i, column j = key j.")
        if bool(got.all()):
            raise Mistake("Nothing is masked: the future keys (above the diagonal) must be False.")
        raise Mistake(f"causal_mask({n}) should be True exactly on and below the diagonal.")
    got = candidate(3, device=torch.device("cpu"))
    expect(torch.is_tensor(got) and got.device.type == "cpu", "causal_mask(n, device) should create the mask on `device`.")


# ----------------------------------------------------------------------------- 03.3
@exercise("03.3", "a padding mask from lengths", reference=attention.padding_mask, difficulty=1, minutes=5, hints=[
    "Row b is True at positions 0 .. lengths[b] - 1 (the real tokens) and False at the padding after them.",
    "Compare the positions `torch.arange(max_len)` (shape (max_len,)) with the lengths as a column "
    "`lengths[:, None]` (shape (B, 1)): broadcasting gives (B, max_len).",
    "`torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]`",
])
def check_padding_mask(candidate):
    callable_candidate(candidate, "padding_mask")
    for lengths, max_len in (([3, 1, 4], 4), ([2, 5, 5, 1], 7), ([1], 1), ([2, 3], 3)):
        lengths = torch.tensor(lengths)
        before = lengths.clone()
        got = candidate(lengths, max_len)
        what = f"padding_mask({lengths.tolist()}, max_len={max_len})"
        expect_tensor(got, what)
        expect(torch.equal(lengths, before), "padding_mask changed `lengths` in place; leave its input unchanged.")
        B = len(lengths)
        if tuple(got.shape) == (max_len, B) and max_len != B:
            raise Mistake(f"{what} has shape {tuple(got.shape)}, (max_len, B): it should be (B, max_len), one row per "
                          "sequence. Put the lengths in a column: lengths[:, None].")
        if tuple(got.shape) == (B, int(lengths.max())) and max_len != int(lengths.max()):
            raise Mistake(f"{what} has shape {tuple(got.shape)}: use `max_len`, the padded length of the batch, not "
                          "lengths.max() (a batch may be padded further than its longest sequence).")
        expect_shape(got, (B, max_len), what)
        want = attention.padding_mask(lengths, max_len)
        if got.dtype != torch.bool:
            hint = "The pattern is right, but return" if torch.equal(got.bool(), want) else "Return"
            raise Mistake(f"{hint} a bool tensor (True at the real positions), not {got.dtype}.")
        if torch.equal(got, want):
            continue
        positions = torch.arange(max_len)[None, :]
        if torch.equal(got, ~want):
            raise Mistake("True at the *padding*: that is nn.MultiheadAttention's key_padding_mask convention (True = "
                          "ignore). In the course True means *may attend*: True at the real positions.")
        if torch.equal(got, positions <= lengths[:, None]):
            raise Mistake("One position too many: a sequence of length L has real tokens at positions 0 .. L-1. "
                          "Compare with `<`, not `<=`.")
        if torch.equal(got, positions < lengths[:, None] - 1):
            raise Mistake("One position too few: a sequence of length L has real tokens at positions 0 .. L-1, "
                          "all L of them.")
        raise Mistake(f"{what}: row b should be True at positions 0 .. lengths[b]-1 and False after.")


# ----------------------------------------------------------------------------- 03.4
def _self_attention_mistakes(ref, x, mask):
    sdpa = attention.scaled_dot_product_attention
    q, k, v = ref.W_q(x), ref.W_k(x), ref.W_v(x)
    return {
        "The weights come out transposed: you swapped the queries and the keys. Q = x W_q (self.W_q), "
        "K = x W_k (self.W_k).": sdpa(k, q, v, mask),
        "The values are not projected: V = x W_v (self.W_v), not x itself.":
            sdpa(q, k, x, mask) if x.shape[-1] == v.shape[-1] else None,
        "The keys should come from self.W_k: K = x W_k.": sdpa(q, v, v, mask) if v.shape == k.shape else None,
        "The queries, keys and values should use their own projections: Q = x W_q, K = x W_k, V = x W_v.":
            sdpa(q, q, q, mask),
        "The mask is ignored: pass it on to scaled_dot_product_attention.": sdpa(q, k, v) if mask is not None else None,
        "The scores are not scaled by 1/sqrt(d_k): call scaled_dot_product_attention (your 03.1) rather than "
        "writing the softmax again.": _attend(q, k, v, mask, scale=1.0),
    }


@exercise("03.4", "a self-attention layer", reference=attention.SelfAttention, difficulty=1, minutes=10, hints=[
    "Self-attention: the queries, keys and values are three linear maps of the *same* input x. Create "
    "`self.W_q`, `self.W_k`, `self.W_v` = `nn.Linear(d_model, d_k, bias=False)`, with d_k = d_model when it is None.",
    "forward computes Q = self.W_q(x), K = self.W_k(x), V = self.W_v(x), each (B, L, d_k), and hands them to your "
    "scaled_dot_product_attention with the mask.",
    "`d_k = d_k or d_model` in __init__; forward is one line: "
    "`return scaled_dot_product_attention(self.W_q(x), self.W_k(x), self.W_v(x), mask)`.",
])
def check_self_attention(Candidate):
    for d_model, d_k, B, L, seed in ((6, 4, 2, 5, 0), (8, None, 3, 4, 1)):
        torch.manual_seed(seed)
        ref = attention.SelfAttention(d_model, d_k)
        if d_k is not None:
            cand = instantiate(Candidate, d_model, d_k)
        else:
            try:
                cand = instantiate(Candidate, d_model)
            except TypeError as err:
                raise Mistake(f"SelfAttention({d_model}), without d_k, fails with TypeError: {err}. When d_k is None "
                              "the projections keep the model's width: `d_k = d_k or d_model`.") from None
        for name in ("W_q", "W_k", "W_v"):
            layer = getattr(cand, name, None)
            expect(not isinstance(layer, nn.Linear) or layer.bias is None,
                   f"`{name}` has a bias; the projections of this lesson have none (as W^Q, W^K, W^V in the paper): "
                   "nn.Linear(d_model, d_k, bias=False).")
        copy_weights(ref, cand, "Your SelfAttention")
        x = torch.randn(B, L, d_model)
        masks = [None, attention.causal_mask(L), attention.padding_mask(torch.tensor([L] + [L - 2] * (B - 1)), L)[:, None, :]]
        for mask in masks:
            what = "without a mask" if mask is None else f"with a mask of shape {tuple(mask.shape)}"
            out = cand(x) if mask is None else cand(x, mask)
            expect(isinstance(out, tuple) and len(out) == 2,
                   "forward should return a pair `(output, weights)`, as scaled_dot_product_attention does.")
            output, weights = out
            dk = d_k or d_model
            hint = ("It has the model's width d_model, not d_k: are the values projected (V = x W_v), and are the "
                    "projections nn.Linear(d_model, d_k)?") if tuple(getattr(output, "shape", ())) == (B, L, d_model) else ""
            expect_shape(output, (B, L, dk), f"output ({what})", hint)
            want_out, want_w = ref(x, mask)
            for message, mistake in _self_attention_mistakes(ref, x, mask).items():
                if mistake is not None and not _same(want_out, mistake[0]) and _same(output, mistake[0]) \
                        and _same(weights, mistake[1]):
                    raise Mistake(message)
            expect_close(weights, want_w, f"weights ({what})",
                         otherwise="The weights are softmax(Q K^T / sqrt(d_k)) with Q = x W_q and K = x W_k.")
            expect_close(output, want_out, f"output ({what})", otherwise="The output is weights @ V with V = x W_v.")
        expect_same_gradients(cand, ref, lambda: cand(x, masks[1])[0], lambda: ref(x, masks[1])[0], "Your SelfAttention's output")
        # A property, not only values: without positions, permuting the inputs permutes the outputs the same way.
        perm = torch.arange(L).flip(0)
        out_p, _ = cand(x[:, perm])
        expect(_same(out_p, cand(x)[0][:, perm]), "Permuting the input positions should permute the outputs the same "
               "way (self-attention has no notion of order); yours does not. Does forward depend on the positions?")

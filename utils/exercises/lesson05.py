"""Exercises of lesson 05, multi-head attention: 05.1 split_heads / merge_heads, 05.2 MultiHeadAttention.

The checks compare the learner's module with ``torch.nn.MultiheadAttention`` given the same weights
(copied across with :func:`utils.attention.copy_into_torch_mha`), on several shapes including
cross-attention (``Lq != Lk``), with every mask form of the lesson. When the values differ, they
compare with the outputs of the classic mistakes (:func:`mistaken_mha`) to name the one made.

What the rest of the lesson (and lessons 06 and 07, which build on it) relies on; each is stated in the
skeleton's docstring and checked below:

05.1 split_heads(x (B, L, D), h) -> (B, h, L, D/h), head i = features i*d .. (i+1)*d - 1 (as nn.MultiheadAttention);
     merge_heads its exact inverse (B, L, D); x unchanged; works on attention's contiguous output.
05.2 MultiHeadAttention(d_model, num_heads)
  * ``self.num_heads`` (lesson 05's heads_off, ViewBugAttention and lesson 07 read it) and four
    ``nn.Linear(d_model, d_model)`` with bias named q_proj, k_proj, v_proj, out_proj (copied into PyTorch's);
  * forward(query, key, value, mask) -> (output (B, Lq, D), weights (B, h, Lq, Lk)), equal to
    nn.MultiheadAttention for every mask form: (B, Lk), (Lq, Lk), (B, Lq, Lk), (B, 1, Lk) and 4-D;
  * a fully masked query gets zero weights and the output ``out_proj.bias`` exactly, never NaN;
  * an ambiguous 2-D mask (B == Lq > 1) raises ValueError;
  * gradients reach every projection as the course's do (the lesson trains it).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from utils import attention
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_same_gradients, expect_shape, expect_tensor, instantiate)

# --------------------------------------------------------------------------------------- 05.1
_NO_TRANSPOSE_SPLIT = ("Your heads mix positions: `x.view(B, h, L, d)` (or reshape) reads the memory in the order of "
                       "(B, L, D), so 'head 0' gets the first L*d numbers, i.e. whole positions, not a slice of features. "
                       "Split the last axis first, `x.view(B, L, h, d)`, then `.transpose(1, 2)` to (B, h, L, d).")
_STRIDED_SPLIT = ("Your heads take their features from the wrong axis order: head i got features i, i+h, i+2h, ... "
                  "(`view(B, L, d, h)`), but head i owns the contiguous block i*d .. (i+1)*d - 1: `view(B, L, h, d)`, "
                  "heads before features. (It is also what nn.MultiheadAttention does, so weights copied across must agree.)")
_NO_TRANSPOSE_MERGE = ("merge_heads mixes the heads: reshaping (B, h, L, d) straight to (B, L, h*d) puts head 0's whole "
                       "(L, d) matrix into the first positions. Transpose back to (B, L, h, d) first, then reshape.")
_STRIDED_MERGE = ("merge_heads interleaves the heads' features (head i's feature j lands at j*h + i); concatenate them "
                  "instead, head 0's d features first: `x.transpose(1, 2).reshape(B, L, h * d)`.")
_NOT_CONTIGUOUS = ("`.view` failed because after `.transpose` the tensor is not contiguous in memory: use `.reshape(...)` "
                   "(it copies when it must), or `.contiguous().view(...)`.")


def _call(fn, *args):
    """Call learner code, turning the classic `view` after `transpose` error into its explanation."""
    try:
        return fn(*args)
    except RuntimeError as err:
        if "view size is not compatible" in str(err):
            raise Mistake(_NOT_CONTIGUOUS) from None
        raise


@exercise("05.1", "split and merge the heads", reference=(attention.split_heads, attention.merge_heads),
          difficulty=1, minutes=10, hints=[
              "split_heads: the last axis D holds the h heads side by side, d = D // h features each. First cut it into "
              "(h, d), then move the head axis in front of the positions.",
              "`x.view(B, L, h, D // h)` gives (B, L, h, d); `.transpose(1, 2)` gives (B, h, L, d). Do not jump straight "
              "to `view(B, h, L, d)`: it has the right shape and the wrong numbers.",
              "merge_heads undoes it in reverse order: `x.transpose(1, 2)` back to (B, L, h, d), then `.reshape(B, L, h * d)` "
              "(`.view` fails here: the transposed tensor is not contiguous).",
          ])
def check_split_merge(candidate):
    expect(isinstance(candidate, tuple) and len(candidate) == 2,
           "Pass the pair of functions: `utils.check(\"05.1\", (split_heads, merge_heads))`.")
    split, merge = candidate
    callable_candidate(split, "split_heads")
    callable_candidate(merge, "merge_heads")
    for B, L, D, h, seed in [(2, 5, 12, 3, 0), (3, 4, 8, 2, 1), (1, 6, 16, 4, 2), (2, 3, 6, 1, 3)]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(B, L, D, generator=g)
        before = x.clone()
        d = D // h
        got = _call(split, x, h)
        expect_tensor(got, "split_heads(x, num_heads)")
        expect(torch.equal(x, before), "split_heads changed its input in place; return a new view of it instead.")
        if tuple(got.shape) == (B, L, h, d) and L != h:
            raise Mistake(f"split_heads returned shape (B, L, h, d) = {(B, L, h, d)}: the heads are cut apart but still "
                          "come after the positions. Transpose axes 1 and 2 to get (B, h, L, d).")
        expect_shape(got, (B, h, L, d), "split_heads(x, num_heads)", "It should be (B, h, L, D / h).")
        expect_close(got, attention.split_heads(x, h), "split_heads(x, num_heads)", mistakes={
            _NO_TRANSPOSE_SPLIT: x.reshape(B, h, L, d) if h > 1 else None,
            _STRIDED_SPLIT: x.reshape(B, L, d, h).permute(0, 3, 1, 2) if h > 1 else None,
        })
        # The right split, so that merge_heads is checked on its own; contiguous, as attention's output
        # `weights @ v` is (a transposed view would let a wrong `.view` in merge_heads pass here).
        heads = attention.split_heads(x, h).contiguous()
        merged = _call(merge, heads)
        expect_tensor(merged, "merge_heads(x)")
        if tuple(merged.shape) == (B, L, d) and h > 1:
            raise Mistake("merge_heads returned (B, L, d): it should concatenate the heads, (B, L, h * d), "
                          "not average or sum them; the output projection W^O mixes them afterwards.")
        expect_shape(merged, (B, L, D), "merge_heads(x)", "It should be (B, L, h * d), the inverse of split_heads.")
        expect_close(merged, x, "merge_heads(split_heads(x))", mistakes={
            _NO_TRANSPOSE_MERGE: heads.reshape(B, L, D) if h > 1 else None,
            _STRIDED_MERGE: heads.permute(0, 2, 3, 1).reshape(B, L, D) if h > 1 else None,
        }, otherwise="merge_heads should be the exact inverse of split_heads: merge_heads(split_heads(x)) == x.")
        round_trip = _call(merge, _call(split, x, h))
        expect(close(round_trip, x), "Your merge_heads(split_heads(x)) does not give x back.")


# --------------------------------------------------------------------------------------- 05.2
def mistaken_mha(ref: attention.MultiHeadAttention, query, key, value, mask=None, *, scale_width=None,
                 split_transpose=True, merge_transpose=True, out_proj=True, mask_over_heads=True, invert_mask=False):
    """What :class:`utils.attention.MultiHeadAttention` gives with one of the classic mistakes; (output, weights).

    scale_width: divide the scores by sqrt(this) instead of sqrt(d_k) (1 = no scaling);
    split_transpose / merge_transpose=False: ``view`` without the transpose; out_proj=False: no W^O;
    mask_over_heads=False: the lesson-03 mask forms used as they are (no head axis);
    invert_mask: PyTorch's convention (True = masked out). Returns None when the mistake cannot broadcast.
    """
    B, Lq, D = query.shape
    h, d = ref.num_heads, D // ref.num_heads

    def split(x):
        return attention.split_heads(x, h) if split_transpose else x.reshape(B, h, x.shape[1], d)

    q, k, v = split(ref.q_proj(query)), split(ref.k_proj(key)), split(ref.v_proj(value))
    scores = q @ k.transpose(-2, -1) / math.sqrt(scale_width or d)  # (B, h, Lq, Lk)
    if mask is not None:
        if invert_mask:
            mask = ~mask
        if mask_over_heads:
            mask = attention._head_mask(mask, B, Lq, key.shape[1])
        elif mask.shape == (B, key.shape[1]) and mask.shape != (Lq, key.shape[1]):
            mask = mask[:, None, :]  # (B, 1, Lk): right for (B, Lq, Lk) scores, misaligned against (B, h, Lq, Lk)
        try:
            scores = scores.masked_fill(~mask, float("-inf"))
        except RuntimeError:
            return None
        if scores.shape != (B, h, Lq, key.shape[1]):
            return None
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = torch.where(torch.isinf(scores).all(-1, keepdim=True), 0.0, weights)
    heads = weights @ v  # (B, h, Lq, d)
    merged = attention.merge_heads(heads) if merge_transpose else heads.reshape(B, Lq, D)
    return (ref.out_proj(merged) if out_proj else merged), weights


def _allowed(shape, g):
    """A random bool mask (True = may attend) with at least one allowed key in every row."""
    m = torch.rand(shape, generator=g) < 0.6
    m[..., 0] |= ~m.any(-1)  # no fully masked row: nn.MultiheadAttention gives NaN there
    return m


def _masks(B, Lq, Lk, h, g):
    """The lesson's mask forms (True = may attend), each with the keyword that passes it to nn.MultiheadAttention.

    PyTorch's boolean masks are the opposite (True = masked out), hence the ``~``; its 3-D attn_mask is
    (B * h, Lq, Lk), batch-major, hence the ``repeat_interleave``.
    """
    lengths = torch.randint(1, Lk + 1, (B,), generator=g)
    lengths[0] = Lk
    lengths[-1] = max(1, Lk // 2)
    pad = attention.padding_mask(lengths, Lk)  # (B, Lk)
    yield "no", None, {}
    yield "a key padding (B, Lk)", pad, {"key_padding_mask": ~pad}
    shared = attention.causal_mask(Lk)[-Lq:] if Lq <= Lk else _allowed((Lq, Lk), g)
    yield "a shared (Lq, Lk)", shared, {"attn_mask": ~shared}
    full = _allowed((B, Lq, Lk), g)
    yield "a full (B, Lq, Lk)", full, {"attn_mask": (~full).repeat_interleave(h, 0)}
    # the forms lessons 06 and 07 pass: a key padding mask with a query axis, a causal mask with a batch axis
    yield "a key padding (B, 1, Lk)", pad[:, None, :], {"key_padding_mask": ~pad}
    yield "a shared (1, Lq, Lk)", shared[None], {"attn_mask": ~shared}


_WRONG_SCALE = ("The scores are scaled by the wrong width: divide by sqrt(d_k), the width of one head "
                "(d_model / num_heads), not by sqrt(d_model).")
_NO_SCALE = "The scores are not scaled: divide Q K^T by sqrt(d_k), d_k = d_model / num_heads, as in lesson 03."
_SPLIT_NO_TRANSPOSE = ("Your heads mix positions: the split uses `view(B, h, L, d)` without the transpose. "
                       "Use split_heads (view(B, L, h, d) then transpose(1, 2)). This bug still trains, but it is not "
                       "multi-head attention: it does not match nn.MultiheadAttention.")
_MERGE_NO_TRANSPOSE = ("Your merge mixes the heads: (B, h, Lq, d) reshaped straight to (B, Lq, D) puts head 0's rows into "
                       "the first positions. Use merge_heads (transpose(1, 2) then reshape).")
_NO_OUT_PROJ = "The output projection W^O is missing: apply `self.out_proj` to the concatenated heads."
_MASK_NOT_OVER_HEADS = ("Your mask is not broadcast over the heads: a (B, Lk) or (B, Lq, Lk) mask must get a head axis "
                        "before it meets the (B, h, Lq, Lk) scores, e.g. mask[:, None, None, :] and mask[:, None]; "
                        "otherwise PyTorch lines its batch axis up with the head axis.")
_MASK_INVERTED = ("Your mask is inverted: in this course True means 'may attend' (as in F.scaled_dot_product_attention); "
                  "nn.MultiheadAttention's key_padding_mask / attn_mask use the opposite, True = masked out.")
_MASK_IGNORED = "Your module ignores the mask: masked keys must get weight 0."


def _mistakes(ref, q, k, v, mask, weights: bool):
    """{message: output (or weights) of that mistake} for expect_close; the first match names the mistake."""
    i = 1 if weights else 0
    D = q.shape[-1]
    h = ref.num_heads
    variants = {
        _WRONG_SCALE: dict(scale_width=D),
        _NO_SCALE: dict(scale_width=1),
        _SPLIT_NO_TRANSPOSE: dict(split_transpose=False),
        _MERGE_NO_TRANSPOSE: dict(merge_transpose=False),
        _NO_OUT_PROJ: dict(out_proj=False),
        _MASK_NOT_OVER_HEADS: dict(mask_over_heads=False),
        _MASK_INVERTED: dict(invert_mask=True),
    }
    if h == 1:  # with one head, the split and merge mistakes change nothing
        variants.pop(_SPLIT_NO_TRANSPOSE), variants.pop(_MERGE_NO_TRANSPOSE)
    if mask is None:
        variants.pop(_MASK_NOT_OVER_HEADS), variants.pop(_MASK_INVERTED)
    out = {}
    for message, kwargs in variants.items():
        result = mistaken_mha(ref, q, k, v, mask, **kwargs)
        out[message] = None if result is None else result[i]
    if mask is not None:
        out[_MASK_IGNORED] = mistaken_mha(ref, q, k, v, None)[i]
    return out


@exercise("05.2", "multi-head attention", reference=attention.MultiHeadAttention, difficulty=2, minutes=20, hints=[
    "In __init__: `self.num_heads = num_heads` and four `nn.Linear(d_model, d_model)` named q_proj, k_proj, v_proj, "
    "out_proj. One D x D Linear holds all h matrices W_i^Q side by side; split_heads separates them.",
    "forward: q = split_heads(self.q_proj(query), h), same for k and v; give the mask a head axis with `_head_mask`; "
    "`heads, weights = scaled_dot_product_attention(q, k, v, mask)`; return `self.out_proj(merge_heads(heads)), weights`.",
    "_head_mask: None or 4-D: unchanged; 3-D (B, Lq, Lk): `mask[:, None]`; 2-D: a (B, Lk) key padding mask becomes "
    "`mask[:, None, None, :]`, an (Lq, Lk) mask already broadcasts. When B == Lq a 2-D mask could be either: raise a "
    "ValueError rather than guess.",
])
def check_mha(Candidate):
    shapes = [  # B, Lq, Lk, D, h: self- and cross-attention, one case with B == h (a misplaced mask is silent there)
        (3, 5, 5, 12, 3, 0),
        (2, 4, 7, 8, 4, 1),
        (2, 3, 6, 8, 2, 2),
        (4, 6, 3, 16, 2, 3),
        (2, 5, 5, 6, 1, 4),
    ]
    for B, Lq, Lk, D, h, seed in shapes:
        torch.manual_seed(seed)
        ref = attention.MultiHeadAttention(D, h)
        cand = instantiate(Candidate, D, h)
        copy_weights(ref, cand, "Your MultiHeadAttention")
        expect(getattr(cand, "num_heads", None) == h,
               f"Keep the number of heads as `self.num_heads` (the docstring's name): later cells read "
               f"`module.num_heads`; yours has {getattr(cand, 'num_heads', 'no such attribute')!r}.")
        theirs = attention.copy_into_torch_mha(ref, nn.MultiheadAttention(D, h, batch_first=True))
        g = torch.Generator().manual_seed(100 + seed)
        q, k, v = torch.randn(B, Lq, D, generator=g), torch.randn(B, Lk, D, generator=g), torch.randn(B, Lk, D, generator=g)
        for form, mask, torch_masks in _masks(B, Lq, Lk, h, g):
            where = f"(B={B}, Lq={Lq}, Lk={Lk}, d_model={D}, num_heads={h}, {form} mask)"
            try:
                out = cand(q, k, v, mask)
            except NotImplementedError:
                raise
            except Exception as err:
                if mask is None:
                    raise
                raise Mistake(f"Your forward failed with {form} mask of shape {tuple(mask.shape)}: "
                              f"{type(err).__name__}: {err}\nA mask must broadcast against the weights (B, h, Lq, Lk): "
                              "give it a head axis, e.g. (B, Lk) -> mask[:, None, None, :], (B, Lq, Lk) -> mask[:, None]; "
                              "an (Lq, Lk) mask broadcasts as it is.") from None
            expect(isinstance(out, tuple) and len(out) == 2, "forward should return a pair `(output, weights)`.")
            output, weights = out
            expect_tensor(weights, "weights")
            if tuple(weights.shape) == (B, Lq, Lk) and h > 1:
                raise Mistake("weights has shape (B, Lq, Lk): return every head's weights, (B, h, Lq, Lk), not their "
                              "average (nn.MultiheadAttention's average_attn_weights=False).")
            expect_shape(weights, (B, h, Lq, Lk), f"weights {where}")
            expect_shape(output, (B, Lq, D), f"output {where}")
            want, want_weights = theirs(q, k, v, need_weights=True, average_attn_weights=False, **torch_masks)
            # The known mistakes' outputs are computed only when needed, to name the one made.
            expect_close(weights, want_weights, f"The weights {where}",
                         mistakes=None if close(weights, want_weights) else _mistakes(ref, q, k, v, mask, True),
                         otherwise="Compare with softmax(Q_i K_i^T / sqrt(d_k)) of each head.")
            expect_close(output, want, f"The output {where}",
                         mistakes=None if close(output, want) else _mistakes(ref, q, k, v, mask, False),
                         otherwise="The weights are right: check how the heads are combined (merge, then out_proj).")
        _expect_fully_masked_row(cand, ref, q, k, v)
        expect_same_gradients(cand, ref, lambda: cand(q, k, v)[0],
                              lambda: ref(q, k, v)[0], "Your MultiHeadAttention's output")
    _expect_ambiguous_mask_refused(Candidate)


def _expect_fully_masked_row(cand, ref, q, k, v) -> None:
    """A query that may attend to nothing: zero weights, output out_proj.bias exactly (the lesson asserts it)."""
    B, Lq, Lk = q.shape[0], q.shape[1], k.shape[1]
    mask = torch.ones(B, Lq, Lk, dtype=torch.bool)
    mask[0, 0] = False
    output, weights = cand(q, k, v, mask)
    if torch.isnan(weights).any() or torch.isnan(output).any():
        raise Mistake("A query whose keys are all masked gives NaN (softmax of a row of -inf is 0/0), and NaN spreads "
                      "through every later layer. Use lesson 03's scaled_dot_product_attention, which gives such a "
                      "query zero weights, instead of your own masked_fill(-inf) and softmax.")
    want_out, want_w = ref(q, k, v, mask)
    row = weights[0, :, 0].detach()
    if torch.is_tensor(row) and close(row, torch.full_like(row, 1 / Lk)):
        raise Mistake("A query whose keys are all masked spreads its weight evenly over them: the masked scores are "
                      "filled with a large negative number instead of float('-inf'), so masked values leak into its "
                      "output. Use lesson 03's scaled_dot_product_attention (it gives such a query zero weights).")
    expect(close(weights, want_w) and close(output, want_out),
           "A query whose keys are all masked should get all-zero weights in every head, so that its output is "
           "exactly out_proj's bias (as lesson 03's scaled_dot_product_attention gives); yours differs.")


def _expect_ambiguous_mask_refused(Candidate) -> None:
    """A 2-D mask when B == Lq > 1 is either a padding or a shared mask: the docstring says it raises ValueError."""
    torch.manual_seed(0)
    module = Candidate(8, 2)
    x = torch.randn(4, 4, 8)
    try:
        module(x, x, x, attention.causal_mask(4))
    except ValueError:
        return
    except Exception as err:
        raise Mistake(f"With a 2-D mask when B == Lq (here 4), your module raised {type(err).__name__}: {err}. The "
                      "docstring asks for a ValueError that says what to pass instead (mask[:, None, :] or mask[None]).") from None
    raise Mistake("A 2-D (4, 4) mask with B = Lq = 4 could be a padding mask or a shared one, and your module guessed. "
                  "The docstring asks it to raise a ValueError that says what to pass instead: `_head_mask` decides.")

"""Reference attention of lessons 03 and 05 (the exercises' solutions, and the fallback for a
learner who has not finished them).

Conventions, the same everywhere in the course:

* batch first;
* a boolean mask is ``True`` where attention is *allowed*, as in
  ``torch.nn.functional.scaled_dot_product_attention``, and broadcasts against the score shape
  ``(..., Lq, Lk)``. ``torch.nn.MultiheadAttention`` and ``torch.nn.Transformer*`` use the
  *opposite* convention (``True`` = masked out): convert with ``~mask``;
* masked scores are set to ``-inf`` before the softmax, as in the paper, so a masked key gets a
  weight of exactly 0. Many implementations use a large negative number such as ``-1e9``
  instead: the weights are the same (exp underflows to 0), except in a fully masked row, where
  ``-1e9`` spreads the weight uniformly over the masked keys and a plain softmax over ``-inf``
  gives NaN (0/0);
* a query whose keys are *all* masked gets all-zero weights and a zero output, never NaN (see
  :func:`scaled_dot_product_attention`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------- lesson 03: queries, keys, values
def scaled_dot_product_attention(q, k, v, mask=None):
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, with any number of leading batch dims.

    q (..., Lq, d_k), k (..., Lk, d_k), v (..., Lk, d_v), mask bool broadcastable to (..., Lq, Lk),
    True = may attend -> (output (..., Lq, d_v), weights (..., Lq, Lk)), in the inputs' dtype
    (float64 in, float64 out). q, k, v and mask are not changed in place.

    A fully masked row (a query with no allowed key) gets all-zero weights and therefore a zero
    output, instead of the NaN that softmax over a row of -inf gives (0/0). Recent PyTorch's
    ``F.scaled_dot_product_attention`` (2.5 and later) also returns zeros there; older versions
    return NaN, and so does ``nn.MultiheadAttention`` (checked with 2.13).
    """
    d_k = q.shape[-1]
    # Dividing by sqrt(d_k) keeps the scores' variance near 1 whatever d_k is, so the softmax
    # does not saturate (and its gradient vanish) for wide keys.
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., Lq, Lk)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), not {mask.dtype}")
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: a masked key has no weight
    weights = torch.softmax(scores, dim=-1)  # (..., Lq, Lk), each row sums to 1 over the keys
    if mask is not None:
        # A row of -inf gives NaN in the softmax; give such rows zero weights instead. The gradient
        # stays finite too: masked_fill sends no gradient back to the masked scores.
        weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)
    return weights @ v, weights  # (..., Lq, d_v), (..., Lq, Lk)


def causal_mask(n: int, device=None):
    """(n, n) bool, True on and below the diagonal: query i may attend to keys 0..i, not the future."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def padding_mask(lengths, max_len: int):
    """lengths (B,) -> (B, max_len) bool, True at the real positions, False at the padding.

    As a key mask it must broadcast against the scores: write ``mask[:, None, :]`` (B, 1, Lk) for
    scores (B, Lq, Lk), and ``mask[:, None, None, :]`` (B, 1, 1, Lk) for scores (B, h, Lq, Lk).
    """
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, max_len)


class SelfAttention(nn.Module):
    """Single-head self-attention: Q = X W_q, K = X W_k, V = X W_v, all computed from the same X.

    Layers: ``self.W_q``, ``self.W_k``, ``self.W_v``, each ``nn.Linear(d_model, d_k, bias=False)``
    (d_k = d_model when None); later cells read them by these names.

    forward(x (B, L, d_model), mask=None broadcastable to (B, L, L)) -> (output (B, L, d_k), weights (B, L, L))
    """

    def __init__(self, d_model: int, d_k: int | None = None):
        super().__init__()
        d_k = d_k or d_model
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_k, bias=False)

    def forward(self, x, mask=None):
        return scaled_dot_product_attention(self.W_q(x), self.W_k(x), self.W_v(x), mask)


# ----------------------------------------------------------------- lesson 05: several heads
def split_heads(x, num_heads: int):
    """(B, L, D) -> (B, h, L, D/h): head i gets the features i*D/h .. (i+1)*D/h - 1 of every position."""
    B, L, D = x.shape
    if D % num_heads:
        raise ValueError(f"the model width {D} is not divisible by num_heads={num_heads}")
    # view splits the last axis into (h, d); the transpose then puts heads before positions, so that
    # each head is a separate (L, d) matrix. view(B, h, L, d) instead would mix positions and heads.
    return x.view(B, L, num_heads, D // num_heads).transpose(1, 2)  # (B, h, L, d)


def merge_heads(x):
    """(B, h, L, d) -> (B, L, h*d), the exact inverse of :func:`split_heads` (concatenates the heads)."""
    B, h, L, d = x.shape
    return x.transpose(1, 2).reshape(B, L, h * d)  # reshape copies: after the transpose x is not contiguous


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    Each head works in a d_k = d_model / h dimensional subspace, so all heads together cost about
    as much as one full-width head. As in ``nn.MultiheadAttention``, the projections have biases.

    Attributes: ``self.num_heads`` (later cells read it) and four ``nn.Linear(d_model, d_model)``
    named ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``.

    forward(query (B, Lq, D), key (B, Lk, D), value (B, Lk, D), mask=None)
        -> (output (B, Lq, D), weights (B, h, Lq, Lk))

    The bool mask (True = may attend) is the same for every head and may be
      * (B, Lk): a key padding mask, e.g. from :func:`padding_mask`;
      * (Lq, Lk): one mask for the whole batch, e.g. :func:`causal_mask`;
      * (B, Lq, Lk) (or (1, Lq, Lk), (B, 1, Lk)): anything broadcasting against (B, Lq, Lk);
      * (B, h, Lq, Lk) or anything else 4-D that broadcasts against the weights.
    A 2-D mask when B == Lq > 1 could be either of the first two: that raises a ValueError asking for
    ``mask[:, None, :]`` (padding) or ``mask[None]`` (shared) instead of guessing.
    A query whose keys are all masked gets zero weights (its output is ``out_proj``'s bias), never
    NaN: lesson 03's ``scaled_dot_product_attention`` does that.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        # The h matrices W_i^Q (each D x D/h) side by side form one D x D matrix: one Linear computes
        # all heads' queries at once, and split_heads separates them. Likewise for W^K and W^V.
        self.q_proj = nn.Linear(d_model, d_model)  # [W_1^Q ... W_h^Q]
        self.k_proj = nn.Linear(d_model, d_model)  # [W_1^K ... W_h^K]
        self.v_proj = nn.Linear(d_model, d_model)  # [W_1^V ... W_h^V]
        self.out_proj = nn.Linear(d_model, d_model)  # W^O

    def forward(self, query, key, value, mask=None):
        q = split_heads(self.q_proj(query), self.num_heads)  # Q W_i^Q for every head i: (B, h, Lq, d_k)
        k = split_heads(self.k_proj(key), self.num_heads)  # (B, h, Lk, d_k)
        v = split_heads(self.v_proj(value), self.num_heads)  # (B, h, Lk, d_k)
        mask = _head_mask(mask, query.shape[0], query.shape[1], key.shape[1])
        heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, Lq, d_k), (B, h, Lq, Lk)
        return self.out_proj(merge_heads(heads)), weights  # Concat(head_1..head_h) W^O: (B, Lq, D)


def fused_attention(mha: MultiHeadAttention, query, key, value, mask=None):
    """``mha(query, key, value, mask)[0]``, computed by PyTorch's fused ``F.scaled_dot_product_attention``.

    The same function as :class:`MultiHeadAttention` (the same projections, scores, mask and softmax;
    equal up to float rounding), without the (B, h, Lq, Lk) weights: the fused kernel never stores
    them, and skips the mask's separate passes over the scores. The course's Transformer decoder and
    GPT call it while training, where nobody reads the weights: their training steps take a third to
    two thirds less time. For the weights (heatmaps, head scores), call ``mha`` itself.
    A mask with a fully masked row takes :func:`scaled_dot_product_attention`'s path (zeros, not NaN).
    """
    q = split_heads(mha.q_proj(query), mha.num_heads)  # (B, h, Lq, d_k)
    k = split_heads(mha.k_proj(key), mha.num_heads)  # (B, h, Lk, d_k)
    v = split_heads(mha.v_proj(value), mha.num_heads)  # (B, h, Lk, d_k)
    Lq, Lk = q.shape[2], k.shape[2]
    mask = _head_mask(mask, query.shape[0], Lq, Lk)
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), not {mask.dtype}")
    if mask is not None and not bool(mask.any(dim=-1).all()):
        heads, _ = scaled_dot_product_attention(q, k, v, mask)  # a query with no key at all: zero weights
    elif mask is not None and _is_causal(mask, Lq, Lk):
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the causal mask, without reading it
    else:
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # bool mask: True = may attend, as ours
    return mha.out_proj(merge_heads(heads))  # (B, Lq, D)


def _is_causal(mask, Lq: int, Lk: int) -> bool:
    """Whether ``mask`` is causal_mask(Lq), with only broadcast (size-1) leading dimensions."""
    return (Lq == Lk and tuple(mask.shape[-2:]) == (Lq, Lk) and all(s == 1 for s in mask.shape[:-2])
            and torch.equal(mask.reshape(Lq, Lk), causal_mask(Lq, device=mask.device)))


def _head_mask(mask, B: int, Lq: int, Lk: int):
    """Give a mask of :class:`MultiHeadAttention` a head axis, so that it broadcasts against (B, h, Lq, Lk)."""
    if mask is None or mask.dim() == 4:
        return mask
    if mask.dim() == 3:
        return mask[:, None]  # (B, 1, Lq, Lk): the same for every head
    if mask.dim() != 2:
        raise ValueError(f"mask must have 2, 3 or 4 dimensions, not shape {tuple(mask.shape)}")
    is_padding, is_shared = mask.shape == (B, Lk), mask.shape == (Lq, Lk)
    if is_padding and is_shared and B > 1:
        raise ValueError(f"a 2-D mask of shape {tuple(mask.shape)} is ambiguous when batch size = query length = {B}: "
                         "pass mask[:, None, :] for a (B, Lk) key padding mask, or mask[None] for an (Lq, Lk) mask")
    if is_padding:
        return mask[:, None, None, :]  # (B, 1, 1, Lk): for every head and every query
    if is_shared:
        return mask  # (Lq, Lk) already broadcasts against (B, h, Lq, Lk)
    raise ValueError(f"a 2-D mask must be (B, Lk) = {(B, Lk)} or (Lq, Lk) = {(Lq, Lk)}, not {tuple(mask.shape)}")


@torch.no_grad()
def copy_into_torch_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> nn.MultiheadAttention:
    """Copy our weights into ``nn.MultiheadAttention(d_model, num_heads, batch_first=True)``; returns ``theirs``.

    PyTorch stacks the three input projections into one matrix ``in_proj_weight`` (3D, D) = [W^Q; W^K; W^V]
    and one ``in_proj_bias`` (3D,). Call it as
    ``theirs(query, key, value, key_padding_mask=~pad, attn_mask=~mask, need_weights=True,
    average_attn_weights=False)``: its boolean masks are True where attention is *not* allowed.
    """
    if theirs.in_proj_weight is None or theirs.in_proj_bias is None:
        raise ValueError("theirs must have kdim = vdim = embed_dim and bias=True")
    if theirs.num_heads != ours.num_heads or theirs.embed_dim != ours.q_proj.in_features:
        raise ValueError("theirs must have the same embed_dim and num_heads as ours")
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    theirs.out_proj.bias.copy_(ours.out_proj.bias)
    return theirs

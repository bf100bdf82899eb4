"""Lesson 03's checks accept the reference and name realistic mistakes; a fully masked row never crashes them."""
import math

import pytest
import torch
import torch.nn as nn

import utils
from utils import attention
from utils.exercises import get
from check_helpers import fails_with


def passes(id, candidate):
    result = utils.check(id, candidate)
    assert result, result.message


# ---- 03.1 scaled dot-product attention
def sdpa_variant(scale="sqrt", softmax_dim=-1, fill=float("-inf"), mask_mode="before", times="v",
                 zero_empty_rows=True, transpose=lambda k: k.transpose(-2, -1), order="ow", return_scores=False):
    """A learner's attention with one thing changed (the defaults give a correct version)."""
    def f(q, k, v, mask=None):
        d_k = q.shape[-1]
        scores = q @ transpose(k)
        if scale == "sqrt":
            scores = scores / math.sqrt(d_k)
        elif scale == "d":
            scores = scores / d_k
        elif scale == "dv":
            scores = scores / math.sqrt(v.shape[-1])
        if mask is not None and mask_mode == "before":
            scores = scores.masked_fill(~mask, fill)
        elif mask is not None and mask_mode == "wrong sign":
            scores = scores.masked_fill(mask, fill)
        weights = torch.softmax(scores, dim=softmax_dim)
        if mask is not None and mask_mode == "after":
            weights = weights.masked_fill(~mask, 0.0)
        if mask is not None and zero_empty_rows:
            weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)
        output = weights @ (v if times == "v" else k)
        if return_scores:
            weights = scores
        return (output, weights) if order == "ow" else (weights, output)
    return f


def test_sdpa_reference_and_a_correct_variant_pass():
    passes("03.1", attention.scaled_dot_product_attention)
    passes("03.1", sdpa_variant())
    # PyTorch's own attention, given the weights through an identity matrix of values, is also correct
    import torch.nn.functional as F

    def via_torch(q, k, v, mask=None):
        eye = torch.eye(k.shape[-2], dtype=q.dtype).expand(*k.shape[:-2], k.shape[-2], k.shape[-2])
        weights = F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)
        return weights @ v, weights

    passes("03.1", via_torch)


@pytest.mark.parametrize("variant, phrase", [
    (sdpa_variant(scale="none"), "not scaled"),
    (sdpa_variant(scale="d"), "divided by d_k"),
    (sdpa_variant(scale="dv"), "size of the values"),
    (sdpa_variant(softmax_dim=-2), "wrong axis"),
    (sdpa_variant(mask_mode="wrong sign"), "wrong sign"),
    (sdpa_variant(mask_mode="after"), "after the softmax"),
    (sdpa_variant(fill=0.0), "filled with 0"),
    (sdpa_variant(mask_mode="ignored"), "mask is ignored"),
    (sdpa_variant(times="k"), "applied to the keys"),
    (sdpa_variant(order="wo"), "wrong order"),
    (sdpa_variant(return_scores=True), "after* the softmax"),
    (sdpa_variant(transpose=lambda k: k.transpose(1, 2)), "k.transpose(-2, -1)"),
    (sdpa_variant(zero_empty_rows=False), "fully masked row"),
    (sdpa_variant(fill=-1e9, zero_empty_rows=False), "large negative number"),
])
def test_sdpa_mistakes_are_named(variant, phrase):
    fails_with("03.1", variant, phrase)


def test_sdpa_weights_applied_to_keys_is_named_by_value_too():
    """With d_k == d_v, weights @ k has the right shape: the values must name it."""
    from utils.exercises.lesson03 import _attend, _diagnose_sdpa
    from utils.exercises.checking import Mistake

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    out, w = _attend(q, k, v, weights_times=k)
    with pytest.raises(Mistake, match="applied to the keys"):
        _diagnose_sdpa(out, w, q, k, v, None, "test")


def test_sdpa_check_never_crashes():
    def nan_everywhere(q, k, v, mask=None):
        w = torch.full((*q.shape[:-1], k.shape[-2]), float("nan"))
        return w @ v, w

    fails_with("03.1", nan_everywhere, "NaN")
    fails_with("03.1", lambda q, k, v, mask=None: q, "pair")
    fails_with("03.1", lambda q, k, v, mask=None: (None, None), "torch.Tensor")
    fails_with("03.1", 3, "function")
    result = utils.check("03.1", lambda q, k, v, mask=None: (q @ k, q))  # a shape error in the learner's code
    assert not result and "RuntimeError" in result.message


def test_unfilled_skeleton_is_not_attempted():
    def scaled_dot_product_attention(q, k, v, mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()

    assert utils.check("03.1", scaled_dot_product_attention).status == "not attempted"


# ---- 03.2 causal mask
@pytest.mark.parametrize("candidate, phrase", [
    (lambda n, device=None: torch.ones(n, n, dtype=torch.bool).tril(-1), "diagonal is excluded"),
    (lambda n, device=None: torch.ones(n, n, dtype=torch.bool).triu(), "triangle is inverted"),
    (lambda n, device=None: torch.ones(n, n, dtype=torch.bool).triu(1), "forbidden"),
    (lambda n, device=None: torch.ones(n, n).tril(), "dtype"),
    (lambda n, device=None: torch.full((n, n), float("-inf")).triu(1), "additive"),
    (lambda n, device=None: torch.ones(n, n, dtype=torch.bool), "nothing is masked"),
    (lambda n, device=None: torch.ones(n, n + 1, dtype=torch.bool).tril(), "shape"),
])
def test_causal_mask_mistakes_are_named(candidate, phrase):
    fails_with("03.2", candidate, phrase)


def test_causal_mask_signature():
    result = utils.check("03.2", lambda n: torch.ones(n, n, dtype=torch.bool).tril())  # no device argument
    assert not result and "TypeError" in result.message
    passes("03.2", lambda n, device=None: torch.tril(torch.ones(n, n, device=device)).bool())


# ---- 03.3 padding mask
@pytest.mark.parametrize("candidate, phrase", [
    (lambda lengths, max_len: torch.arange(max_len)[None, :] >= lengths[:, None], "key_padding_mask"),
    (lambda lengths, max_len: torch.arange(max_len)[None, :] <= lengths[:, None], "too many"),
    (lambda lengths, max_len: torch.arange(max_len)[None, :] < lengths[:, None] - 1, "too few"),
    (lambda lengths, max_len: torch.arange(max_len)[:, None] < lengths[None, :], "(max_len, b)"),
    (lambda lengths, max_len: torch.arange(int(lengths.max()))[None, :] < lengths[:, None], "max_len"),
    (lambda lengths, max_len: (torch.arange(max_len)[None, :] < lengths[:, None]).float(), "bool"),
])
def test_padding_mask_mistakes_are_named(candidate, phrase):
    fails_with("03.3", candidate, phrase)


def test_padding_mask_in_place_is_named():
    def in_place(lengths, max_len):
        lengths -= 0  # harmless
        mask = torch.arange(max_len)[None, :] < lengths[:, None]
        lengths.zero_()
        return mask

    fails_with("03.3", in_place, "in place")


# ---- 03.4 self-attention
class _Base(nn.Module):
    def __init__(self, d_model, d_k=None):
        super().__init__()
        d_k = d_k or d_model
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_k, bias=False)


sdpa = attention.scaled_dot_product_attention


class SwappedQK(_Base):
    def forward(self, x, mask=None):
        return sdpa(self.W_k(x), self.W_q(x), self.W_v(x), mask)


class UnprojectedValues(_Base):
    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), x, mask)


class IgnoresMask(_Base):
    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), self.W_v(x))


class OneProjection(_Base):
    def forward(self, x, mask=None):
        q = self.W_q(x)
        return sdpa(q, q, q, mask)


class Unscaled(_Base):
    def forward(self, x, mask=None):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        scores = (q @ k.transpose(-2, -1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = scores.softmax(-1)
        return w @ v, w


class WithBias(nn.Module):
    def __init__(self, d_model, d_k=None):
        super().__init__()
        d_k = d_k or d_model
        self.W_q, self.W_k, self.W_v = (nn.Linear(d_model, d_k) for _ in range(3))

    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), self.W_v(x), mask)


class NoDefaultWidth(nn.Module):
    def __init__(self, d_model, d_k=None):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_k, bias=False)

    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), self.W_v(x), mask)


def test_self_attention_mistakes_are_named():
    passes("03.4", attention.SelfAttention)
    fails_with("03.4", SwappedQK, "swapped the queries and the keys")
    fails_with("03.4", UnprojectedValues, "are the values projected")  # d_k != d_model: the shape names it ...
    fails_with("03.4", IgnoresMask, "mask is ignored")
    fails_with("03.4", OneProjection, "own projections")
    fails_with("03.4", Unscaled, "not scaled")
    fails_with("03.4", WithBias, "bias=False")
    fails_with("03.4", NoDefaultWidth, "d_k = d_k or d_model")
    fails_with("03.4", attention.SelfAttention(4), "class itself")


def test_unprojected_values_are_named_when_the_shapes_agree():
    from utils.exercises.lesson03 import _self_attention_mistakes

    torch.manual_seed(0)
    ref = attention.SelfAttention(4)
    x = torch.randn(2, 3, 4)
    mistakes = _self_attention_mistakes(ref, x, None)
    assert any("not projected" in m for m in mistakes if mistakes[m] is not None)


def test_every_lesson03_exercise_has_three_hints():
    for id in ("03.1", "03.2", "03.3", "03.4"):
        assert len(get(id).hints) == 3


@pytest.mark.parametrize("candidate", [None, 42, "text", lambda *a, **k: None, lambda *a, **k: float("nan"), SystemExit,
                                       lambda *a, **k: (torch.zeros(1), torch.zeros(1))])
@pytest.mark.parametrize("id", ["03.1", "03.2", "03.3", "03.4"])
def test_check_never_raises(id, candidate):
    result = utils.check(id, candidate)
    assert not result and result.message


# ---- issue 14: each reliance of 03.1 and 03.4 is checked
def _sdpa_with(*, div_q=False, dtype=None, manual_exp=False, inplace_weights=False):
    def sdpa(q, k, v, mask=None):
        if div_q:
            q.div_(math.sqrt(q.shape[-1]))
            scores = q @ k.transpose(-2, -1)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if dtype is not None:
            scores = scores.to(dtype)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        if manual_exp:
            e = torch.exp(scores)
            weights = e / e.sum(-1, keepdim=True)
        else:
            weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            if inplace_weights:
                weights.masked_fill_(~mask.any(dim=-1, keepdim=True), 0.0)  # softmax's backward needs its output
            else:
                weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)
        weights = torch.nan_to_num(weights) if manual_exp and mask is not None else weights
        return weights @ v.to(weights.dtype), weights
    return sdpa


def test_sdpa_reliances():
    assert utils.check("03.1", _sdpa_with())
    fails_with("03.1", _sdpa_with(div_q=True), "divided `q` itself")
    fails_with("03.1", _sdpa_with(dtype=torch.float32), "keep the inputs' dtype")
    fails_with("03.1", _sdpa_with(manual_exp=True), "exp(score) overflows")
    fails_with("03.1", _sdpa_with(inplace_weights=True), "in-place operation")


class _DetachedSelfAttention(attention.SelfAttention):
    def forward(self, x, mask=None):
        return attention.scaled_dot_product_attention(self.W_q(x), self.W_k(x).detach(), self.W_v(x), mask)


def test_self_attention_gradients_reach_every_projection():
    fails_with("03.4", _DetachedSelfAttention, "W_k.weight")

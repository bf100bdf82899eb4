"""Lesson 05's checks accept the reference and name realistic mistakes of split/merge and multi-head attention."""
import math

import pytest
import torch
import torch.nn as nn

import utils
from utils import attention
from utils.attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from check_helpers import fails_with


# ---- 05.1 split and merge
def split_no_transpose(x, num_heads):
    B, L, D = x.shape
    return x.view(B, num_heads, L, D // num_heads)


def split_strided(x, num_heads):  # head i gets features i, i+h, ...
    B, L, D = x.shape
    return x.view(B, L, D // num_heads, num_heads).permute(0, 3, 1, 2)


def split_forgot_transpose(x, num_heads):
    B, L, D = x.shape
    return x.view(B, L, num_heads, D // num_heads)


def merge_no_transpose(x):
    B, h, L, d = x.shape
    return x.reshape(B, L, h * d)


def merge_strided(x):
    B, h, L, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, L, h * d)


def merge_view(x):
    B, h, L, d = x.shape
    return x.transpose(1, 2).view(B, L, h * d)


def merge_mean(x):
    return x.mean(1)


def test_split_merge_reference_passes():
    assert utils.check("05.1", (split_heads, merge_heads))


def test_split_merge_mistakes():
    fails_with("05.1", (split_no_transpose, merge_heads), "view(B, L, h, d)")
    fails_with("05.1", (split_no_transpose, merge_no_transpose), "heads mix positions")  # a consistent pair still fails
    fails_with("05.1", (split_strided, merge_heads), "wrong axis")
    fails_with("05.1", (split_forgot_transpose, merge_heads), "transpose axes 1 and 2")
    fails_with("05.1", (split_heads, merge_no_transpose), "merge_heads mixes the heads")
    fails_with("05.1", (split_heads, merge_strided), "interleaves")
    fails_with("05.1", (split_heads, merge_view), "not contiguous")
    fails_with("05.1", (split_heads, merge_mean), "concatenate the heads")
    fails_with("05.1", split_heads, "pair of functions")
    fails_with("05.1", (split_heads, 3), "merge_heads")


def test_split_that_modifies_its_input_is_named():
    def split_in_place(x, num_heads):
        out = split_heads(x.clone(), num_heads)
        x.zero_()
        return out

    fails_with("05.1", (split_in_place, merge_heads), "in place")


def test_unfilled_split_reads_not_attempted():
    def split(x, num_heads):
        raise NotImplementedError()

    def merge(x):
        # YOUR CODE HERE
        raise NotImplementedError()

    assert utils.check("05.1", (split, merge)).status == "not attempted"
    # half done: merge_heads written, split_heads still the skeleton -> a fail that says which part raises
    fails_with("05.1", (split, merge_heads), "still raises NotImplementedError")


# ---- 05.2 multi-head attention
class Buggy(MultiHeadAttention):
    """The reference with one switchable mistake (the checks know nothing of this class)."""

    scale_by = "d_k"
    split_transpose = merge_transpose = use_out_proj = True
    mask_mode = "heads"
    average = False

    def forward(self, query, key, value, mask=None):
        B, Lq, D = query.shape
        h = self.num_heads
        split = (lambda x: split_heads(x, h)) if self.split_transpose else (lambda x: x.view(B, h, x.shape[1], D // h))
        q, k, v = split(self.q_proj(query)), split(self.k_proj(key)), split(self.v_proj(value))
        if mask is not None:
            if self.mask_mode == "heads":
                mask = attention._head_mask(mask, B, Lq, key.shape[1])
            elif self.mask_mode == "lesson03":  # padding as (B, 1, Lk), full as it is: no head axis
                mask = mask[:, None, :] if mask.shape == (B, key.shape[1]) else mask
            elif self.mask_mode == "inverted":
                mask = attention._head_mask(~mask, B, Lq, key.shape[1])
            elif self.mask_mode == "ignored":
                mask = None
        if self.scale_by == "d_model":
            q = q * math.sqrt(D // h) / math.sqrt(D)  # the same as dividing the scores by sqrt(D)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        merged = merge_heads(heads) if self.merge_transpose else heads.reshape(B, Lq, D)
        out = self.out_proj(merged) if self.use_out_proj else merged
        return out, (weights.mean(1) if self.average else weights)


def bug(**kwargs):
    return type("BuggyMHA", (Buggy,), kwargs)


def test_mha_reference_passes():
    assert utils.check("05.2", MultiHeadAttention)
    assert utils.check("05.2", Buggy)  # the harness itself is right when no mistake is switched on


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(scale_by="d_model"), "wrong width"),
    (dict(split_transpose=False), "without the transpose"),
    (dict(merge_transpose=False), "your merge mixes the heads"),
    (dict(use_out_proj=False), "output projection"),
    (dict(mask_mode="lesson03"), "not broadcast over the heads"),
    (dict(mask_mode="inverted"), "inverted"),
    (dict(mask_mode="ignored"), "ignores the mask"),
    (dict(average=True), "not their average"),
])
def test_mha_mistakes(kwargs, phrase):
    fails_with("05.2", bug(**kwargs), phrase)


def test_mask_passed_without_head_axis_that_cannot_broadcast_is_explained():
    class RawMask(MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            h = self.num_heads
            q, k, v = (split_heads(p(x), h) for p, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
            heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, Lk) meets (B, h, Lq, Lk) as (Lq, Lk)
            return self.out_proj(merge_heads(heads)), weights

    fails_with("05.2", RawMask, "head axis")


def test_unscaled_scores_are_named():
    class NoScale(MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            h = self.num_heads
            q, k, v = (split_heads(p(x), h) for p, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
            q = q * math.sqrt(q.shape[-1])
            heads, weights = scaled_dot_product_attention(q, k, v, attention._head_mask(mask, query.shape[0], query.shape[1], key.shape[1]))
            return self.out_proj(merge_heads(heads)), weights

    fails_with("05.2", NoScale, "not scaled")


def test_wrong_layer_names_and_instances_are_named():
    class OtherNames(nn.Module):
        def __init__(self, d_model, num_heads):
            super().__init__()
            self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    fails_with("05.2", OtherNames, "same names")
    fails_with("05.2", MultiHeadAttention(8, 2), "class itself")


def test_large_negative_instead_of_minus_inf_is_named():
    class LargeNegative(MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            h = self.num_heads
            q, k, v = (split_heads(p(x), h) for p, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~attention._head_mask(mask, query.shape[0], query.shape[1], key.shape[1]), -1e9)
            weights = scores.softmax(-1)
            return self.out_proj(merge_heads(weights @ v)), weights

    # the lesson asserts that a fully masked query's output is exactly out_proj's bias: -1e9 spreads its weight
    fails_with("05.2", LargeNegative, "large negative number")


def test_unfilled_mha_reads_not_attempted():
    class Skeleton(nn.Module):
        def __init__(self, d_model, num_heads):
            super().__init__()
            raise NotImplementedError()

    assert utils.check("05.2", Skeleton).status == "not attempted"


def test_use_falls_back_for_a_wrong_pair():
    chosen = utils.use("05.1", (split_no_transpose, merge_heads))
    assert chosen == (split_heads, merge_heads)


# ---- issue 14: each reliance of 05.2 is checked
def test_heads_attribute_is_required_by_name():
    class H(MultiHeadAttention):
        def __init__(self, d_model, num_heads):
            super().__init__(d_model, num_heads)
            self.h = self.__dict__.pop("num_heads")

        def forward(self, query, key, value, mask=None):
            self.num_heads = self.h
            try:
                return super().forward(query, key, value, mask)
            finally:
                del self.num_heads

    fails_with("05.2", H, "self.num_heads")


def test_own_masking_without_the_fully_masked_guard_is_named():
    class OwnSoftmax(MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            h = self.num_heads
            q, k, v = (split_heads(p(x), h) for p, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~attention._head_mask(mask, query.shape[0], query.shape[1], key.shape[1]),
                                            float("-inf"))
            weights = scores.softmax(-1)
            return self.out_proj(merge_heads(weights @ v)), weights

    fails_with("05.2", OwnSoftmax, "gives NaN")


def test_an_ambiguous_mask_must_be_refused():
    class Guesses(MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            if mask is not None and mask.dim() == 2 and mask.shape == (query.shape[0], key.shape[1]) \
                    and query.shape[0] == query.shape[1]:
                mask = mask[:, None, :]  # guesses "padding"
            return super().forward(query, key, value, mask)

    fails_with("05.2", Guesses, "ValueError")


def test_split_heads_must_leave_its_input():
    def split(x, num_heads):
        B, L, D = x.shape
        out = x.view(B, L, num_heads, D // num_heads).transpose(1, 2)
        x.mul_(1.0).add_(0.0)  # harmless
        x[0, 0, 0] += 1.0  # but changes the caller's tensor
        return out

    fails_with("05.1", (split, merge_heads), "in place")


def test_the_mask_forms_of_lessons_06_and_07_are_checked():
    """Lessons 06 and 07 pass (B, 1, Lk) and (1, Lq, Lk) masks: a module that takes only (B, Lq, Lk) fails."""
    class OnlyFull3D(MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            if mask is not None and mask.dim() == 3 and mask.shape != (query.shape[0], query.shape[1], key.shape[1]):
                raise ValueError("a 3-D mask must be (B, Lq, Lk)")
            return super().forward(query, key, value, mask)

    result = fails_with("05.2", OnlyFull3D, "(B, 1, Lk) mask")
    assert "ValueError" in result.message

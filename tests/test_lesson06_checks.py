"""Lesson 06's checks accept the reference and name realistic mistakes."""
import math

import pytest
import torch
import torch.nn as nn

import utils
from utils.transformer import EncoderLayer, copy_into_torch_encoder_layer, layer_norm, sinusoidal_positional_encoding
from check_helpers import fails_with


def test_references_pass():
    assert utils.check("06.1", sinusoidal_positional_encoding)
    assert utils.check("06.2", layer_norm)
    assert utils.check("06.3", EncoderLayer)


# ---- 06.1 sinusoidal positional encoding
def _pe(P, D, *, base=10000, first=0, swap=False, halves=False, exponent="2i/d"):
    """A learner's implementation, with one realistic mistake switched on (float32, as a learner writes it)."""
    pos = torch.arange(first, first + P, dtype=torch.float32)[:, None]
    if exponent == "i/d":
        angles = pos / base ** (torch.arange(D // 2) / D)
    elif exponent == "times":
        angles = pos * base ** (torch.arange(0, D, 2) / D)
    else:
        angles = pos / base ** (torch.arange(0, D, 2) / D)
    even, odd = (torch.cos(angles), torch.sin(angles)) if swap else (torch.sin(angles), torch.cos(angles))
    if halves:
        return torch.cat([even, odd], dim=1)
    pe = torch.zeros(P, D)
    pe[:, 0::2], pe[:, 1::2] = even, odd
    return pe


def _pe_per_feature_exponent(P, D):
    pos = torch.arange(P, dtype=torch.float32)[:, None]
    angles = pos / 10000 ** (torch.arange(D) / D)  # (P, D): the cos feature gets (2i+1)/d
    pe = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, 1::2])
    return pe


@pytest.mark.parametrize("candidate, phrase", [
    (lambda P, D: _pe(P, D, swap=True), "swapped"),
    (lambda P, D: _pe(P, D, halves=True), "interleaves"),
    (lambda P, D: _pe(P, D, halves=True, swap=True), "halves *and* swapped"),
    (lambda P, D: _pe(P, D, first=1), "counted from 1"),
    (lambda P, D: _pe(P, D, exponent="i/d"), "pair index"),
    (_pe_per_feature_exponent, "(2i+1)/d_model"),
    (lambda P, D: _pe(P, D, exponent="times"), "do not multiply"),
    (lambda P, D: _pe(P, D, base=1000), "not 1000"),
    (lambda P, D: _pe(P, D, base=math.e), "base of the exponent"),
    (lambda P, D: _pe(P, D).T, "rows should be positions"),
    (lambda P, D: torch.arange(P * D).reshape(P, D), "float tensor"),
    (lambda P, D: _pe(P, D).double(), "return torch.float32"),
    (lambda P, D: _pe(P, D).numpy(), "should be a torch.tensor"),
    (lambda P, D: _pe(P, D)[:, :-1], "expected"),
    (lambda P, D: _pe(P, D) * 2, "first two features"),
    (lambda P, D: torch.cat([_pe(P, D)[:, :2], _pe(P, D)[:, 2:] * 0.5], 1), "first pair"),
    (lambda P, D: None, "forget a `return`"),
])
def test_positional_encoding_mistakes(candidate, phrase):
    fails_with("06.1", candidate, phrase)


# ---- 06.2 layer_norm
def _ln(x, weight, bias, eps=1e-5, *, dim=-1, unbiased=False, eps_at="var", affine="right"):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, unbiased=unbiased, keepdim=True)
    xhat = {"var": lambda: (x - mean) / torch.sqrt(var + eps),
            "std": lambda: (x - mean) / (torch.sqrt(var) + eps),
            "fixed": lambda: (x - mean) / torch.sqrt(var + 1e-5)}[eps_at]()
    return {"right": lambda: xhat * weight + bias, "none": lambda: xhat, "weight only": lambda: xhat * weight,
            "swapped": lambda: xhat * bias + weight, "shift first": lambda: (xhat + bias) * weight}[affine]()


def _ln_affine_first(x, weight, bias, eps=1e-5):
    return _ln(x * weight + bias, 1.0, 0.0, eps)


@pytest.mark.parametrize("candidate, phrase", [
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, dim=0), "that is batchnorm"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, dim=tuple(range(x.dim()))), "every element"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, dim=-2), "over the sequence"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, unbiased=True), "the *biased* variance"),
    (lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * w + b, "the *biased* variance"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, eps_at="std"), "*inside* the square root"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, eps_at="fixed"), "`eps` argument"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine="none"), "affine parameters are ignored"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine="weight only"), "add `bias`"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine="swapped"), "swapped"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine="shift first"), "shift is added before"),
    (_ln_affine_first, "*after* normalising"),
    (lambda x, w, b, eps=1e-5: x.sub_(x.mean(-1, keepdim=True)), "in place"),
    (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps)[..., :1], "shape"),
])
def test_layer_norm_mistakes(candidate, phrase):
    fails_with("06.2", candidate, phrase)


def test_layer_norm_check_accepts_equivalent_formulations():
    assert utils.check("06.2", lambda x, w, b, eps=1e-5: nn.functional.layer_norm(x, x.shape[-1:], w, b, eps))
    assert utils.check("06.2", lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True))
                       * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps) * w + b)


# ---- 06.3 the encoder block
class _Block(EncoderLayer):
    """EncoderLayer with one realistic mistake in forward (the __init__ of the skeleton is kept)."""

    mistake = None

    def forward(self, x, mask=None):
        m, sa, ff, n1, n2 = self.mistake, self._sa, self.ff, self.norm1, self.norm2
        if m == "norms swapped":
            n1, n2 = n2, n1
        if m == "no mask":
            mask = None
        pre = (not self.norm_first) if m in ("ignores flag", "always pre") else self.norm_first
        if m == "always pre":
            pre = True
        if m == "always post":
            pre = False
        if pre:
            if m == "norm inside":
                x = x + n1(sa(x, mask))
                return x + n2(ff(x))
            if m == "norm residual":
                h = n1(x)
                x = h + sa(h, mask)
                h = n2(x)
                return h + ff(h)
            x = (x if m != "no attn residual" else 0) + sa(n1(x), mask)
            return (x if m != "no ff residual" else 0) + ff(n2(x))
        if m == "norm inside":
            x = x + n1(sa(x, mask))
            return x + n2(ff(x))
        x = n1((x if m != "no attn residual" else 0) + sa(x, mask))
        return n2((x if m != "no ff residual" else 0) + ff(x))


def _mutant(mistake):
    return type(f"Block_{mistake.replace(' ', '_')}", (_Block,), {"mistake": mistake})


@pytest.mark.parametrize("mistake, phrase", [
    ("no attn residual", "residual connection around self-attention is missing"),
    ("no ff residual", "residual connection around the feed-forward sublayer is missing"),
    ("always post", "with norm_first=true your block computes post-ln"),
    ("always pre", "with norm_first=false your block computes pre-ln"),
    ("ignores flag", "read `self.norm_first`"),
    ("norm inside", "layernorm goes on the sublayer's *input*"),
    ("norm residual", "the residual path carries x itself"),
    ("norms swapped", "norm1 and norm2 are swapped"),
    ("no mask", "padding mask is not passed"),
])
def test_encoder_block_mistakes(mistake, phrase):
    fails_with("06.3", _mutant(mistake), phrase)


def test_post_ln_with_the_norm_inside_is_named():
    class PreCorrectPostSandwich(_Block):
        def forward(self, x, mask=None):
            if self.norm_first:
                return EncoderLayer.forward(self, x, mask)
            x = x + self.norm1(self._sa(x, mask))
            return x + self.norm2(self.ff(x))

    fails_with("06.3", PreCorrectPostSandwich, "in post-ln the layernorm comes *after* the residual sum")


def test_encoder_block_shape_names_and_instance():
    class Renamed(nn.Module):
        def __init__(self, d_model, num_heads, d_ff, norm_first=True):
            super().__init__()
            self.attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)

        def forward(self, x, mask=None):
            return x

    fails_with("06.3", Renamed, "same names")
    fails_with("06.3", EncoderLayer(8, 2, 8), "class itself")

    class Squeezed(EncoderLayer):
        def forward(self, x, mask=None):
            return EncoderLayer.forward(self, x, mask)[:, 0]

    fails_with("06.3", Squeezed, "keeps the shape")


def test_the_reference_block_equals_pytorch_in_both_norm_settings():
    """The claim of the lesson, independent of the checker: same weights, same output as PyTorch's layer."""
    torch.manual_seed(0)
    x = torch.randn(3, 7, 16)
    pad = torch.arange(7)[None] < torch.tensor([7, 4, 2])[:, None]
    for norm_first in (False, True):
        ours = EncoderLayer(16, 4, 32, norm_first=norm_first)
        with torch.no_grad():
            for p in ours.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        theirs = copy_into_torch_encoder_layer(
            ours, nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first))
        diff = (ours(x, pad[:, None, :]) - theirs(x, src_key_padding_mask=~pad)).abs()[pad].max()
        assert diff < 1e-5, (norm_first, diff)


@pytest.mark.parametrize("candidate", [None, 42, "text", lambda *a: None, lambda *a: float("nan"), SystemExit])
def test_check_never_raises(candidate):
    for id in ("06.1", "06.2", "06.3"):
        result = utils.check(id, candidate)
        assert not result and result.message


def test_unfilled_skeletons_read_not_attempted():
    def sinusoidal_positional_encoding(num_positions, d_model):
        raise NotImplementedError()

    def layer_norm(x, weight, bias, eps=1e-5):
        raise NotImplementedError()

    class Block(EncoderLayer):
        def forward(self, x, mask=None):
            raise NotImplementedError()

    for id, candidate in [("06.1", sinusoidal_positional_encoding), ("06.2", layer_norm), ("06.3", Block)]:
        assert utils.check(id, candidate).status == "not attempted"


# ---- issue 14: structural mistakes of the encoder block, and what later cells rely on
from utils import transformer as _transformer  # noqa: E402


def _block(order=("sa", "ff"), invert=False, direct=False):
    class Block(_transformer.EncoderLayer):
        def forward(self, x, mask=None):
            m = ~mask if (invert and mask is not None) else mask

            def sa(h):
                return self.self_attn(h, h, h, m)[0] if direct else self._sa(h, m)

            subs = {"sa": sa, "ff": self.ff}
            for name, norm in zip(order, (self.norm1, self.norm2)):
                x = x + subs[name](norm(x)) if self.norm_first else norm(x + subs[name](x))
            return x
    return Block


def test_encoder_block_structural_mistakes_are_named():
    assert utils.check("06.3", _block())
    fails_with("06.3", _block(invert=True), "mask is inverted")
    fails_with("06.3", _block(order=("ff", "sa")), "wrong order")
    fails_with("06.3", _block(direct=True), "last_self_weights")

    class Shared(_transformer.EncoderLayer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.norm2 = self.norm1

    fails_with("06.3", Shared, "same module object")


def test_encoder_block_skeleton_reads_not_attempted():
    class EncoderLayer(_transformer.EncoderLayer):
        def forward(self, x, mask=None):
            # YOUR CODE HERE
            raise NotImplementedError()

    assert utils.check("06.3", EncoderLayer).status == "not attempted"  # __init__ is given: forward is the exercise


def test_positional_encoding_and_layer_norm_reliances():
    import numpy as np

    def float64_pe(P, D):  # right values, NumPy's float64: it would not add to float32 embeddings as the lesson does
        pos, i = np.arange(P)[:, None], np.arange(0, D, 2)
        pe = np.zeros((P, D))
        pe[:, 0::2], pe[:, 1::2] = np.sin(pos / 10000 ** (i / D)), np.cos(pos / 10000 ** (i / D))
        return torch.from_numpy(pe)

    fails_with("06.1", float64_pe, "float64")

    def in_place_norm(x, weight, bias, eps=1e-5):
        x -= x.mean(-1, keepdim=True)
        return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) * weight + bias

    fails_with("06.2", in_place_norm, "in place")


# ---- issue 24: the block's mistakes named whichever way the learner keeps the norms
def _forward(fn):
    return type("EncoderLayer", (EncoderLayer,), {"forward": fn})


def _ff_first(by_position):
    def forward(self, x, mask=None):
        n_ff, n_sa = (self.norm1, self.norm2) if by_position else (self.norm2, self.norm1)
        if self.norm_first:
            x = x + self.ff(n_ff(x))
            return x + self._sa(n_sa(x), mask)
        x = n_ff(x + self.ff(x))
        return n_sa(x + self._sa(x, mask))
    return forward


def _one_norm(self, x, mask=None):
    if self.norm_first:
        x = x + self._sa(self.norm1(x), mask)
        return x + self.ff(self.norm1(x))
    x = self.norm1(x + self._sa(x, mask))
    return self.norm1(x + self.ff(x))


def _attention_reads_x(self, x, mask=None):
    if not self.norm_first:
        return EncoderLayer.forward(self, x, mask)
    x = x + self._sa(x, mask)
    return x + self.ff(self.norm2(x))


def test_encoder_block_mistakes_of_issue_24():
    fails_with("06.3", _forward(_ff_first(by_position=False)), "sublayers are in the wrong order")
    fails_with("06.3", _forward(_ff_first(by_position=True)), "sublayers are in the wrong order")
    fails_with("06.3", _forward(_one_norm), "`self.norm1` for both sublayers")
    fails_with("06.3", _forward(_attention_reads_x), "self-attention reads `self.norm1(x)`, not x")


def test_layer_norm_and_encoding_mistakes_of_issue_24():
    fails_with("06.2", lambda x, w, b, eps=1e-5: nn.functional.layer_norm(x, x.shape[-2:], eps=eps) * w + b,
               "last *two* dimensions")
    fails_with("06.1", lambda P, D: sinusoidal_positional_encoding(P, D)[None], "without a batch axis")

"""Exercises of lesson 06, the Transformer encoder: 06.1 sinusoidal positional encoding,
06.2 layer_norm, 06.3 the encoder block (EncoderLayer).

What the rest of the lesson (and lesson 07) relies on; each is stated in the skeleton's docstring and checked:

06.1 sinusoidal_positional_encoding(P, D) -> (P, D) in PyTorch's default dtype (added to float32 embeddings),
     rows = positions from 0, sin at 2i and cos at 2i+1 with angle pos / 10000^(2i/D); deterministic.
06.2 layer_norm(x, weight, bias, eps=1e-5): nn.LayerNorm's output for any leading shape, in float32 and
     float64, the biased variance, eps inside the root; x unchanged.
06.3 EncoderLayer.forward(x (B, S, D), mask=None (B, 1, S)) -> (B, S, D)
  * pre-LN or post-LN as ``self.norm_first`` says, equal to nn.TransformerEncoderLayer with the same weights;
  * self-attention through ``self._sa`` (it keeps ``last_self_weights`` for the heatmaps);
  * the mask True = may attend (not PyTorch's True = padding); gradients reach every parameter.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import transformer
from utils.attention import padding_mask
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_same_gradients, expect_shape, expect_tensor, instantiate, residual_stack)


# ----------------------------------------------------------------- 06.1 sinusoidal positional encoding
def _pe(P: int, D: int, *, base: float = 10000.0, first: int = 0, swap: bool = False, halves: bool = False,
        exponent: str = "2i/d"):
    """A sinusoidal encoding with one knob turned: the outputs of realistic mistakes. -> (P, D), D even."""
    pos = torch.arange(first, first + P, dtype=torch.float64)[:, None]  # (P, 1)
    i = torch.arange(D // 2, dtype=torch.float64)  # (D/2,): the pair index i
    if exponent == "2i/d":
        angles = pos / base ** (2 * i / D)
    elif exponent == "i/d":  # the pair index where 2i belongs
        angles = pos / base ** (i / D)
    elif exponent == "times":  # pos * base^(2i/d): multiplied instead of divided
        angles = pos * base ** (2 * i / D)
    elif exponent == "k/d":  # every feature k its own exponent k/d, the cos one (2i+1)/d
        k = torch.arange(D, dtype=torch.float64)
        angles_k = pos / base ** (k / D)  # (P, D)
        out = torch.empty(P, D, dtype=torch.float64)
        out[:, 0::2], out[:, 1::2] = torch.sin(angles_k[:, 0::2]), torch.cos(angles_k[:, 1::2])
        return out
    else:
        raise ValueError(exponent)
    sin, cos = torch.sin(angles), torch.cos(angles)
    if swap:
        sin, cos = cos, sin
    if halves:
        return torch.cat([sin, cos], dim=1)
    out = torch.empty(P, D, dtype=torch.float64)
    out[:, 0::2], out[:, 1::2] = sin, cos
    return out


def _pe_mistakes(P: int, D: int) -> dict:
    mistakes = {
        "sin and cos are swapped: the paper puts sin on the even feature indices (0, 2, 4, ...) and cos on the "
        "odd ones. Check: position 0 should read [0, 1, 0, 1, ...].": _pe(P, D, swap=True),
        "The sin features fill the first half and the cos features the second half. The paper *interleaves* them: "
        "sin at 2i, cos at 2i+1 (e.g. `pe[:, 0::2] = ...`, `pe[:, 1::2] = ...`).": _pe(P, D, halves=True),
        "sin and cos are in halves *and* swapped: the paper interleaves them, sin at 2i and cos at 2i+1.":
            _pe(P, D, halves=True, swap=True),
        "Positions are counted from 1; the first row is position 0 (sin 0 = 0, cos 0 = 1). "
        "Use `torch.arange(num_positions)`.": _pe(P, D, first=1),
        "The exponent should be 2i/d_model, where 2i is the *even feature index* (0, 2, 4, ...). You used i/d_model "
        "with the pair index i = 0, 1, 2, ...: the wavelengths grow too slowly.": _pe(P, D, exponent="i/d"),
        "The sin at feature 2i and the cos at feature 2i+1 share one frequency, pos / 10000^(2i/d_model). You gave "
        "the cos feature its own exponent (2i+1)/d_model.": _pe(P, D, exponent="k/d"),
    }
    for base in (1000.0, 100.0, 10.0, math.e, 100000.0):
        mistakes[f"The base of the exponent should be 10000 (the paper's), not {base:g}: "
                 "angle = pos / 10000^(2i/d_model)."] = _pe(P, D, base=base)
    return mistakes


_MULTIPLIED = ("Divide the position by 10000^(2i/d_model), do not multiply: the wavelengths should *grow* with i, "
               "from 2*pi up to 10000*2*pi.")


@exercise("06.1", "sinusoidal positional encoding", reference=transformer.sinusoidal_positional_encoding,
          difficulty=1, minutes=10, hints=[
              "Each pair of features (2i, 2i+1) is a clock with its own angle: angle(pos, i) = pos / 10000^(2i/d_model). "
              "Feature 2i holds its sin, feature 2i+1 its cos.",
              "Build the positions as a column `torch.arange(num_positions, dtype=torch.float32)[:, None]` (P, 1) and the "
              "even indices `two_i = torch.arange(0, d_model, 2)` (D/2,): broadcasting gives all angles (P, D/2) at once.",
              "`pe = torch.zeros(num_positions, d_model)`, then `pe[:, 0::2] = torch.sin(angles)` and "
              "`pe[:, 1::2] = torch.cos(angles)`.",
          ])
def check_sinusoidal_positional_encoding(candidate):
    callable_candidate(candidate, "sinusoidal_positional_encoding")
    for P, D in [(50, 16), (7, 6), (30, 64), (1, 4)]:
        got = candidate(P, D)
        expect_tensor(got, f"sinusoidal_positional_encoding({P}, {D})")
        if tuple(got.shape) == (D, P) and P != D:
            raise Mistake(f"The result has shape {tuple(got.shape)}: rows should be positions and columns features, "
                          f"(num_positions, d_model) = {(P, D)}.")
        expect_shape(got, (P, D), f"sinusoidal_positional_encoding({P}, {D})",
                     "Return the table itself, without a batch axis (`pe.unsqueeze(0)` belongs to the model that adds "
                     "it, not here)." if tuple(got.shape) in ((1, P, D), (P, 1, D)) else "")
        expect(got.is_floating_point(), "The encoding should be a float tensor (the angles are not whole numbers).")
        expect(got.dtype == torch.get_default_dtype(),
               f"The encoding is {got.dtype}; return {torch.get_default_dtype()}, PyTorch's default, so that it adds to "
               "the embeddings (e.g. `torch.arange(num_positions, dtype=torch.float32)`, no NumPy float64).")
        want = _pe(P, D)
        got = got.detach().double()
        # Multiplying gives angles up to pos * 10000, where float32 sin is inexact: compare the first pairs only.
        if not close(got, want, atol=1e-5) and D >= 4 and close(got[:, :4], _pe(P, D, exponent="times")[:, :4], atol=1e-3):
            raise Mistake(_MULTIPLIED)
        expect_close(got, want, f"sinusoidal_positional_encoding({P}, {D})", mistakes=_pe_mistakes(P, D), atol=1e-5,
                     otherwise="Its first two features (i = 0, frequency 1) should be sin(pos) and cos(pos); "
                               "feature 2i is sin(pos / 10000^(2i/d_model)) and feature 2i+1 the cos of the same angle."
                     if not (close(got[:, :2], want[:, :2], atol=1e-5)) else
                     "The first pair (sin(pos), cos(pos)) is right, the others are not: check the exponent 2i/d_model "
                     "and the base 10000 (each pair i has its own, slower, frequency).")


# ----------------------------------------------------------------- 06.2 layer_norm
def _ln_mistakes(x, weight, bias, eps) -> dict:
    def norm(mean, var, how="var+eps"):
        if how == "var+eps":
            return (x - mean) / torch.sqrt(var + eps)
        if how == "std+eps":
            return (x - mean) / (torch.sqrt(var) + eps)
        if how == "outside":
            return (x - mean) / torch.sqrt(var) + eps
        return (x - mean) / torch.sqrt(var + 1e-5)  # the eps argument ignored

    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    xhat = norm(mean, var)
    out = {
        "Use the *biased* variance (divide by D, not D-1), as nn.LayerNorm does: `((x - mean) ** 2).mean(-1)` or "
        "`x.var(-1, unbiased=False)`. torch.var and torch.std divide by D-1 by default.":
            norm(mean, x.var(-1, unbiased=True, keepdim=True)) * weight + bias,
        "Use the *biased* variance (divide by D, not D-1), as nn.LayerNorm does: torch.std divides by D-1 by default. "
        "And add eps inside the square root: (x - mean) / sqrt(var + eps).":
            (x - mean) / x.std(-1, keepdim=True) * weight + bias,
        "Use the *biased* variance (divide by D, not D-1), as nn.LayerNorm does: torch.std divides by D-1 by default. "
        "And eps belongs inside the square root: (x - mean) / sqrt(var + eps).":
            (x - mean) / (x.std(-1, keepdim=True) + eps) * weight + bias,
        "eps belongs *inside* the square root: (x - mean) / sqrt(var + eps). Adding it to the standard deviation "
        "differs when the variance is small.": norm(mean, var, "std+eps") * weight + bias,
        "eps belongs inside the square root, under the variance: (x - mean) / sqrt(var + eps).":
            norm(mean, var, "outside") * weight + bias,
        "Use the `eps` argument rather than a fixed 1e-5.": norm(mean, var, "fixed") * weight + bias,
        "The affine parameters are ignored: after normalising, scale by `weight` and shift by `bias` "
        "(they are learned, and start at 1 and 0).": xhat,
        "Only `weight` is applied: add `bias` too.": xhat * weight,
        "Only `bias` is applied: multiply by `weight` too.": xhat + bias,
        "weight and bias are swapped: y = x_hat * weight + bias.": xhat * bias + weight,
        "The shift is added before the scale: y = x_hat * weight + bias, not (x_hat + bias) * weight.":
            (xhat + bias) * weight,
        "Scale and shift *after* normalising: y = normalise(x) * weight + bias, not normalise(x * weight + bias).":
            F.layer_norm(x * weight + bias, x.shape[-1:], eps=eps),
    }
    if x.dim() >= 2:
        all_axes = tuple(range(x.dim()))
        m_all, v_all = x.mean(all_axes, keepdim=True), x.var(all_axes, unbiased=False, keepdim=True)
        out["The statistics are over every element of x; LayerNorm takes them over the *last* dimension only "
            "(each position's own D features): `mean(dim=-1, keepdim=True)`."] = norm(m_all, v_all) * weight + bias
        m0, v0 = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)
        out["The statistics are over the batch (dim 0): that is BatchNorm. LayerNorm normalises over the last "
            "dimension, each position's own features: `mean(dim=-1, keepdim=True)`."] = norm(m0, v0) * weight + bias
    if x.dim() >= 3:
        m2, v2 = x.mean((-2, -1), keepdim=True), x.var((-2, -1), unbiased=False, keepdim=True)
        out["The statistics are over the last *two* dimensions (the whole sequence of each example, as "
            "nn.LayerNorm((S, D)) would take them); LayerNorm here takes them over the last dimension only, each "
            "position's own D features: `mean(dim=-1, keepdim=True)`."] = norm(m2, v2) * weight + bias
        m1, v1 = x.mean(-2, keepdim=True), x.var(-2, unbiased=False, keepdim=True)
        out["The statistics are over the sequence (dim -2); LayerNorm takes them over the features, the last "
            "dimension: `mean(dim=-1, keepdim=True)`."] = norm(m1, v1) * weight + bias
    return out


@exercise("06.2", "layer normalisation", reference=transformer.layer_norm, difficulty=1, minutes=10, hints=[
    "For each position separately: the mean and the variance of its D features (the last dimension), then "
    "x_hat = (x - mean) / sqrt(var + eps), then y = x_hat * weight + bias.",
    "`x.mean(dim=-1, keepdim=True)` keeps a size-1 axis, shape (..., 1), so that `x - mean` broadcasts. Use the "
    "biased variance (divide by D), as nn.LayerNorm does: `((x - mean) ** 2).mean(dim=-1, keepdim=True)`.",
    "`(x - mean) / torch.sqrt(var + eps) * weight + bias`",
])
def check_layer_norm(candidate):
    callable_candidate(candidate, "layer_norm")
    for shape, eps, scale, seed in [((4, 5, 8), 1e-5, 1.0, 0), ((3, 16), 1e-5, 3.0, 1), ((2, 3, 6), 1e-5, 1e-3, 2),
                                    ((2, 4, 2, 10), 0.1, 0.5, 3), ((6, 7), 1e-5, 1e-3, 4)]:
        g = torch.Generator().manual_seed(seed)
        x = (torch.randn(shape, generator=g) * scale + torch.randn(shape[-1], generator=g) * scale).double()
        weight = (1 + 0.5 * torch.randn(shape[-1], generator=g)).double()
        bias = torch.randn(shape[-1], generator=g).double()
        got = candidate(x, weight, bias, eps) if eps != 1e-5 else candidate(x, weight, bias)
        expect_tensor(got, "layer_norm(x, weight, bias)")
        expect_shape(got, x.shape, "layer_norm(x, weight, bias)", "The output has the shape of the input.")
        want = F.layer_norm(x, (shape[-1],), weight, bias, eps)  # PyTorch's own, the one nn.LayerNorm calls
        expect_close(got.double(), want, f"layer_norm on x of shape {shape}", mistakes=_ln_mistakes(x, weight, bias, eps),
                     atol=1e-6, rtol=1e-5, otherwise="y = (x - mean) / sqrt(var + eps) * weight + bias, with the "
                     "mean and the biased variance over the last dimension.")
    # the module PyTorch users know, with its own (non-trivial) affine parameters
    ln = nn.LayerNorm(12)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(3, 5, 12)
    expect(close(candidate(x, ln.weight, ln.bias, ln.eps), ln(x), atol=1e-5),
           "layer_norm(x, ln.weight, ln.bias, ln.eps) should equal nn.LayerNorm's output ln(x) in float32 too.")


# ----------------------------------------------------------------- 06.3 the encoder block
def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, LayerNorm gains and biases included, so that swapping or skipping one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight += 1.0
    return module


def _variant(ref: transformer.EncoderLayer, x, mask, *, norm_first: bool, residual=("sa", "ff"), norms=(1, 2),
             order=("sa", "ff"), unnormed=(), norm_inside=False, norm_residual=False, use_mask=True, invert_mask=False):
    """The block computed with one realistic mistake, from the reference's own sublayers.

    norms: the norm number of self-attention and of the feed-forward, or "position" (norm1 for the sublayer run
    first); residual, unnormed: see checking.residual_stack; norm_inside: x + LN(Sublayer(x)); norm_residual:
    LN(x) + Sublayer(LN(x)).
    """
    if invert_mask and mask is not None:
        mask = ~mask
    numbers = {kind: i + 1 for i, kind in enumerate(order)} if norms == "position" else dict(zip(("sa", "ff"), norms))
    norm = {kind: getattr(ref, f"norm{n}") for kind, n in numbers.items()}
    sub = {"sa": lambda h, stream: ref.self_attn(h, h, h, mask if use_mask else None)[0],
           "ff": lambda h, stream: ref.ff(h)}
    if norm_inside or norm_residual:  # two ways of putting the LayerNorm where it does not belong
        for kind in order:
            if norm_inside:
                x = (x if kind in residual else 0) + norm[kind](sub[kind](x, x))
            else:
                h = norm[kind](x)
                x = (h if kind in residual else 0) + sub[kind](h, x)
        return x
    return residual_stack(x, sub, norm, order, pre_ln=norm_first, residual=residual, unnormed=unnormed)


def _block_mistakes(ref, x, mask, norm_first: bool) -> list:
    """[(message, output)] of the realistic mistakes of an encoder block."""
    name = "pre-LN (norm_first=True): x + Sublayer(LayerNorm(x))" if norm_first else \
        "post-LN (norm_first=False): LayerNorm(x + Sublayer(x))"
    other = "post-LN, LayerNorm(x + Sublayer(x))" if norm_first else "pre-LN, x + Sublayer(LayerNorm(x))"
    v = lambda **kw: _variant(ref, x, mask, norm_first=norm_first, **kw)  # noqa: E731
    order = ("The sublayers are in the wrong order: self-attention first (with norm1), then the feed-forward (with "
             "norm2).")
    mistakes = [
        (f"With norm_first={norm_first} your block computes {other}: read `self.norm_first` and use {name}.",
         _variant(ref, x, mask, norm_first=not norm_first)),
        (f"The residual connection around self-attention is missing ({name}): add the sublayer's input back.",
         v(residual=("ff",))),
        (f"The residual connection around the feed-forward sublayer is missing ({name}): add its input back.",
         v(residual=("sa",))),
        (f"Both residual connections are missing ({name}).", v(residual=())),
        ("norm1 and norm2 are swapped: norm1 goes with self-attention, norm2 with the feed-forward sublayer.",
         v(norms=(2, 1))),
        ("You use `self.norm1` for both sublayers: each has its own LayerNorm, norm1 for self-attention and norm2 for "
         "the feed-forward.", v(norms=(1, 1))),
        ("You use `self.norm2` for both sublayers: each has its own LayerNorm, norm1 for self-attention and norm2 for "
         "the feed-forward.", v(norms=(2, 2))),
        ("The padding mask is not passed to self-attention: padded keys leak into the real positions. "
         "Call `self._sa(..., mask)`.", v(use_mask=False)),
        ("The mask is inverted: in this course True means *may attend* (True at the real tokens); "
         "nn.TransformerEncoderLayer's src_key_padding_mask is the opposite (True = padding). Pass `mask` as it is.",
         v(invert_mask=True) if mask is not None else None),
        (order, v(order=("ff", "sa"))),
        (order, v(order=("ff", "sa"), norms="position")),
    ]
    if norm_first:
        mistakes += [
            ("In pre-LN the LayerNorm goes on the sublayer's *input*: x + Sublayer(LayerNorm(x)), not "
             "x + LayerNorm(Sublayer(x)).", v(norm_inside=True)),
            ("In pre-LN only the sublayer's input is normalised; the residual path carries x itself: "
             "x + Sublayer(LayerNorm(x)), not LayerNorm(x) + Sublayer(LayerNorm(x)).", v(norm_residual=True)),
            ("In pre-LN every sublayer reads the *normalised* stream: self-attention reads `self.norm1(x)`, not x.",
             v(unnormed=("sa",))),
            ("In pre-LN every sublayer reads the *normalised* stream: the feed-forward reads `self.norm2(x)`, not x.",
             v(unnormed=("ff",))),
        ]
    else:
        mistakes.append(("In post-LN the LayerNorm comes *after* the residual sum: LayerNorm(x + Sublayer(x)), not "
                         "x + LayerNorm(Sublayer(x)).", _variant(ref, x, mask, norm_first=True, norm_inside=True)))
    return mistakes


@exercise("06.3", "the encoder block", reference=transformer.EncoderLayer, difficulty=2, minutes=15,
          parts=("forward",), hints=[
    "Two sublayers, self-attention (`self._sa(h, mask)`) then feed-forward (`self.ff(h)`), each wrapped in a "
    "residual connection and a LayerNorm (`self.norm1` for attention, `self.norm2` for the feed-forward).",
    "post-LN (the paper, norm_first=False): x = LayerNorm(x + Sublayer(x)). pre-LN (norm_first=True): "
    "x = x + Sublayer(LayerNorm(x)): the residual path is never normalised.",
    "pre-LN: `x = x + self._sa(self.norm1(x), mask)` then `return x + self.ff(self.norm2(x))`; post-LN: "
    "`x = self.norm1(x + self._sa(x, mask))` then `return self.norm2(x + self.ff(x))`.",
])
def check_encoder_layer(Candidate):
    for D, H, FF, B, S, seed in [(16, 4, 24, 3, 6, 0), (8, 2, 12, 2, 5, 1)]:
        for norm_first in (True, False):
            ref = _randomise(transformer.EncoderLayer(D, H, FF, norm_first=norm_first), seed)
            cand = instantiate(Candidate, D, H, FF, norm_first=norm_first)
            copy_weights(ref, cand, "Your EncoderLayer")
            g = torch.Generator().manual_seed(seed + 10)
            x = torch.randn(B, S, D, generator=g)
            lengths = torch.randint(2, S + 1, (B,), generator=g)
            lengths[0] = S
            lengths[-1] = 2  # at least one padded sequence
            pad = padding_mask(lengths, S)  # (B, S), True at real tokens
            mask = pad[:, None, :]  # (B, 1, S): no query attends to padding
            for m in (None, mask):
                cand.last_self_weights = None
                got = cand(x, m)
                expect_shape(got, (B, S, D), "EncoderLayer(x, mask)", "The block keeps the shape of its input.")
                want = ref(x, m)
                real = pad[..., None] if m is not None else torch.ones(B, S, 1, dtype=torch.bool)
                # an inverted mask leaves a row with no real key: its NaN must not hide the diagnosis
                got_real = torch.nan_to_num(got, nan=1e6) * real
                mistakes = []
                if not close(got_real, want * real):  # the mistakes' outputs only when needed
                    raw = [(msg, out) for msg, out in _block_mistakes(ref, x, m, norm_first) if out is not None]
                    mistakes = [(msg, out * real) for msg, out in raw]
                    for msg, out in raw:
                        if close(got_real, torch.nan_to_num(out, nan=1e6) * real):
                            raise Mistake(msg)
                expect_close(got * real, want * real, f"EncoderLayer(norm_first={norm_first})", mistakes=mistakes,
                             otherwise="pre-LN: x = x + SelfAttn(LN1(x)), then x + FF(LN2(x)); post-LN: "
                                       "x = LN1(x + SelfAttn(x)), then LN2(x + FF(x)).")
                w = getattr(cand, "last_self_weights", None)
                expect(torch.is_tensor(w) and tuple(w.shape) == (B, H, S, S),
                       "Keep the self-attention weights in `self.last_self_weights` (B, h, S, S) for the heatmaps: call "
                       "`self._sa(h, mask)`, which stores them, rather than `self.self_attn(...)` directly.")
            expect_same_gradients(cand, ref, lambda: cand(x, mask) * pad[..., None], lambda: ref(x, mask) * pad[..., None],
                                  f"Your EncoderLayer(norm_first={norm_first})")
            # the same weights in PyTorch's own layer give the same output (PyTorch's mask: True = padding)
            theirs = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
            transformer.copy_into_torch_encoder_layer(ref, theirs)
            torch_out = theirs(x, src_key_padding_mask=~pad)
            expect(close(cand(x, mask) * pad[..., None], torch_out * pad[..., None], atol=1e-5),
                   f"Your block differs from nn.TransformerEncoderLayer(norm_first={norm_first}) with the same weights.")

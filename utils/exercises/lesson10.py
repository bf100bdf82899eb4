"""Exercises of lesson 10, one small modern GPT from the pieces: 10.1 RMSNorm, 10.2 the rolling KV cache,
10.3 the modern block. The references live in :mod:`utils.modern_gpt`.

Each checker compares the learner's code with the reference (and 10.1 with ``torch.nn.RMSNorm``) on several
shapes, and when the values differ, with the outputs of the realistic mistakes, to name the one made.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from utils import modern_gpt
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_finite, expect_same_gradients, expect_shape, expect_tensor, instantiate)
from utils.modern_gpt import ModernBlock, ModernConfig
from utils.transformer import FeedForward


# ----------------------------------------------------------------------------- 10.1 RMSNorm
def rms_variant(x, weight, eps=1e-6, *, kind=None):
    """RMSNorm written the way a learner might, with one thing changed (kind=None: correct)."""
    sq = x.abs() if kind in ("abs", "abs_no_sqrt") else x.pow(2)
    if kind == "sum":
        ms = sq.sum(-1, keepdim=True)
    elif kind == "axis":
        ms = sq.mean(0, keepdim=True)
    elif kind == "all":
        ms = sq.mean()
    elif kind == "keepdim":
        ms = sq.mean(-1)  # (N,) broadcast against the features of x (N, D): runs only when N == D
    elif kind in ("layernorm", "std"):
        ms = (x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True)
    else:
        ms = sq.mean(-1, keepdim=True)
    if kind == "eps_outside":
        scale = 1 / (ms.sqrt() + eps)
    elif kind in ("no_sqrt", "abs_no_sqrt"):
        scale = 1 / (ms + eps)
    elif kind == "multiply":
        scale = (ms + eps).sqrt()
    else:
        scale = torch.rsqrt(ms + eps)
    centred = x - x.mean(-1, keepdim=True) if kind == "layernorm" else x
    if kind == "no_weight":
        return centred * scale
    if kind == "add_weight":
        return centred * scale + weight
    return centred * scale * weight


_RMS_MISTAKES = {
    "axis": "The mean runs over the wrong axis: RMSNorm normalises each position's vector of D features, so the mean "
            "of x^2 is over the last dimension, `x.pow(2).mean(dim=-1, keepdim=True)` (not over the batch).",
    "all": "You took one mean over the whole tensor: each position gets its own root mean square, over its D "
           "features only: `.mean(dim=-1, keepdim=True)`.",
    "keepdim": "The mean over the features lost its dimension: without keepdim=True it has shape (..., T) and "
               "broadcasts against the features instead of the positions. Use `.mean(dim=-1, keepdim=True)`.",
    "eps_outside": "eps is outside the square root: it is sqrt(mean(x^2) + eps), with eps inside, as nn.RMSNorm "
                   "(and LayerNorm) compute it. The difference shows for small inputs.",
    "abs": "That is the mean of |x|, not of x^2: RMS is the *root mean square*, sqrt(mean(x^2) + eps).",
    "abs_no_sqrt": "That is the mean of |x|, not the root mean square: sqrt(mean(x^2) + eps).",
    "sum": "You summed x^2 over the features instead of averaging it: that divides by the vector's length, which grows "
           "with sqrt(D). Use the mean: `x.pow(2).mean(dim=-1, keepdim=True)`.",
    "no_sqrt": "The square root is missing: divide by sqrt(mean(x^2) + eps) (`torch.rsqrt` multiplies by its inverse), "
               "not by mean(x^2) + eps.",
    "multiply": "You multiplied by the root mean square: divide by it (or multiply by `torch.rsqrt(...)`).",
    "layernorm": "That is LayerNorm: RMSNorm subtracts no mean. Divide x itself by sqrt(mean(x^2) + eps).",
    "std": "You divided by the standard deviation (the mean subtracted inside): RMSNorm subtracts no mean anywhere. "
           "Use mean(x^2), not mean((x - mean(x))^2).",
    "no_weight": "The weight is missing: multiply the normalised x by `weight` (one learned gain per feature).",
    "add_weight": "You added the weight like a bias: RMSNorm *multiplies* by it, and has no bias.",
}


def _rms_cases(g):
    return [
        (torch.randn(2, 5, 8, generator=g), 1e-6, True),
        (torch.randn(3, 16, generator=g) * 3 + 1, 1e-6, True),  # a mean far from 0: LayerNorm differs a lot
        (0.02 * torch.randn(6, 6, generator=g), None, True),  # small values: eps matters; N == D: keepdim runs
        (0.3 * torch.randn(4, 3, 10, generator=g), 0.5, False),  # a large eps passed by keyword
        (torch.randn(7, generator=g), 1e-6, True),  # a single vector
    ]


@exercise("10.1", "RMSNorm", reference=modern_gpt.rms_norm, difficulty=1, minutes=10, hints=[
    "LayerNorm subtracts the mean and divides by the standard deviation, then multiplies by a weight and adds a bias. "
    "RMSNorm keeps only the division and the weight: x / RMS(x) * weight, RMS over each position's D features.",
    "RMS(x) = sqrt(mean(x^2) + eps), the mean over the last dimension, kept as a dimension of size 1 so that it "
    "broadcasts: `x.pow(2).mean(dim=-1, keepdim=True)`.",
    "`return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight` (rsqrt is 1 / sqrt).",
])
def check_rms_norm(candidate):
    callable_candidate(candidate, "rms_norm")
    g = torch.Generator().manual_seed(0)
    torch_rms = getattr(nn, "RMSNorm", None)  # PyTorch 2.4 and later
    for x, eps, positional in _rms_cases(g):
        D = x.shape[-1]
        weight = 1 + 0.5 * torch.randn(D, generator=g)
        what = f"rms_norm(x {tuple(x.shape)}, weight ({D},)" + (")" if eps is None else f", eps={eps:g})")
        try:
            got = candidate(x, weight) if eps is None else (candidate(x, weight, eps) if positional else candidate(x, weight, eps=eps))
        except RuntimeError as err:
            if "must match the size" not in str(err):
                raise
            raise Mistake(f"{what} failed: {str(err).rstrip('.')}. The mean over the features must keep its dimension, "
                          "`.mean(dim=-1, keepdim=True)` (..., 1), so that it broadcasts against x (..., D).") from None
        expect_shape(got, x.shape, what, "The output has the input's shape: one normalised vector per position.")
        expect_finite(got, what)
        e = 1e-6 if eps is None else eps
        if torch_rms is not None:
            layer = torch_rms(D, eps=e)
            with torch.no_grad():
                layer.weight.copy_(weight)
            want = layer(x).detach()
        else:
            want = modern_gpt.rms_norm(x, weight, e)

        def mistakes(x=x, weight=weight, e=e):
            found = {}
            for kind, message in _RMS_MISTAKES.items():
                try:
                    found[message] = rms_variant(x, weight, e, kind=kind)
                except RuntimeError:  # keepdim's broadcast only runs when T == D
                    continue
            if eps is None:  # called without eps: the default is used
                for other in (1e-5, 1e-8, 0.0):
                    found[f"Your default eps is {other:g}, not 1e-6: keep the signature's `eps: float = 1e-6`."] = \
                        rms_variant(x, weight, other)
            return found

        expect_close(got, want, what + (" against torch.nn.RMSNorm" if torch_rms is not None else ""), mistakes=mistakes,
                     atol=1e-5, rtol=1e-4, otherwise="It is x / sqrt(mean(x^2) + eps) * weight, the mean over the last "
                                                     "dimension.")
    # the layer is trained through: the gradients must be the reference's
    x = torch.randn(2, 4, 8, generator=g, requires_grad=True)
    weight = (1 + 0.5 * torch.randn(8, generator=g)).requires_grad_()
    out = candidate(x, weight)
    expect(out.requires_grad, "Your output has no gradient: a norm layer is trained through. Remove .detach(), .item(), "
           "torch.no_grad() or NumPy from the computation.")
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, 8)).sum(), (x, weight))
    want = torch.autograd.grad((modern_gpt.rms_norm(x, weight) * torch.linspace(-1, 1, 8)).sum(), (x, weight))
    expect(all(close(a, b, atol=1e-4, rtol=1e-3) for a, b in zip(grads, want)),
           "The values are right but the gradients are not: something on the path is cut or changed in place.")


# ----------------------------------------------------------------------------- 10.2 the rolling cache
def _positions(B, g, S, d, start=0):
    """(B, g, S, d) whose entries encode their position: start + s + a small, distinct fraction."""
    pos = torch.arange(start, start + S, dtype=torch.float32)[None, None, :, None]
    feat = torch.arange(B * g * d, dtype=torch.float32).view(B, g, 1, d) / (B * g * d * 10)
    return pos + feat


def _rolling_cases():
    return [  # (B, g, S (None: no cache yet), n, d, window)
        (2, 3, None, 2, 4, 5),  # the first call: nothing cached, fewer positions than the window
        (1, 2, None, 7, 3, 5),  # the first call with a prompt longer than the window
        (1, 2, 3, 1, 4, 5),  # still room: keep everything
        (1, 2, 5, 1, 4, 5),  # full: the oldest goes
        (2, 1, 4, 3, 3, 4),  # several new positions at once
        (1, 1, 2, 2, 2, 1),  # a window of one position
        (2, 2, 4, 1, 3, 8),  # room for more than there is
    ]


@exercise("10.2", "the rolling KV cache", reference=modern_gpt.rolling_cache, difficulty=2, minutes=10, hints=[
    "A sliding window of w positions means that no query will ever look further back than w - 1 positions: the cache "
    "can forget everything older. Append the new positions, then keep the newest `window` of them.",
    "Positions are dimension 2 of (B, g, S, d). `torch.cat([cache, new], dim=2)` appends (when cache is None, there is "
    "only `new`); a negative slice along dim 2 keeps the end: `x[:, :, -window:]`.",
    "`full = new if cache is None else torch.cat([cache, new], dim=2)`; `return full[:, :, -window:]` (a slice longer "
    "than the tensor simply keeps all of it).",
])
def check_rolling_cache(candidate):
    callable_candidate(candidate, "rolling_cache")
    for B, g, S, n, d, w in _rolling_cases():
        cache = None if S is None else _positions(B, g, S, d)
        new = _positions(B, g, n, d, start=S or 0)
        what = f"rolling_cache({'None' if S is None else f'cache (B={B}, g={g}, S={S}, d={d})'}, new (n={n}), window={w})"
        try:
            got = candidate(cache, new, w)
        except RuntimeError as err:
            if "Sizes of tensors must match" not in str(err):
                raise
            raise Mistake(f"{what} failed: {str(err).rstrip('.')}. Concatenate along dim 2, the positions: (B, g, S, d) and "
                          "(B, g, n, d) make (B, g, S + n, d).") from None
        expect_tensor(got, what)
        total = (S or 0) + n
        want_len = min(w, total)
        if got.dim() == 4 and got.shape[:2] == (B, g) and got.shape[3] == d and got.shape[2] != want_len:
            length = got.shape[2]
            if S is not None and S >= w and length == min(w, S) + n:
                raise Mistake(f"{what} has {length} positions, more than the window ({w}): you trimmed the cache "
                              "*before* appending the new positions. Append first, then keep the last `window`.")
            if length == total:
                raise Mistake(f"{what} kept all {total} positions: keep only the last `window` ({w}) of them, "
                              "`[:, :, -window:]`.")
            if length == want_len - 1:
                raise Mistake(f"{what} has {length} positions: one too few (off by one). Keep the last `window` "
                              "positions, `[:, :, -window:]`, not -(window - 1).")
            if length == want_len + 1:
                raise Mistake(f"{what} has {length} positions: one too many (off by one). Keep the last `window` "
                              "positions, `[:, :, -window:]`.")
        other_dims = []
        for dim in (0, 1, 3):  # the shapes a concatenation along another dimension gives, trimmed or not
            shape = [B, g, S or 0, d]
            shape[dim] += n if S is not None else 0
            other_dims += [tuple(shape), tuple(shape[:2] + [min(w, shape[2])] + shape[3:])]
        if S is not None and tuple(got.shape) != (B, g, want_len, d) and tuple(got.shape) in other_dims:
            raise Mistake(f"{what} has shape {tuple(got.shape)}: concatenate along dim 2, the positions: (B, g, S, d) "
                          "and (B, g, n, d) make (B, g, S + n, d).")
        expect_shape(got, (B, g, want_len, d), what, "The cache keeps its (B, g, ., d) shape; dim 2 holds the "
                     "min(window, S + n) newest positions.")
        full = new if cache is None else torch.cat([cache, new], dim=2)
        reversed_full = new if cache is None else torch.cat([new, cache], dim=2)
        mistakes = {
            "You kept the *oldest* positions: a sliding window forgets those first. Keep the newest, the end of the "
            "concatenation: `[:, :, -window:]`.": full[:, :, :w],
            "The new positions went in front of the cache: the cache runs oldest first, so append them at the end, "
            "`torch.cat([cache, new], dim=2)`.": reversed_full[:, :, -w:],
            "The order of the positions is reversed: keep them oldest first, as they came.": full[:, :, -w:].flip(2),
        }
        expect_close(got, full[:, :, -w:], what, mistakes=mistakes, atol=0, rtol=0,
                     otherwise="It should hold the last min(window, S + n) positions of cache then new, oldest first.")
    # a stream of tokens, one or a few at a time: the cache is always the last `window` positions of the stream
    w, stream, cache, t = 4, _positions(1, 2, 12, 3), None, 0
    for n in (3, 1, 1, 2, 1, 4):
        cache = candidate(cache, stream[:, :, t:t + n], w)
        t += n
        expect(torch.is_tensor(cache) and torch.equal(cache, stream[:, :, max(0, t - w):t]),
               f"Fed its own output back, one step after another (window {w}), your cache does not hold the last "
               f"{w} positions of the stream after {t} positions.")


# ----------------------------------------------------------------------------- 10.3 the block
def _block_variant(ref, x, positions, cache=None, kind=None):
    """The block written the way a learner might, with one thing changed (kind=None: correct)."""
    n1, n2 = ref.norm1, (ref.norm1 if kind == "shared_norm" else ref.norm2)
    attn_cache = None if kind == "no_cache" else cache
    attn_positions = torch.arange(x.shape[1]) if kind == "positions" else positions
    if kind == "post_norm":
        out, kv = ref.self_attn(x, positions, cache)
        x = n1(x + out)
        return n2(x + ref.ff(x)), kv
    if kind == "norm_stream":
        x = n1(x)
        out, kv = ref.self_attn(x, positions, cache)
        x = n2(x + out)
        return x + ref.ff(x), kv
    if kind == "parallel":
        out, kv = ref.self_attn(n1(x), positions, cache)
        return x + out + ref.ff(n2(x)), kv
    out, kv = ref.self_attn(n1(x), attn_positions, attn_cache)
    h = out if kind in ("no_residual_attn", "no_residuals") else x + out
    f = ref.ff(n2(h))
    return (f if kind in ("no_residual_ff", "no_residuals") else h + f), kv


_BLOCK_MISTAKES = {
    "no_residuals": "The residual connections are missing: each sublayer *adds* to the stream, x = x + Attn(Norm_1(x)), "
                    "then x = x + FFN(Norm_2(x)).",
    "no_residual_attn": "The attention's residual is missing: x = x + Attn(Norm_1(x)), not x = Attn(Norm_1(x)).",
    "no_residual_ff": "The feed-forward's residual is missing: x = x + FFN(Norm_2(x)), not x = FFN(Norm_2(x)).",
    "post_norm": "Your norms are in post-LN order, x = Norm(x + Sublayer(x)), as the 2017 paper: this block is pre-norm, "
                 "x = x + Sublayer(Norm(x)), as GPT-2, Llama and lessons 06-08 (it trains more stably).",
    "norm_stream": "You normalised the residual stream itself (x = Norm(x), then x + Sublayer(x)): in a pre-norm block "
                   "only the sublayer's *input* is normalised, and the stream carries x on unchanged: "
                   "x = x + Attn(Norm_1(x)).",
    "parallel": "Your feed-forward reads the block's input, beside the attention (the 'parallel' block of GPT-J and "
                "PaLM): here it reads the stream *after* the attention's residual: x = x + Attn(Norm_1(x)), then "
                "x = x + FFN(Norm_2(x)).",
    "shared_norm": "norm1 serves both sublayers: the feed-forward's input goes through norm2, a norm with weights of "
                   "its own.",
    "positions": "The attention gets positions 0, 1, ... instead of the `positions` argument: with a cache the new "
                 "tokens sit further on in the text, and RoPE and the mask need their true positions. Pass `positions` "
                 "on to self.self_attn.",
    "no_cache": "The cache is not passed on: self.self_attn(h, positions, cache), so that the new positions attend to the "
                "cached keys and values of the earlier ones.",
}


def _configs():
    return [
        ModernConfig(11, d_model=16, num_heads=4, num_layers=1, d_ff=24, block_size=12, rmsnorm=True, swiglu=True,
                     rope=True, num_kv_heads=2, window=3),  # every piece on
        ModernConfig(11, d_model=12, num_heads=3, num_layers=1, d_ff=20, block_size=12),  # lesson 08's block
        ModernConfig(11, d_model=16, num_heads=2, num_layers=1, d_ff=30, block_size=12, swiglu=True, rope=True,
                     num_kv_heads=1),  # some pieces, LayerNorm
    ]


def _randomised_block(config, seed):
    torch.manual_seed(seed)
    ref = ModernBlock(config)
    with torch.no_grad():  # norms away from ones and zeros, so that a missing or shared norm shows
        for name, p in ref.named_parameters():
            p.add_((0.5 if "norm" in name else 0.2) * torch.randn_like(p))
    return ref


@exercise("10.3", "the modern block", reference=modern_gpt.ModernBlock, difficulty=2, minutes=15, hints=[
    "Four layers, each from a helper that reads the config: `norm1` and `norm2` from `make_norm(config)`, `self_attn` from "
    "`CausalSelfAttention(config)`, `ff` from `make_feed_forward(config)`. forward is lesson 08's pre-LN block, with "
    "positions and a cache passed through the attention.",
    "Pre-norm: only the input of each sublayer is normalised, and each sublayer's output is *added* to the stream. "
    "`self.self_attn(h, positions, cache)` returns two things: the output (B, n, D) and the (k, v) for the cache.",
    "`out, kv = self.self_attn(self.norm1(x), positions, cache)`; `x = x + out`; `x = x + self.ff(self.norm2(x))`; "
    "`return x, kv`.",
])
def check_modern_block(Candidate):
    for seed, config in enumerate(_configs()):
        ref = _randomised_block(config, seed)
        cand = instantiate(Candidate, config)
        for name in ("norm1", "norm2"):
            layer = getattr(cand, name, None)
            expect(layer is not None, f"Your block has no `{name}`: create it with make_norm(config).")
            if config.rmsnorm:
                expect(not isinstance(layer, nn.LayerNorm), f"config.rmsnorm is True but `{name}` is a LayerNorm: "
                       "create the norms with make_norm(config), which reads the switch.")
            else:
                expect(isinstance(layer, nn.LayerNorm), f"config.rmsnorm is False but `{name}` is not a LayerNorm: "
                       "create the norms with make_norm(config), which reads the switch.")
        ff = getattr(cand, "ff", None)
        expect(ff is not None, "Your block has no `ff`: create it with make_feed_forward(config).")
        if config.swiglu:
            expect(not isinstance(ff, FeedForward), "config.swiglu is True but `ff` is the ReLU FeedForward: create it "
                   "with make_feed_forward(config).")
        expect(isinstance(getattr(cand, "self_attn", None), nn.Module), "Your block has no `self_attn`: create it with "
               "CausalSelfAttention(config).")
        copy_weights(ref, cand, "Your block")
        cand.eval()
        g = torch.Generator().manual_seed(seed)
        B, n, D = 2, 7, config.d_model
        x = torch.randn(B, n, D, generator=g)
        positions = torch.arange(n)
        out = cand(x, positions)
        expect(isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], (tuple, list)) and len(out[1]) == 2,
               "forward should return a pair (x, kv): the block's output and the (k, v) that self.self_attn returned, "
               "for the cache.")
        got, kv = out
        want, want_kv = ref(x, positions)
        what = f"the block's output (config {_describe(config)})"
        expect_close(got, want, what, mistakes=lambda: {m: _block_variant(ref, x, positions, None, k)[0]
                                                        for k, m in _BLOCK_MISTAKES.items()},
                     otherwise="x = x + Attn(Norm_1(x)), then x = x + FFN(Norm_2(x)).")
        for a, b, name in ((kv[0], want_kv[0], "keys"), (kv[1], want_kv[1], "values")):
            expect_close(a, b, f"the {name} returned for the cache", otherwise="Return what self.self_attn returned with the "
                         "output: `out, kv = self.self_attn(...)`, then `return x, kv`.")
        # the same block continuing a text from its cache: 3 new positions after the 7 above
        S = min(n, config.window or n)
        cache = (want_kv[0][:, :, -S:], want_kv[1][:, :, -S:])
        x_new, later = torch.randn(B, 3, D, generator=g), torch.arange(n, n + 3)
        got, _ = cand(x_new, later, cache)
        expect_close(got, ref(x_new, later, cache)[0], "the output for 3 new positions given the cache of the earlier ones",
                     mistakes=lambda: {m: _block_variant(ref, x_new, later, cache, k)[0] for k, m in _BLOCK_MISTAKES.items()},
                     otherwise="Pass positions and cache on to self.self_attn unchanged.")
        expect_same_gradients(cand, ref, lambda: cand(x, positions)[0], lambda: ref(x, positions)[0], "Your block")


def _describe(config) -> str:
    on = [name for name, flag in (("RMSNorm", config.rmsnorm), ("SwiGLU", config.swiglu), ("RoPE", config.rope))
          if flag]
    if config.kv_heads != config.num_heads:
        on.append(f"g={config.kv_heads}")
    if config.window is not None:
        on.append(f"window={config.window}")
    return ", ".join(on) or "every piece off"

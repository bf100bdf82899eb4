"""Exercises of lesson 09, attention in today's language models: 09.1 the online softmax of
FlashAttention, 09.2 rotary position embeddings, 09.3 grouped-query attention, 09.4 the
sliding-window mask.

Each checker compares the learner's function with the reference in :mod:`utils.modern` (itself tested
against ``F.scaled_dot_product_attention``), on several shapes, and when the values differ, with the
outputs of the realistic mistakes, to name the one made.
"""
from __future__ import annotations

import math

import torch
import torch._dynamo  # noqa: F401 -- see below
import torch.nn.functional as F

from utils import attention, cost, modern
from utils.exercises import exercise
from utils.exercises.checking import Mistake, callable_candidate, close, expect, expect_close, expect_finite, expect_shape, expect_tensor


# 09.1's check measures memory with torch's profiler, whose first use imports torch._dynamo, which wraps
# torch.manual_seed. Importing it here, with the checks, makes that happen before any check runs, so a
# check never changes torch under the learner's (or the grader's) feet.

# ----------------------------------------------------------------------------- 09.1
def online_variant(q, k, v, block_size, causal=False, *, rescale_o=True, rescale_l=True, drop_last_block=False,
                   drop_boundary_key=False, scale=True, divide=True, local_columns=False, diagonal=True):
    """The online softmax written the way a learner might, with one thing changed (defaults: correct)."""
    Lq, Lk = q.shape[-2], k.shape[-2]
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))
    l = q.new_zeros((*q.shape[:-1], 1))
    o = q.new_zeros((*q.shape[:-1], v.shape[-1]))
    rows = torch.arange(Lq)[:, None]
    stop = Lk // block_size * block_size if drop_last_block else Lk
    for start in range(0, stop, block_size):
        end = start + block_size - (1 if drop_boundary_key else 0)
        kb, vb = k[..., start:end, :], v[..., start:end, :]
        s = q @ kb.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
        if causal:
            cols = torch.arange(kb.shape[-2]) + (0 if local_columns else start)
            s = s.masked_fill(cols > rows if diagonal else cols >= rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        p = torch.where(torch.isnan(p), 0.0, p)  # a row with no allowed key yet (only in the mistakes)
        alpha = torch.where(torch.isnan(alpha), 0.0, alpha)
        l = (l * alpha if rescale_l else l) + p.sum(-1, keepdim=True)
        o = (o * alpha if rescale_o else o) + p @ vb
        m = m_new
    return o / l if divide else o


_NO_RESCALE = ("When a block raises a query's running maximum, what you summed so far was computed against the old "
               "maximum: multiply the running denominator *and* the running output by exp(m_old - m_new) before "
               "adding the new block. Yours rescales neither.")
_NO_RESCALE_O = ("The running denominator is rescaled when the maximum changes, but the running output is not: "
                 "o = o * exp(m_old - m_new) + p @ v_block.")
_NO_RESCALE_L = ("The running output is rescaled when the maximum changes, but the running denominator is not: "
                 "l = l * exp(m_old - m_new) + p.sum(-1).")
_DROP_LAST = ("The last block is dropped when Lk is not a multiple of block_size: loop over "
              "`range(0, Lk, block_size)` and slice `k[..., start:start + block_size, :]` (a slice past the end "
              "simply stops at Lk).")
_DROP_BOUNDARY = ("One key at each block boundary is dropped: the block is `k[..., start:start + block_size, :]` "
                  "(Python slices already exclude the end), not `start + block_size - 1`.")
_NOT_SCALED = "The scores are not scaled: s = q @ k_block^T / sqrt(d), as in lesson 03."
_NOT_DIVIDED = "The output is not divided by the running denominator at the end: return o / l."
_LOCAL_COLUMNS = ("The causal mask uses the key's place inside its block (0 .. block_size-1) instead of its position in "
                  "the sequence: key j of the block starting at `start` is at position start + j.")
_NO_DIAGONAL = "The causal mask hides the diagonal: query i may see key i itself (keys j <= i)."
_NO_CAUSAL = "With causal=True, query i may only see keys j <= i: mask the scores of later keys with -inf."


def _online_mistakes(q, k, v, bs, causal):
    out = {
        _NO_RESCALE: online_variant(q, k, v, bs, causal, rescale_o=False, rescale_l=False),
        _NO_RESCALE_O: online_variant(q, k, v, bs, causal, rescale_o=False),
        _NO_RESCALE_L: online_variant(q, k, v, bs, causal, rescale_l=False),
        _DROP_LAST: online_variant(q, k, v, bs, causal, drop_last_block=True) if k.shape[-2] % bs else None,
        _DROP_BOUNDARY: online_variant(q, k, v, bs, causal, drop_boundary_key=True) if bs > 1 else None,
        _NOT_SCALED: online_variant(q, k, v, bs, causal, scale=False),
        _NOT_DIVIDED: online_variant(q, k, v, bs, causal, divide=False),
    }
    if causal:
        out[_LOCAL_COLUMNS] = online_variant(q, k, v, bs, causal, local_columns=True)
        out[_NO_DIAGONAL] = online_variant(q, k, v, bs, causal, diagonal=False)
        out[_NO_CAUSAL] = online_variant(q, k, v, bs, False)
    return out


def _check_online_case(candidate, q, k, v, bs, causal, what):
    got = candidate(q, k, v, bs, causal=causal) if causal else candidate(q, k, v, bs)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    expect_shape(got, want.shape, f"the output ({what})")
    if close(got, want):
        return
    for message, output in _online_mistakes(q, k, v, bs, causal).items():  # a mistake's output may hold NaN
        if output is not None and torch.allclose(got.detach().double(), output.double(), atol=1e-5, rtol=1e-4, equal_nan=True):
            raise Mistake(message)
    expect_finite(got, f"the output ({what})")
    raise Mistake(f"the output ({what}) has the right shape but the wrong values. Per block: s = q @ k_block^T / sqrt(d); "
                  "m_new = max(m, s.max(-1)); p = exp(s - m_new); l = l * exp(m - m_new) + p.sum(-1); "
                  "o = o * exp(m - m_new) + p @ v_block; m = m_new. At the end, o / l.")


@exercise("09.1", "the online softmax (FlashAttention's idea)", reference=modern.online_softmax_attention,
          difficulty=3, minutes=25, hints=[
    "Keep three things per query while you loop over the keys in blocks: the largest score seen so far m, the "
    "denominator l = sum of exp(score - m) and the output o = sum of exp(score - m) * value. Start with m = -inf, "
    "l = 0, o = 0; divide o by l at the very end.",
    "For one block: s = q @ k_block^T / sqrt(d) (..., Lq, b); m_new = torch.maximum(m, s.amax(-1, keepdim=True)); "
    "p = torch.exp(s - m_new). What you summed before was relative to m: multiply it by alpha = exp(m - m_new) "
    "(0 at the first block, since m = -inf). Then l = l * alpha + p.sum(-1, keepdim=True), o = o * alpha + p @ v_block.",
    "causal=True: key positions `cols = torch.arange(start, start + b)` against query positions "
    "`rows = torch.arange(Lq)[:, None]`; `s = s.masked_fill(cols > rows, float('-inf'))`. Every query sees key 0, so "
    "the first block already gives every row a finite maximum.",
])
def check_online_softmax(candidate):
    callable_candidate(candidate, "online_softmax_attention")
    g = torch.Generator().manual_seed(0)
    # 1. Lk = 11 is not a multiple of the block size 4; the later blocks hold larger scores, so that the maximum
    #    changes from block to block and a missing rescaling shows.
    q, k, v = torch.randn(2, 5, 8, generator=g), torch.randn(2, 11, 8, generator=g), torch.randn(2, 11, 3, generator=g)
    k = k * torch.linspace(0.5, 2.5, 11)[:, None]
    _check_online_case(candidate, q, k, v, 4, False, "q (2, 5, 8), k (2, 11, 8), block_size 4")
    # 2. causal, with blocks that straddle the diagonal
    q, k, v = (torch.randn(2, 10, 6, generator=g) for _ in range(3))
    _check_online_case(candidate, q, k, v, 3, True, "causal=True, n = 10, block_size 3")
    # 3. heads, and the two extreme block sizes: one key per block, and one block for all the keys
    q, k, v = torch.randn(2, 3, 7, 4, generator=g), torch.randn(2, 3, 9, 4, generator=g), torch.randn(2, 3, 9, 5, generator=g)
    for bs in (1, 16):
        _check_online_case(candidate, q, k, v, bs, False, f"q (2, 3, 7, 4), block_size {bs}")
    q, k, v = (torch.randn(1, 2, 12, 4, generator=g) for _ in range(3))
    _check_online_case(candidate, q, k, v, 5, True, "causal=True, q (1, 2, 12, 4), block_size 5")
    # 4. large scores: exp(score) overflows float32 unless the running maximum is subtracted
    q, k, v = 40 * torch.randn(1, 6, 8, generator=g), torch.randn(1, 9, 8, generator=g), torch.randn(1, 9, 4, generator=g)
    got = candidate(q, k, v, 3)
    expect_tensor(got, "the output (large scores)")
    expect(bool(torch.isfinite(got).all()),
           "With large scores (about 100) your output has inf or NaN: exp(100) overflows float32. Subtract the running "
           "maximum before the exponential, p = exp(s - m_new), and rescale what you summed by exp(m_old - m_new).")
    _check_online_case(candidate, q, k, v, 3, False, "large scores")
    # 5. the point of it all: no (Lq, Lk) matrix. 512 x 512 float32 scores are 1 MiB; blocks of 32 keys need a
    #    few (512, 32) blocks at a time.
    n = 512
    q, k, v = (torch.randn(1, n, 16, generator=g) for _ in range(3))
    peak = cost.peak_memory(lambda: candidate(q, k, v, 32))
    expect(peak < n * n * 4 // 2,
           f"Your function's peak memory at n = {n}, block_size 32 is {cost.format_bytes(peak)}, about the size of the "
           f"full (Lq, Lk) score matrix ({cost.format_bytes(n * n * 4)}): it should only ever hold one block of scores "
           "(Lq, block_size) at a time. Compute the scores inside the loop, for k[..., start:start + block_size, :].")


# ----------------------------------------------------------------------------- 09.2
def rope_variant(x, positions, base=10000.0, *, interleaved=False, sign=1, exponent="2i/d", ignore_positions=False,
                 ignore_base=False):
    """RoPE written the way a learner might, with one thing changed (defaults: correct)."""
    d = x.shape[-1]
    half = d // 2
    i = torch.arange(half, dtype=torch.float32)
    base = 10000.0 if ignore_base else base
    power = {"2i/d": 2 * i / d, "i/d": i / d, "4i/d": 4 * i / d, "+2i/d": -2 * i / d}[exponent]
    freqs = base ** (-power)
    pos = torch.arange(x.shape[-2]) if ignore_positions else positions
    angles = pos.float()[:, None] * freqs
    cos, sin = torch.cos(angles), torch.sin(sign * angles)
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


_INTERLEAVED = ("You rotate neighbouring features (2i, 2i+1) together, as the RoFormer paper and GPT-J do. That is a "
                "valid convention, but not this course's: here feature i pairs with feature i + d/2 (rotate-half, as "
                "GPT-NeoX and Llama). x1, x2 = x[..., :d//2], x[..., d//2:]. (Weights trained with one layout do not work "
                "with the other.)")
_SIGN = ("The rotation goes the wrong way: rotating (x1, x2) by +theta gives (x1 cos - x2 sin, x1 sin + x2 cos). "
         "The relative-position property still holds, but the model's weights (and ours) expect this direction.")
_EXP_I = ("The frequencies fall too slowly: theta_i = base^(-2i/d) for i = 0 .. d/2-1. You used base^(-i/d) "
          "(the factor 2 is missing).")
_EXP_4I = ("The frequencies fall too fast: theta_i = base^(-2i/d) for i = 0 .. d/2-1. With "
           "`torch.arange(0, d, 2)` the 2 is already in the index: divide by d, do not multiply by 2 again.")
_EXP_SIGN = ("The exponent has the wrong sign: theta_i = base^(-2i/d) gets *smaller* with i (slow clocks for the last "
             "pairs); base^(+2i/d) makes angles of thousands of radians.")
_IGNORE_POS = ("The angles must come from the `positions` argument, not from torch.arange(T): a KV cache, or a "
               "sequence that continues, rotates the new tokens by their true positions.")
_IGNORE_BASE = "The frequencies use 10000 whatever `base` is: theta_i = base ** (-2i/d)."


@exercise("09.2", "rotary position embeddings (RoPE)", reference=modern.apply_rope, difficulty=2, minutes=15, hints=[
    "Split the features in two halves, x1 = x[..., :d//2] and x2 = x[..., d//2:]: feature i and feature i + d/2 form a "
    "pair, a point in a plane, and RoPE turns that point by an angle that depends on the position.",
    "The angle of pair i at position p is p * theta_i with theta_i = base ** (-2 * i / d), i = 0 .. d/2-1: "
    "`angles = positions.float()[:, None] * theta[None, :]`, shape (T, d/2), which broadcasts against (B, h, T, d/2).",
    "A rotation by a: (x1, x2) -> (x1 cos a - x2 sin a, x1 sin a + x2 cos a). "
    "`torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)`.",
])
def check_rope(candidate):
    callable_candidate(candidate, "apply_rope")
    g = torch.Generator().manual_seed(0)
    cases = [((2, 3, 6, 8), torch.arange(6) + 3, None), ((1, 2, 5, 16), torch.tensor([0, 7, 2, 30, 11]), None),
             ((2, 1, 4, 6), torch.arange(4) + 1, 500.0)]
    for shape, positions, base in cases:
        x = torch.randn(*shape, generator=g)
        what = f"x {shape}, positions {positions.tolist()}" + (f", base {base}" if base else "")
        got = candidate(x, positions) if base is None else candidate(x, positions, base)
        expect_shape(got, shape, f"apply_rope ({what})")
        expect_finite(got, f"apply_rope ({what})")
        b = 10000.0 if base is None else base
        mistakes = {
            _INTERLEAVED: rope_variant(x, positions, b, interleaved=True),
            _SIGN: rope_variant(x, positions, b, sign=-1),
            _EXP_I: rope_variant(x, positions, b, exponent="i/d"),
            _EXP_4I: rope_variant(x, positions, b, exponent="4i/d"),
            _EXP_SIGN: rope_variant(x, positions, b, exponent="+2i/d"),
            _IGNORE_POS: rope_variant(x, positions, b, ignore_positions=True),
            _IGNORE_BASE: rope_variant(x, positions, b, ignore_base=True) if base is not None else None,
        }
        norms_kept = close(got.norm(dim=-1), x.norm(dim=-1), atol=1e-4)
        expect_close(got, modern.apply_rope(x, positions, b), f"apply_rope ({what})", mistakes=mistakes, atol=1e-5,
                     otherwise="" if norms_kept else "It is not a rotation: the length of each vector should not change.")
    # The property the lesson relies on: q_m . k_n depends on m - n only.
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)
    score = lambda m, n: (candidate(q, torch.tensor([m])) * candidate(k, torch.tensor([n]))).sum().item()  # noqa: E731
    expect(abs(score(5, 2) - score(25, 22)) < 1e-4, "After your rotation the score q_m . k_n changes when both positions "
           "shift by the same amount; with RoPE it depends on m - n only.")


# ----------------------------------------------------------------------------- 09.3
_REPEAT = ("The groups are laid out the wrong way: `k.repeat(1, h // g, 1, 1)` gives query head i the key/value head "
           "i % g (0, 1, 0, 1, ...), but head i uses head i // (h // g) (0, 0, 1, 1, ...): neighbouring query heads "
           "share. Use `k.repeat_interleave(h // g, dim=1)`, as Llama's repeat_kv and "
           "F.scaled_dot_product_attention(..., enable_gqa=True) do.")


def _gqa_repeat(q, k, v, mask):
    r = q.shape[1] // k.shape[1]
    return attention.scaled_dot_product_attention(q, k.repeat(1, r, 1, 1), v.repeat(1, r, 1, 1), mask)


@exercise("09.3", "grouped-query attention", reference=modern.grouped_query_attention, difficulty=2, minutes=10, hints=[
    "Each of the g key/value heads serves h // g query heads that sit next to each other: query heads 0 .. h/g - 1 use "
    "key/value head 0, and so on. Make k and v as wide as q, with h heads, and then it is lesson 03's attention.",
    "`k.repeat_interleave(h // g, dim=1)` turns heads (k0, k1) into (k0, k0, k1, k1); `k.repeat(1, h // g, 1, 1)` "
    "would give (k0, k1, k0, k1), the wrong pairing.",
    "h, g = q.shape[1], k.shape[1]; k = k.repeat_interleave(h // g, dim=1); v likewise; "
    "return scaled_dot_product_attention(q, k, v, mask)  (from utils.attention, or your 03.1).",
])
def check_gqa(candidate):
    callable_candidate(candidate, "grouped_query_attention")
    g = torch.Generator().manual_seed(0)
    for h, kv, Lq, Lk in ((6, 2, 4, 5), (4, 4, 3, 3), (4, 1, 5, 6), (8, 4, 2, 7)):
        q, k, v = torch.randn(2, h, Lq, 8, generator=g), torch.randn(2, kv, Lk, 8, generator=g), torch.randn(2, kv, Lk, 3, generator=g)
        lengths = torch.tensor([Lk, max(1, Lk - 2)])
        masks = [None, attention.padding_mask(lengths, Lk)[:, None, None, :], torch.rand(Lq, Lk, generator=g) > 0.3]
        masks[2][:, 0] = True
        for mask in masks:
            what = f"h = {h}, g = {kv}, " + ("no mask" if mask is None else f"mask {tuple(mask.shape)}")
            out = candidate(q, k, v) if mask is None else candidate(q, k, v, mask)
            expect(isinstance(out, tuple) and len(out) == 2,
                   "grouped_query_attention should return a pair `(output, weights)`, as lesson 03's attention does.")
            output, weights = out
            expect_shape(output, (2, h, Lq, 3), f"output ({what})",
                         "One output per *query* head: (B, h, Lq, dv)." if expect_tensor(output, "output").shape[1] == kv else "")
            expect_shape(weights, (2, h, Lq, Lk), f"weights ({what})")
            want_out, want_w = modern.grouped_query_attention(q, k, v, mask)
            rep = _gqa_repeat(q, k, v, mask) if kv not in (1, h) else (None, None)
            expect_close(weights, want_w, f"weights ({what})", mistakes={_REPEAT: rep[1]},
                         otherwise="Each query head's weights are softmax(q_i k_j^T / sqrt(d)) with its own group's keys, "
                                   "masked as in lesson 03 (True = may attend).")
            expect_close(output, want_out, f"output ({what})", mistakes={_REPEAT: rep[0]},
                         otherwise="The weights are right but the output is not: weights @ v with v's heads repeated like k's.")
            if mask is None:
                torch_out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                expect(close(output, torch_out), f"Your output ({what}) differs from "
                       "F.scaled_dot_product_attention(q, k, v, enable_gqa=True).")
    # A query whose keys are all masked: zero weights and a zero output, as in 03.1
    q, k, v = torch.randn(1, 4, 3, 8, generator=g), torch.randn(1, 2, 4, 8, generator=g), torch.randn(1, 2, 4, 8, generator=g)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    output, weights = candidate(q, k, v, mask)
    expect(not torch.isnan(output).any() and close(weights[:, :, 1], torch.zeros(1, 4, 4)),
           "A query whose keys are all masked should get all-zero weights and a zero output, never NaN, as in lesson 03: "
           "call the course's scaled_dot_product_attention (or your 03.1) after repeating the heads.")


# ----------------------------------------------------------------------------- 09.4
@exercise("09.4", "the sliding-window mask", reference=modern.sliding_window_mask, difficulty=1, minutes=5, hints=[
    "Query i may see key j when j is not in the future (j <= i) and at most window - 1 positions back: the query "
    "itself and the window - 1 keys before it, `window` keys in all.",
    "`i = torch.arange(n)`; `offset = i[:, None] - i[None, :]` is (n, n) with row i, column j = i - j.",
    "`(offset >= 0) & (offset < window)`, with `torch.arange(n, device=device)`.",
])
def check_sliding_window_mask(candidate):
    callable_candidate(candidate, "sliding_window_mask")
    for n, w in ((8, 3), (6, 1), (4, 10), (9, 4), (1, 2)):
        got = candidate(n, w)
        what = f"sliding_window_mask({n}, {w})"
        expect_tensor(got, what)
        expect_shape(got, (n, n), what)
        want = modern.sliding_window_mask(n, w)
        if got.dtype != torch.bool:
            hint = "The pattern is right, but return" if torch.equal(got.bool(), want) else "Return"
            raise Mistake(f"{hint} a bool tensor (True = may attend), not {got.dtype}.")
        if torch.equal(got, want):
            continue
        i = torch.arange(n)
        off = i[:, None] - i[None, :]
        named = [
            (off.abs() < w, "Your band is symmetric: it lets query i see the keys after it too. A language model's "
                            "window is causal: only keys j <= i, 0 <= i - j < window."),
            ((off >= 0) & (off <= w), "Your window is one too wide: it lets query i see window + 1 keys. The query itself "
                                      "counts: 0 <= i - j < window (`<`, not `<=`)."),
            ((off >= 0) & (off < w - 1), "Your window is one too narrow: query i should see itself and window - 1 keys "
                                         "before it, window keys in all."),
            ((off > 0) & (off <= w), "The diagonal is excluded: query i may see itself (i - j = 0)."),
            ((-off >= 0) & (-off < w), "Your band lies above the diagonal: query i sees keys i .. i + window - 1, the "
                                       "future. Row i is query i, column j is key j: 0 <= i - j < window."),
            (off >= 0, "The window is missing: this is the plain causal mask. Also require i - j < window."),
            (~want, "True where attention is *forbidden*: in the course True means may attend."),
        ]
        for pattern, message in named:
            if torch.equal(got, pattern) and not torch.equal(pattern, want):
                raise Mistake(message)
        raise Mistake(f"{what} should be True exactly where 0 <= i - j < window.")
    got = candidate(3, 2, device=torch.device("cpu"))
    expect(torch.is_tensor(got) and got.device.type == "cpu", "sliding_window_mask(n, window, device) should create the "
           "mask on `device`.")

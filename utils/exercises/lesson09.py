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
from torch.overrides import TorchFunctionMode

from utils.exercises.checking import Mistake, callable_candidate, close, expect, expect_close, expect_finite, expect_shape, expect_tensor


# 09.1's check measures memory with torch's profiler, whose first use imports torch._dynamo, which wraps
# torch.manual_seed. Importing it here, with the checks, makes that happen before any check runs, so a
# check never changes torch under the learner's (or the grader's) feet.

# ----------------------------------------------------------------------------- 09.1
def online_variant(q, k, v, block_size, causal=False, *, rescale_o=True, rescale_l=True, drop_last_block=False,
                   drop_boundary_key=False, scale=True, divide=True, local_columns=False, diagonal=True,
                   inverted=False, shared_max=False, m0=float("-inf"), old_max=False):
    """The online softmax written the way a learner might, with one thing changed (defaults: correct).

    inverted: the rescale factor exp(m_new - m); shared_max: one running maximum for all the queries;
    m0: the running maximum's start (0 instead of -inf); old_max: p = exp(s - m) with the maximum before the block.
    """
    Lq, Lk = q.shape[-2], k.shape[-2]
    m = q.new_full((*q.shape[:-1], 1), m0)
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
        block_max = s.amax(dim=(-2, -1), keepdim=True) if shared_max else s.amax(-1, keepdim=True)
        m_new = torch.maximum(m, block_max)
        alpha = torch.exp(m_new - m) if inverted else torch.exp(m - m_new)
        p = torch.exp(s - (m if old_max else m_new))
        if not (inverted or old_max):
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


_FIRST_BLOCK_NAN = ("Your output is NaN from the first block on. There the old maximum is -inf, so the rescale factor "
                    "must be exp(m_old - m_new) = 0, not exp(m_new - m_old) = inf (inverted); and p must use the new "
                    "maximum, exp(s - m_new), not the old one (exp(s + inf) = inf).")
_OVERFLOW = ("With large scores (about 150) your output has inf or NaN: exp(150) overflows float32. Subtract the running "
             "maximum before the exponential, p = exp(s - m_new), and rescale what you summed by exp(m_old - m_new).")
_SHARED_MAX = ("A query whose scores all lie far below another query's (here about -60 against +150) gets NaN: your "
               "maximum is shared by every query (or the whole block), so exp(s - m) underflows to 0 for all its keys "
               "and 0/0 = NaN. Keep one running maximum per query: s.amax(dim=-1, keepdim=True), m of shape (..., Lq, 1).")
_M_ZERO = ("A query whose scores are all very negative (about -150) gets NaN: your running maximum starts at 0, so "
           "exp(s - 0) underflows to 0 for every key and 0/0 = NaN. Start it at -inf (q.new_full(..., float('-inf'))): "
           "the first block's maximum then becomes m.")


def _exp_without_max(q, k, v):
    w = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    return (w @ v) / w.sum(-1, keepdim=True)


def _online_mistakes(q, k, v, bs, causal):
    out = {
        _NO_RESCALE: online_variant(q, k, v, bs, causal, rescale_o=False, rescale_l=False),
        _NO_RESCALE_O: online_variant(q, k, v, bs, causal, rescale_o=False),
        _NO_RESCALE_L: online_variant(q, k, v, bs, causal, rescale_l=False),
        _DROP_LAST: online_variant(q, k, v, bs, causal, drop_last_block=True) if k.shape[-2] % bs else None,
        _DROP_BOUNDARY: online_variant(q, k, v, bs, causal, drop_boundary_key=True) if bs > 1 else None,
        _NOT_SCALED: online_variant(q, k, v, bs, causal, scale=False),
        _NOT_DIVIDED: online_variant(q, k, v, bs, causal, divide=False),
        _FIRST_BLOCK_NAN: online_variant(q, k, v, bs, causal, inverted=True),
    }
    if causal:
        out[_LOCAL_COLUMNS] = online_variant(q, k, v, bs, causal, local_columns=True)
        out[_NO_DIAGONAL] = online_variant(q, k, v, bs, causal, diagonal=False)
        out[_NO_CAUSAL] = online_variant(q, k, v, bs, False)
    return out


def _large_score_mistakes(q, k, v, bs):
    return {_OVERFLOW: _exp_without_max(q, k, v), _SHARED_MAX: online_variant(q, k, v, bs, shared_max=True),
            _M_ZERO: online_variant(q, k, v, bs, m0=0.0), **_online_mistakes(q, k, v, bs, False)}


def _same(got, output) -> bool:
    """Equal within float error, NaN where ``output`` has NaN."""
    return (output is not None and got.shape == output.shape
            and torch.allclose(got.detach().double(), output.double(), atol=1e-5, rtol=1e-4, equal_nan=True))


def _check_online_case(candidate, q, k, v, bs, causal, what, mistakes=None):
    got = candidate(q, k, v, bs, causal=causal) if causal else candidate(q, k, v, bs)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    expect_shape(got, want.shape, f"the output ({what})")
    if close(got, want):
        return
    for message, output in (mistakes or _online_mistakes)(q, k, v, bs, *(() if mistakes else (causal,))).items():
        if _same(got, output):  # a mistake's output may hold NaN
            raise Mistake(message)
    expect_finite(got, f"the output ({what})")
    raise Mistake(f"the output ({what}) has the right shape but the wrong values. Per block: s = q @ k_block^T / sqrt(d); "
                  "m_new = max(m, s.max(-1)); p = exp(s - m_new); l = l * exp(m - m_new) + p.sum(-1); "
                  "o = o * exp(m - m_new) + p @ v_block; m = m_new. At the end, o / l.")


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class _KeysInBlocks(TorchFunctionMode):
    """During one call of the learner's online softmax, follow which tensors come from q and which from k, and
    note the first operation that breaks "one block of keys at a time": one that meets q with keys past a block
    (a full row of scores, whatever the queries are tiled into), a result from q and k larger than one block of
    scores (every block at once), or any (Lq, Lk)-sized result (a whole mask)."""

    def __init__(self, q, k, block_size, max_width):
        super().__init__()
        self.Lq, self.Lk = q.shape[-2], k.shape[-2]
        self.one_block = q.shape[:-1].numel() * block_size * max_width  # the scores of one block, times d or dv
        self.sources = {id(q): (q, frozenset("q")), id(k): (k, frozenset("k"))}  # id -> (tensor kept alive, sources)
        self.broken = None

    def _from(self, t):
        return self.sources.get(id(t), (None, frozenset()))[1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.broken is None:
            given = list(_tensors((args, kwargs)))
            made = list(_tensors(out))
            sources = frozenset().union(*(self._from(t) for t in given))
            name = getattr(func, "__name__", "an operation")
            if sources >= {"q", "k"}:
                made_ids = {id(t) for t in made}
                wide = [t for t in given + made if "k" in (sources if id(t) in made_ids else self._from(t))
                        and any(n >= self.Lk for n in t.shape[-2:])]
                if wide:
                    self.broken = ("row", name, tuple(wide[-1].shape))
                else:
                    big = [t for t in made if t.numel() > self.one_block]
                    if big:
                        self.broken = ("blocks", name, tuple(big[0].shape))
            if self.broken is None:
                for t in made:
                    dims = sorted(t.shape)
                    if len(dims) >= 2 and dims[-1] >= self.Lk and dims[-2] >= self.Lq and t._base is None:
                        self.broken = ("matrix", name, tuple(t.shape))
            for t in made:
                self.sources[id(t)] = (t, self._from(t) | sources)
        return out


def _expect_keys_in_blocks(candidate, causal):
    """The candidate holds one block of keys' scores at a time (see _KeysInBlocks)."""
    g = torch.Generator().manual_seed(5)
    B, Lq, Lk, d, dv, bs = 2, 6, 61, 4, 3, 8  # Lk far above every other size: a dimension >= Lk can only be the keys
    q, k, v = torch.randn(B, Lq, d, generator=g), torch.randn(B, Lk, d, generator=g), torch.randn(B, Lk, dv, generator=g)
    watch = _KeysInBlocks(q, k, bs, max(d, dv))
    with watch:
        got = candidate(q, k, v, bs, causal=causal) if causal else candidate(q, k, v, bs)
    if watch.broken is None:
        expect(close(got, F.scaled_dot_product_attention(q, k, v, is_causal=causal)),
               f"With Lq = {Lq} queries, Lk = {Lk} keys and block_size {bs}{', causal' if causal else ''}, your output is wrong.")
        return
    kind, name, shape = watch.broken
    where = f"(`{name}` gives or takes a tensor of shape {shape}, with q ({B}, {Lq}, {d}), k ({B}, {Lk}, {d}), block_size {bs})"
    if kind == "row":
        raise Mistake(f"Your function meets the queries with all {Lk} keys at once {where}: a full row of scores per "
                      "query. Tiling the queries (or calling an attention function per query) keeps the result exact, "
                      "but it is not the online softmax, and its memory is not what the lesson measures. Loop over "
                      "blocks of *keys*, k[..., start:start + block_size, :], and keep the running maximum, denominator "
                      "and output per query.")
    if kind == "blocks":
        raise Mistake(f"Your function computes the scores of every block at once {where}: that is the whole (Lq, Lk) "
                      "score matrix in another shape. Compute one block's scores (..., Lq, block_size) per step of a "
                      "loop over the blocks of keys.")
    raise Mistake(f"Your function builds a tensor as large as the whole (Lq, Lk) matrix {where}, e.g. the causal mask of "
                  "every query and key: never the (Lq, Lk) matrix, as the docstring says. Build each block's part inside "
                  "the loop: cols = torch.arange(start, start + b) against rows = torch.arange(Lq)[:, None].")


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
    # 4. large scores of both signs (rows of about +150, -150 and -60): exp overflows float32 unless the running
    #    maximum is subtracted, and underflows to 0 / 0 unless each query keeps its own maximum, started at -inf
    k, v = 0.5 + torch.rand(1, 9, 8, generator=g), torch.randn(1, 9, 4, generator=g)
    q = torch.tensor([60.0, -60.0, -20.0, 45.0, -60.0, -20.0])[:, None] * (0.5 + torch.rand(1, 6, 8, generator=g))
    _check_online_case(candidate, q, k, v, 3, False, "large scores", mistakes=_large_score_mistakes)
    # 5. one block of keys at a time: no full row of scores (query tiling), not every block at once, no (Lq, Lk) mask
    for causal in (False, True):
        _expect_keys_in_blocks(candidate, causal)
    # 6. the point of it all: memory that grows like n, never like the (Lq, Lk) matrix (the lesson measures yours
    #    from n = 256 to 4096). 1024 x 1024 float32 scores are 4 MiB; blocks of 32 keys need a few (1024, 32) blocks.
    peaks = {}
    for n in (256, 1024):
        q, k, v = (torch.randn(1, n, 16, generator=g) for _ in range(3))
        peaks[n] = cost.peak_memory(lambda: candidate(q, k, v, 32))
    n = 1024
    expect(peaks[n] < n * n * 4 // 2,
           f"Your function's peak memory at n = {n}, block_size 32 is {cost.format_bytes(peaks[n])}, about the size of "
           f"the full (Lq, Lk) score matrix ({cost.format_bytes(n * n * 4)}): it should only ever hold one block of "
           "scores (Lq, block_size) at a time. Compute the scores inside the loop, for k[..., start:start + block_size, :].")
    growth = peaks[1024] / max(peaks[256], 1)
    expect(growth < 4 * 1.4,
           f"Your function's peak memory grows {growth:.1f} times from n = 256 to n = 1024 (block_size 32), faster than n "
           f"(4 times): {cost.format_bytes(peaks[256])}, then {cost.format_bytes(peaks[1024])}. Something you keep grows with "
           "the number of blocks as well as with n, e.g. a list of every block's scores or partial outputs: keep only "
           "the running maximum, denominator and output, and let each block's tensors go.")


# ----------------------------------------------------------------------------- 09.2
def rope_variant(x, positions, base=10000.0, *, interleaved=False, sign=1, exponent="2i/d", ignore_positions=False,
                 ignore_base=False, swap_trig=False, first=0, halves_swapped=False, pair_swapped=False):
    """RoPE written the way a learner might, with one thing changed (defaults: correct).

    exponent "0": every pair at frequency 1 (``2 * i // d`` is 0); swap_trig: cos and sin exchanged; first: positions
    counted from ``first``; halves_swapped: the two rotated halves concatenated the other way round; pair_swapped:
    the pair rotated as (x2, x1).
    """
    d = x.shape[-1]
    half = d // 2
    i = torch.arange(half, dtype=torch.float32)
    base = 10000.0 if ignore_base else base
    power = {"2i/d": 2 * i / d, "i/d": i / d, "4i/d": 4 * i / d, "+2i/d": -2 * i / d, "0": 0 * i}[exponent]
    freqs = base ** (-power)
    pos = torch.arange(x.shape[-2]) if ignore_positions else positions
    angles = (pos.float() + first)[:, None] * freqs
    cos, sin = torch.cos(angles), torch.sin(sign * angles)
    if swap_trig:
        cos, sin = torch.sin(angles), torch.cos(angles)
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    x1, x2 = x[..., :half], x[..., half:]
    if pair_swapped:
        x1, x2 = x2, x1
    a, b = x1 * cos - x2 * sin, x1 * sin + x2 * cos
    return torch.cat([b, a] if halves_swapped else [a, b], dim=-1)


_INTERLEAVED = ("You rotate neighbouring features (2i, 2i+1) together, as the RoFormer paper and GPT-J do. That is a "
                "valid convention (Meta's reference Llama code does it too, as a complex multiplication), but not this "
                "course's: here feature i pairs with feature i + d/2 (rotate-half, the layout of GPT-NeoX and of Hugging "
                "Face's models, its Llama included). x1, x2 = x[..., :d//2], x[..., d//2:]. (Weights trained with one "
                "layout do not work with the other.)")
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
_EXP_ZERO = ("Every pair turns at the same frequency, 1 radian per position: the exponent 2i/d came out 0 for every i. "
             "`2 * i // d` is integer division; write `2 * i / d` with a float i (`torch.arange(d // 2, dtype=torch.float32)`).")
_TRIG_SWAPPED = ("cos and sin are exchanged: at position 0 RoPE leaves x unchanged (cos 0 = 1, sin 0 = 0). The rotation "
                 "by a is (x1 cos a - x2 sin a, x1 sin a + x2 cos a).")
_ONE_BASED = ("The angles are one position ahead: use the `positions` as they are (position 0 is not rotated), not "
              "positions + 1.")
_HALVES_SWAPPED = ("The two rotated halves are concatenated the other way round: the first half of the output is "
                   "x1 cos - x2 sin (feature i), the second x1 sin + x2 cos (feature i + d/2).")
_PAIR_SWAPPED = ("You rotated the pair as (x2, x1): x1 = x[..., :d//2] is feature i, x2 = x[..., d//2:] its partner "
                 "i + d/2, and the first half of the output is x1 cos - x2 sin.")


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
            _EXP_ZERO: rope_variant(x, positions, b, exponent="0"),
            _TRIG_SWAPPED: rope_variant(x, positions, b, swap_trig=True),
            _ONE_BASED: rope_variant(x, positions, b, first=1),
            _HALVES_SWAPPED: rope_variant(x, positions, b, halves_swapped=True),
            _PAIR_SWAPPED: rope_variant(x, positions, b, pair_swapped=True),
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


def _gqa_mistakes(q, k, v, mask) -> tuple[dict, dict]:
    """({message: weights}, {message: output}) of realistic mistakes."""
    h, g = q.shape[1], k.shape[1]
    r = h // g
    kk, vv = k.repeat_interleave(r, 1), v.repeat_interleave(r, 1)
    sdpa = attention.scaled_dot_product_attention
    weights, outputs = {}, {}
    if g not in (1, h):
        w = _gqa_repeat(q, k, v, mask)
        weights[_REPEAT], outputs[_REPEAT] = w[1], w[0]
        outputs["The weights are right, but v's heads are laid out the wrong way: repeat v exactly as k, "
                "`v.repeat_interleave(h // g, dim=1)` (you used `v.repeat(...)`)."] = sdpa(q, kk, v.repeat(1, r, 1, 1), mask)[0]
    weights["The scores are not scaled: softmax(q k^T / sqrt(d)), as in lesson 03."] = sdpa(q * math.sqrt(q.shape[-1]), kk, vv, mask)[1]
    if mask is not None:
        weights["The mask is ignored: pass it on to the attention (True = may attend)."] = sdpa(q, kk, vv)[1]
        weights["The mask is inverted: in the course True means *may attend*; pass it as it is."] = sdpa(q, kk, vv, ~mask)[1]
    return weights, outputs


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
            if weights is None and torch.is_tensor(output):
                raise Mistake("Your function returns no weights (None): F.scaled_dot_product_attention gives only the "
                              "output. Return (output, weights), as lesson 03's attention does: repeat k and v, then "
                              "call the course's scaled_dot_product_attention (or your 03.1). The lesson's heatmaps "
                              "and its all-masked-row test read the weights.")
            expect_shape(output, (2, h, Lq, 3), f"output ({what})",
                         "One output per *query* head: (B, h, Lq, dv)." if expect_tensor(output, "output").shape[1] == kv else "")
            expect_shape(weights, (2, h, Lq, Lk), f"weights ({what})")
            want_out, want_w = modern.grouped_query_attention(q, k, v, mask)
            wrong_w, wrong_out = _gqa_mistakes(q, k, v, mask)
            expect_close(weights, want_w, f"weights ({what})", mistakes=wrong_w,
                         otherwise="Each query head's weights are softmax(q_i k_j^T / sqrt(d)) with its own group's keys, "
                                   "masked as in lesson 03 (True = may attend).")
            expect_close(output, want_out, f"output ({what})", mistakes=wrong_out,
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

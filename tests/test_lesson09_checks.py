"""Lesson 09's references equal PyTorch's own attention, and its checks accept them and name each realistic mistake."""
import math

import pytest
import torch
import torch.nn.functional as F

import utils
from utils import attention, cost, modern
from utils.exercises import lesson09
from check_helpers import fails_with


def passes(id, candidate):
    result = utils.check(id, candidate)
    assert result, result.message


# ---- the references against PyTorch
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape, Lk, block", [((2, 3, 37, 16), 37, 8), ((5, 20, 8), 20, 7), ((1, 1, 64, 32), 64, 64),
                                              ((2, 9, 4), 13, 1)])
def test_online_softmax_equals_torch(shape, Lk, block, causal):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(*shape, generator=g)
    k = torch.randn(*shape[:-2], Lk, shape[-1], generator=g)
    v = torch.randn(*shape[:-2], Lk, 5, generator=g)
    got = modern.online_softmax_attention(q, k, v, block, causal=causal)
    assert (got - F.scaled_dot_product_attention(q, k, v, is_causal=causal)).abs().max() < 1e-5


def test_online_softmax_memory_is_linear_and_naive_quadratic():
    peaks = {}
    for n in (256, 512, 1024):
        q, k, v = (torch.randn(1, 1, n, 32) for _ in range(3))
        peaks[n] = (cost.peak_memory(lambda: modern.online_softmax_attention(q, k, v, 64)),
                    cost.peak_memory(lambda: attention.scaled_dot_product_attention(q, k, v)))
    assert cost.loglog_slope(list(peaks), [p[0] for p in peaks.values()]) < 1.1
    assert cost.loglog_slope(list(peaks), [p[1] for p in peaks.values()]) > 1.8
    assert peaks[1024][0] < 1024 * 1024 * 4 / 2  # under half of one (n, n) float32 matrix


def test_gqa_equals_torch_enable_gqa_and_mha_when_g_equals_h():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 8, 5, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g)
    assert (modern.grouped_query_attention(q, k, v)[0] - F.scaled_dot_product_attention(q, k, v, enable_gqa=True)).abs().max() < 1e-5
    mask = attention.causal_mask(7)[-5:]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert (modern.grouped_query_attention(q, k, v, mask)[0] - want).abs().max() < 1e-5
    torch.manual_seed(0)
    mha = attention.MultiHeadAttention(32, 4)
    gqa = modern.GroupedQueryAttention(32, 4, 4)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(3, 6, 32)
    for a, b in zip(mha(x, x, x, attention.causal_mask(6)), gqa(x, x, x, attention.causal_mask(6))):
        assert (a - b).abs().max() < 1e-6


def test_gqa_module_cache_shrinks_by_h_over_g():
    x = torch.randn(1, 100, 32)
    sizes = {g: sum(t.numel() for t in modern.GroupedQueryAttention(32, 8, g).keys_values(x)) for g in (8, 4, 2, 1)}
    assert sizes == {8: 6400, 4: 3200, 2: 1600, 1: 800}


def test_rope_relative_position_property_and_rotation():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 64, generator=g), torch.randn(1, 1, 1, 64, generator=g)
    def score(m, n):
        return (modern.apply_rope(q, torch.tensor([m])) * modern.apply_rope(k, torch.tensor([n]))).sum()
    for m, n in [(5, 2), (0, 9), (40, 40)]:
        for shift in (1, 17, 100):
            assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-5
    x = torch.randn(2, 3, 10, 16, generator=g)
    y = modern.apply_rope(x, torch.arange(10))
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation keeps lengths
    assert torch.equal(modern.apply_rope(x, torch.zeros(10, dtype=torch.long)), x)  # position 0: no rotation


def test_rope_matches_the_rotate_half_formula_of_llama():
    """Hugging Face's Llama: q * cos + rotate_half(q) * sin, with cos/sin of cat(freqs, freqs)."""
    d, T = 16, 7
    x = torch.randn(1, 2, T, d)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    emb = torch.cat([torch.arange(T).float()[:, None] * inv_freq] * 2, dim=-1)
    rotate_half = torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1)
    assert torch.allclose(modern.apply_rope(x, torch.arange(T)), x * emb.cos() + rotate_half * emb.sin(), atol=1e-6)


def test_sliding_window_attention_computes_the_band_only():
    for n, w in [(10, 3), (64, 8), (37, 5), (5, 8)]:
        q, k, v = (torch.randn(2, 3, n, 8) for _ in range(3))
        want = attention.scaled_dot_product_attention(q, k, v, modern.sliding_window_mask(n, w))[0]
        assert (modern.sliding_window_attention(q, k, v, w) - want).abs().max() < 1e-5
    q, k, v = (torch.randn(1, 1, 2048, 16) for _ in range(3))
    assert cost.peak_memory(lambda: modern.sliding_window_attention(q, k, v, 32)) < 2048 * 2048 * 4 / 4


def test_receptive_field_grows_by_w_minus_1_per_layer():
    w, d = 4, 8
    mask = modern.sliding_window_mask(40, w)
    torch.manual_seed(0)
    blocks = [modern.GroupedQueryAttention(d, 2) for _ in range(4)]
    layers = [lambda x, b=b: b(x, x, x, mask)[0] for b in blocks]
    assert [modern.receptive_field(layers[:L], 40, d) for L in (1, 2, 3, 4)] == [1 + L * (w - 1) for L in (1, 2, 3, 4)]


def test_lag_task_labels():
    task = modern.LagTask(2)
    src = torch.tensor([[3, 4, 5, 6, 0]])
    assert task.labels(src, src != 0).tolist() == [[1, 1, 3, 4, 0]]
    assert modern.LagTask((1, 2), num_symbols=10).labels(src, src != 0).tolist() == [[1, 1, 4, 6, 0]]


def test_tagger_rejects_a_length_beyond_the_learned_table():
    task = modern.LagTask()
    model = modern.Tagger(len(task.vocab), "learned", max_len=16)
    with pytest.raises(ValueError, match="learned position table"):
        modern.tagging_accuracy(model, task, length=24, n=4)


# ---- 09.1 the online softmax
def online(**kw):
    return lambda q, k, v, block_size, causal=False: lesson09.online_variant(q, k, v, block_size, causal, **kw)


def test_online_reference_and_variant_pass():
    passes("09.1", modern.online_softmax_attention)
    passes("09.1", online())


def test_online_full_matrix_is_rejected_by_its_memory():
    def naive(q, k, v, block_size, causal=False):
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None
        return attention.scaled_dot_product_attention(q, k, v, mask)[0]
    fails_with("09.1", naive, "full row of scores")


@pytest.mark.parametrize("kw, phrase", [
    (dict(rescale_o=False, rescale_l=False), "rescales neither"),
    (dict(rescale_o=False), "running output is not"),
    (dict(rescale_l=False), "running denominator is not"),
    (dict(drop_last_block=True), "last block is dropped"),
    (dict(drop_boundary_key=True), "block boundary"),
    (dict(scale=False), "not scaled"),
    (dict(divide=False), "not divided"),
    (dict(local_columns=True), "inside its block"),
    (dict(diagonal=False), "hides the diagonal"),
])
def test_online_mistakes_are_named(kw, phrase):
    fails_with("09.1", online(**kw), phrase)


def test_online_causal_ignored_and_overflow_are_named():
    fails_with("09.1", lambda q, k, v, block_size, causal=False: modern.online_softmax_attention(q, k, v, block_size),
               "may only see keys j <= i")

    def no_max(q, k, v, block_size, causal=False):  # exp of the raw scores: overflows for large ones
        w = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
        if causal:
            w = w * torch.ones(q.shape[-2], k.shape[-2]).tril()
        return (w @ v) / w.sum(-1, keepdim=True)
    fails_with("09.1", no_max, "overflows")


# ---- 09.2 RoPE
def rope(**kw):
    return lambda x, positions, base=10000.0: lesson09.rope_variant(x, positions, base, **kw)


def test_rope_reference_and_variant_pass():
    passes("09.2", modern.apply_rope)
    passes("09.2", rope())


@pytest.mark.parametrize("kw, phrase", [
    (dict(interleaved=True), "but not this course's"),
    (dict(sign=-1), "wrong way"),
    (dict(exponent="i/d"), "factor 2 is missing"),
    (dict(exponent="4i/d"), "fall too fast"),
    (dict(exponent="+2i/d"), "wrong sign"),
    (dict(ignore_positions=True), "`positions` argument"),
    (dict(ignore_base=True), "whatever `base` is"),
])
def test_rope_mistakes_are_named(kw, phrase):
    fails_with("09.2", rope(**kw), phrase)


def test_rope_in_place_and_not_a_rotation():
    def in_place(x, positions, base=10000.0):
        x.mul_(1.0)
        x[..., 0] += 1
        return x
    fails_with("09.2", in_place, "in place")
    fails_with("09.2", lambda x, positions, base=10000.0: 2 * modern.apply_rope(x, positions, base), "not a rotation")


# ---- 09.3 GQA
def test_gqa_reference_passes_and_repeat_is_named():
    passes("09.3", modern.grouped_query_attention)

    def repeat(q, k, v, mask=None):
        r = q.shape[1] // k.shape[1]
        return attention.scaled_dot_product_attention(q, k.repeat(1, r, 1, 1), v.repeat(1, r, 1, 1), mask)
    fails_with("09.3", repeat, "repeat_interleave")


def test_gqa_other_mistakes():
    def kv_heads_out(q, k, v, mask=None):  # averages the query heads of a group: one output per kv head
        h, g = q.shape[1], k.shape[1]
        return attention.scaled_dot_product_attention(q.unflatten(1, (g, h // g)).mean(2), k, v, mask)
    fails_with("09.3", kv_heads_out, "query* head")

    def nan_rows(q, k, v, mask=None):
        r = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(r, 1), v.repeat_interleave(r, 1)
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        w = s.softmax(-1)
        return w @ v, w
    fails_with("09.3", nan_rows, "all masked")


# ---- 09.4 the sliding-window mask
def test_window_reference_passes():
    passes("09.4", modern.sliding_window_mask)


def _offsets(n, device=None):
    i = torch.arange(n, device=device)
    return i[:, None] - i[None, :]


@pytest.mark.parametrize("fn, phrase", [
    (lambda n, w, device=None: _offsets(n).abs() < w, "symmetric"),
    (lambda n, w, device=None: (_offsets(n) >= 0) & (_offsets(n) <= w), "one too wide"),
    (lambda n, w, device=None: (_offsets(n) >= 0) & (_offsets(n) < w - 1), "one too narrow"),
    (lambda n, w, device=None: (_offsets(n) > 0) & (_offsets(n) <= w), "diagonal is excluded"),
    (lambda n, w, device=None: (_offsets(n) <= 0) & (_offsets(n) > -w), "above the diagonal"),
    (lambda n, w, device=None: _offsets(n) >= 0, "window is missing"),
    (lambda n, w, device=None: ~modern.sliding_window_mask(n, w), "forbidden"),
    (lambda n, w, device=None: modern.sliding_window_mask(n, w).int(), "bool"),
])
def test_window_mistakes_are_named(fn, phrase):
    fails_with("09.4", fn, phrase)


def test_unfilled_skeletons_read_not_attempted():
    def skeleton(*args, **kwargs):
        raise NotImplementedError()
    for id in ("09.1", "09.2", "09.3", "09.4"):
        assert utils.check(id, skeleton).status == "not attempted"


# ---- issue 24: online over keys, NaN named, more mistakes, and right answers written other ways
def _blocks(q, k, v, block_size, causal, *, rows=None):
    """The online softmax over blocks of keys, for the queries at positions ``rows`` (all by default)."""
    rows = torch.arange(q.shape[-2])[:, None] if rows is None else rows
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))
    l, o = q.new_zeros((*q.shape[:-1], 1)), q.new_zeros((*q.shape[:-1], v.shape[-1]))
    for start in range(0, k.shape[-2], block_size):
        kb, vb = k[..., start:start + block_size, :], v[..., start:start + block_size, :]
        s = q @ kb.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            s = s.masked_fill(torch.arange(start, start + kb.shape[-2]) > rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha, p = torch.exp(m - m_new).nan_to_num(0.0), torch.exp(s - m_new).nan_to_num(0.0)
        l, o, m = l * alpha + p.sum(-1, keepdim=True), o * alpha + p @ vb, m_new
    return o / l


def test_online_softmax_written_other_ways_passes():
    def zero_d_tensors(q, k, v, block_size, causal=False):  # the issue's: a scale and -inf as 0-d tensors
        scale = 1 / torch.sqrt(torch.tensor(q.shape[-1]))
        return _blocks(q * scale * math.sqrt(q.shape[-1]), k, v, block_size, causal)

    def queries_and_keys_tiled(q, k, v, block_size, causal=False):  # FlashAttention-2: query tiles, key blocks inside
        return torch.cat([_blocks(q[..., i:i + 3, :], k, v, block_size, causal, rows=torch.arange(i, i + 3)[:q.shape[-2] - i, None])
                          for i in range(0, q.shape[-2], 3)], dim=-2)

    def log_sum_exp(q, k, v, block_size, causal=False):  # a running log-sum-exp instead of (m, l)
        lse, o = q.new_full((*q.shape[:-1], 1), float("-inf")), q.new_zeros((*q.shape[:-1], v.shape[-1]))
        rows = torch.arange(q.shape[-2])[:, None]
        for start in range(0, k.shape[-2], block_size):
            s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
            if causal:
                s = s.masked_fill(torch.arange(start, start + s.shape[-1]) > rows, float("-inf"))
            block = torch.logsumexp(s, -1, keepdim=True)
            new = torch.logaddexp(lse, block)
            o = o * torch.exp(lse - new).nan_to_num(0.0) + (torch.exp(s - block).nan_to_num(0.0)
                                                            @ v[..., start:start + block_size, :]) * torch.exp(block - new).nan_to_num(0.0)
            lse = new
        return o

    for candidate in (zero_d_tensors, queries_and_keys_tiled, log_sum_exp):
        passes("09.1", candidate)


def test_online_softmax_must_go_over_blocks_of_keys():
    def query_tiles(q, k, v, block_size, causal=False):  # a full row of scores per query tile: exact, not online
        Lk = k.shape[-2]
        out = []
        for i in range(0, q.shape[-2], 2):
            s = q[..., i:i + 2, :] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if causal:
                s = s.masked_fill(torch.arange(Lk) > torch.arange(i, i + s.shape[-2])[:, None], float("-inf"))
            out.append(s.softmax(-1) @ v)
        return torch.cat(out, dim=-2)

    def attention_per_query(q, k, v, block_size, causal=False):
        Lk = k.shape[-2]
        return torch.cat([F.scaled_dot_product_attention(q[..., i:i + 1, :], k, v,
                                                         attn_mask=(torch.arange(Lk) <= i)[None] if causal else None)
                          for i in range(q.shape[-2])], dim=-2)

    def every_block_at_once(q, k, v, block_size, causal=False):
        Lk, pad = k.shape[-2], (-k.shape[-2]) % block_size
        kb = F.pad(k, (0, 0, 0, pad)).unflatten(-2, (-1, block_size))
        vb = F.pad(v, (0, 0, 0, pad)).unflatten(-2, (-1, block_size))
        s = q[..., None, :, :] @ kb.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., blocks, Lq, b)
        cols = torch.arange(Lk + pad).unflatten(0, (-1, block_size))[:, None, :]
        allowed = (cols < Lk) & ((cols <= torch.arange(q.shape[-2])[:, None]) if causal else True)
        s = s.masked_fill(~allowed, float("-inf"))
        p = torch.exp(s - s.amax(dim=(-3, -1), keepdim=True))
        return (p @ vb).sum(-3) / p.sum(-1, keepdim=True).sum(-3)

    def whole_causal_mask(q, k, v, block_size, causal=False):
        if not causal:
            return _blocks(q, k, v, block_size, False)
        allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()  # (Lq, Lk), then sliced per block
        return _masked_blocks(q, k, v, block_size, allowed)

    fails_with("09.1", query_tiles, "full row of scores")
    fails_with("09.1", attention_per_query, "full row of scores")
    fails_with("09.1", every_block_at_once, "every block at once")
    fails_with("09.1", whole_causal_mask, "whole (Lq, Lk) matrix")


def _masked_blocks(q, k, v, block_size, allowed):
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))
    l, o = q.new_zeros((*q.shape[:-1], 1)), q.new_zeros((*q.shape[:-1], v.shape[-1]))
    for start in range(0, k.shape[-2], block_size):
        s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        s = s.masked_fill(~allowed[:, start:start + block_size], float("-inf"))
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        alpha, p = torch.exp(m - m_new).nan_to_num(0.0), torch.exp(s - m_new).nan_to_num(0.0)
        l, o, m = l * alpha + p.sum(-1, keepdim=True), o * alpha + p @ v[..., start:start + block_size, :], m_new
    return o / l


@pytest.mark.parametrize("kw, phrase", [
    (dict(inverted=True), "NaN from the first block on"),
    (dict(old_max=True), "NaN from the first block on"),
    (dict(shared_max=True), "shared by every query"),
    (dict(m0=0.0), "running maximum starts at 0"),
])
def test_online_nan_mistakes_are_named(kw, phrase):
    fails_with("09.1", online(**kw), phrase)


@pytest.mark.parametrize("kw, phrase", [
    (dict(exponent="0"), "integer division"),
    (dict(swap_trig=True), "cos and sin are exchanged"),
    (dict(first=1), "positions + 1"),
    (dict(halves_swapped=True), "concatenated the other way round"),
    (dict(pair_swapped=True), "as (x2, x1)"),
])
def test_rope_mistakes_of_issue_24(kw, phrase):
    fails_with("09.2", rope(**kw), phrase)


def test_gqa_mistakes_and_right_answers_of_issue_24():
    def repeat_kv(x, r, how):
        return x.repeat_interleave(r, 1) if how == "interleave" else x.repeat(1, r, 1, 1)

    def gqa(v_how="interleave", scale=True, mask_kind="as given", weights=True):
        def grouped_query_attention(q, k, v, mask=None):
            r = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(r, 1), repeat_kv(v, r, v_how)
            m = {"as given": mask, "ignored": None, "inverted": None if mask is None else ~mask}[mask_kind]
            out, w = attention.scaled_dot_product_attention(q if scale else q * math.sqrt(q.shape[-1]), k, v, m)
            return (out, w) if weights else (out, None)
        return grouped_query_attention

    fails_with("09.3", gqa(v_how="repeat"), "v's heads are laid out the wrong way")
    fails_with("09.3", gqa(scale=False), "not scaled")
    fails_with("09.3", gqa(mask_kind="ignored"), "mask is ignored")
    fails_with("09.3", gqa(mask_kind="inverted"), "mask is inverted")
    fails_with("09.3", gqa(weights=False), "returns no weights")

    def expand_reshape(q, k, v, mask=None):  # Llama's repeat_kv, written with expand and reshape
        B, g, L, d = k.shape
        r = q.shape[1] // g
        k = k[:, :, None].expand(B, g, r, L, d).reshape(B, g * r, L, d)
        v = v[:, :, None].expand(B, g, r, L, v.shape[-1]).reshape(B, g * r, L, v.shape[-1])
        return attention.scaled_dot_product_attention(q, k, v, mask)

    passes("09.3", expand_reshape)


def test_online_memory_must_grow_like_n():
    """Memory that grows with the number of blocks as well as with n (here: every block's statistics kept) is named,
    even below the size of the full matrix: the lesson measures the learner's memory up to n = 4096."""
    def keeps_every_block(q, k, v, block_size, causal=False):
        kept = []
        out = _blocks(q, k, v, block_size, causal)
        for start in range(0, k.shape[-2], block_size):
            s = q @ k[..., start:start + block_size, :].transpose(-2, -1)
            kept.append(torch.cat([s.amax(-1, keepdim=True)] * 4, dim=-1))  # (..., Lq, 4) per block, all kept
        return out + 0 * torch.stack(kept).sum()

    fails_with("09.1", keeps_every_block, "grows with the number of blocks")

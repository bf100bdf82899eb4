"""The reference attention (utils/attention.py) against PyTorch's own, given the same inputs and weights."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.attention import (MultiHeadAttention, SelfAttention, causal_mask, copy_into_torch_mha, fused_attention,
                             merge_heads, padding_mask, scaled_dot_product_attention, split_heads)

ATOL = 1e-10


@pytest.fixture(autouse=True)
def _float64():
    """Compare in float64 to 1e-10, not "close enough in float32"; restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _random_mask(shape, seed):
    """A random bool mask with at least one allowed key in every row (so PyTorch of any version agrees)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) > 0.4
    mask[..., 0] = True
    return mask


# ----------------------------------------------------------------- scaled dot-product attention
@pytest.mark.parametrize("lead", [(3,), (2, 3), (2, 1, 3)])
@pytest.mark.parametrize("use_mask", [False, True])
def test_sdpa_matches_torch(lead, use_mask):
    torch.manual_seed(0)
    Lq, Lk, d, dv = 4, 6, 8, 5  # Lq != Lk and d != dv: a transposed product cannot pass
    q, k, v = torch.randn(*lead, Lq, d), torch.randn(*lead, Lk, d), torch.randn(*lead, Lk, dv)
    mask = _random_mask((*lead, Lq, Lk), 1) if use_mask else None
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert out.shape == (*lead, Lq, dv) and weights.shape == (*lead, Lq, Lk)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0)
    # The weights are what torch's attention does to an identity matrix of values.
    eye = torch.eye(Lk).expand(*lead, Lk, Lk)
    torch.testing.assert_close(weights, F.scaled_dot_product_attention(q, k, eye, attn_mask=mask), atol=ATOL, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(*lead, Lq), atol=ATOL, rtol=0)
    if use_mask:
        assert (weights[~mask] == 0).all()  # -inf, not a large negative number: exactly zero


@pytest.mark.parametrize("mask_shape", [(4, 6), (2, 1, 6), (1, 4, 6)])
def test_sdpa_mask_broadcasts(mask_shape):
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 3)
    mask = _random_mask(mask_shape, 2)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert weights.shape == (2, 4, 6)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0)


def test_sdpa_rejects_non_bool_mask():
    q = torch.randn(2, 3, 4)
    with pytest.raises(TypeError):
        scaled_dot_product_attention(q, q, q, torch.ones(3, 3))


def test_masked_key_has_no_influence():
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.ones(2, 1, 5, dtype=torch.bool)
    mask[:, :, 3] = False
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    k2, v2 = k.clone(), v.clone()
    k2[:, 3] += 100.0
    v2[:, 3] = 1e6
    out2, weights2 = scaled_dot_product_attention(q, k2, v2, mask)
    torch.testing.assert_close(out2, out, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights2, weights, atol=ATOL, rtol=0)
    # ... and without the mask the same change does matter (the test can fail).
    assert not torch.allclose(scaled_dot_product_attention(q, k2, v2)[0], scaled_dot_product_attention(q, k, v)[0])


def test_fully_masked_row_gives_zeros_not_nan():
    torch.manual_seed(3)
    q = torch.randn(2, 3, 4, requires_grad=True)
    k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = _random_mask((2, 3, 5), 4)
    mask[1, 2] = False  # query 2 of example 1 may attend to nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert not out.isnan().any() and not weights.isnan().any()
    assert (weights[1, 2] == 0).all() and (out[1, 2] == 0).all()
    # The other rows are exactly what they would be without that row.
    ref_out, ref_w = scaled_dot_product_attention(q[1, :2], k[1], v[1], mask[1, :2])
    torch.testing.assert_close(out[1, :2], ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights[1, :2], ref_w, atol=ATOL, rtol=0)
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and (q.grad[1, 2] == 0).all()


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert torch.equal(m, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))
    assert causal_mask(1).tolist() == [[True]]


def test_causal_attention_ignores_the_future():
    torch.manual_seed(4)
    x = torch.randn(2, 6, 4)
    out, _ = scaled_dot_product_attention(x, x, x, causal_mask(6))
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 4)  # change positions 4 and 5
    out2, _ = scaled_dot_product_attention(x2, x2, x2, causal_mask(6))
    torch.testing.assert_close(out2[:, :4], out[:, :4], atol=ATOL, rtol=0)
    assert not torch.allclose(out2[:, 4:], out[:, 4:])


def test_padding_mask():
    m = padding_mask(torch.tensor([3, 1, 4]), 4)
    assert m.dtype == torch.bool
    assert m.tolist() == [[True, True, True, False], [True, False, False, False], [True] * 4]


# ----------------------------------------------------------------- self-attention
def test_self_attention():
    torch.manual_seed(5)
    attn = SelfAttention(8, d_k=5)
    assert all(isinstance(getattr(attn, n), nn.Linear) and getattr(attn, n).bias is None for n in ("W_q", "W_k", "W_v"))
    x = torch.randn(2, 7, 8)
    out, weights = attn(x)
    assert out.shape == (2, 7, 5) and weights.shape == (2, 7, 7)
    ref = F.scaled_dot_product_attention(x @ attn.W_q.weight.T, x @ attn.W_k.weight.T, x @ attn.W_v.weight.T)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    # Permutation-equivariant: permuting the positions permutes the outputs the same way.
    perm = torch.randperm(7)
    out_p, w_p = attn(x[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], atol=ATOL, rtol=0)
    torch.testing.assert_close(w_p, weights[:, perm][:, :, perm], atol=ATOL, rtol=0)
    assert SelfAttention(8).W_v.out_features == 8  # d_k defaults to d_model


# ----------------------------------------------------------------- heads
def test_split_and_merge_heads():
    x = torch.arange(2 * 3 * 12, dtype=torch.float64).reshape(2, 3, 12)
    heads = split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 3)
    for i in range(4):  # head i holds features 3i..3i+2 of every position (catches a missing transpose)
        assert torch.equal(heads[:, i], x[:, :, 3 * i: 3 * i + 3])
    assert torch.equal(merge_heads(heads), x)
    y = torch.randn(2, 4, 5, 3)
    assert torch.equal(split_heads(merge_heads(y), 4), y)
    with pytest.raises(ValueError):
        split_heads(x, 5)


def _pair(D=12, h=3, seed=0):
    torch.manual_seed(seed)
    ours = MultiHeadAttention(D, h)
    for p in ours.parameters():  # non-zero biases, so that a forgotten bias shows
        nn.init.normal_(p, std=0.3)
    theirs = copy_into_torch_mha(ours, nn.MultiheadAttention(D, h, batch_first=True))
    return ours, theirs


def _theirs(theirs, q, k, v, **masks):
    return theirs(q, k, v, need_weights=True, average_attn_weights=False, **masks)


def test_mha_matches_torch_without_mask():
    ours, theirs = _pair()
    assert [type(getattr(ours, n)) for n in ("q_proj", "k_proj", "v_proj", "out_proj")] == [nn.Linear] * 4
    x = torch.randn(2, 5, 12)
    out, w = ours(x, x, x)
    ref_out, ref_w = _theirs(theirs, x, x, x)
    assert out.shape == (2, 5, 12) and w.shape == (2, 3, 5, 5)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)


def test_mha_matches_torch_with_padding_mask_and_lq_ne_lk():
    ours, theirs = _pair(seed=1)
    q, kv = torch.randn(3, 4, 12), torch.randn(3, 6, 12)  # cross-attention: 4 queries, 6 keys
    pad = padding_mask(torch.tensor([6, 2, 4]), 6)  # (B, Lk)
    out, w = ours(q, kv, kv, pad)
    ref_out, ref_w = _theirs(theirs, q, kv, kv, key_padding_mask=~pad)  # torch: True = masked out
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)
    assert (w[1, :, :, 2:] == 0).all()


def test_mha_matches_torch_with_causal_mask():
    ours, theirs = _pair(seed=2)
    x = torch.randn(2, 5, 12)
    causal = causal_mask(5)  # (Lq, Lk)
    out, w = ours(x, x, x, causal)
    ref_out, ref_w = _theirs(theirs, x, x, x, attn_mask=~causal)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)


def test_mha_matches_torch_with_full_3d_mask():
    ours, theirs = _pair(seed=3)
    q, kv = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    mask = _random_mask((2, 4, 6), 5)  # (B, Lq, Lk)
    out, w = ours(q, kv, kv, mask)
    # torch wants a 3-D attn_mask per (example, head): (B*h, Lq, Lk)
    ref_out, ref_w = _theirs(theirs, q, kv, kv, attn_mask=~mask.repeat_interleave(3, dim=0))
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)
    # The same mask as (B, 1, Lq, Lk) gives the same result.
    torch.testing.assert_close(ours(q, kv, kv, mask[:, None])[0], out, atol=ATOL, rtol=0)


def test_mha_ambiguous_2d_mask_raises():
    ours, _ = _pair()
    x = torch.randn(4, 4, 12)  # B == Lq == Lk: is a (4, 4) mask padding or causal?
    with pytest.raises(ValueError, match="ambiguous"):
        ours(x, x, x, causal_mask(4))
    ours(x, x, x, causal_mask(4)[None])  # explicit forms work
    ours(x, x, x, padding_mask(torch.tensor([4, 3, 2, 1]), 4)[:, None, :])
    with pytest.raises(ValueError):
        ours(x[:3], x[:3], x[:3], torch.ones(5, 4, dtype=torch.bool))


def test_mha_fully_masked_row_is_finite():
    ours, _ = _pair()
    x = torch.randn(2, 3, 12)
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[0, 1] = False
    out, w = ours(x, x, x, mask)
    assert torch.isfinite(out).all() and (w[0, :, 1] == 0).all()
    torch.testing.assert_close(out[0, 1], ours.out_proj.bias, atol=ATOL, rtol=0)  # zero heads -> just W^O's bias


def test_mha_heads_are_not_mixed():
    """Changing the part of W^Q that feeds head 0 changes head 0's weights only."""
    ours, _ = _pair(seed=4)
    x = torch.randn(2, 5, 12)
    _, w = ours(x, x, x)
    with torch.no_grad():
        ours.q_proj.weight[:4] += 1.0  # rows 0..3 = W_1^Q (d_k = 12 / 3 = 4)
    _, w2 = ours(x, x, x)
    assert not torch.allclose(w2[:, 0], w[:, 0])
    torch.testing.assert_close(w2[:, 1:], w[:, 1:], atol=ATOL, rtol=0)


# ----------------------------------------------------------------- the fused path (the models' training)
@pytest.mark.parametrize("case", ["none", "causal 2-D", "causal 3-D", "padding", "3-D", "4-D per head", "fully masked row"])
def test_fused_attention_equals_mha_with_its_gradients(case):
    """fused_attention(mha, ...) is mha(...)[0], value and gradient, whichever mask the course passes."""
    ours, _ = _pair(seed=5)
    B, Lq, Lk = 3, 5, 5 if "causal" in case else 7
    q, kv = torch.randn(B, Lq, 12, requires_grad=True), torch.randn(B, Lk, 12, requires_grad=True)
    mask = {"none": None, "causal 2-D": causal_mask(Lq), "causal 3-D": causal_mask(Lq)[None],
            "padding": padding_mask(torch.tensor([7, 2, 4]), Lk), "3-D": _random_mask((B, Lq, Lk), 6),
            "4-D per head": _random_mask((B, 3, Lq, Lk), 7), "fully masked row": _random_mask((B, Lq, Lk), 8)}[case]
    if case == "fully masked row":
        mask[1, 2] = False  # query 2 of example 1 may attend to nothing: zeros, not NaN, in both
    want = ours(q, kv, kv, mask)[0]
    got = fused_attention(ours, q, kv, kv, mask)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    weight = torch.randn_like(want)
    grads = torch.autograd.grad((want * weight).sum(), [q, kv, *ours.parameters()])
    fused_grads = torch.autograd.grad((got * weight).sum(), [q, kv, *ours.parameters()])
    assert all(torch.isfinite(g).all() for g in fused_grads)
    for g, f in zip(grads, fused_grads):
        torch.testing.assert_close(f, g, atol=1e-12, rtol=0)


def test_fused_attention_takes_the_causal_kernel_only_for_the_causal_mask():
    """A lower-triangular mask that is not causal_mask(L) (a window) must not be mistaken for it."""
    ours, _ = _pair(seed=6)
    x = torch.randn(2, 6, 12)
    window = causal_mask(6) & ~causal_mask(6).tril(-3)  # each query sees itself and the two keys before it
    torch.testing.assert_close(fused_attention(ours, x, x, x, window), ours(x, x, x, window)[0], atol=1e-12, rtol=0)
    with pytest.raises(TypeError, match="bool"):
        fused_attention(ours, x, x, x, causal_mask(6).float())

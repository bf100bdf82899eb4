"""The reference Transformer (utils/transformer.py) against PyTorch's own layers, given the same weights,
and the seq2seq contract of utils/rnn.py."""
import math
import warnings

import pytest
import torch
import torch.nn as nn

from utils.attention import causal_mask, padding_mask
from utils.data import EOS, PAD
from utils.transformer import (Decoder, DecoderLayer, Encoder, EncoderLayer, FeedForward, Transformer,
                               copy_into_torch_decoder_layer, copy_into_torch_encoder, copy_into_torch_encoder_layer,
                               copy_into_torch_transformer, layer_norm, sinusoidal_positional_encoding)

ATOL = 1e-10
D, H, FF = 16, 4, 24


@pytest.fixture(autouse=True)
def _float64():
    """Compare in float64 to 1e-10; restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _randomise(module, seed):
    """Random weights everywhere, LayerNorms and biases included, so that no parameter can be ignored."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight += 1.0  # gains around 1, not around 0
    return module


def _torch_kwargs(norm_first):
    return dict(dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first)


# ----------------------------------------------------------------- positional encoding and LayerNorm
def test_sinusoidal_positional_encoding():
    pe = sinusoidal_positional_encoding(50, 16)
    assert pe.shape == (50, 16)
    pos = torch.arange(50, dtype=pe.dtype)
    torch.testing.assert_close(pe[:, 0], torch.sin(pos))  # i = 0: frequency 1
    torch.testing.assert_close(pe[:, 1], torch.cos(pos))
    assert pe[0].tolist() == [0.0, 1.0] * 8  # position 0: sin 0, cos 0
    for p, i in [(7, 3), (31, 5), (49, 7)]:  # PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)
        angle = p / 10000 ** (2 * i / 16)
        assert math.isclose(pe[p, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
        assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    odd = sinusoidal_positional_encoding(10, 7)  # an odd width has one more sin than cos
    assert odd.shape == (10, 7)
    torch.testing.assert_close(odd[:, 6], torch.sin(torch.arange(10) / 10000 ** (6 / 7)), atol=1e-6, rtol=0,
                               check_dtype=False)


def test_layer_norm_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16) * 4 + 2
    ln = nn.LayerNorm(16, eps=1e-3)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    torch.testing.assert_close(layer_norm(x, ln.weight, ln.bias, eps=1e-3), ln(x), atol=ATOL, rtol=0)
    plain = layer_norm(x, torch.ones(16), torch.zeros(16))
    torch.testing.assert_close(plain.mean(-1), torch.zeros(3, 5), atol=ATOL, rtol=0)
    torch.testing.assert_close(plain, nn.functional.layer_norm(x, (16,)), atol=ATOL, rtol=0)


def test_feed_forward():
    ff = _randomise(FeedForward(D, FF), 1)
    x = torch.randn(2, 3, D)
    torch.testing.assert_close(ff(x), ff.linear2(torch.relu(ff.linear1(x))), atol=ATOL, rtol=0)
    assert ff.linear1.out_features == FF and ff.linear2.out_features == D


# ----------------------------------------------------------------- layers vs PyTorch's
# Gradients stay enabled in these comparisons: under no_grad in eval mode nn.TransformerEncoder takes
# a fast path that writes zeros at padded positions.
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    ours = _randomise(EncoderLayer(D, H, FF, norm_first=norm_first), 2)
    theirs = copy_into_torch_encoder_layer(ours, nn.TransformerEncoderLayer(D, H, FF, **_torch_kwargs(norm_first)))
    x = torch.randn(3, 6, D)
    pad = padding_mask(torch.tensor([6, 3, 1]), 6)
    torch.testing.assert_close(ours(x, pad), theirs(x, src_key_padding_mask=~pad), atol=ATOL, rtol=0)
    torch.testing.assert_close(ours(x), theirs(x), atol=ATOL, rtol=0)
    assert ours.last_self_weights.shape == (3, H, 6, 6)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    ours = _randomise(DecoderLayer(D, H, FF, norm_first=norm_first), 3)
    theirs = copy_into_torch_decoder_layer(ours, nn.TransformerDecoderLayer(D, H, FF, **_torch_kwargs(norm_first)))
    x, memory = torch.randn(3, 5, D), torch.randn(3, 7, D)  # T != S
    pad = padding_mask(torch.tensor([7, 2, 4]), 7)
    ref = theirs(x, memory, tgt_mask=~causal_mask(5), memory_key_padding_mask=~pad)
    # a training step (train mode, gradients on): the fused attention, which keeps no weights
    out = ours(x, memory, tgt_mask=causal_mask(5), memory_mask=pad)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert ours.last_self_weights is None and ours.last_cross_weights is None
    # eval mode: the course's own attention, whose weights the heatmaps read
    out = ours.eval()(x, memory, tgt_mask=causal_mask(5), memory_mask=pad)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert ours.last_cross_weights.shape == (3, H, 5, 7) and (ours.last_cross_weights[1, :, :, 2:] == 0).all()
    assert (ours.last_self_weights.triu(1) == 0).all()  # nothing from the future


def test_copy_refuses_a_different_norm_first():
    with pytest.raises(ValueError):
        copy_into_torch_encoder_layer(EncoderLayer(D, H, FF, norm_first=True),
                                      nn.TransformerEncoderLayer(D, H, FF, **_torch_kwargs(False)))


def test_post_ln_encoder_stack_matches_torch():
    ours = _randomise(Encoder(D, H, FF, num_layers=2, norm_first=False), 4)
    assert ours.norm is None  # post-LN: the last layer already ends with a LayerNorm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "enable_nested_tensor is True, but ..."
        theirs = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF, **_torch_kwargs(False)), 2)
    copy_into_torch_encoder(ours, theirs)
    x, pad = torch.randn(2, 5, D), padding_mask(torch.tensor([5, 2]), 5)
    torch.testing.assert_close(ours(x, pad), theirs(x, src_key_padding_mask=~pad), atol=ATOL, rtol=0)


def _model_and_torch(seed=5, positional="sinusoidal"):
    ours = _randomise(Transformer(11, d_model=D, num_heads=H, num_layers=2, d_ff=FF, max_len=12,
                                  positional=positional), seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nn.Transformer(D, H, 2, 2, FF, **_torch_kwargs(True))
    return ours, copy_into_torch_transformer(ours, theirs)


def test_whole_stack_matches_torch_transformer():
    ours, theirs = _model_and_torch()
    assert ours.encoder.norm is not None and ours.decoder.norm is not None  # pre-LN: final norms, as nn.Transformer
    torch.manual_seed(6)
    src = torch.randint(3, 11, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    src = src.masked_fill(torch.arange(7) >= lengths[:, None], PAD)
    tgt = torch.randint(3, 11, (3, 5))
    logits = ours(src, lengths, tgt)
    assert logits.shape == (3, 5, 11)
    pad = padding_mask(lengths, 7)
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), tgt[:, :-1]], dim=1)  # SOS = 1, then tgt shifted right
    hidden = theirs(ours.embed(src), ours.embed(tgt_in), tgt_mask=~causal_mask(5),
                    src_key_padding_mask=~pad, memory_key_padding_mask=~pad)
    torch.testing.assert_close(logits, ours.out(hidden), atol=ATOL, rtol=0)
    # the pieces the lesson reuses
    memory, src_mask = ours.encode(src, lengths)
    torch.testing.assert_close(memory, theirs.encoder(ours.embed(src), src_key_padding_mask=~pad), atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.decode(tgt_in, memory, src_mask), logits, atol=ATOL, rtol=0)


# ----------------------------------------------------------------- the model's contract and properties
def test_embed_scales_tokens_and_adds_positions():
    ours, _ = _model_and_torch()
    ids = torch.tensor([[3, 4, 5]])
    expected = ours.embedding(ids) * math.sqrt(D) + sinusoidal_positional_encoding(12, D)[:3]
    torch.testing.assert_close(ours.embed(ids), expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        ours.embed(torch.full((1, 13), 3))  # longer than max_len
    assert "pe" not in ours.state_dict()  # a formula, not state


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", None])
def test_decoder_is_causal_and_padding_is_ignored(positional):
    ours, _ = _model_and_torch(seed=7, positional=positional)
    torch.manual_seed(8)
    src, lengths = torch.randint(3, 11, (2, 6)), torch.tensor([6, 3])
    src = src.masked_fill(torch.arange(6) >= lengths[:, None], PAD)
    tgt = torch.randint(3, 11, (2, 6))
    logits = ours(src, lengths, tgt)
    t = 2
    tgt2 = tgt.clone()
    tgt2[:, t:] = torch.randint(3, 11, (2, 6 - t))  # change target tokens t, t+1, ...
    tgt2[:, t] = (tgt[:, t] - 2) % 8 + 3  # surely different at t
    logits2 = ours(src, lengths, tgt2)
    torch.testing.assert_close(logits2[:, : t + 1], logits[:, : t + 1], atol=ATOL, rtol=0)  # position t sees tgt[:t]
    assert not torch.allclose(logits2[:, t + 1], logits[:, t + 1])  # ... and t+1 sees tgt[t]
    src2 = src.clone()
    src2[1, 3:] = 7  # garbage in the padding of the short source
    torch.testing.assert_close(ours(src2, lengths, tgt), logits, atol=ATOL, rtol=0)


def test_without_positions_the_encoder_is_permutation_equivariant():
    ours, _ = _model_and_torch(seed=9, positional=None)
    src, lengths = torch.randint(3, 11, (2, 6)), torch.tensor([6, 6])
    perm = torch.randperm(6)
    m, _ = ours.encode(src, lengths)
    m_p, _ = ours.encode(src[:, perm], lengths)
    torch.testing.assert_close(m_p, m[:, perm], atol=ATOL, rtol=0)
    ours_pe, _ = _model_and_torch(seed=9)
    assert not torch.allclose(ours_pe.encode(src[:, perm], lengths)[0], ours_pe.encode(src, lengths)[0][:, perm])


def test_generate_matches_teacher_forcing_on_its_own_output():
    ours, _ = _model_and_torch(seed=10)
    torch.manual_seed(11)
    src, lengths = torch.randint(3, 11, (4, 6)), torch.tensor([6, 5, 3, 1])
    src = src.masked_fill(torch.arange(6) >= lengths[:, None], PAD)
    ids, attn = ours.generate(src, lengths, max_len=8, return_attention=True)
    assert ids.shape[0] == 4 and ids.shape[1] <= 8 and ids.dtype == torch.long
    assert attn.shape == (4, ids.shape[1], 6)
    torch.testing.assert_close(attn.sum(-1), torch.ones(4, ids.shape[1]), atol=1e-9, rtol=0)
    # Greedy: each token is the argmax of the model fed the previous ones (up to and including the first EOS).
    greedy = ours(src, lengths, ids).argmax(-1)
    for row in range(4):
        eos = (ids[row] == EOS).nonzero()
        end = int(eos[0]) + 1 if len(eos) else ids.shape[1]
        assert torch.equal(ids[row, :end], greedy[row, :end])
        assert (ids[row, end:] == PAD).all()


def test_generate_stops_at_eos_and_pads_after_it():
    """Scripted decoder outputs: row 0 says EOS at step 1, row 1 at step 3; decoding stops there."""

    class Scripted(Transformer):
        script = torch.tensor([[5, EOS, 6, 7, 8], [4, 5, 6, EOS, 9]])  # (B, steps)

        def decode(self, tgt_in, memory, src_mask):
            T = tgt_in.shape[1]
            logits = torch.zeros(2, T, 11)
            logits[torch.arange(2), -1, self.script[:, T - 1]] = 1.0  # the newest position votes the script
            return logits

    model = Scripted(11, d_model=D, num_heads=H, d_ff=FF, max_len=12)
    src, lengths = torch.randint(3, 11, (2, 4)), torch.tensor([4, 4])
    ids = model.generate(src, lengths, max_len=10)
    assert ids.tolist() == [[5, EOS, PAD, PAD], [4, 5, 6, EOS]]
    assert model.generate(src, lengths, max_len=2).tolist() == [[5, EOS], [4, 5]]  # ran out of steps

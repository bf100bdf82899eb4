"""Lesson 02's checks accept the reference and name realistic mistakes; the model keeps its contract."""
import math

import pytest
import torch
import torch.nn as nn

import utils
from utils import rnn
from utils.data import PAD, SymbolTask
from check_helpers import fails_with


# ---- 02.1 additive attention
def make_attention(score="tanh", softmax_dim=-1, mask_mode="right", values="keys", broadcast=True,
                   use_projected=True, nan_safe=True, squeeze=True):
    """An AdditiveAttention with one realistic mistake switched on."""

    class Attention(nn.Module):
        def __init__(self, query_dim, key_dim, attn_dim):
            super().__init__()
            self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
            self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
            self.w_v = nn.Linear(attn_dim, 1, bias=False)

        def forward(self, query, keys, mask=None, projected_keys=None):
            k = self.W_k(keys) if projected_keys is None or not use_projected else projected_keys
            q = self.W_q(query)[:, None, :] if broadcast else self.W_q(query)
            act = {"tanh": torch.tanh, "none": lambda x: x, "relu": torch.relu}[score]
            scores = self.w_v(act(q + k))
            scores = scores.squeeze(-1) if squeeze else scores
            if mask is not None and mask_mode != "ignored":
                scores = scores.masked_fill(mask if mask_mode == "inverted" else ~mask, float("-inf"))
            weights = torch.softmax(scores, dim=softmax_dim)
            if mask is not None and nan_safe:
                weights = torch.where(mask.any(-1, keepdim=True), weights, 0.0)
            if not squeeze:
                return (weights * keys).sum(1), weights
            v = keys if values == "keys" else k
            return torch.bmm(weights[:, None, :], v).squeeze(1), weights

    return Attention


def test_additive_attention_reference_and_correct_variant_pass():
    assert utils.check("02.1", rnn.AdditiveAttention)
    assert utils.check("02.1", make_attention())


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(softmax_dim=0), "wrong dimension"),
    (dict(score="none"), "non-linearity is missing"),
    (dict(score="relu"), "not relu"),
    (dict(mask_mode="ignored"), "mask is ignored"),
    (dict(mask_mode="inverted"), "mask is inverted"),
    (dict(values="projected"), "projected"),
    (dict(broadcast=False), "not broadcast"),
    (dict(use_projected=False), "`projected_keys` is ignored"),
    (dict(nan_safe=False), "nan"),
    (dict(squeeze=False), "squeeze"),
])
def test_additive_attention_mistakes_are_named(kwargs, phrase):
    fails_with("02.1", make_attention(**kwargs), phrase)


def test_additive_attention_wrong_layers_are_named():
    class NoBias(nn.Module):
        def __init__(self, q, k, a):
            super().__init__()
            self.W_q, self.W_k, self.w_v = nn.Linear(q, a), nn.Linear(k, a), nn.Linear(a, 1)

        def forward(self, query, keys, mask=None, projected_keys=None):
            raise AssertionError("not reached")

    fails_with("02.1", NoBias, "unexpected")
    fails_with("02.1", rnn.AdditiveAttention(2, 2, 2), "class itself")


# ---- 02.2 the decoder step
def make_decoder(query="h", use_mask=True, cell_order="emb_first", out_order="s_first", out_state="new",
                 softmax=False, pass_keys=True):
    class Decoder(nn.Module):
        def __init__(self, vocab_size, emb_dim, hidden_dim, attn_dim):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
            self.attention = rnn.AdditiveAttention(hidden_dim, hidden_dim, attn_dim)
            self.cell = nn.LSTMCell(emb_dim + hidden_dim, hidden_dim)
            self.out = nn.Linear(2 * hidden_dim, vocab_size)

        def forward(self, token, state, enc_outputs, mask, projected_keys=None):
            q = state[0] if query == "h" else state[1]
            ctx, w = self.attention(q, enc_outputs, mask if use_mask else None, projected_keys if pass_keys else None)
            e = self.embedding(token)
            h, c = self.cell(torch.cat([e, ctx] if cell_order == "emb_first" else [ctx, e], -1), state)
            s = h if out_state == "new" else state[0]
            logits = self.out(torch.cat([s, ctx] if out_order == "s_first" else [ctx, s], -1))
            return (logits.softmax(-1) if softmax else logits), (h, c), w

    return Decoder


def test_decoder_reference_and_correct_variant_pass():
    assert utils.check("02.2", rnn.AttentionDecoder)
    assert utils.check("02.2", make_decoder())
    assert utils.check("02.2", make_decoder(pass_keys=False))  # recomputing W_k(keys) is slower, not wrong


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(query="c"), "not the lstm's cell state"),
    (dict(use_mask=False), "mask is not passed"),
    (dict(cell_order="ctx_first"), "embedding first"),
    (dict(out_order="ctx_first"), "the new state first"),
    (dict(out_state="old"), "*new* state"),
    (dict(softmax=True), "not probabilities"),
])
def test_decoder_mistakes_are_named(kwargs, phrase):
    fails_with("02.2", make_decoder(**kwargs), phrase)


# ---- 02.3 Luong scores
def test_luong_reference_passes():
    assert utils.check("02.3", rnn.luong_score)
    assert utils.check("02.3", lambda q, k, W=None: torch.einsum("bd,bsd->bs", q if W is None else q @ W, k))


def test_luong_mistakes_are_named():
    fails_with("02.3", lambda q, k, W=None: rnn.luong_score(q, k, W).softmax(-1), "not the weights")
    fails_with("02.3", lambda q, k, W=None: rnn.luong_score(q, k, W) / math.sqrt(k.shape[-1]), "no scaling")
    fails_with("02.3", lambda q, k, W=None: (q[:, None, :] * k).sum(1), "summed over the positions")
    fails_with("02.3", lambda q, k, W=None: torch.bmm(k, q[:, :, None]), "squeeze")
    fails_with("02.3", lambda q, k, W=None: rnn.luong_score(q, k, None if W is None else W.T), "wrong way round")
    fails_with("02.3", lambda q, k, W=None: rnn.luong_score(q, k), "")  # W ignored: fails one way or another


@pytest.mark.parametrize("candidate", [None, 42, "text", lambda *a: None, lambda *a: float("nan"), SystemExit])
def test_lesson02_checks_never_raise(candidate):
    for id in ("02.1", "02.2", "02.3"):
        result = utils.check(id, candidate)
        assert not result and result.message


def test_unfilled_skeletons_read_not_attempted():
    class AdditiveAttention(nn.Module):
        def __init__(self, query_dim, key_dim, attn_dim):
            super().__init__()
            # YOUR CODE HERE
            raise NotImplementedError()

    def luong_score(query, keys, W=None):
        raise NotImplementedError()

    assert utils.check("02.1", AdditiveAttention).status == "not attempted"
    assert utils.check("02.3", luong_score).status == "not attempted"


# ---- the model: the contract lesson 07 relies on
def test_attention_seq2seq_contract():
    task = SymbolTask("reverse", min_len=2, max_len=9)
    batch = task.sample(6, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = rnn.AttentionSeq2Seq(len(task.vocab), 16, 24, 20).eval()
    B, S = batch.src.shape
    logits, alpha = model(batch.src, batch.src_lengths, batch.tgt, return_attention=True)
    assert logits.shape == (B, batch.tgt.shape[1], len(task.vocab)) and alpha.shape == (B, batch.tgt.shape[1], S)
    assert torch.equal(model(batch.src, batch.src_lengths, batch.tgt), logits)
    padding = torch.arange(S)[None, None, :] >= batch.src_lengths[:, None, None]
    assert (alpha.masked_select(padding) == 0).all()
    assert torch.allclose(alpha.sum(-1), torch.ones(alpha.shape[:2]))
    ids, weights = model.generate(batch.src, batch.src_lengths, max_len=12, return_attention=True)
    assert ids.shape[0] == B and ids.shape[1] <= 12 and weights.shape == (B, ids.shape[1], S)
    assert torch.equal(model.generate(batch.src, batch.src_lengths, max_len=12), ids)


def test_cached_keys_equal_the_uncached_step():
    torch.manual_seed(1)
    dec = rnn.AttentionDecoder(9, 5, 8, 6)
    token, state = torch.randint(3, 9, (3,)), (torch.randn(3, 8), torch.randn(3, 8))
    enc = torch.randn(3, 4, 8)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    a = dec(token, state, enc, mask)
    b = dec(token, state, enc, mask, dec.attention.W_k(enc))
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[2], b[2], atol=1e-6)


# ---- issue 14: each reliance of lesson 02 is checked
class _InPlaceAttention(rnn.AdditiveAttention):
    """Correct values, but the query term is added to the caller's projected_keys in place."""

    def forward(self, query, keys, mask=None, projected_keys=None):
        if projected_keys is None:
            projected_keys = self.W_k(keys)
        projected_keys += self.W_q(query)[:, None, :]
        scores = self.w_v(torch.tanh(projected_keys)).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)
        return torch.bmm(weights[:, None, :], keys).squeeze(1), weights


class _InPlaceSoftmaxAttention(rnn.AdditiveAttention):
    """Correct values, but the softmax's output is changed in place: backpropagation fails."""

    def forward(self, query, keys, mask=None, projected_keys=None):
        projected_keys = self.W_k(keys) if projected_keys is None else projected_keys
        scores = self.w_v(torch.tanh(self.W_q(query)[:, None, :] + projected_keys)).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights.mul_(mask.any(dim=-1, keepdim=True))
        return torch.bmm(weights[:, None, :], keys).squeeze(1), weights


class _BiasedAttention(rnn.AdditiveAttention):
    def __init__(self, query_dim, key_dim, attn_dim):
        super().__init__(query_dim, key_dim, attn_dim)
        self.W_q = nn.Linear(query_dim, attn_dim)  # a bias the docstring says it has not


def test_additive_attention_reliances():
    fails_with("02.1", _InPlaceAttention, "projected_keys` in place")
    fails_with("02.1", _InPlaceSoftmaxAttention, "in-place operation")
    fails_with("02.1", _BiasedAttention, "bias=False")


class _DetachedDecoder(rnn.AttentionDecoder):
    def forward(self, token, state, enc_outputs, mask, projected_keys=None):
        logits, new_state, weights = super().forward(token, state, enc_outputs, mask, projected_keys)
        return logits.detach(), new_state, weights


class _StateInPlaceDecoder(rnn.AttentionDecoder):
    def forward(self, token, state, enc_outputs, mask, projected_keys=None):
        out = super().forward(token, state, enc_outputs, mask, projected_keys)
        state[0].zero_()  # "reset" the caller's state
        return out


def test_attention_decoder_reliances():
    fails_with("02.2", _DetachedDecoder, "no gradient")
    fails_with("02.2", _StateInPlaceDecoder, "in place")


def test_luong_score_leaves_its_inputs():
    def in_place(query, keys, W=None):
        if W is not None:
            query = query.copy_(query @ W) if W.shape[0] == W.shape[1] else query @ W
        return torch.bmm(keys, query[:, :, None]).squeeze(-1)

    fails_with("02.3", in_place, "in place")

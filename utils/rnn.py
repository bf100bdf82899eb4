"""Reference recurrent models of lessons 01 and 02 (the exercises' solutions, and the fallback
for a learner who has not finished them).

Every sequence-to-sequence model in the course keeps one contract, so that one training loop
and one evaluation serve them all:

* ``model(src (B, S), src_lengths (B,), tgt (B, T)) -> logits (B, T, V)``: the scores of each
  target token given the source and the *previous* target tokens (teacher forcing);
* ``model.generate(src, src_lengths, max_len) -> ids (B, L)``, L <= max_len: greedy decoding,
  ``EOS`` kept, ``PAD`` after it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.data import EOS, PAD, SOS


# ----------------------------------------------------------------- lesson 01: the bottleneck
class Encoder(nn.Module):
    """Embed the source and run an LSTM over it.

    Layers: ``self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)`` and
    ``self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)`` (these names: the check loads
    the course's weights into them, and later cells read them).

    forward(src (B, S), src_lengths (B,)) -> (outputs (B, S, H), (h, c) each (1, B, H)),
    where (h, c) is the state after each sequence's *last real token*, not after the padding.
    outputs has all S positions even when the batch is padded past its longest sequence.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)

    def forward(self, src, src_lengths):
        x = self.embedding(src)  # (B, S, E)
        # Packing makes the LSTM stop at each sequence's own length, so (h, c) is not
        # polluted by the padding steps of the shorter sequences.
        packed = pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_outputs, (h, c) = self.lstm(packed)  # h, c: (1, B, H)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=src.shape[1])
        return outputs, (h, c)  # (B, S, H), ((1, B, H), (1, B, H))


def shift_right(tgt, sos: int = SOS):
    """Teacher forcing: the decoder's input at step t is the gold token t-1, and ``sos`` at t=0.

    tgt (B, T) -> decoder input (B, T)
    """
    start = torch.full_like(tgt[:, :1], sos)  # (B, 1)
    return torch.cat([start, tgt[:, :-1]], dim=1)  # (B, T): drop the last token, keep the length


class Decoder(nn.Module):
    """An LSTM language model over the target, started from the encoder's final state.

    Layers: ``self.embedding`` (nn.Embedding, padding_idx=PAD), ``self.lstm`` (nn.LSTM,
    batch_first=True) and ``self.out = nn.Linear(hidden_dim, vocab_size)``.

    forward(inputs (B, T), state ((1, B, H), (1, B, H))) -> (logits (B, T, V), new state (h, c)):
    raw scores (no softmax); one token at a time, carrying the state, gives the same logits.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, inputs, state):
        x = self.embedding(inputs)  # (B, T, E)
        outputs, state = self.lstm(x, state)  # (B, T, H): the state v is the decoder's only view of the source
        return self.out(outputs), state  # logits (B, T, V), not probabilities


@torch.no_grad()
def greedy_decode(model, src, src_lengths, max_len: int):
    """Generate with ``model.encoder`` and ``model.decoder``, one token at a time, always the most likely.

    src (B, S), src_lengths (B,) -> ids (B, L) torch.long, L <= max_len; each row ends with ``EOS``
    (unless it ran out of steps) and has ``PAD`` after it. At most max_len steps, even when a row
    never produces ``EOS``. Not ``model.generate``: that one calls this function.
    """
    _, state = model.encoder(src, src_lengths)
    token = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_len):
        logits, state = model.decoder(token, state)  # (B, 1, V): feed back our own last guess
        token = logits.argmax(dim=-1)  # (B, 1)
        out.append(torch.where(finished[:, None], PAD, token))  # nothing after EOS
        finished |= token[:, 0] == EOS
        if finished.all():
            break
    return torch.cat(out, dim=1)  # (B, L)


class BottleneckSeq2Seq(nn.Module):
    """Lesson 01's model: the decoder sees the source only through the encoder's final state ``v``."""

    def __init__(self, vocab_size: int, emb_dim: int = 32, hidden_dim: int = 64):
        super().__init__()
        self.encoder = Encoder(vocab_size, emb_dim, hidden_dim)
        self.decoder = Decoder(vocab_size, emb_dim, hidden_dim)

    def forward(self, src, src_lengths, tgt):
        _, v = self.encoder(src, src_lengths)  # v = (h, c): the fixed-size context vector
        logits, _ = self.decoder(shift_right(tgt), v)
        return logits  # (B, T, V)

    def generate(self, src, src_lengths, max_len: int):
        return greedy_decode(self, src, src_lengths, max_len)


# ----------------------------------------------------------------- lesson 02: additive attention
class AdditiveAttention(nn.Module):
    """Bahdanau attention: e_j = w_v^T tanh(W_q s + W_k h_j), alpha = softmax_j(e), c = sum_j alpha_j h_j.

    Layers, without bias (the names of the equation; the model calls ``attention.W_k`` itself):
    ``self.W_q = nn.Linear(query_dim, attn_dim, bias=False)``, ``self.W_k = nn.Linear(key_dim, attn_dim,
    bias=False)``, ``self.w_v = nn.Linear(attn_dim, 1, bias=False)``.

    forward(query (B, Dq), keys (B, S, Dk), mask=None (B, S) bool, True = may attend,
            projected_keys=None (B, S, A), W_k(keys) if the caller computed it already)
        -> (context (B, Dk), weights (B, S))

    A row whose keys are all masked gets zero weights and a zero context, never NaN.
    The inputs are not changed in place: the model passes the same ``projected_keys`` at every step.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.w_v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query, keys, mask=None, projected_keys=None):
        if projected_keys is None:
            projected_keys = self.W_k(keys)  # (B, S, A); it does not depend on the query
        # W_q s is one vector per example: [:, None, :] broadcasts it over all S positions.
        scores = self.w_v(torch.tanh(self.W_q(query)[:, None, :] + projected_keys)).squeeze(-1)  # e: (B, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: padding gets no weight
        weights = torch.softmax(scores, dim=-1)  # alpha: (B, S), each row sums to 1 over the positions
        if mask is not None:
            weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)  # all masked: 0, not NaN
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # c = sum_j alpha_j h_j: (B, Dk)
        return context, weights


class AttentionDecoder(nn.Module):
    """One decoder step with additive attention; the query is the previous decoder state s_{i-1}.

    Layers: ``self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)``, ``self.attention =
    AdditiveAttention(hidden_dim, hidden_dim, attn_dim)``, ``self.cell = nn.LSTMCell(emb_dim + hidden_dim,
    hidden_dim)``, ``self.out = nn.Linear(2 * hidden_dim, vocab_size)``.

    forward(token (B,), state ((B, H), (B, H)), enc_outputs (B, S, H), mask (B, S), projected_keys=None (B, S, A))
        -> (logits (B, V), new state ((B, H), (B, H)), weights (B, S))
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, attn_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.attention = AdditiveAttention(hidden_dim, hidden_dim, attn_dim)
        self.cell = nn.LSTMCell(emb_dim + hidden_dim, hidden_dim)
        self.out = nn.Linear(2 * hidden_dim, vocab_size)

    def forward(self, token, state, enc_outputs, mask, projected_keys=None):
        s_prev = state[0]  # (B, H): the hidden state, not the LSTM's cell state
        context, weights = self.attention(s_prev, enc_outputs, mask, projected_keys)  # c_i (B, H), alpha_i (B, S)
        s, cell = self.cell(torch.cat([self.embedding(token), context], dim=-1), state)  # s_i from [emb(y_{i-1}); c_i]
        logits = self.out(torch.cat([s, context], dim=-1))  # (B, V): from [s_i; c_i]
        return logits, (s, cell), weights


def luong_score(query, keys, W=None):
    """Luong et al. (2015) multiplicative alignment scores, no softmax and no scaling.

    query (B, Dq), keys (B, S, Dk), W None or (Dq, Dk) -> scores (B, S):
    "dot" e_j = s^T h_j when W is None (needs Dq == Dk), "general" e_j = s^T W h_j.
    """
    if W is not None:
        query = query @ W  # (B, Dk): s^T W, computed once for all positions
    return torch.bmm(keys, query[:, :, None]).squeeze(-1)  # (B, S): e_j = h_j . query


class AttentionSeq2Seq(nn.Module):
    """Lesson 02's model: lesson 01's encoder, and a decoder that attends to every encoder state.

    At step i: c_i = attention(s_{i-1}, h_1..h_S); s_i = LSTMCell([emb(y_{i-1}); c_i], s_{i-1});
    logits_i = W_out [s_i; c_i]. The decoder starts from the encoder's final state, as in lesson 01.
    """

    def __init__(self, vocab_size: int, emb_dim: int = 32, hidden_dim: int = 64, attn_dim: int = 64):
        super().__init__()
        self.encoder = Encoder(vocab_size, emb_dim, hidden_dim)
        self.decoder = AttentionDecoder(vocab_size, emb_dim, hidden_dim, attn_dim)

    def _start(self, src, src_lengths):
        enc_outputs, (h, c) = self.encoder(src, src_lengths)  # (B, S, H)
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths[:, None].to(src.device)  # (B, S)
        projected_keys = self.decoder.attention.W_k(enc_outputs)  # (B, S, A): once per sequence, not per step
        return enc_outputs, mask, projected_keys, (h[0], c[0])

    def forward(self, src, src_lengths, tgt, return_attention: bool = False):
        enc_outputs, mask, keys, state = self._start(src, src_lengths)
        inputs = shift_right(tgt)  # teacher forcing
        logits, alphas = [], []
        for i in range(tgt.shape[1]):  # sequential: s_i needs s_{i-1}
            step_logits, state, weights = self.decoder(inputs[:, i], state, enc_outputs, mask, keys)
            logits.append(step_logits)
            alphas.append(weights)
        logits = torch.stack(logits, dim=1)  # (B, T, V)
        return (logits, torch.stack(alphas, dim=1)) if return_attention else logits  # weights (B, T, S)

    @torch.no_grad()
    def generate(self, src, src_lengths, max_len: int, return_attention: bool = False):
        """Greedy decoding -> ids (B, L), and with ``return_attention`` also weights (B, L, S)."""
        enc_outputs, mask, keys, state = self._start(src, src_lengths)
        token = torch.full((src.shape[0],), SOS, dtype=torch.long, device=src.device)  # (B,)
        finished = torch.zeros_like(token, dtype=torch.bool)
        out, alphas = [], []
        for _ in range(max_len):
            logits, state, weights = self.decoder(token, state, enc_outputs, mask, keys)
            token = logits.argmax(dim=-1)  # (B,)
            out.append(torch.where(finished, PAD, token))  # nothing after EOS
            alphas.append(weights)
            finished |= token == EOS
            if finished.all():
                break
        ids = torch.stack(out, dim=1)  # (B, L)
        return (ids, torch.stack(alphas, dim=1)) if return_attention else ids  # weights (B, L, S)

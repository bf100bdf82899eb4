"""Lesson 01's checks accept the reference and name realistic mistakes."""
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import utils
from utils.data import EOS, PAD, SOS
from check_helpers import fails_with


# ---- 01.1 the encoder
class _EncoderBase(nn.Module):
    def __init__(self, vocab_size, emb_dim, hidden_dim, batch_first=True):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=batch_first)


class EncoderNoPacking(_EncoderBase):
    def forward(self, src, src_lengths):
        return self.lstm(self.embedding(src))


class EncoderLastOutput(_EncoderBase):
    def forward(self, src, src_lengths):
        out, (h, c) = self.lstm(self.embedding(src))
        return out, (out[:, -1][None], c)


class EncoderNotBatchFirst(_EncoderBase):
    def __init__(self, v, e, h):
        super().__init__(v, e, h, batch_first=False)

    def forward(self, src, src_lengths):
        return self.lstm(self.embedding(src))


class EncoderSqueezedState(_EncoderBase):
    def forward(self, src, src_lengths):
        packed = pack_padded_sequence(self.embedding(src), src_lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return out, (h[0], c[0])


class EncoderOtherNames(nn.Module):
    def __init__(self, v, e, h):
        super().__init__()
        self.emb = nn.Embedding(v, e)
        self.rnn = nn.LSTM(e, h, batch_first=True)

    def forward(self, src, src_lengths):
        return self.rnn(self.emb(src))


def test_encoder_mistakes():
    fails_with("01.1", EncoderNoPacking, "after the padding")
    fails_with("01.1", EncoderLastOutput, "after the padding")
    fails_with("01.1", EncoderNotBatchFirst, "batch_first")
    fails_with("01.1", EncoderSqueezedState, "(num_layers, B, hidden_dim)")
    fails_with("01.1", EncoderOtherNames, "same names")
    fails_with("01.1", EncoderNoPacking(5, 2, 3), "class itself")


# ---- 01.2 shift right
def test_shift_right_mistakes():
    fails_with("01.2", lambda tgt, sos=SOS: tgt, "not shifted")
    fails_with("01.2", lambda tgt, sos=SOS: torch.roll(tgt, 1, 1), "torch.roll")
    fails_with("01.2", lambda tgt, sos=SOS: torch.cat([tgt[:, 1:], torch.zeros_like(tgt[:, :1])], 1), "wrong way")
    fails_with("01.2", lambda tgt, sos=SOS: torch.cat([torch.full_like(tgt[:, :1], sos), tgt], 1), "one token too long")
    fails_with("01.2", lambda tgt, sos=SOS: torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], 1), "`sos` argument")

    def in_place(tgt, sos=SOS):
        tgt[:, 1:] = tgt[:, :-1].clone()
        tgt[:, 0] = sos
        return tgt

    fails_with("01.2", in_place, "in place")


# ---- 01.3 the decoder
class _DecoderBase(nn.Module):
    def __init__(self, vocab_size, emb_dim, hidden_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)


class DecoderIgnoresState(_DecoderBase):
    def forward(self, inputs, state):
        out, state = self.lstm(self.embedding(inputs))
        return self.out(out), state


class DecoderSoftmax(_DecoderBase):
    def forward(self, inputs, state):
        out, state = self.lstm(self.embedding(inputs), state)
        return self.out(out).softmax(-1), state


class DecoderNoState(_DecoderBase):
    def forward(self, inputs, state):
        out, state = self.lstm(self.embedding(inputs), state)
        return self.out(out), None


def test_decoder_mistakes():
    fails_with("01.3", DecoderIgnoresState, "ignores the state")
    fails_with("01.3", DecoderSoftmax, "not probabilities")
    fails_with("01.3", DecoderNoState, "new state")


# ---- 01.4 greedy decoding
def _decoder_loop(model, src, src_lengths, max_len, start=SOS, carry=True, pad_after=True, include_sos=False):
    _, enc = model.encoder(src, src_lengths)
    state, token = enc, torch.full((src.shape[0], 1), start)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    out = [token] if include_sos else []
    for _ in range(max_len - int(include_sos)):
        logits, new_state = model.decoder(token, state)
        state = new_state if carry else enc
        token = logits.argmax(-1)
        out.append(torch.where(finished[:, None], PAD, token) if pad_after else token)
        finished |= token[:, 0] == EOS
    return torch.cat(out, 1)


def test_greedy_decode_mistakes():
    fails_with("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n, start=PAD), "<sos>")
    fails_with("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n, carry=False), "carry the decoder's state")
    fails_with("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n, pad_after=False), "fill the rest")
    fails_with("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n, include_sos=True), "do not include")
    fails_with("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n + 3), "more than max_len")
    # a full-length output that pads after EOS is as good as one that stops early
    assert utils.check("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n))


# ---- issue 14: each reliance of lessons 01 is checked, each structural mistake named
class EncoderNoTotalLength(_EncoderBase):
    def forward(self, src, src_lengths):
        packed = pack_padded_sequence(self.embedding(src), src_lengths, batch_first=True, enforce_sorted=False)
        out, state = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)  # pads to the longest sequence, not to S
        return out, state


class EncoderDetached(_EncoderBase):
    def forward(self, src, src_lengths):
        packed = pack_padded_sequence(self.embedding(src), src_lengths, batch_first=True, enforce_sorted=False)
        out, state = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return out.detach(), state


class EncoderSharedLayers(nn.Module):
    def __init__(self, v, e, h):
        super().__init__()
        self.embedding = nn.Embedding(v, e, padding_idx=PAD)
        self.lstm = nn.LSTM(e, h, batch_first=True)
        self.also = self.embedding


def test_encoder_reliances():
    fails_with("01.1", EncoderNoTotalLength, "total_length")
    fails_with("01.1", EncoderDetached, "no gradient")
    fails_with("01.1", EncoderSharedLayers, "unexpected")


class DecoderNoGrad(_DecoderBase):
    def forward(self, inputs, state):
        with torch.no_grad():
            out, state = self.lstm(self.embedding(inputs), state)
        return self.out(out).detach(), state


def test_decoder_reliances():
    fails_with("01.3", DecoderNoGrad, "no gradient")


def _loop(model, src, src_lengths, max_len, *, stop="all", eos_first=False, bounded=True, feed_sos=False,
          dtype=torch.long, generate=False):
    if generate:
        return model.generate(src, src_lengths, max_len)
    _, state = model.encoder(src, src_lengths)
    token = torch.full((src.shape[0], 1), SOS)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    out, step = [], 0
    while (step < max_len) if bounded else not finished.all():
        step += 1
        logits, state = model.decoder(torch.full_like(token, SOS) if feed_sos else token, state)
        token = logits.argmax(-1)
        if eos_first:
            finished |= token[:, 0] == EOS
        out.append(torch.where(finished[:, None], PAD, token))
        finished |= token[:, 0] == EOS
        if finished.any() if stop == "any" else finished.all():
            break
    return torch.cat(out, 1).to(dtype)


def test_greedy_decode_reliances_and_structural_mistakes():
    assert utils.check("01.4", lambda m, s, l, n: _loop(m, s, l, n))
    fails_with("01.4", lambda m, s, l, n: _loop(m, s, l, n, generate=True), "recursion never ends")
    fails_with("01.4", lambda m, s, l, n: _loop(m, s, l, n, bounded=False), "more than max_len")
    fails_with("01.4", lambda m, s, l, n: _loop(m, s, l, n, stop="any"), "*every* row")
    fails_with("01.4", lambda m, s, l, n: _loop(m, s, l, n, eos_first=True), "`<eos>` itself was replaced")
    fails_with("01.4", lambda m, s, l, n: _loop(m, s, l, n, feed_sos=True), "feed back the token")
    fails_with("01.4", lambda m, s, l, n: _loop(m, s, l, n, dtype=torch.int32), "torch.long")

    def in_place(m, s, l, n):
        l.clamp_(max=2)
        return _loop(m, s, l, n)

    fails_with("01.4", in_place, "in place")


def test_shift_right_keeps_the_ids_dtype():
    fails_with("01.2", lambda tgt, sos=SOS: torch.cat([torch.full((tgt.shape[0], 1), float(sos)), tgt[:, :-1]], 1),
               "keep tgt's dtype")


# ---- issue 24: 01.4 shares lesson 07's greedy-decoding diagnosis (utils/exercises/decoding.py)
def test_greedy_decode_loop_slips_shared_with_lesson_07():
    def forgets(model, src, src_lengths, max_len):
        _, state = model.encoder(src, src_lengths)
        token, finished, out = torch.full((src.shape[0], 1), SOS), torch.zeros(src.shape[0], dtype=torch.bool), []
        for _ in range(max_len):
            logits, state = model.decoder(token, state)
            token = logits.argmax(-1)
            out.append(torch.where(finished[:, None], PAD, token))
            finished = token[:, 0] == EOS  # forgets the rows that finished before
        return torch.cat(out, 1)

    fails_with("01.4", forgets, "comes back to life")
    fails_with("01.4", lambda m, s, l, n: _decoder_loop(m, s, l, n - 1), "one step short")

"""Exercises of lesson 01, the LSTM bottleneck: 01.1 encoder, 01.2 shift_right, 01.3 decoder, 01.4 greedy decoding."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils import rnn
from utils.data import EOS, PAD, SOS
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_shape, expect_tensor, instantiate)


def _source_batch(B: int, S: int, V: int, seed: int):
    """Random ids in 3..V-1, lengths from 1 to S (the longest exactly S), padded with PAD."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S
    lengths[-1] = max(1, S // 2)  # at least one shorter sequence, so padding matters
    src = torch.randint(3, V, (B, S), generator=g)
    return src.masked_fill(torch.arange(S) >= lengths[:, None], PAD), lengths


def _expect_batch_first(module, what):
    lstm = getattr(module, "lstm", None)
    expect(not isinstance(lstm, torch.nn.LSTM) or lstm.batch_first,
           f"Your {what}'s LSTM reads (S, B, E) by default; the course's batches are batch first: "
           "create it with `nn.LSTM(..., batch_first=True)`.")


@exercise("01.1", "the encoder and its final state", reference=rnn.Encoder, difficulty=2, minutes=15, hints=[
    "Two layers: `nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)` and `nn.LSTM(emb_dim, hidden_dim, batch_first=True)`. "
    "The LSTM returns `outputs, (h, c)`.",
    "The sequences of a batch have different lengths. If the LSTM runs over the padding, the final state of a short "
    "sequence is the state after the padding. `torch.nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), "
    "batch_first=True, enforce_sorted=False)` makes it stop at each sequence's own length.",
    "After `packed_outputs, (h, c) = self.lstm(packed)`, `pad_packed_sequence(packed_outputs, batch_first=True, "
    "total_length=src.shape[1])` gives back `(outputs, lengths)`; return `outputs, (h, c)`.",
])
def check_encoder(Candidate):
    for V, E, H, B, S, seed in [(13, 8, 16, 5, 7, 0), (9, 6, 12, 3, 4, 1), (20, 4, 10, 2, 1, 2)]:
        torch.manual_seed(seed)
        ref = rnn.Encoder(V, E, H)
        cand = instantiate(Candidate, V, E, H)
        copy_weights(ref, cand, "Your Encoder")
        _expect_batch_first(cand, "Encoder")
        src, lengths = _source_batch(B, S, V, seed)
        out = cand(src, lengths)
        expect(isinstance(out, tuple) and len(out) == 2,
               "forward should return a pair `(outputs, (h, c))`, as nn.LSTM does.")
        outputs, state = out
        expect(isinstance(state, tuple) and len(state) == 2,
               "The second item should be the LSTM's final state `(h, c)`, a pair of tensors.")
        h, c = state
        expect_shape(outputs, (B, S, H), "outputs",
                     "Did you create the LSTM with batch_first=True?" if tuple(getattr(outputs, "shape", ())) == (S, B, H) else "")
        expect_shape(h, (1, B, H), "h", "Return h as nn.LSTM gives it: (num_layers, B, hidden_dim).")
        expect_shape(c, (1, B, H), "c", "Return c as nn.LSTM gives it: (num_layers, B, hidden_dim).")
        want_outputs, (want_h, want_c) = ref(src, lengths)
        over_padding, (pad_h, pad_c) = ref.lstm(ref.embedding(src))  # the LSTM run through the padding
        padding_msg = ("Your final state is right for the longest sequence but not for the shorter ones: it is the state "
                       "*after the padding*. Use pack_padded_sequence so the LSTM stops at each sequence's own length.")
        expect_close(h, want_h, "h", mistakes={padding_msg: pad_h, padding_msg + " ": over_padding[:, -1][None]},
                     otherwise="Is h the LSTM's hidden state (not its cell state c)?")
        expect_close(c, want_c, "c", mistakes={padding_msg: pad_c, "You returned (c, h): the order is (h, c).": want_h})
        real = (torch.arange(S) < lengths[:, None])[..., None]  # (B, S, 1): padding positions may hold anything
        expect_close(outputs * real, want_outputs * real, "outputs at the real (non-padding) positions",
                     otherwise="outputs should be the LSTM's output at every position of the embedded source.")


@exercise("01.2", "teacher forcing: shift the target right", reference=rnn.shift_right, difficulty=1, minutes=5, hints=[
    "The decoder's input at step t is the *gold* token t-1; at step 0 there is no previous token, so it gets `sos`.",
    "Build a (B, 1) column of `sos` (e.g. `torch.full_like(tgt[:, :1], sos)`) and concatenate the target without its last token.",
    "`torch.cat([torch.full_like(tgt[:, :1], sos), tgt[:, :-1]], dim=1)`",
])
def check_shift_right(candidate):
    callable_candidate(candidate, "shift_right")
    for B, T, sos, seed in [(3, 5, SOS, 0), (2, 1, SOS, 1), (4, 6, 7, 2)]:
        g = torch.Generator().manual_seed(seed)
        tgt = torch.randint(3, 12, (B, T), generator=g)
        before = tgt.clone()
        got = candidate(tgt, sos) if sos != SOS else candidate(tgt)
        expect_tensor(got, "shift_right(tgt)")
        expect(torch.equal(tgt, before), "shift_right changed its input in place; build a new tensor instead.")
        if tuple(got.shape) == (B, T + 1):
            raise Mistake("The output is one token too long: keep the length T by dropping the target's last token "
                          "(it is never an input: nothing is predicted after it).")
        expect_shape(got, (B, T), "shift_right(tgt)")
        want = rnn.shift_right(tgt, sos)
        if torch.equal(got, want):
            continue
        if torch.equal(got, tgt):
            raise Mistake("The target is not shifted: the decoder would be given the very token it must predict, "
                          "and would learn to copy its input. Put `sos` first and drop the last token.")
        if torch.equal(got, torch.roll(tgt, 1, dims=1)):
            raise Mistake("torch.roll wraps the last token around to position 0, but position 0 must be `sos`.")
        if T > 1 and torch.equal(got[:, :-1], tgt[:, 1:]):
            raise Mistake("Shifted the wrong way (left): the decoder would see the *next* token. Shift right: "
                          "input t is target t-1.")
        if sos != SOS and torch.equal(got, rnn.shift_right(tgt, SOS)):
            raise Mistake("Use the `sos` argument rather than a fixed start token.")
        if torch.equal(got[:, 1:], want[:, 1:]):
            raise Mistake("The shift is right but the first column should be `sos`.")
        raise Mistake("shift_right(tgt) should be `sos` followed by tgt without its last token.")


@exercise("01.3", "the decoder, started from the context vector", reference=rnn.Decoder, difficulty=2, minutes=10, hints=[
    "Three layers: an embedding, an LSTM (batch_first=True) and `nn.Linear(hidden_dim, vocab_size)` named `out`.",
    "Pass the given `state` to the LSTM as its initial state: `outputs, state = self.lstm(x, state)`. "
    "That state is the encoder's context vector v, the decoder's only view of the source.",
    "Return raw scores (logits), not probabilities: `F.cross_entropy` applies the log-softmax itself.",
])
def check_decoder(Candidate):
    for V, E, H, B, T, seed in [(13, 8, 16, 4, 6, 0), (9, 5, 12, 2, 1, 1)]:
        torch.manual_seed(seed)
        ref = rnn.Decoder(V, E, H)
        cand = instantiate(Candidate, V, E, H)
        copy_weights(ref, cand, "Your Decoder")
        _expect_batch_first(cand, "Decoder")
        inputs = torch.randint(3, V, (B, T))
        state = (torch.randn(1, B, H), torch.randn(1, B, H))
        out = cand(inputs, state)
        expect(isinstance(out, tuple) and len(out) == 2, "forward should return a pair `(logits, state)`.")
        logits, new_state = out
        expect_shape(logits, (B, T, V), "logits",
                     "Did you create the LSTM with batch_first=True?" if tuple(getattr(logits, "shape", ())) == (T, B, V) else "")
        want, want_state = ref(inputs, state)
        ignored, _ = ref(inputs, None)
        expect_close(logits, want, "logits", mistakes={
            "Your decoder ignores the state it is given: the context vector v never reaches it. "
            "Pass `state` to the LSTM as its initial state.": ignored,
            "Return logits (raw scores), not probabilities: remove the softmax; the loss applies it.": want.softmax(-1),
            "Return logits (raw scores), not log-probabilities: remove the log_softmax; the loss applies it.": want.log_softmax(-1),
        })
        expect(isinstance(new_state, tuple) and len(new_state) == 2 and close(new_state[0], want_state[0]),
               "Return the LSTM's new state `(h, c)` as the second item: greedy decoding carries it to the next step.")


def _decode_mutants(model, src, lengths, max_len):
    """Outputs of realistic greedy-decoding mistakes: name -> ids."""
    def run(start_token, carry_state, pad_after_eos):
        _, enc_state = model.encoder(src, lengths)
        state = enc_state
        token = torch.full((src.shape[0], 1), start_token)
        finished = torch.zeros(src.shape[0], dtype=torch.bool)
        out = []
        for _ in range(max_len):
            logits, new_state = model.decoder(token, state)
            state = new_state if carry_state else enc_state
            token = logits.argmax(-1)
            out.append(torch.where(finished[:, None], PAD, token) if pad_after_eos else token)
            finished |= token[:, 0] == EOS
        return torch.cat(out, 1)

    return {
        "The first input must be `<sos>` (SOS), the token the decoder was trained to start from.": run(PAD, True, True),
        "Carry the decoder's state from step to step: each step must continue from the previous one, "
        "not restart from the encoder's state.": run(SOS, False, True),
        "After a sequence has produced `<eos>` it is finished: fill the rest of its row with PAD.": run(SOS, True, False),
    }


@exercise("01.4", "greedy decoding", reference=rnn.greedy_decode, difficulty=2, minutes=15, hints=[
    "Encode once. Start every sequence with a (B, 1) column of SOS, and loop `max_len` times: run the decoder on the "
    "last token with the current state, take the argmax as the next token, feed it back.",
    "Keep a boolean `finished` per row: once a row has produced EOS, write PAD in it from then on. "
    "Stop early when every row is finished.",
    "Collect the (B, 1) tokens of each step in a list and `torch.cat(out, dim=1)` at the end.",
])
def check_greedy_decode(candidate):
    callable_candidate(candidate, "greedy_decode")
    for V, B, S, max_len, seed in [(12, 6, 5, 8, 0), (10, 4, 3, 6, 3), (15, 3, 4, 5, 5)]:
        torch.manual_seed(seed)
        model = rnn.BottleneckSeq2Seq(V, 8, 16).eval()
        with torch.no_grad():
            for p in model.parameters():  # larger weights: outputs that depend strongly on token and state
                p.mul_(3)
            model.decoder.out.bias[EOS] += 1.0  # make EOS likely, so that rows finish at different steps
        src, lengths = _source_batch(B, S, V, seed)
        with torch.no_grad():
            got = candidate(model, src, lengths, max_len)
            want = rnn.greedy_decode(model, src, lengths, max_len)
        expect_tensor(got, "greedy_decode(...)")
        expect(got.dim() == 2 and got.shape[0] == B,
               f"greedy_decode should return ids of shape (B, L) = ({B}, L); got {tuple(got.shape)}.")
        expect(got.shape[1] <= max_len, f"The output has {got.shape[1]} steps, more than max_len={max_len}.")
        expect(not got.is_floating_point(), "Return token ids (argmax over the vocabulary), not scores.")
        if got.shape[1] > 0 and (got[:, 0] == SOS).all() and not (want[:, 0] == SOS).all():
            raise Mistake("Do not include the starting `<sos>` in the output: return only the generated tokens.")
        full = F.pad(got, (0, max_len - got.shape[1]), value=PAD)
        want_full = F.pad(want, (0, max_len - want.shape[1]), value=PAD)
        if torch.equal(full, want_full):
            continue
        for message, ids in _decode_mutants(model, src, lengths, max_len).items():
            if torch.equal(full, F.pad(ids, (0, max_len - ids.shape[1]), value=PAD)):
                raise Mistake(message)
        raise Mistake("The generated tokens differ from greedy decoding. At each step feed back the argmax of the "
                      "previous step's logits, and carry the state.")

"""Exercises of lesson 01, the LSTM bottleneck: 01.1 encoder, 01.2 shift_right, 01.3 decoder, 01.4 greedy decoding.

What the rest of the lesson relies on (each stated in the skeleton's docstring, each checked below):

01.1 Encoder(vocab_size, emb_dim, hidden_dim)
  * layers named ``embedding`` (padding_idx=PAD) and ``lstm`` (batch_first=True): the check loads the course's
    weights by name, and lesson 02 reads ``encoder.embedding``;
  * forward(src (B, S), src_lengths (B,)) -> outputs (B, S, H) even when the batch is padded past its longest
    sequence (``total_length``), and (h, c) each (1, B, H), the state after each row's last real token;
  * outputs float, with a gradient (it is trained); src_lengths left unchanged.
01.2 shift_right(tgt, sos=SOS): a new (B, T) tensor of tgt's dtype, sos first; tgt unchanged.
01.3 Decoder(vocab_size, emb_dim, hidden_dim)
  * layers ``embedding``, ``lstm`` (batch_first=True), ``out`` = Linear(hidden_dim, vocab_size);
  * forward(inputs (B, T), state) -> (logits (B, T, V), new state (h, c)): raw logits, the state carried.
01.4 greedy_decode(model, src, src_lengths, max_len)
  * uses ``model.encoder`` and ``model.decoder`` only: ``model.generate`` calls it (no recursion);
  * ids (B, L) torch.long, L <= max_len; terminates after max_len steps even when a row never gives EOS;
  * each row keeps its EOS and has PAD after it; it does not stop before every row has finished;
  * deterministic (argmax), and the input tensors are left unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils import rnn
from utils.data import EOS, PAD, SOS
from utils.exercises import decoding, exercise
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


@exercise("01.1", "the encoder and its final state", reference=rnn.Encoder, difficulty=2, minutes=15,
          on_timeout="an LSTM loop over the positions that never ends", hints=[
    "Two layers: `nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)` and `nn.LSTM(emb_dim, hidden_dim, batch_first=True)`. "
    "The LSTM returns `outputs, (h, c)`.",
    "The sequences of a batch have different lengths. If the LSTM runs over the padding, the final state of a short "
    "sequence is the state after the padding. `torch.nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), "
    "batch_first=True, enforce_sorted=False)` makes it stop at each sequence's own length.",
    "After `packed_outputs, (h, c) = self.lstm(packed)`, `pad_packed_sequence(packed_outputs, batch_first=True, "
    "total_length=src.shape[1])` gives back `(outputs, lengths)`; return `outputs, (h, c)`.",
])
def check_encoder(Candidate):
    # the last case is a batch padded past its longest sequence, as a DataLoader may pad to a fixed length
    for V, E, H, B, S, seed, extra in [(13, 8, 16, 5, 7, 0, 0), (9, 6, 12, 3, 4, 1, 0), (20, 4, 10, 2, 1, 2, 0),
                                       (11, 5, 8, 3, 4, 3, 2)]:
        torch.manual_seed(seed)
        ref = rnn.Encoder(V, E, H)
        cand = instantiate(Candidate, V, E, H)
        copy_weights(ref, cand, "Your Encoder")
        _expect_batch_first(cand, "Encoder")
        src, lengths = _source_batch(B, S, V, seed)
        if extra:
            src, S = F.pad(src, (0, extra), value=PAD), S + extra
        out = cand(src, lengths)  # (check() stops any in-place change of src or src_lengths)
        expect(isinstance(out, tuple) and len(out) == 2,
               "forward should return a pair `(outputs, (h, c))`, as nn.LSTM does.")
        outputs, state = out
        expect(isinstance(state, tuple) and len(state) == 2,
               "The second item should be the LSTM's final state `(h, c)`, a pair of tensors.")
        h, c = state
        got_shape = tuple(getattr(outputs, "shape", ()))
        expect_shape(outputs, (B, S, H), "outputs",
                     "Did you create the LSTM with batch_first=True?" if got_shape == (S, B, H) else
                     f"This batch is padded to S = {S}, past its longest sequence ({int(lengths.max())}): "
                     "pad_packed_sequence pads only to the longest one unless you pass `total_length=src.shape[1]`."
                     if extra and got_shape == (B, S - extra, H) else "")
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
        expect(outputs.is_floating_point() and outputs.requires_grad,
               "outputs has no gradient: the encoder is trained through it (no torch.no_grad(), .detach() or .data).")


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
        got = candidate(tgt, sos) if sos != SOS else candidate(tgt)
        expect_tensor(got, "shift_right(tgt)")
        if tuple(got.shape) == (B, T + 1):
            raise Mistake("The output is one token too long: keep the length T by dropping the target's last token "
                          "(it is never an input: nothing is predicted after it).")
        expect_shape(got, (B, T), "shift_right(tgt)")
        expect(got.dtype == tgt.dtype, f"shift_right returns {got.dtype}; keep tgt's dtype ({tgt.dtype}): the decoder's "
               "nn.Embedding needs integer ids (e.g. `torch.full_like(tgt[:, :1], sos)`, not torch.full(..., float)).")
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


@exercise("01.3", "the decoder, started from the context vector", reference=rnn.Decoder, difficulty=2, minutes=10,
          on_timeout="a loop over the positions that never ends", hints=[
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
        expect(isinstance(new_state, tuple) and len(new_state) == 2 and close(new_state[0], want_state[0])
               and close(new_state[1], want_state[1]),
               "Return the LSTM's new state `(h, c)` as the second item: greedy decoding carries it to the next step.")
        expect(logits.requires_grad, "The logits have no gradient: the decoder is trained through them "
               "(no torch.no_grad(), .detach() or .data in forward).")
        # one token at a time, carrying the state, gives what the whole input gives at once (generation relies on it)
        step_state, steps = state, []
        for t in range(T):
            step_logits, step_state = cand(inputs[:, t:t + 1], step_state)
            steps.append(step_logits)
        expect(close(torch.cat(steps, 1), want),
               "Fed one token at a time (T = 1, as in greedy decoding), carrying the returned state, your decoder "
               "does not give the logits of the whole input at once.")


@torch.no_grad()
def _decode_mutants(model, src, lengths, max_len):
    """{message: ids} of realistic greedy-decoding mistakes: the loop's own (utils.exercises.decoding) and the LSTM's."""
    _, enc_state = model.encoder(src, lengths)

    def stepper(carry_state=True, feed_first=False):
        def step(token, state):  # state: the decoder's (h, c) so far
            logits, new_state = model.decoder(torch.full_like(token, SOS)[:, None] if feed_first else token[:, None], state)
            return logits[:, -1], (new_state if carry_state else enc_state)
        return step

    B = src.shape[0]
    return {
        **decoding.loop_mistakes(stepper(), enc_state, B, max_len),
        "Carry the decoder's state from step to step: each step must continue from the previous one, "
        "not restart from the encoder's state.": decoding.greedy_mutant(stepper(carry_state=False), enc_state, B, max_len),
        "Feed back the token just generated: every step gets `<sos>` as its input here, so the decoder never sees "
        "its own previous guess.": decoding.greedy_mutant(stepper(feed_first=True), enc_state, B, max_len),
    }


_RECURSION = decoding.recursion("model.encoder", "model.decoder")


class _DecodingModel(rnn.BottleneckSeq2Seq):
    """The course's model, whose generate (the lesson's calls greedy_decode) must not be used."""

    def generate(self, *args, **kwargs):
        raise Mistake(_RECURSION)


def _count_calls(module, limit: int, message: str):
    """A forward pre-hook that raises ``Mistake(message)`` on the call after ``limit``. -> the hook's handle."""
    calls = [0]

    def hook(mod, args):
        calls[0] += 1
        if calls[0] > limit:
            raise Mistake(message)

    return module.register_forward_pre_hook(hook)


@exercise("01.4", "greedy decoding", reference=rnn.greedy_decode, difficulty=2, minutes=15,
          on_timeout="a decoding loop that ignores max_len (e.g. `while not finished.all()`), which never ends when "
                     "a row never produces EOS", hints=[
    "Encode once. Start every sequence with a (B, 1) column of SOS, and loop `max_len` times: run the decoder on the "
    "last token with the current state, take the argmax as the next token, feed it back.",
    "Keep a boolean `finished` per row: once a row has produced EOS, write PAD in it from then on. "
    "Stop early when every row is finished.",
    "Collect the (B, 1) tokens of each step in a list and `torch.cat(out, dim=1)` at the end.",
])
def check_greedy_decode(candidate):
    callable_candidate(candidate, "greedy_decode")
    # eos: how much more likely EOS is made; the last case never produces EOS, so only max_len ends the loop
    for V, B, S, max_len, seed, eos in [(12, 6, 5, 8, 0, 1.0), (10, 4, 3, 6, 3, 1.0), (15, 3, 4, 5, 5, 1.0),
                                        (9, 3, 4, 5, 6, -1e4)]:
        torch.manual_seed(seed)
        model = _DecodingModel(V, 8, 16).eval()
        with torch.no_grad():
            for p in model.parameters():  # larger weights: outputs that depend strongly on token and state
                p.mul_(3)
            model.decoder.out.bias[EOS] += eos  # EOS likely (rows finish at different steps), or impossible
        src, lengths = _source_batch(B, S, V, seed)
        handle = _count_calls(model.decoder, 2 * max_len + 2, decoding.too_many_steps(max_len))
        try:
            with torch.no_grad():
                got = candidate(model, src, lengths, max_len)
        finally:
            handle.remove()
        with torch.no_grad():
            want = rnn.greedy_decode(model, src, lengths, max_len)
        expect_tensor(got, "greedy_decode(...)")
        expect(got.dim() == 2 and got.shape[0] == B,
               f"greedy_decode should return ids of shape (B, L) = ({B}, L); got {tuple(got.shape)}.")
        expect(got.shape[1] <= max_len, f"The output has {got.shape[1]} steps, more than max_len={max_len}.")
        expect(not got.is_floating_point(), "Return token ids (argmax over the vocabulary), not scores.")
        expect(got.dtype == torch.long, f"Return the ids as torch.long (what argmax gives), not {got.dtype}.")
        decoding.diagnose(got, want, max_len, lambda: _decode_mutants(model, src, lengths, max_len),
                          "The generated tokens differ from greedy decoding. At each step feed back the argmax of the "
                          "previous step's logits, and carry the state.", stop_when_done=False)

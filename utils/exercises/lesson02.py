"""Exercises of lesson 02, additive attention: 02.1 AdditiveAttention, 02.2 the attention decoder step,
02.3 Luong's dot and general scores.

What the rest of the lesson relies on (each stated in the skeleton's docstring, each checked below):

02.1 AdditiveAttention(query_dim, key_dim, attn_dim)
  * layers ``W_q``, ``W_k``, ``w_v``, Linear without bias: the model computes ``attention.W_k(enc)`` once;
  * forward(query (B, Dq), keys (B, S, Dk), mask (B, S) bool True = may attend, projected_keys) ->
    (context (B, Dk), weights (B, S)); rows sum to 1; padding has no influence; ``projected_keys`` used when given;
  * a fully masked row gives zero weights and a zero context, never NaN;
  * the inputs (query, keys, mask, projected_keys) are left unchanged: the model reuses projected_keys
    at every step, so an in-place ``+=`` on it corrupts the next step.
02.2 AttentionDecoder(vocab_size, emb_dim, hidden_dim, attn_dim)
  * layers ``embedding``, ``attention`` (an AdditiveAttention), ``cell`` (LSTMCell), ``out``;
  * forward(token (B,), state, enc_outputs, mask, projected_keys=None) -> (logits (B, V), (h, c), weights (B, S));
    the state and the inputs are left unchanged; logits carry a gradient.
02.3 luong_score(query, keys, W=None) -> scores (B, S), both the dot and the general case; inputs unchanged.
"""
from __future__ import annotations

import math

import torch

from utils import rnn
from utils.data import PAD
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_finite, expect_same_gradients, expect_shape, expect_tensor, instantiate)


def _mask(B: int, S: int, seed: int):
    """(B, S) bool, True at the real positions: lengths 1..S, the first row full, the last one short."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S
    lengths[-1] = max(1, S // 2)
    return torch.arange(S)[None, :] < lengths[:, None]


def _additive_mutants(ref, query, keys, mask):
    """Outputs (context, weights) of realistic mistakes in additive attention: message -> pair."""
    q = ref.W_q(query)  # (B, A)
    k = ref.W_k(keys)  # (B, S, A)

    def finish(scores, dim=-1, use_mask=True, invert=False, values=keys, softmax=True):
        if use_mask:
            scores = scores.masked_fill(mask if invert else ~mask, float("-inf"))
        weights = torch.softmax(scores, dim=dim) if softmax else scores
        weights = torch.nan_to_num(weights, nan=0.0)
        if values.shape[-1] != keys.shape[-1]:
            return None, weights
        return torch.bmm(weights[:, None, :], values).squeeze(1), weights

    right = ref.w_v(torch.tanh(q[:, None, :] + k)).squeeze(-1)  # (B, S)
    mutants = {
        "The softmax runs over the wrong dimension: alpha_j must be normalised over the input positions j "
        "(the last dimension of the (B, S) scores), so that each example's weights sum to 1.": finish(right, dim=0),
        "The non-linearity is missing: additive attention scores are w_v^T tanh(W_q s + W_k h_j). Without the tanh "
        "the score is linear, and the query's term adds the same amount to every position (so it cannot change alpha).":
            finish(ref.w_v(q[:, None, :] + k).squeeze(-1)),
        "The non-linearity should be tanh (as in Bahdanau et al.), not ReLU.":
            finish(ref.w_v(torch.relu(q[:, None, :] + k)).squeeze(-1)),
        "The non-linearity should be tanh (as in Bahdanau et al.), not a sigmoid.":
            finish(ref.w_v(torch.sigmoid(q[:, None, :] + k)).squeeze(-1)),
        "The padding mask is ignored: padded positions get weight. Set their scores to -inf before the softmax, "
        "e.g. `scores.masked_fill(~mask, float('-inf'))`.": finish(right, use_mask=False),
        "The padding mask is inverted: in this course True means *may attend* (as in "
        "F.scaled_dot_product_attention), so fill the scores where the mask is False (`~mask`).": finish(right, invert=True),
        "The weights are raw scores: apply a softmax over the positions so that they are positive and sum to 1.":
            finish(right, softmax=False),
        "w_v is missing: reduce the tanh(...) vector of each position to one score with `self.w_v(...)`, not a sum.":
            finish(torch.tanh(q[:, None, :] + k).sum(-1)),
    }
    if q.shape[-1] == keys.shape[-1]:
        mutants["The context is a weighted sum of the *projected* keys W_k h_j; it must be the weighted sum of the "
                "encoder states themselves, c = sum_j alpha_j h_j (the `keys` argument)."] = finish(right, values=k)
    if query.shape[0] == keys.shape[1]:
        mutants["The query is not broadcast over the positions: W_q s has shape (B, A) and W_k h has shape (B, S, A); "
                "give the query a position axis first, `self.W_q(query)[:, None, :]`, so each example's query meets "
                "its own keys."] = finish(ref.w_v(torch.tanh(q[None, :, :] + k)).squeeze(-1))
    return mutants


_BROADCAST = ("The query is not broadcast over the positions: W_q s has shape (B, A) and W_k h has shape (B, S, A); "
              "give the query a position axis first, `self.W_q(query)[:, None, :]`.")


@exercise("02.1", "additive (Bahdanau) attention", reference=rnn.AdditiveAttention, difficulty=2, minutes=20, hints=[
    "Three layers, all without bias: `W_q = nn.Linear(query_dim, attn_dim, bias=False)`, "
    "`W_k = nn.Linear(key_dim, attn_dim, bias=False)` and `w_v = nn.Linear(attn_dim, 1, bias=False)`. "
    "The forward pass computes the scores e, the weights alpha = softmax(e), and the context c = sum_j alpha_j h_j.",
    "Shapes: W_q(query) is (B, A) and W_k(keys) is (B, S, A): add a position axis to the first, `[:, None, :]`, "
    "before adding them. `w_v(tanh(...))` is (B, S, 1): squeeze the last axis. Use `projected_keys` instead of "
    "W_k(keys) when it is given. Masked scores become -inf before a softmax over dim=-1.",
    "The context is `torch.bmm(weights[:, None, :], keys).squeeze(1)` (B, Dk), a weighted sum of the keys themselves. "
    "If a row's keys are all masked, its softmax is NaN (0/0): "
    "`torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)` gives it zero weights instead.",
])
def check_additive_attention(Candidate):
    # (B, S, Dq, Dk, A): the first has B == S (a query that is not broadcast gives values, not an error),
    # the second A == Dk (a context of projected keys has the right shape), the others differ everywhere.
    for B, S, Dq, Dk, A, seed in [(5, 5, 6, 7, 4, 0), (3, 6, 5, 4, 4, 1), (4, 7, 3, 5, 6, 2), (1, 3, 4, 4, 2, 3)]:
        torch.manual_seed(seed)
        ref = rnn.AdditiveAttention(Dq, Dk, A)
        cand = instantiate(Candidate, Dq, Dk, A)
        copy_weights(ref, cand, "Your AdditiveAttention")
        query, keys, mask = torch.randn(B, Dq), torch.randn(B, S, Dk), _mask(B, S, seed)
        inputs = (query.clone(), keys.clone(), mask.clone())
        try:
            out = cand(query, keys, mask)
        except RuntimeError as err:
            if "must match the size" not in str(err) and "broadcast" not in str(err):
                raise
            try:  # without the mask, a missing squeeze shows as (B, S, 1) weights
                unmasked = cand(query, keys)[1]
            except Exception:
                unmasked = None
            if tuple(getattr(unmasked, "shape", ())) == (B, S, 1):
                raise Mistake("The scores have shape (B, S, 1): squeeze the last axis of w_v(...) (`.squeeze(-1)`) "
                              "so that they are (B, S) like the mask.") from None
            raise Mistake(_BROADCAST) from None
        expect(isinstance(out, tuple) and len(out) == 2, "forward should return a pair `(context, weights)`.")
        for name, now, then in zip(("query", "keys", "mask"), (query, keys, mask), inputs):
            expect(torch.equal(now, then), f"Your forward changed its input `{name}` in place (an in-place operation "
                   "such as `+=`, `.mul_()` or `masked_fill_` on it): compute new tensors instead; the caller reuses its inputs.")
        context, weights = out
        want_context, want_weights = ref(query, keys, mask)
        expect_tensor(context, "context")
        if tuple(context.shape) == (B, A) and A != Dk:
            raise Mistake("The context has shape (B, attn_dim): it is a weighted sum of the *projected* keys W_k h_j. "
                          "It must be the weighted sum of the encoder states themselves, c = sum_j alpha_j h_j.")
        expect_shape(weights, (B, S), "weights",
                     "Did you forget to squeeze the last axis of w_v(...)?" if tuple(getattr(weights, "shape", ())) == (B, S, 1) else "")
        expect_shape(context, (B, Dk), "context")
        mutants = _additive_mutants(ref, query, keys, mask)
        if not close(weights, want_weights):  # name the mistake before any NaN (an inverted mask gives some)
            for message, (_, w) in mutants.items():
                if close(torch.nan_to_num(weights.detach(), nan=0.0), w):
                    raise Mistake(message)
        expect_close(weights, want_weights, "weights", mistakes={m: w for m, (_, w) in mutants.items()},
                     otherwise="Check the order: scores e_j = w_v^T tanh(W_q s + W_k h_j), then the mask, then the softmax.")
        expect(close(weights.sum(-1), torch.ones(B)), "Each row of weights should sum to 1.")
        expect_close(context, want_context, "context", mistakes={m: c for m, (c, _) in mutants.items()},
                     otherwise="The weights are right; the context should be c = sum_j alpha_j h_j, a weighted sum of `keys`.")
        # A masked key has no influence: change the keys at the padding, the output must not move.
        noisy = torch.where(mask[..., None], keys, 100 * torch.randn(B, S, Dk))
        c2, w2 = cand(query, noisy, mask)
        expect(close(c2, want_context) and close(w2, want_weights),
               "Changing the keys at padded positions changed the output: padding must have no influence at all.")
        # The lesson trains it: the same gradients as the course's (an in-place op or a .detach() shows here).
        expect_same_gradients(cand, ref, lambda: cand(query, keys, mask)[0], lambda: ref(query, keys, mask)[0],
                              "Your AdditiveAttention's context")
        # Without a mask every position counts.
        c3, w3 = cand(query, keys)
        expect(close(w3, ref(query, keys)[1]), "With mask=None (the default), attend to every position.")
        # projected_keys, when given, replaces W_k(keys): the decoder computes it once per sequence.
        projected = torch.randn(B, S, A)
        projected_before = projected.clone()
        c4, w4 = cand(query, keys, mask, projected)
        expect(torch.equal(projected, projected_before),
               "Your forward changed `projected_keys` in place (e.g. `projected_keys += self.W_q(query)[:, None]`): the "
               "model computes it once per sequence and passes the same tensor at every step, so the next step would "
               "get the wrong keys. Write `projected_keys + ...`, a new tensor.")
        rc4, rw4 = ref(query, keys, mask, projected)
        if close(w4, want_weights) and not close(rw4, want_weights):
            raise Mistake("`projected_keys` is ignored: when it is given, use it instead of computing W_k(keys) again.")
        expect(close(w4, rw4) and close(c4, rc4),
               "With `projected_keys` given, the scores should use it in place of W_k(keys), and the context should "
               "still be the weighted sum of `keys`.")
    # A row whose keys are all masked must not turn into NaN.
    torch.manual_seed(4)
    ref, cand = rnn.AdditiveAttention(4, 4, 3), instantiate(Candidate, 4, 4, 3)
    copy_weights(ref, cand, "Your AdditiveAttention")
    mask = torch.tensor([[True, True, False], [False, False, False]])
    context, weights = cand(torch.randn(2, 4), torch.randn(2, 3, 4), mask)
    nan = bool(torch.isnan(weights).any() or torch.isnan(context).any())
    expect(not nan, "A row whose keys are all masked gives NaN weights (softmax of a row of -inf is 0/0). "
           "Give such rows zero weights: `torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)`.")
    expect(close(weights[1], torch.zeros(3)) and close(context[1], torch.zeros(4)),
           "A row whose keys are all masked should get zero weights and a zero context, as everywhere in the course.")


def _decoder_mutants(ref, token, state, enc, mask, keys):
    """Outputs (logits, h, weights) of realistic mistakes in the attention decoder step: message -> triple."""
    att, emb = ref.attention, ref.embedding(token)

    def run(query, use_mask=True, cell_order="emb_first", out_order="s_first", out_state="new"):
        ctx, w = att(query, enc, mask if use_mask else None, keys)
        x = torch.cat([emb, ctx] if cell_order == "emb_first" else [ctx, emb], dim=-1)
        h, c = ref.cell(x, state)
        s = h if out_state == "new" else state[0]
        logits = ref.out(torch.cat([s, ctx] if out_order == "s_first" else [ctx, s], dim=-1))
        return logits, h, w

    return {
        "The query should be the decoder's hidden state s_{i-1} = state[0], not the LSTM's cell state state[1].":
            run(state[1]),
        "The mask is not passed to the attention: the decoder attends to the padding. "
        "Call `self.attention(s_prev, enc_outputs, mask, projected_keys)`.": run(state[0], use_mask=False),
        "The LSTM cell's input should be [emb(y_{i-1}); c_i], in that order (embedding first, then the context).":
            run(state[0], cell_order="ctx_first"),
        "The output layer's input should be [s_i; c_i], in that order (the new state first, then the context).":
            run(state[0], out_order="ctx_first"),
        "The output layer should read the *new* state s_i (after the LSTM cell), not the previous one s_{i-1}.":
            run(state[0], out_state="old"),
    }


@exercise("02.2", "the attention decoder step", reference=rnn.AttentionDecoder, difficulty=2, minutes=15, hints=[
    "Four layers: `embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)`, `attention = "
    "AdditiveAttention(hidden_dim, hidden_dim, attn_dim)`, `cell = nn.LSTMCell(emb_dim + hidden_dim, hidden_dim)` "
    "and `out = nn.Linear(2 * hidden_dim, vocab_size)`.",
    "In order: attend with the previous hidden state as the query (`state[0]`), giving c_i and alpha_i; feed "
    "[emb(y_{i-1}); c_i] and the state to the LSTM cell, giving s_i; compute the logits from [s_i; c_i].",
    "`context, weights = self.attention(state[0], enc_outputs, mask, projected_keys)`; "
    "`h, c = self.cell(torch.cat([self.embedding(token), context], dim=-1), state)`; "
    "`return self.out(torch.cat([h, context], dim=-1)), (h, c), weights`.",
])
def check_attention_decoder(Candidate):
    for V, E, H, A, B, S, seed in [(11, 6, 8, 5, 4, 6, 0), (7, 4, 5, 3, 3, 4, 1)]:
        torch.manual_seed(seed)
        ref = rnn.AttentionDecoder(V, E, H, A)
        cand = instantiate(Candidate, V, E, H, A)
        copy_weights(ref, cand, "Your AttentionDecoder")
        token = torch.randint(3, V, (B,))
        state = (torch.randn(B, H), torch.randn(B, H))
        enc, mask = torch.randn(B, S, H), _mask(B, S, seed)
        keys = ref.attention.W_k(enc)
        inputs = (token.clone(), state[0].clone(), state[1].clone(), enc.clone(), mask.clone(), keys.detach().clone())
        out = cand(token, state, enc, mask, keys)
        expect(all(torch.equal(a, b) for a, b in zip((token, state[0], state[1], enc, mask, keys.detach()), inputs)),
               "Your step changed one of its inputs in place (token, state, enc_outputs, mask or projected_keys): the "
               "model passes the same tensors at every step, so compute new tensors instead.")
        expect(isinstance(out, tuple) and len(out) == 3, "forward should return `(logits, (h, c), weights)`.")
        logits, new_state, weights = out
        expect(isinstance(new_state, tuple) and len(new_state) == 2,
               "The second item should be the LSTM cell's new state `(h, c)`, a pair of (B, H) tensors.")
        expect_shape(logits, (B, V), "logits")
        expect_shape(weights, (B, S), "weights")
        want_logits, (want_h, want_c), want_weights = ref(token, state, enc, mask, keys)
        mutants = _decoder_mutants(ref, token, state, enc, mask, keys)
        expect_close(weights, want_weights, "weights", mistakes={m: w for m, (_, _, w) in mutants.items()},
                     otherwise="The weights should be the attention's, with the previous hidden state as the query.")
        expect_close(logits, want_logits, "logits", mistakes={m: lg for m, (lg, _, _) in mutants.items()} | {
            "Return logits (raw scores), not probabilities: remove the softmax; the loss applies it.": want_logits.softmax(-1)},
            otherwise="Feed [emb(y_{i-1}); c_i] to the LSTM cell, then compute the logits from [s_i; c_i].")
        expect(close(new_state[0], want_h) and close(new_state[1], want_c),
               "Return the LSTM cell's new state `(h, c)` as the second item: the next step continues from it.")
        expect(logits.requires_grad, "The logits have no gradient: the decoder is trained through them "
               "(no torch.no_grad(), .detach() or .data in forward).")
        expect_same_gradients(cand, ref, lambda: cand(token, state, enc, mask)[0], lambda: ref(token, state, enc, mask)[0],
                              "Your decoder step's logits")
        # without projected_keys, the attention computes them itself
        logits2, _, _ = cand(token, state, enc, mask)
        expect(close(logits2, want_logits), "Called without `projected_keys` (its default None), the step should "
               "give the same result: pass it on to the attention, which computes W_k(keys) when it is None.")


@exercise("02.3", "Luong's dot and general scores", reference=rnn.luong_score, difficulty=1, minutes=10, hints=[
    "The dot score of position j is the dot product of the query with h_j: e_j = s^T h_j. With a matrix W, "
    "the general score is e_j = s^T W h_j: first turn the query into s^T W, then take dot products.",
    "`query @ W` is s^T W, shape (B, Dk). The dot products of one query (B, D) with S keys (B, S, D) are a batched "
    "matrix-vector product: `torch.bmm(keys, query[:, :, None])` is (B, S, 1).",
    "`if W is not None: query = query @ W`, then `return torch.bmm(keys, query[:, :, None]).squeeze(-1)`.",
])
def check_luong_score(candidate):
    callable_candidate(candidate, "luong_score")
    for B, S, Dq, Dk, seed in [(3, 5, 4, 4, 0), (2, 4, 3, 6, 1), (4, 1, 5, 5, 2)]:
        g = torch.Generator().manual_seed(seed)
        query, keys = torch.randn(B, Dq, generator=g), torch.randn(B, S, Dk, generator=g)
        W = torch.randn(Dq, Dk, generator=g)
        for kind in ("dot", "general"):
            if kind == "dot" and Dq != Dk:
                continue
            w = None if kind == "dot" else W
            inputs = (query.clone(), keys.clone(), W.clone())
            got = candidate(query, keys) if w is None else candidate(query, keys, w)
            expect(all(torch.equal(a, b) for a, b in zip((query, keys, W), inputs)),
                   f"luong_score ({kind}) changed one of its inputs in place (e.g. `query @= W`): compute a new "
                   "tensor (`query = query @ W` rebinds the name, it does not change the caller's tensor).")
            want = rnn.luong_score(query, keys, w)
            expect_tensor(got, f"luong_score ({kind})")
            if tuple(got.shape) == (B, Dk) and S != Dk:
                raise Mistake(f"The {kind} scores have shape (B, D): you summed over the positions instead of the "
                              "features. Each position j gets one score, the dot product over the feature axis.")
            expect_shape(got, (B, S), f"luong_score ({kind})",
                         "Squeeze the last axis of the batched product." if tuple(got.shape) == (B, S, 1) else "")
            mistakes = {
                "Return the scores e, not the weights: no softmax here (the attention applies it).": want.softmax(-1),
                "No scaling here: Luong's scores are plain dot products. (Dividing by sqrt(d) is the next lesson's "
                "refinement.)": want / math.sqrt(Dk),
            }
            if w is not None:
                mistakes["`W` is ignored: the general score is s^T W h_j."] = rnn.luong_score(query, keys) if Dq == Dk else None
                if Dq == Dk:
                    mistakes["W is applied the wrong way round: the general score is s^T W h_j, i.e. `query @ W` "
                             "(or W^T applied to the query), not `W @ query`."] = rnn.luong_score(query, keys, W.T)
            expect_close(got, want, f"luong_score ({kind})", mistakes=mistakes,
                         otherwise="e_j should be the dot product of the query (times W, for 'general') with h_j.")

"""Exercises of lesson 08, the decoder-only language model (GPT): 08.1 the next-token loss,
08.2 sampling the next token (temperature, top-k), 08.3 the GPT model, 08.4 the prefix-matching
score of induction heads. The references live in :mod:`utils.gpt`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils import gpt
from utils.attention import causal_mask
from utils.exercises import exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_finite, expect_shape, expect_tensor, instantiate)


# ----------------------------------------------------------------- 08.1 the next-token loss
def _loss_mistakes(logits, tokens) -> dict:
    V = logits.shape[-1]
    ce = lambda lg, tk: F.cross_entropy(lg.reshape(-1, V), tk.reshape(-1), reduction="none").view(tk.shape)  # noqa: E731
    nll = ce(logits[:, :-1], tokens[:, 1:])  # (B, T-1)
    logp = logits[:, :-1].log_softmax(dim=-1)
    return {
        "There is no shift: logits[:, t] must be scored on the *next* token tokens[:, t+1], not on tokens[:, t] "
        "(which the model has already seen). Drop the last logit and the first token.": ce(logits, tokens).mean(),
        "The shift goes the wrong way round: logits[:, t] predicts tokens[:, t+1], so pair logits[:, :-1] with "
        "tokens[:, 1:] (not logits[:, 1:] with tokens[:, :-1]).": ce(logits[:, 1:], tokens[:, :-1]).mean(),
        "The last position is scored too (on the first token, wrapped round by roll?): it has no next token, so leave "
        "it out: logits[:, :-1] against tokens[:, 1:].": ce(logits, tokens.roll(-1, dims=1)).mean(),
        "You summed over the positions of each sequence and averaged over the sequences: the loss is the mean over "
        "every prediction (B * (T-1) of them), so that it does not grow with T.": nll.sum(dim=1).mean(),
        "That is the sum of the cross-entropy over all predictions; the loss is their mean.": nll.sum(),
        "You divided the sum by B * T, but there are B * (T-1) predictions (the last position has no next token): "
        "take the mean over logits[:, :-1] against tokens[:, 1:].": nll.sum() / tokens.numel(),
        "Each position is scored on its own token, not the next one (both sliced alike): pair logits[:, :-1] with "
        "tokens[:, 1:], one position apart.": ce(logits[:, 1:], tokens[:, 1:]).mean(),
        "Each position is scored on its own token, not the next one (both sliced alike): pair logits[:, :-1] with "
        "tokens[:, 1:], one position apart. ": ce(logits[:, :-1], tokens[:, :-1]).mean(),
        "That is in bits: the loss is in nats (natural log), as F.cross_entropy computes it. Divide by ln 2 only "
        "when you report bits per character.": nll.mean() / math.log(2),
        "The sign is wrong: the cross-entropy is -log p, a positive number to minimise.": -nll.mean(),
        "Take the log of the probabilities: the cross-entropy is -log p(next token), not -p.":
            -logp.exp().gather(-1, tokens[:, 1:, None]).mean(),
        "The (log-)softmax must run over the vocabulary (the last dimension), not over positions.":
            -logits[:, :-1].log_softmax(dim=1).gather(-1, tokens[:, 1:, None]).mean(),
    }


@exercise("08.1", "the next-token loss", reference=gpt.next_token_loss, difficulty=1, minutes=10, hints=[
    "Position t has read tokens[:, :t+1] and predicts tokens[:, t+1]. So the logits of positions 0..T-2 are scored "
    "on the tokens of positions 1..T-1; the last position has nothing to predict.",
    "`logits[:, :-1]` (B, T-1, V) goes with `tokens[:, 1:]` (B, T-1). F.cross_entropy wants the classes in the "
    "second dimension, or everything flattened: `.reshape(-1, V)` and `.reshape(-1)`.",
    "`V = logits.shape[-1]`; `return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))`: "
    "one mean over all B * (T-1) predictions, in nats.",
])
def check_next_token_loss(candidate):
    callable_candidate(candidate, "next_token_loss")
    for B, T, V, seed in [(3, 7, 11, 0), (1, 2, 5, 1), (4, 5, 9, 2), (2, 9, 4, 3)]:
        g = torch.Generator().manual_seed(seed)
        logits = (3 * torch.randn(B, T, V, generator=g)).requires_grad_()
        tokens = torch.randint(0, V, (B, T), generator=g)
        got = candidate(logits, tokens)
        expect_tensor(got, "next_token_loss(logits, tokens)")
        expect(got.dim() == 0, f"The loss should be a single number (a 0-dim tensor), not shape {tuple(got.shape)}: "
               "average over every row and every predicted position.")
        expect_finite(got, "The loss")
        want = gpt.next_token_loss(logits, tokens)
        expect_close(got, want, "the loss", mistakes=_loss_mistakes(logits.detach(), tokens),
                     otherwise="It is the mean over rows and positions t < T-1 of -log softmax(logits[:, t])[tokens[:, t+1]].")
        expect(got.requires_grad, "The loss has no gradient: do not detach, call .item() or go through NumPy; training "
               "needs to backpropagate through it.")
        got.backward()
        expect(logits.grad is not None and torch.isfinite(logits.grad).all(), "The gradient of your loss does not reach the logits.")


# ----------------------------------------------------------------- 08.2 sampling
_ROW = torch.tensor([2.0, 1.0, 0.4, 0.0, -0.6, -1.5])  # distinct logits: top-k has no ties
_ROWS = torch.stack([_ROW, _ROW.flip(0), _ROW[torch.tensor([3, 0, 5, 1, 4, 2])]])  # (3, V): three orders of them


def _dist(logits, temperature, top_k):
    """The distribution sample_next must draw from, for one row (V,)."""
    z = logits / temperature
    if top_k is not None:
        z = z.masked_fill(z < z.topk(top_k).values[-1], float("-inf"))
    return z.softmax(-1)


def _draw(candidate, logits, temperature, top_k, generator):
    """candidate(...), with a diagnosis when torch.multinomial refuses the probabilities it was given."""
    try:
        return candidate(logits, temperature=temperature, top_k=top_k, generator=generator)
    except RuntimeError as err:
        if "probability tensor contains" not in str(err):
            raise
        raise Mistake(f"With temperature={temperature} and top_k={top_k}, torch.multinomial was given probabilities that "
                      "hold NaN: a row whose every logit is -inf, so its softmax is 0/0. Does your top-k remove every "
                      "token (`logits <= kth` removes the k-th largest too: keep `logits >= kth`, remove `logits < kth`)? "
                      f"(Your code raised RuntimeError: {err})") from None


def _frequencies(candidate, temperature, top_k, seed, n=6000):
    """Draw n tokens from each of the rows of _ROWS (interleaved): (R, V) frequencies."""
    R, V = _ROWS.shape
    rows = _ROWS.repeat(n, 1)  # (R n, V): row R i + r is _ROWS[r]
    out = _draw(candidate, rows, temperature, top_k, torch.Generator().manual_seed(seed))
    expect_shape(out, (R * n,), f"sample_next(logits (B={R * n}, V={V}), ...)",
                 "One token per row: draw one sample per row, e.g. torch.multinomial(probs, 1).squeeze(-1).")
    expect(out.dtype == torch.long, f"Return int64 token ids (dtype torch.long), not {out.dtype}.")
    expect(bool(((out >= 0) & (out < V)).all()), "Some returned ids are not token ids of the vocabulary (0..V-1).")
    return torch.stack([torch.bincount(out[r::R], minlength=V) for r in range(R)]).double() / n


def _kept(r, k):
    """The distribution with exactly the k largest of r (V,) kept (k may be 0 or V), at temperature 1."""
    k = max(0, min(k, r.shape[0]))
    z = r.masked_fill(r < r.topk(k).values[-1], float("-inf")) if k else torch.full_like(r, float("-inf"))
    return z.softmax(-1) if k else torch.zeros_like(r)


def _sampling_mistakes(temperature, top_k) -> dict:
    """{message: (R, V) distribution} of realistic mistakes, for the rows of _ROWS."""
    rows = lambda f: torch.stack([f(r) for r in _ROWS]).double()  # noqa: E731
    mistakes = {}
    if top_k is not None:
        mistakes["Top-k keeps the k *smallest* logits: keep the largest (topk's default, largest=True) and set the "
                 "others to -inf."] = rows(lambda r: _dist(-(-r), temperature, None).masked_fill(
                     r > r.topk(top_k, largest=False).values[-1], 0.0))
        mistakes["top_k is ignored: keep only the k largest logits of each row, the others get probability 0."] = \
            rows(lambda r: _dist(r, temperature, None))
        mistakes[f"Your top-k keeps k + 1 tokens ({top_k + 1} with top_k={top_k}): the k-th largest value is "
                 "`logits.topk(top_k, dim=-1).values[..., -1:]` (the last of the k), and the rest is `logits < kth`."] = \
            rows(lambda r: _kept(r / temperature, top_k + 1)) if top_k < _ROW.shape[0] else None
        mistakes[f"Your top-k keeps k - 1 tokens ({top_k - 1} with top_k={top_k}): `logits <= kth` removes the k-th "
                 "largest itself; remove only `logits < kth`."] = rows(lambda r: _kept(r / temperature, top_k - 1)) \
            if top_k > 1 else None
        mistakes["The removed tokens get a logit of 0, which is a logit like any other (e^0 = 1): they are still "
                 "drawn. Fill them with float('-inf'), whose softmax is exactly 0."] = rows(
            lambda r: (r / temperature).masked_fill(r < r.topk(top_k).values[-1], 0.0).softmax(-1))
        column_max = _ROWS.amax(dim=0)  # what topk over dim 0 finds, each row being repeated more than k times
        mistakes["Your top-k compares the rows of the batch with each other (topk over dim 0): take each row's own k "
                 "largest logits, `logits.topk(top_k, dim=-1)`."] = rows(
            lambda r: (r / temperature).masked_fill(r < column_max, float("-inf")).softmax(-1))
    if temperature != 1.0:
        mistakes["The temperature multiplies the logits; it must divide them: softmax(logits / temperature), so "
                 "that a small temperature sharpens the distribution."] = rows(lambda r: _dist(r * temperature ** 2, temperature, top_k))
        mistakes["The temperature has no effect on your draws: divide the logits by it *before* the softmax "
                 "(dividing the probabilities changes nothing once they are renormalised)."] = rows(lambda r: _dist(r, 1.0, top_k))
    mistakes["Every row is drawn from the first row's distribution: sample each row from its own logits."] = \
        torch.stack([_dist(_ROW, temperature, top_k)] * len(_ROWS)).double()
    return mistakes


@exercise("08.2", "sampling the next token: temperature and top-k", reference=gpt.sample_next, difficulty=2, minutes=15,
          hints=[
    "Three cases. temperature == 0: greedy, the argmax. Otherwise divide the logits by the temperature (small "
    "temperatures sharpen the softmax), keep only the top_k largest if top_k is given, and draw from the softmax.",
    "For top-k: `kth = logits.topk(top_k, dim=-1).values[..., -1:]` is each row's k-th largest value (B, 1); "
    "`logits.masked_fill(logits < kth, float('-inf'))` removes the rest, and the softmax renormalises what is left.",
    "Draw with `torch.multinomial(probs, 1, generator=generator).squeeze(-1)`: passing the generator makes the draw "
    "reproducible and independent of the global random state.",
])
def check_sample_next(candidate):
    callable_candidate(candidate, "sample_next")
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(7, 10, generator=g)
    # greedy
    try:
        greedy = candidate(logits, temperature=0, top_k=None, generator=torch.Generator().manual_seed(1))
    except NotImplementedError:
        raise  # the skeleton: not attempted yet
    except Exception as err:  # dividing by a temperature of 0 gives inf and NaN
        raise Mistake("With temperature=0 the function must return the argmax (greedy decoding), without dividing by "
                      f"0: your code raised {type(err).__name__}: {err}") from None
    expect_shape(greedy, (7,), "sample_next(logits (B=7, V=10), temperature=0)", "Return one token id per row.")
    expect(greedy.dtype == torch.long, f"Return int64 token ids (dtype torch.long), not {greedy.dtype}.")
    expect(torch.equal(greedy, logits.argmax(-1)), "With temperature=0 the token must be the argmax of each row "
           "(greedy decoding), the token with the largest logit.")
    # reproducible with the generator, and only with it
    flat = torch.zeros(400, 8)
    torch.manual_seed(123)
    a = candidate(flat, temperature=1.0, top_k=None, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(456)
    b = candidate(flat, temperature=1.0, top_k=None, generator=torch.Generator().manual_seed(5))
    expect_shape(a, (400,), "sample_next(logits (B=400, V=8), ...)",
                 "One token per row: draw one sample per row, e.g. torch.multinomial(probs, 1).squeeze(-1).")
    expect(torch.equal(a, b), "Two calls with generators seeded alike gave different tokens: your draw ignores "
           "`generator` (pass it: torch.multinomial(probs, 1, generator=generator)).")
    c = candidate(flat, temperature=1.0, top_k=None, generator=torch.Generator().manual_seed(6))
    if torch.equal(a, c):
        raise Mistake("Generators with different seeds gave the same tokens: you draw, but not with the `generator` you "
                      "are given (a generator of your own, seeded the same at every call?). Pass it: "
                      "torch.multinomial(probs, 1, generator=generator)." if len(torch.unique(a)) > 1 else
                      "Generators with different seeds gave the same tokens: the function does not sample.")
    expect(len(torch.unique(a)) > 1, "With equal logits every row drew the same token, a different one for each seed: "
           "one random number serves the whole batch. Draw one per row: torch.multinomial(probs, 1) does (or "
           "torch.rand(B, 1, generator=generator) if you invert the cumulative sum yourself).")
    expect(len(torch.unique(a)) == 8, "With equal logits every token should be drawn sometimes: sample from the softmax, "
           "do not take the argmax when temperature > 0.")
    # the distribution, per row
    for temperature, top_k, seed in [(1.0, None, 10), (0.5, None, 11), (2.0, None, 12), (1.0, 3, 13), (0.7, 2, 14),
                                     (1.3, 6, 15)]:
        freq = _frequencies(candidate, temperature, top_k, seed)
        want = torch.stack([_dist(r, temperature, top_k) for r in _ROWS]).double()
        if (freq - want).abs().max() < 0.03:
            continue
        for message, dist in _sampling_mistakes(temperature, top_k).items():
            if dist is not None and (freq - dist / dist.sum(-1, keepdim=True)).abs().max() < 0.03:
                raise Mistake(message)
        raise Mistake(f"With temperature={temperature} and top_k={top_k} your tokens do not follow softmax(logits / "
                      "temperature) restricted to the top_k largest logits (renormalised over those k): some tokens "
                      "come up far too often or too rarely.")
    # top_k=1 is greedy at any temperature
    for t in (0.5, 1.5):
        top1 = _draw(candidate, logits, t, 1, torch.Generator().manual_seed(2))
        if not torch.equal(top1, logits.argmax(-1)):
            if torch.equal(top1, logits[:1].argmax(-1).expand(7)):
                raise Mistake("Every row got the first row's token: sample each row from its own logits.")
            if torch.equal(top1, logits.argmin(-1)):
                raise Mistake("With top_k=1 you return the token with the *smallest* logit: top-k keeps the k *largest* "
                              "logits (topk's default, largest=True) and removes the rest.")
            raise Mistake("With top_k=1 only the largest logit remains, so every draw must be the argmax: top_k is ignored, "
                          "or it does not keep the largest logits.")


# ----------------------------------------------------------------- 08.3 the GPT model
def _gpt_variant(ref, ids, *, positions=True, final_norm=True, mask="causal", scale=False):
    T = ids.shape[1]
    x = ref.tok_emb(ids) * (math.sqrt(ref.tok_emb.embedding_dim) if scale else 1.0)
    if positions:
        x = x + ref.pos_emb(torch.arange(T))
    m = {"causal": causal_mask(T)[None], "none": None, "inverted": ~causal_mask(T)[None]}[mask]
    for block in ref.blocks:
        x = block(x, m)
    return ref.head(ref.norm(x) if final_norm else x)


def _randomised_gpt(args, causal, seed):
    torch.manual_seed(seed)
    ref = gpt.GPT(*args, causal=causal)
    with torch.no_grad():  # weights away from their initial values, so that every part of the model matters
        for name, p in ref.named_parameters():
            p.add_((0.5 if "norm" in name else 0.3) * torch.randn_like(p))
    return ref.eval()


@exercise("08.3", "the GPT model", reference=gpt.GPT, difficulty=2, minutes=20, hints=[
    "In __init__: `tok_emb = nn.Embedding(vocab_size, d_model)`, `pos_emb = nn.Embedding(block_size, d_model)`, "
    "`blocks = nn.ModuleList(Block(d_model, num_heads, d_ff) for _ in range(num_layers))`, `norm = nn.LayerNorm(d_model)`, "
    "`head = nn.Linear(d_model, vocab_size, bias=False)`; keep `block_size` and `causal`; end with "
    "`self.apply(init_weights)`.",
    "Tie the output layer to the embedding with `self.head.weight = self.tok_emb.weight` (the same Parameter, not a "
    "copy). In forward: token embeddings plus `self.pos_emb(torch.arange(T))`, then every block with the mask.",
    "The mask is `causal_mask(T)[None]` (1, T, T) when self.causal, else None ([None]: a 2-D mask would be ambiguous "
    "when B == T). After the blocks: `return self.head(self.norm(x))`.",
])
def check_gpt(Candidate):
    configs = [((11, 16, 2, 2, 32, 9), 0), ((7, 8, 1, 1, 0, 6), 1), ((13, 12, 3, 1, 24, 8), 2)]
    for args, seed in configs:
        ref = _randomised_gpt(args, True, seed)
        cand = instantiate(Candidate, *args)
        expect(getattr(cand, "block_size", None) == args[-1] and getattr(cand, "causal", None) is True,
               "Keep `self.block_size = block_size` and `self.causal = causal`: generation reads them.")
        head, emb = getattr(cand, "head", None), getattr(cand, "tok_emb", None)
        expect(head is not None and emb is not None and head.weight is emb.weight,
               "The output layer is not tied to the token embedding: write `self.head.weight = self.tok_emb.weight`, "
               "so that one (V, D) matrix both reads the tokens in and scores them out.")
        expect(float(emb.weight.detach().std()) < 0.1, "The embeddings have their default initialisation N(0, 1): end __init__ with "
               "`self.apply(init_weights)` (small embeddings, as GPT-2's; with the tied output layer, large ones would make "
               "the first logits huge).")
        copy_weights(ref, cand, "Your GPT")
        cand.eval()
        V, T = args[0], args[-1]
        g = torch.Generator().manual_seed(seed)
        for L in (T, 3):
            ids = torch.randint(0, V, (3, L), generator=g)
            got = cand(ids)
            expect_shape(got, (3, L, V), f"forward(ids (B=3, T={L}))", "Return logits (B, T, V).")
            later = ids.clone()
            later[:, -1] = (later[:, -1] + 1) % V
            expect(close(cand(later)[:, :-1], got[:, :-1]),
                   "Changing the last token changed the logits of earlier positions: your model sees the future. Pass "
                   "`causal_mask(T)[None]` (True = may attend, the course's convention; `~mask` is PyTorch's) to every block.")
            m = lambda **kw: _gpt_variant(ref, ids, **kw)  # noqa: E731
            expect_close(got, ref(ids), "the logits", mistakes={
                "The position embeddings are missing: add `self.pos_emb(torch.arange(T))` to the token embeddings, "
                "or the model cannot tell the order of the tokens.": m(positions=False),
                "The final LayerNorm is missing: `self.head(self.norm(x))` after the last block (pre-LN blocks leave "
                "the residual stream un-normalised).": m(final_norm=False),
                "Do not scale the embeddings by sqrt(d_model) here: GPT adds the token and position embeddings as they "
                "are (its embeddings are initialised small instead).": m(scale=True),
            }, otherwise="Embed (tokens + positions), run the blocks with the causal mask, then the final norm and the head.")
        free = instantiate(Candidate, *args, causal=False)
        copy_weights(ref, free, "Your GPT")
        ids = torch.randint(0, V, (2, T), generator=g)
        expect(close(free.eval()(ids), _gpt_variant(ref, ids, mask="none")),
               "With causal=False the model must use no mask at all (every position sees the whole sequence): pass "
               "mask=None to the blocks.")


# ----------------------------------------------------------------- 08.4 prefix matching
def _score_variant(weights, tokens, *, shift=1, strict=True, all_queries=False, reduce="sum", transpose=False,
                   later=False):
    T = tokens.shape[0]
    w = weights.transpose(-1, -2) if transpose else weights
    before = torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1 if strict else 0)
    if later:  # triu for tril: the occurrences after the query
        before = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    earlier = (tokens[:, None] == tokens[None, :]) & before
    target = torch.zeros_like(earlier)
    if shift == 1:
        target[:, 1:] = earlier[:, :-1]
    elif shift == 0:
        target = earlier
    else:  # the position before the earlier occurrence
        target[:, :-1] = earlier[:, 1:]
    queries = earlier.any(-1) if not all_queries else torch.ones(T, dtype=torch.bool)
    if reduce == "sum":
        per = (w * target).sum(-1)
    elif reduce == "max":
        per = (w * target).amax(-1)
    elif reduce == "last":  # the position after the most recent occurrence only
        last = torch.where(target, torch.arange(T), -1).amax(-1)  # (T,), -1 where there is none
        per = torch.where(last >= 0, w.gather(-1, last.clamp(min=0).expand(w.shape[0], T)[..., None])[..., 0], 0.0)
    else:  # mean over the occurrences
        per = (w * target).sum(-1) / target.sum(-1).clamp(min=1)
    return per[:, queries].mean(-1)


def _score_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    seg = torch.randint(0, 50, (6,), generator=g)
    cases.append(torch.cat([torch.randint(50, 60, (3,), generator=g), seg, seg]))  # a repeat after a prefix
    cases.append(torch.randint(0, 4, (12,), generator=g))  # a small vocabulary: tokens occur three, four times
    seg = torch.randperm(5, generator=g)
    cases.append(torch.cat([seg, seg, seg]))  # three occurrences of every token
    return cases


@exercise("08.4", "the prefix-matching score", reference=gpt.prefix_matching_score, difficulty=3, minutes=20, hints=[
    "For query t, find the earlier positions j < t with tokens[j] == tokens[t]. An induction head at t attends to "
    "j + 1, the token that came *after* that occurrence (and that it predicts comes next). Score = the attention weight "
    "on those j + 1, summed; then average over the queries that have an earlier occurrence at all.",
    "Build a (T, T) boolean `earlier[t, j] = (tokens[t] == tokens[j]) & (j < t)` (`.tril(diagonal=-1)` of a matrix of "
    "ones gives j < t). Shift its columns right by one to mark j + 1: `after[:, 1:] = earlier[:, :-1]`.",
    "`score = (weights * after).sum(-1)` is (h, T); the queries to average over are `earlier.any(-1)`; "
    "`return score[:, queries].mean(-1)`.",
])
def check_prefix_matching_score(candidate):
    callable_candidate(candidate, "prefix_matching_score")
    g = torch.Generator().manual_seed(1)
    for tokens in _score_cases():
        T = tokens.shape[0]
        for h, causal in ((3, False), (2, True)):
            scores = 2 * torch.randn(h, T, T, generator=g)
            weights = (scores.masked_fill(~causal_mask(T), float("-inf")) if causal else scores).softmax(-1)
            got = candidate(weights, tokens)
            expect_tensor(got, "prefix_matching_score(weights, tokens)")
            expect_shape(got, (h,), f"prefix_matching_score(weights (h={h}, T, T), tokens (T,))",
                         "One score per head: average over the queries, not over the heads.")
            expect_finite(got, "The scores")
            v = lambda **kw: _score_variant(weights, tokens, **kw)  # noqa: E731
            expect_close(got, gpt.prefix_matching_score(weights, tokens), "the scores", mistakes={
                "You scored the weight on the earlier occurrence j itself; an induction head attends to the token "
                "*after* it, j + 1 (shift the columns right by one).": v(shift=0),
                "You scored the position j - 1 before the earlier occurrence; it is j + 1, the token after it.": v(shift=-1),
                "Queries whose token never occurred before are counted (with a score of 0): average only over the "
                "queries t whose token occurred at some j < t.": v(all_queries=True),
                "The query's own position counts as an earlier occurrence: only j < t counts (tril(diagonal=-1)).": v(strict=False),
                "Queries and keys are swapped: weights[i, t, j] is how much query t attends to key j (rows are queries).":
                    v(transpose=True),
                "When a token occurred several times before, add the weights on every following position j + 1 "
                "(you took the largest).": v(reduce="max"),
                "When a token occurred several times before, add the weights on every following position j + 1 "
                "(you averaged them).": v(reduce="mean"),
                "When a token occurred several times before, add the weights on the positions after *every* earlier "
                "occurrence, not only after the most recent one.": v(reduce="last"),
                "You matched the *later* occurrences of the query's token (triu); the earlier ones count, j < t "
                "(`.tril(diagonal=-1)`).": v(later=True),
            }, otherwise="Per head: for each query t whose token occurred earlier, the attention on the positions just after "
                         "those occurrences, summed; then the mean over those queries.")
    # a perfect induction head scores 1
    seg = torch.randperm(7, generator=g)
    tokens = torch.cat([seg, seg])
    perfect = torch.zeros(1, 14, 14)
    perfect[0, torch.arange(14), torch.arange(14)] = 1.0  # first half: attend to yourself (no earlier occurrence)
    perfect[0, torch.arange(7, 14), torch.arange(7, 14)] = 0.0
    perfect[0, torch.arange(7, 14), torch.arange(1, 8)] = 1.0  # second half: the token after the earlier occurrence
    expect(close(candidate(perfect, tokens), torch.ones(1)), "A head that always attends to the token after the earlier "
           "occurrence should score exactly 1.")

"""Exercises of lesson 07, the Transformer decoder and the full model: 07.1 the decoder block,
07.2 the target shift and the loss, 07.3 batched greedy decoding.

The references of 07.2 and 07.3 live here (utils/transformer.py has the model; the loss and the
decoding loop as free functions are this lesson's own).

What the rest of the lesson relies on; each is stated in the skeleton's docstring and checked below:

07.1 DecoderLayer(d_model, num_heads, d_ff, norm_first)
  * layers self_attn, cross_attn, ff, norm1..3, each its own module (no sharing), and ``norm_first``:
    ``use_your_decoder_block`` builds one per layer and the check copies weights by name;
  * forward(x (B, T, D), memory (B, S, D), tgt_mask (1, T, T), memory_mask (B, 1, S)) -> (B, T, D), equal to
    nn.TransformerDecoderLayer; causal (a later target position never changes an earlier output);
  * cross-attention reads ``memory``; ``last_self_weights`` and ``last_cross_weights`` are kept (heatmaps);
  * gradients reach every parameter (the lesson trains it).
07.2 teacher_forcing_loss(model, src, src_lengths, tgt) -> a 0-d tensor with a gradient, the mean NLL over the
     real target tokens; tgt unchanged; ``model(src, src_lengths, tgt)`` (teacher-forced logits) may be used.
07.3 greedy_decode(model, src, src_lengths, max_len)
  * only model.encode / model.decode: ``model.generate`` calls it (no recursion);
  * ids (B, L) torch.long, L <= max_len; stops after max_len steps even when a row never gives EOS, and as
    soon as every row has (not when the first row does); EOS kept, PAD after it; inputs unchanged.
"""
from __future__ import annotations

import itertools

import torch

from utils import transformer
from utils.attention import causal_mask
from utils.data import EOS, PAD, SOS
from utils.exercises import decoding, exercise
from utils.exercises.checking import (Mistake, callable_candidate, close, copy_weights, expect, expect_close,
                                      expect_finite, expect_same_gradients, expect_tensor, instantiate,
                                      residual_stack)


# ----------------------------------------------------------------- references of 07.2 and 07.3
def teacher_forcing_loss(model, src, src_lengths, tgt):
    """The mean negative log-likelihood of the target, per real target token, with teacher forcing.

    src (B, S), src_lengths (B,), tgt (B, T) ending with EOS and padded with PAD -> a scalar.
    ``model`` has ``encode(src, src_lengths) -> (memory, src_mask)`` and
    ``decode(tgt_in (B, T), memory, src_mask) -> logits (B, T, V)`` (and ``model(src, src_lengths, tgt)``
    gives the same teacher-forced logits). The loss keeps its gradient; ``tgt`` is not changed.
    """
    memory, src_mask = model.encode(src, src_lengths)  # (B, S, D), (B, S)
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], dim=1)  # (B, T): SOS y_1 .. y_{T-1}
    logits = model.decode(tgt_in, memory, src_mask)  # (B, T, V): position t has seen y_<t only
    log_probs = logits.log_softmax(dim=-1)  # (B, T, V): log p(. | y_<t, x)
    nll = -log_probs.gather(-1, tgt[..., None]).squeeze(-1)  # (B, T): -log p(y_t | y_<t, x)
    real = tgt != PAD  # (B, T): padding is not a token to predict
    return (nll * real).sum() / real.sum()  # mean over the real tokens of the whole batch


@torch.no_grad()
def greedy_decode(model, src, src_lengths, max_len: int):
    """Generate with ``model.encode`` and ``model.decode``, always taking the most likely next token.

    src (B, S), src_lengths (B,) -> ids (B, L) torch.long, L <= max_len; each row ends with ``EOS``
    (unless it ran out of steps) and has ``PAD`` after it. Stops as soon as every row has produced
    ``EOS``, and after max_len steps even when a row never does. Not ``model.generate``: the
    lesson's model.generate calls this function.
    """
    memory, src_mask = model.encode(src, src_lengths)  # encode the source once: (B, S, D)
    ys = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)  # (B, 1) decoder input so far
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_len):
        logits = model.decode(ys, memory, src_mask)  # (B, t+1, V): the whole prefix again, no cache
        token = logits[:, -1].argmax(dim=-1)  # (B,): only the newest position predicts the next token
        out.append(torch.where(finished, PAD, token))  # nothing after EOS
        finished |= token == EOS
        if finished.all():
            break
        ys = torch.cat([ys, token[:, None]], dim=1)  # (B, t+2)
    return torch.stack(out, dim=1)  # (B, L)


# ----------------------------------------------------------------- 07.1 the decoder block
_KINDS = ("sa", "ca", "ff")
_SUBLAYER = {"sa": "masked self-attention", "ca": "cross-attention", "ff": "feed-forward"}


def _layer_mutant(layer, x, memory, tgt_mask, memory_mask, *, pre_ln=None, order=_KINDS, norms=(1, 2, 3),
                  residual=None, unnormed=(), causal=True, use_memory_mask=True, ca_query="h", ca_kv="memory",
                  ca_mask="memory", sa_kv="h", memory_normed=False):
    """The output of ``layer`` (the reference's weights) computed with one realistic mistake.

    norms: the norm number of each of self-attention, cross-attention, feed-forward, or "position" (norm1 for the
    first sublayer run, ...); residual / unnormed: see checking.residual_stack; ca_query, ca_kv: "h" (the sublayer's
    input), "x" (the residual stream) or "memory"; ca_mask: "memory", "tgt" or None; sa_kv="memory": self-attention
    reading memory. Returns None when the mistake cannot run (e.g. a (B, 1, S) mask against T keys).
    """
    pre_ln = layer.norm_first if pre_ln is None else pre_ln
    numbers = {kind: i + 1 for i, kind in enumerate(order)} if norms == "position" else dict(zip(_KINDS, norms))
    norm = {kind: getattr(layer, f"norm{n}") for kind, n in numbers.items()}
    masks = {"memory": memory_mask if use_memory_mask else None, "tgt": tgt_mask, None: None}

    def sa(h, stream):
        if sa_kv == "memory":
            return layer.self_attn(h, memory, memory, memory_mask)[0]
        return layer.self_attn(h, h, h, tgt_mask if causal else None)[0]

    def ca(h, stream):
        source = {"h": h, "x": stream, "memory": memory}
        kv = norm["ca"](memory) if memory_normed else source[ca_kv]
        return layer.cross_attn(source[ca_query], kv, kv, masks[ca_mask])[0]

    return residual_stack(x, {"sa": sa, "ca": ca, "ff": lambda h, stream: layer.ff(h)}, norm, order, pre_ln=pre_ln,
                          residual=residual, unnormed=unnormed)


def _decoder_mistakes(ref, x, memory, tgt_mask, memory_mask) -> list:
    """[(message, output)] of the realistic mistakes of a decoder block (several mistakes may share a message)."""
    norm_first = ref.norm_first
    pre = "pre-LN (x + Sublayer(LayerNorm(x)))" if norm_first else "post-LN (LayerNorm(x + Sublayer(x)))"
    other = "post-LN" if norm_first else "pre-LN"
    m = lambda **kw: _layer_mutant(ref, x, memory, tgt_mask, memory_mask, **kw)  # noqa: E731
    sources = [(kv, cm) for kv in ("h", "x") for cm in ("tgt", None, "memory")]
    out = [
        ("Your self-attention ignores `tgt_mask`: every position sees the future target tokens, which at "
         "generation time do not exist yet. Pass tgt_mask to the self-attention.", m(causal=False)),
        *((_CROSS_ON_X, m(ca_kv=kv, ca_mask=cm)) for kv, cm in sources),
        *((_QUERIES_FROM_MEMORY, m(ca_query="memory", ca_kv=kv, ca_mask=cm)) for kv, cm in sources),
        ("Self-attention must attend over the target itself (queries, keys and values from x): yours reads "
         "`memory`, which is cross-attention's job.", m(sa_kv="memory")),
        ("Your cross-attention ignores `memory_mask`: the decoder attends to the source's padding.", m(use_memory_mask=False)),
        ("A residual connection is missing: each sublayer's output is *added* to its input (all three are missing).",
         m(residual=())),
        (f"With norm_first={norm_first} the block is {pre}; you wrote {other}. Branch on self.norm_first.",
         m(pre_ln=not norm_first)),
        ("Do not normalise `memory` in the decoder: the encoder's final LayerNorm already did (pre-LN); normalise "
         "only x, the decoder's own stream.", m(memory_normed=True) if norm_first else None),
    ]
    for kind in _KINDS:
        out.append((f"The residual connection around the {_SUBLAYER[kind]} is missing: its output must be *added* to "
                    f"its input, {pre}.", m(residual=set(_KINDS) - {kind})))
        if norm_first:
            n = _KINDS.index(kind) + 1
            out.append((f"In pre-LN every sublayer reads the *normalised* stream: the {_SUBLAYER[kind]} reads "
                        f"`self.norm{n}(x)`, not x" + (" (its queries; memory, the keys and values, is not normalised "
                                                       "again)." if kind == "ca" else "."), m(unnormed=(kind,))))
    for order in itertools.permutations(_KINDS):
        if order != _KINDS:
            shown = ", ".join(_SUBLAYER[k] for k in order)
            message = (f"The sublayers are in the wrong order: yours runs {shown}. It is masked self-attention "
                       "(norm1), then cross-attention (norm2), then the feed-forward (norm3)"
                       + (": the feed-forward comes last." if order[-1] != "ff" else "."))
            out += [(message, m(order=order)), (message, m(order=order, norms="position"))]
    for norms in itertools.product((1, 2, 3), repeat=3):
        if len(set(norms)) == 3 and norms != (1, 2, 3):
            out.append(("The LayerNorms are mixed up: norm1 goes with self-attention, norm2 with cross-attention, "
                        "norm3 with the feed-forward.", m(norms=norms)))
        elif len(set(norms)) < 3:
            twice = next(n for n in norms if norms.count(n) > 1)
            out.append((f"You use `self.norm{twice}` for more than one sublayer: each has its own LayerNorm, norm1 for "
                        "self-attention, norm2 for cross-attention, norm3 for the feed-forward.", m(norms=norms)))
    return out


_CROSS_ON_X = ("Cross-attention takes its keys and values from `memory` (the encoder's output), not from x: "
               "`self._ca(h, memory, memory_mask)`, whose inside is cross_attn(h, memory, memory, memory_mask). "
               "With keys from x the decoder never reads the source.")
_QUERIES_FROM_MEMORY = ("Cross-attention's queries and keys are the wrong way round: the queries come from the decoder "
                        "(x, normalised in pre-LN), the keys and values from `memory`. Yours takes its queries from "
                        "memory and its keys and values from x: `self._ca(h, memory, memory_mask)`.")


def _randomised_layer(d, h, ff, norm_first, seed):
    torch.manual_seed(seed)
    layer = transformer.DecoderLayer(d, h, ff, norm_first=norm_first)
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so that every norm matters
        for name, p in layer.named_parameters():
            if "norm" in name:
                p.add_(0.5 * torch.randn_like(p))
    return layer.eval()


@exercise("07.1", "the decoder block", reference=transformer.DecoderLayer, difficulty=2, minutes=20, hints=[
    "Three sublayers, in this order: masked self-attention over x (queries, keys, values all from x, with "
    "`tgt_mask`), cross-attention (queries from x, keys and values from `memory`, with `memory_mask`), then the "
    "feed-forward. Each is wrapped in a residual connection and a LayerNorm: `norm1`, `norm2`, `norm3` in that order.",
    "Layers: `self.self_attn = MultiHeadAttention(d_model, num_heads)`, `self.cross_attn = MultiHeadAttention(d_model, "
    "num_heads)`, `self.ff = FeedForward(d_model, d_ff)`, `self.norm1/2/3 = nn.LayerNorm(d_model)`, and keep "
    "`self.norm_first = norm_first`. Call `self._sa(h, tgt_mask)` and `self._ca(h, memory, memory_mask)`: they run "
    "the attention and keep its weights for the heatmaps.",
    "pre-LN (norm_first=True): `x = x + self._sa(self.norm1(x), tgt_mask)`, `x = x + self._ca(self.norm2(x), memory, "
    "memory_mask)`, `return x + self.ff(self.norm3(x))`. post-LN: `x = self.norm1(x + self._sa(x, tgt_mask))`, ... "
    "`return self.norm3(x + self.ff(x))`.",
])
def check_decoder_layer(Candidate):
    # Shapes first, with S != T: queries taken from memory show as one output per source position.
    probe = instantiate(Candidate, 16, 4, 24, norm_first=True)
    copy_weights(_randomised_layer(16, 4, 24, True, 0), probe, "Your DecoderLayer")
    try:
        shape = tuple(probe.eval()(torch.randn(3, 5, 16), torch.randn(3, 6, 16), causal_mask(5)[None]).shape)
    except Exception:  # e.g. keys from x with the memory's mask: diagnosed below, where S == T lets it run
        shape = None
    if shape == (3, 6, 16):
        raise Mistake("The output has one vector per *source* position: in cross-attention the queries come from "
                      "the decoder (x), the keys and values from `memory`.")
    # the first two have S == T, so that cross-attention over x instead of memory gives values (not an error)
    for d, h, ff, B, T, S, norm_first, seed in [(16, 4, 24, 3, 5, 5, True, 3), (12, 2, 20, 2, 4, 4, False, 4),
                                                (16, 4, 24, 3, 5, 6, True, 0), (12, 2, 20, 2, 4, 3, False, 1),
                                                (8, 1, 16, 2, 6, 2, True, 2)]:
        ref = _randomised_layer(d, h, ff, norm_first, seed)
        cand = instantiate(Candidate, d, h, ff, norm_first=norm_first)
        copy_weights(ref, cand, "Your DecoderLayer")
        cand.eval()
        x, memory = torch.randn(B, T, d), torch.randn(B, S, d)
        lengths = torch.randint(1, S + 1, (B,))
        lengths[0] = S
        memory_mask = (torch.arange(S)[None, :] < lengths[:, None])[:, None, :]  # (B, 1, S)
        tgt_mask = causal_mask(T)[None]  # (1, T, T)
        got = cand(x, memory, tgt_mask, memory_mask)
        expect_tensor(got, "forward(x, memory, tgt_mask, memory_mask)")
        if tuple(got.shape) == (B, S, d) and S != T:
            raise Mistake("The output has one vector per *source* position: in cross-attention the queries come from "
                          "the decoder (x), the keys and values from `memory`.")
        want = ref(x, memory, tgt_mask, memory_mask)
        expect_close(got, want, "the decoder block's output",
                     mistakes=lambda: _decoder_mistakes(ref, x, memory, tgt_mask, memory_mask),
                     otherwise="Follow the three sublayers of the docstring: masked self-attention, cross-attention, feed-forward, "
                     "each with its residual connection and LayerNorm.")
        # The property the lesson is about: position t cannot see target positions after t.
        x2 = x.clone()
        x2[:, -1] += 1.0
        out2 = cand(x2, memory, tgt_mask, memory_mask)
        expect(close(out2[:, :-1], got[:, :-1]), "Changing the last target position changed earlier outputs: the "
               "self-attention must use the causal mask.")
        w = getattr(cand, "last_cross_weights", None)
        expect(torch.is_tensor(w) and tuple(w.shape) == (B, h, T, S),
               "Keep the cross-attention weights in `self.last_cross_weights` (B, h, T, S): call `self._ca(...)`, "
               "which stores them, rather than `self.cross_attn(...)` directly.")
        w = getattr(cand, "last_self_weights", None)
        expect(torch.is_tensor(w) and tuple(w.shape) == (B, h, T, T),
               "Keep the self-attention weights in `self.last_self_weights` (B, h, T, T): call `self._sa(...)`, "
               "which stores them, rather than `self.self_attn(...)` directly.")
        cand.train()  # the gradient (no dropout in this block)
        expect_same_gradients(cand, ref, lambda: cand(x, memory, tgt_mask, memory_mask),
                              lambda: ref(x, memory, tgt_mask, memory_mask), "Your DecoderLayer")


# ----------------------------------------------------------------- 07.2 the shift and the loss
class _TinyModel(torch.nn.Module):
    """A small random Transformer, for checks: large weights so that every mistake shows."""

    def __init__(self, V, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.model = transformer.Transformer(V, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_len=16)
        with torch.no_grad():
            self.model.out.weight.mul_(4)

    def encode(self, src, src_lengths):
        return self.model.encode(src, src_lengths)

    def decode(self, tgt_in, memory, src_mask):
        return self.model.decode(tgt_in, memory, src_mask)

    def forward(self, src, src_lengths, tgt):  # the lesson's models have it too: teacher-forced logits
        return self.model(src, src_lengths, tgt)


def _pairs(V, B, S, T, seed):
    g = torch.Generator().manual_seed(seed)
    src_lengths = torch.randint(1, S + 1, (B,), generator=g)
    src_lengths[0] = S
    src = torch.randint(3, V, (B, S), generator=g).masked_fill(torch.arange(S) >= src_lengths[:, None], PAD)
    tgt_lengths = torch.randint(2, T + 1, (B,), generator=g)
    tgt_lengths[0] = T
    tgt = torch.randint(3, V, (B, T), generator=g)
    tgt[torch.arange(B), tgt_lengths - 1] = EOS
    tgt = tgt.masked_fill(torch.arange(T) >= tgt_lengths[:, None], PAD)
    return src, src_lengths, tgt


def _loss_mutants(model, src, src_lengths, tgt):
    memory, src_mask = model.encode(src, src_lengths)
    shifted = torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], dim=1)
    logits = model.decode(shifted, memory, src_mask)
    logp = logits.log_softmax(-1)
    nll = -logp.gather(-1, tgt[..., None]).squeeze(-1)  # (B, T)
    real = (tgt != PAD).float()
    unshifted = -model.decode(tgt, memory, src_mask).log_softmax(-1).gather(-1, tgt[..., None]).squeeze(-1)
    pad_start = torch.cat([torch.full_like(tgt[:, :1], PAD), tgt[:, :-1]], dim=1)
    pad_start = -model.decode(pad_start, memory, src_mask).log_softmax(-1).gather(-1, tgt[..., None]).squeeze(-1)
    left = torch.cat([tgt[:, 1:], torch.full_like(tgt[:, :1], PAD)], dim=1)
    left = -model.decode(left, memory, src_mask).log_softmax(-1).gather(-1, tgt[..., None]).squeeze(-1)
    probs = logits.softmax(-1).gather(-1, tgt[..., None]).squeeze(-1)
    mean = lambda v: (v * real).sum() / real.sum()  # noqa: E731
    ahead = -logp[:, :-1].gather(-1, tgt[:, 1:, None]).squeeze(-1)  # position t scored on y_{t+1}
    ahead_real = real[:, 1:]
    no_eos = real * (tgt != EOS).float()
    in_real = (shifted != PAD).float()
    return {
        "You shifted twice: the decoder input is already SOS, y_1, ..., y_{T-1}, so position t is scored on y_t "
        "itself (tgt, unshifted), not on y_{t+1}.": (ahead * ahead_real).sum() / ahead_real.sum(),
        "`<eos>` is left out of the loss: it is a real token to predict (the model must learn when to stop); only "
        "PAD is left out.": (nll * no_eos).sum() / no_eos.sum(),
        "You take -logits[y_t], a raw score: the NLL is -log softmax(logits)[y_t], so apply log_softmax over the "
        "vocabulary first.": mean(-logits.gather(-1, tgt[..., None]).squeeze(-1)),
        "You divided by B * T, every position, padding included: divide by the number of real target tokens, "
        "(tgt != PAD).sum().": (nll * real).sum() / tgt.numel(),
        "The padding mask comes from the decoder input; it belongs to the target scored: `real = tgt != PAD`.":
            (nll * in_real).sum() / in_real.sum(),
        "You scored the decoder's input (SOS, y_1, ...) instead of the target: position t predicts y_t, "
        "`gather(-1, tgt[..., None])`.": ((-logp.gather(-1, shifted[..., None]).squeeze(-1)) * in_real).sum() / in_real.sum(),
        "The decoder input is not shifted: it is given the very token it must predict. Feed SOS, y_1, ..., y_{T-1} "
        "(the target shifted right) and score y_1, ..., y_T.": mean(unshifted),
        "The first decoder input must be SOS, the start token, not PAD.": mean(pad_start),
        "Shifted the wrong way: the decoder input at t must be y_{t-1} (shift right), not y_{t+1}.": mean(left),
        "The padding is counted: average only over the real target tokens (tgt != PAD).": nll.mean(),
        "That is the sum of the NLL over the real tokens; the loss is its mean per real token (divide by their number).":
            (nll * real).sum(),
        "You averaged per sequence, then over the batch: that gives short sequences' tokens more weight. Take one mean "
        "over all the real tokens of the batch, as F.cross_entropy(..., ignore_index=PAD) does.":
            ((nll * real).sum(1) / real.sum(1)).mean(),
        "The sign is wrong: the *negative* log-likelihood is -log p, a positive number to minimise.": -mean(nll),
        "Take the log of the probabilities: the NLL is -log p(y_t), not -p(y_t).": mean(-probs),
        "log_softmax must run over the vocabulary (the last dimension), not over positions.":
            mean(-logits.log_softmax(1).gather(-1, tgt[..., None]).squeeze(-1)),
    }


@exercise("07.2", "the target shift and the loss", reference=teacher_forcing_loss, difficulty=2, minutes=15, hints=[
    "Three steps: build the decoder input (the target shifted right, SOS first), get the logits with "
    "`model.decode(tgt_in, memory, src_mask)`, and average -log p(y_t) over the real (non-PAD) target tokens.",
    "`tgt_in = torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], dim=1)`. Then `log_probs = "
    "logits.log_softmax(dim=-1)` and pick each target token's log-probability with "
    "`log_probs.gather(-1, tgt[..., None]).squeeze(-1)` (B, T).",
    "`real = tgt != PAD`; the loss is `(nll * real).sum() / real.sum()`: one mean over every real token of the "
    "batch, exactly what `F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=PAD)` computes.",
])
def check_teacher_forcing_loss(candidate):
    callable_candidate(candidate, "teacher_forcing_loss")
    for V, B, S, T, seed in [(12, 4, 5, 6, 0), (9, 3, 3, 4, 1), (15, 5, 6, 3, 2)]:
        model = _TinyModel(V, seed)
        src, src_lengths, tgt = _pairs(V, B, S, T, seed)
        got = candidate(model, src, src_lengths, tgt)
        expect_tensor(got, "teacher_forcing_loss(...)")
        expect(got.dim() == 0, f"The loss should be a single number (a 0-dim tensor), not shape {tuple(got.shape)}: "
               "average over the real tokens.")
        expect_finite(got, "The loss")
        want = teacher_forcing_loss(model, src, src_lengths, tgt)
        # within 1e-5, as the lesson's claim that it equals F.cross_entropy(..., ignore_index=PAD)
        expect_close(got, want, "the loss", mistakes=lambda: _loss_mutants(model, src, src_lengths, tgt),
                     otherwise="The loss is the mean of -log p(y_t | y_<t, x) over the real target tokens, with the "
                               "target shifted right (SOS first) as the decoder's input.", atol=1e-5, rtol=0)
        expect(got.requires_grad, "The loss has no gradient: do not wrap it in torch.no_grad() or call .item()/.detach(), "
               "training needs to backpropagate through it.")


# ----------------------------------------------------------------- 07.3 greedy decoding
@torch.no_grad()
def _decode_mutants(model, src, src_lengths, max_len):
    """{message: ids} of realistic mistakes: the loop's own (utils.exercises.decoding) and the Transformer's."""
    memory, src_mask = model.encode(src, src_lengths)

    def stepper(last=True, only_last_token=False):
        def step(token, ys):  # ys: the decoder's input so far, (B, t)
            ys = token[:, None] if ys is None else torch.cat([ys, token[:, None]], dim=1)
            logits = model.decode(ys[:, -1:] if only_last_token else ys, memory, src_mask)
            return (logits[:, -1] if last else logits[:, 0]), ys
        return step

    B = src.shape[0]
    return {
        **decoding.loop_mistakes(stepper(), None, B, max_len),
        "The next token is predicted by the *last* position of the decoder's output (logits[:, -1]), the one that has "
        "seen the whole prefix.": decoding.greedy_mutant(stepper(last=False), None, B, max_len),
        "Decode the whole prefix at every step (SOS and every token so far), not only the last token: the "
        "Transformer decoder keeps no state between calls, so it must see the prefix again.":
            decoding.greedy_mutant(stepper(only_last_token=True), None, B, max_len),
    }


_RECURSION = decoding.recursion("model.encode", "model.decode")


class _DecodingModel(transformer.Transformer):
    """The check's model: its decode is counted (a loop must end) and its generate must not be used."""

    max_calls = None

    def generate(self, *args, **kwargs):
        raise Mistake(_RECURSION)

    def decode(self, tgt_in, memory, src_mask):
        self.calls += 1
        if self.max_calls is not None and self.calls > self.max_calls:
            raise Mistake(decoding.too_many_steps(self.max_calls // 2 - 1))
        return super().decode(tgt_in, memory, src_mask)


def _decoding_model(V, seed, eos=2.5):
    tiny = _TinyModel(V, seed).model
    model = _DecodingModel(V, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_len=16)
    model.load_state_dict(tiny.state_dict())
    model.calls = 0
    model.eval()
    with torch.no_grad():
        model.out.bias[EOS] += eos  # EOS likely (rows finish at different steps), or impossible
    return model


# (V, B, S, max_len, seed, EOS bias): the last never produces EOS, so only max_len ends the loop
_DECODE_CASES = [(12, 6, 5, 8, 0, 2.5), (10, 5, 3, 6, 3, 2.5), (15, 4, 4, 5, 5, 2.5), (9, 3, 4, 5, 6, -1e4)]


@exercise("07.3", "batched greedy decoding", reference=greedy_decode, difficulty=2, minutes=15,
          on_timeout="a decoding loop that ignores max_len (e.g. `while not finished.all()`), which never ends when "
                     "a row never produces EOS, or a call to model.generate", hints=[
    "Encode the source once. Start with a (B, 1) column of SOS; at each step run `model.decode` on everything "
    "generated so far, take the argmax of the *last* position's logits, and append it to the decoder input.",
    "Keep a boolean `finished` per row: once a row has produced EOS, write PAD in it from then on; "
    "`break` when `finished.all()`.",
    "Collect the (B,) tokens of each step in a list and `torch.stack(out, dim=1)` at the end; `ys = torch.cat([ys, "
    "token[:, None]], dim=1)` grows the decoder input.",
])
def check_greedy_decode(candidate):
    callable_candidate(candidate, "greedy_decode")
    for V, B, S, max_len, seed, eos in _DECODE_CASES:
        model = _decoding_model(V, seed, eos)
        src, src_lengths, _ = _pairs(V, B, S, 2, seed)
        model.calls, model.max_calls = 0, 2 * (max_len + 1)
        try:
            with torch.no_grad():
                got = candidate(model, src, src_lengths, max_len)
        finally:
            model.max_calls = None
        with torch.no_grad():
            want = greedy_decode(model, src, src_lengths, max_len)
        expect_tensor(got, "greedy_decode(...)")
        expect(got.dim() == 2 and got.shape[0] == B,
               f"greedy_decode should return ids of shape (B, L) = ({B}, L); got {tuple(got.shape)}.")
        expect(not got.is_floating_point(), "Return token ids (the argmax over the vocabulary), not scores.")
        expect(got.dtype == torch.long, f"Return the ids as torch.long (what argmax gives), not {got.dtype}.")
        expect(got.shape[1] <= max_len, f"The output has {got.shape[1]} steps, more than max_len={max_len}.")
        decoding.diagnose(got, want, max_len, lambda: _decode_mutants(model, src, src_lengths, max_len),
                          "The generated tokens differ from greedy decoding. At each step decode the whole prefix (SOS "
                          "and the tokens so far), take the argmax of the last position, and append it.",
                          stop_when_done=True)

"""Reference decoder-only language model of lesson 08 (GPT), built from the course's own parts.

* :class:`Block` -- a pre-LN Transformer block: causal self-attention (lesson 05's
  :class:`~utils.attention.MultiHeadAttention`) and the feed-forward of lesson 06, each in a residual
  branch. It is lesson 06's encoder block given a causal mask, so it equals
  ``nn.TransformerEncoderLayer(norm_first=True)`` with ``mask=~causal_mask(T)`` (see
  :func:`copy_into_torch_encoder_layer`). ``d_ff=0`` drops the feed-forward: an attention-only block.
* :class:`GPT` -- token and position embeddings, a stack of blocks, a final LayerNorm, and an output
  layer tied to the token embedding.
* :func:`generate` -- greedy, temperature and top-k sampling from a prompt, with or without a
  key/value cache (lesson 07's, for the decoder-only case).
* :func:`ablate_heads` -- switch attention heads off, to test what they do.

No dropout, as everywhere in the course. Boolean masks are True where attention is allowed.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.attention import (MultiHeadAttention, causal_mask, copy_into_torch_mha, fused_attention, merge_heads,
                             scaled_dot_product_attention, split_heads)
from utils.runtime import measured
from utils.transformer import FeedForward


class Block(nn.Module):
    """x = x + SelfAttn(LN_1(x); mask), then x = x + FFN(LN_2(x)): pre-LN, as GPT-2.

    forward(x (B, T, D), mask=None bool broadcastable to (B, T, T), True = may attend) -> (B, T, D).
    ``d_ff=0`` makes an attention-only block (no feed-forward, no second norm). The last attention
    weights (B, h, T, T) are kept, detached, in ``last_weights``, except in a training step (train
    mode, gradients on), where nobody reads them: there the block keeps None and attends with
    :func:`~utils.attention.fused_attention` (the same function, PyTorch's fused kernel; a training
    step of lesson 08's GPT takes about a fifth less time).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.norm2 = nn.LayerNorm(d_model) if d_ff else None
        self.ff = FeedForward(d_model, d_ff) if d_ff else None
        self.last_weights = None

    def forward(self, x, mask=None):
        h = self.norm1(x)
        if self.training and torch.is_grad_enabled():  # a training step: the same attention, fused (nanoGPT's "flash")
            out, self.last_weights = fused_attention(self.self_attn, h, h, h, mask), None
        else:
            out, weights = self.self_attn(h, h, h, mask)  # (B, T, D), (B, h, T, T)
            self.last_weights = weights.detach()
        x = x + out
        if self.ff is not None:
            x = x + self.ff(self.norm2(x))
        return x


def init_weights(module: nn.Module) -> None:
    """Embeddings from N(0, 0.02), as GPT-2; Linear layers keep PyTorch's default (uniform, +-1/sqrt(fan_in)).

    Small embeddings matter because the output layer shares the token embedding: with nn.Embedding's
    default N(0, 1) the first logits would be huge and the first loss far above ln(V). GPT-2's 0.02 for
    the Linear layers too suits its width 768; at width 64 it makes the first attention scores so small
    that the heads take thousands of steps to start attending anywhere in particular.
    """
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


class GPT(nn.Module):
    """A decoder-only language model: forward(ids (B, T)) -> logits (B, T, V), T <= block_size.

    logits[:, t] scores the token that follows ids[:, t], from ids[:, :t+1] only (causal mask),
    unless ``causal=False``, which lets every position see the whole sequence (an experiment).
    Layers: ``tok_emb`` (V, D), ``pos_emb`` (block_size, D), ``blocks`` (a ModuleList of
    ``Block(d_model, num_heads, d_ff)``), ``norm`` (the final LayerNorm), ``head`` (D -> V, no bias),
    whose weight *is* ``tok_emb.weight`` (tied); attributes ``block_size`` and ``causal``.
    """

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, num_layers: int, d_ff: int,
                 block_size: int, causal: bool = True):
        super().__init__()
        self.block_size, self.causal = block_size, causal
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, num_heads, d_ff) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied: one (V, D) matrix reads tokens in and scores them out
        self.apply(init_weights)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))  # (B, T, D)
        mask = causal_mask(T, device=ids.device)[None] if self.causal else None  # (1, T, T): True on and below the diagonal
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))  # (B, T, V)


def next_token_loss(logits, tokens):
    """The mean cross-entropy (nats) of predicting tokens[:, t+1] from logits[:, t].

    logits (B, T, V), tokens (B, T) int64 -> a scalar: the mean over every row and every t < T-1,
    that is over B * (T-1) predictions (the last position has no next token to score).
    """
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))


def prefix_matching_score(weights, tokens):
    """How much each head attends to the token *after* an earlier occurrence of the current token.

    weights (h, T, T) attention of one sequence (row t = query t), tokens (T,) with a repeated token
    -> (h,): per head, over the query positions t whose token occurred earlier, the mean of the
    weight summed over the positions j+1 that follow each earlier occurrence j < t of tokens[t].
    """
    T = tokens.shape[0]
    before = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril(diagonal=-1)  # [t, j]: j < t
    earlier = (tokens[:, None] == tokens[None, :]) & before  # [t, j]: j < t holds the token of t
    after = torch.zeros_like(earlier)
    after[:, 1:] = earlier[:, :-1]  # [t, j+1]: the position that follows each earlier occurrence j
    queries = earlier.any(dim=-1)  # (T,): t's token occurred before
    score = (weights * after).sum(dim=-1)  # (h, T): the weight on those positions, per query
    return score[:, queries].mean(dim=-1)  # (h,)


# ----------------------------------------------------------------- comparing with PyTorch's layer
@torch.no_grad()
def copy_into_torch_encoder_layer(ours: Block, theirs: nn.TransformerEncoderLayer) -> nn.TransformerEncoderLayer:
    """Copy a :class:`Block` (with a feed-forward) into ``nn.TransformerEncoderLayer(D, h, d_ff,
    dropout=0.0, batch_first=True, norm_first=True)``; returns ``theirs``.

    Then ``theirs(x, src_mask=~causal_mask(T))`` equals ``ours(x, causal_mask(T))`` (PyTorch's boolean
    masks are True where attention is *not* allowed).
    """
    if ours.ff is None:
        raise ValueError("an attention-only block (d_ff=0) has no counterpart in nn.TransformerEncoderLayer")
    if not theirs.norm_first:
        raise ValueError("the block is pre-LN: build nn.TransformerEncoderLayer with norm_first=True")
    copy_into_torch_mha(ours.self_attn, theirs.self_attn)
    theirs.linear1.load_state_dict(ours.ff.linear1.state_dict())
    theirs.linear2.load_state_dict(ours.ff.linear2.state_dict())
    theirs.norm1.load_state_dict(ours.norm1.state_dict())
    theirs.norm2.load_state_dict(ours.norm2.state_dict())
    return theirs


# ----------------------------------------------------------------- generation
def sample_next(logits, temperature: float = 1.0, top_k: int | None = None, generator=None):
    """Draw the next token of each row: logits (B, V) -> (B,) int64.

    ``temperature == 0`` is greedy (argmax); otherwise the token is drawn from softmax(logits /
    temperature), restricted to the ``top_k`` largest logits (renormalised) when top_k is given,
    with ``generator`` (a torch.Generator) as the only source of randomness.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))  # the others get probability 0
    probs = logits.softmax(dim=-1)  # (B, V), renormalised over what is left
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _block_step(block: Block, x, cache):
    """Run ``block`` on the newest positions x (B, n, D) given the cached keys and values of the earlier
    ones, ``cache = (k, v)`` each (B, h, past, d_k) or None. -> (x (B, n, D), the cache grown by n)."""
    mha = block.self_attn
    h = block.norm1(x)
    q = split_heads(mha.q_proj(h), mha.num_heads)  # (B, h, n, d_k)
    k = split_heads(mha.k_proj(h), mha.num_heads)
    v = split_heads(mha.v_proj(h), mha.num_heads)
    past = 0 if cache is None else cache[0].shape[2]
    if cache is not None:
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (B, h, past+n, d_k)
    n = x.shape[1]
    # new query i sits at position past+i and may see keys 0..past+i: the causal mask's last n rows
    mask = causal_mask(past + n, device=x.device)[past:]  # (n, past+n)
    heads, _ = scaled_dot_product_attention(q, k, v, mask)
    x = x + mha.out_proj(merge_heads(heads))
    if block.ff is not None:
        x = x + block.ff(block.norm2(x))
    return x, (k, v)


@torch.no_grad()
def generate(model: GPT, prompt, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             generator=None, use_cache: bool = False, sample=sample_next, return_logits: bool = False):
    """Continue ``prompt`` (B, T0) by ``max_new_tokens`` tokens -> ids (B, T0 + max_new_tokens).

    Each new token is ``sample(logits of the last position (B, V), temperature, top_k, generator)``.
    Without the cache, every step reruns the model over the last ``block_size`` tokens. With
    ``use_cache=True`` each step computes the newest position only, reusing every layer's keys and
    values; the whole text must then fit in ``block_size`` (positions are learned up to there).
    ``return_logits=True`` also returns the logits that chose each new token, (B, max_new_tokens, V).
    """
    ids = prompt
    B, T0 = ids.shape
    if T0 < 1:
        raise ValueError("the prompt needs at least one token")
    if use_cache and T0 + max_new_tokens > model.block_size:
        raise ValueError(f"with the cache, prompt + new tokens ({T0} + {max_new_tokens}) must fit in block_size="
                         f"{model.block_size}; use use_cache=False for longer texts")
    if use_cache and not model.causal:
        raise ValueError("the key/value cache assumes a causal model: earlier positions never change")
    chosen = []
    if use_cache:
        caches = [None] * len(model.blocks)
        x = model.tok_emb(ids) + model.pos_emb(torch.arange(T0, device=ids.device))  # the prompt in one pass
    for step in range(max_new_tokens):
        if use_cache:
            for i, block in enumerate(model.blocks):
                x, caches[i] = _block_step(block, x, caches[i])
            logits = model.head(model.norm(x[:, -1]))  # (B, V)
        else:
            logits = model(ids[:, -model.block_size:])[:, -1]  # (B, V): the whole window again
        token = sample(logits, temperature, top_k, generator)  # (B,)
        chosen.append(logits)
        ids = torch.cat([ids, token[:, None]], dim=1)
        if use_cache and step + 1 < max_new_tokens:
            x = model.tok_emb(token[:, None]) + model.pos_emb.weight[ids.shape[1] - 1]  # (B, 1, D): the newest only
    if return_logits:
        return ids, (torch.stack(chosen, dim=1) if chosen else torch.zeros(B, 0, model.head.out_features))
    return ids


# ----------------------------------------------------------------- heads
@contextlib.contextmanager
def ablate_heads(model: GPT, heads):
    """Within the ``with`` block, the heads ``heads`` (an iterable of (layer, head) pairs, from 0) output zero.

    The head's slice of the concatenated heads is zeroed just before the output projection W^O, so the
    rest of the model runs unchanged.
    """
    hooks = []
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    for layer, hs in by_layer.items():
        mha = model.blocks[layer].self_attn
        d_k = mha.out_proj.in_features // mha.num_heads

        def zero(module, args, hs=hs, d_k=d_k):
            (x,) = args  # (B, T, h*d_k): Concat(head_1 .. head_h)
            x = x.clone()
            for h in hs:
                x[..., h * d_k:(h + 1) * d_k] = 0
            return (x,)

        hooks.append(mha.out_proj.register_forward_pre_hook(zero))
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()


def attention_weights(model: GPT, ids):
    """Every layer's attention weights for ids (B, T): a tensor (layers, B, h, T, T)."""
    with torch.no_grad():
        model(ids)
    return torch.stack([block.last_weights for block in model.blocks])


# ----------------------------------------------------------------- training and evaluation
def learning_rate(step: int, steps: int, lr: float, warmup: int, schedule: bool = True) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to lr/10 at the last step (GPT-2, nanoGPT).

    With ``schedule=False``: the constant ``lr`` from the first step to the last.
    """
    if not schedule:
        return lr
    if step < warmup:
        return lr * (step + 1) / warmup  # Adam's first updates are large and noisy: start small
    progress = (step - warmup) / max(1, steps - 1 - warmup)  # 0 -> 1
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # small steps at the end settle the weights


def train_lm(model: nn.Module, get_batch, *, steps: int, lr: float = 3e-3, warmup: int = 50, schedule: bool = True,
             seed: int = 0, desc: str = "training", loss_fn=None, clip: float = 1.0):
    """Train a language model on ``get_batch(generator) -> tokens (B, T)`` with AdamW and :func:`learning_rate`.

    It trains where the model is (lessons 08 and 10 keep theirs on the CPU, whatever ``COURSE_DEVICE``
    says: their models are small, and a ``get_batch`` may evaluate the model on CPU tensors as it goes).

    Shows a progress bar with the loss (one summary line when done); returns a :class:`utils.training.History` (loss in nats per step).
    ``loss_fn(logits, tokens)`` defaults to :func:`next_token_loss`.
    """
    from utils.progress import progress
    from utils.training import History

    loss_fn = loss_fn or next_token_loss
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    history = History()
    model.train()
    start = time.perf_counter()
    bar = progress(range(steps), desc)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup, schedule)
        tokens = get_batch(generator)
        loss = loss_fn(model(tokens), tokens)
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}: try a smaller learning rate")
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        history.losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    history.seconds = time.perf_counter() - start
    model.eval()
    bar.finish(f"{desc}: {steps} steps, final loss {measured(history.final_loss, '.3f')} nats "
               f"({measured(history.final_loss / math.log(2), '.2f')} bits) per token")
    return history


@torch.no_grad()
def loss_per_position(model: nn.Module, tokens, batch_size: int = 64):
    """tokens (N, T) -> (T-1,) the mean cross-entropy (nats) of predicting position t+1, per t."""
    total = torch.zeros(tokens.shape[1] - 1)
    for i in range(0, len(tokens), batch_size):
        chunk = tokens[i:i + batch_size]
        logits = model(chunk)[:, :-1]  # (b, T-1, V)
        nll = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")  # (b, T-1)
        total += nll.sum(0)
    return total / len(tokens)


def bits_per_char(model: nn.Module, tokens, batch_size: int = 64) -> float:
    """The mean next-token cross-entropy of ``model`` on ``tokens`` (N, T), in bits per character."""
    return loss_per_position(model, tokens, batch_size).mean().item() / math.log(2)

"""Reference code of lesson 10: lesson 08's GPT rebuilt as a small modern language model, every piece
switchable by a field of :class:`ModernConfig`, so that one class gives both models and every step between.

The pieces, each against its lesson-08 counterpart:

* :func:`rms_norm` / :class:`RMSNorm` (10.1) instead of LayerNorm: no mean subtracted, no bias;
* :class:`SwiGLU` instead of lesson 06's ReLU :class:`~utils.transformer.FeedForward`, with a hidden width
  of 2/3 of the ReLU layer's, as Llama, so the parameter count stays about the same;
* RoPE (lesson 09's :func:`~utils.modern.apply_rope`) inside every attention layer instead of learned
  position embeddings added at the bottom;
* grouped-query attention (lesson 09): ``num_kv_heads`` key/value heads for ``num_heads`` query heads;
* a sliding window (lesson 09's, as one boolean mask with the causal one: :func:`attention_mask`) in every layer, and for
  generation a **rolling KV cache** (:func:`rolling_cache`, 10.2) that keeps the last ``window`` positions.

:class:`ModernBlock` (10.3) assembles them; :class:`ModernGPT` stacks it. With every piece off, a
``ModernGPT`` has exactly the parameters (names and shapes) of lesson 08's :class:`utils.gpt.GPT` and computes
the same function. Attention is PyTorch's fused ``F.scaled_dot_product_attention`` in every configuration
(lesson 09 showed it equals the course's), with a boolean mask, True where attention is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.attention import merge_heads, split_heads
from utils.gpt import init_weights, sample_next
from utils.modern import apply_rope, kv_cache_bytes
from utils.transformer import FeedForward


# ----------------------------------------------------------------- the switches
@dataclass(frozen=True)
class ModernConfig:
    """The model's sizes and its pieces. The defaults are lesson 08's GPT, every modern piece off.

    rmsnorm: RMSNorm instead of LayerNorm (every norm, the final one too); swiglu: a SwiGLU feed-forward of
    hidden width :attr:`swiglu_hidden` instead of ReLU of width d_ff; rope: rotary positions in every
    attention layer instead of a learned table of block_size rows; num_kv_heads: GQA's g (None: g = h,
    multi-head attention); window: each query sees itself and the window - 1 positions before it
    (None: every earlier position), and generation keeps a rolling cache of that many positions.
    """

    vocab_size: int
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 256
    block_size: int = 64
    rmsnorm: bool = False
    swiglu: bool = False
    rope: bool = False
    num_kv_heads: int | None = None
    window: int | None = None

    def __post_init__(self):
        g = self.kv_heads
        if self.d_model % self.num_heads or self.num_heads % g:
            raise ValueError(f"need d_model % num_heads == 0 and num_heads % num_kv_heads == 0, not "
                             f"{self.d_model}, {self.num_heads}, {g}")
        if self.rope and (self.d_model // self.num_heads) % 2:
            raise ValueError("RoPE rotates pairs of features: the head width d_model / num_heads must be even")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be None or at least 1, not {self.window}")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def swiglu_hidden(self) -> int:
        """2/3 of d_ff, rounded down: SwiGLU has three matrices where ReLU has two (Llama's rule)."""
        return 2 * self.d_ff // 3

    def with_(self, **changes) -> "ModernConfig":
        """A copy with some fields changed: ``config.with_(rope=True)``."""
        return replace(self, **changes)


# ----------------------------------------------------------------- 10.1 RMSNorm
def rms_norm(x, weight, eps: float = 1e-6):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension: x (..., D), weight (D,) -> (..., D).

    LayerNorm without the mean subtracted and without a bias: equal to ``torch.nn.RMSNorm(D, eps)`` whose
    weight is ``weight``.
    """
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


class RMSNorm(nn.Module):
    """:func:`rms_norm` with a learned ``weight`` (D,), initialised to ones (the state of ``nn.RMSNorm``)."""

    def __init__(self, d_model: int, eps: float = 1e-6, norm=None):
        super().__init__()
        self.eps, self.norm = eps, norm or rms_norm  # norm: the function, so that a lesson can use the learner's
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return self.norm(x, self.weight, self.eps)


def make_norm(config: ModernConfig, norm=None) -> nn.Module:
    """The norm the config asks for: :class:`RMSNorm` (with ``norm`` as its function) or ``nn.LayerNorm``."""
    return RMSNorm(config.d_model, norm=norm) if config.rmsnorm else nn.LayerNorm(config.d_model)


# ----------------------------------------------------------------- SwiGLU
class SwiGLU(nn.Module):
    """FFN(x) = W_down (SiLU(W_gate x) * W_up x): a gated feed-forward (Shazeer 2020, Llama).

    forward(x (B, T, D)) -> (B, T, D), hidden width ``hidden`` in between. Layers ``gate_proj``, ``up_proj``
    (D -> hidden) and ``down_proj`` (hidden -> D), with biases here, like the rest of this course's models.
    """

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden)
        self.up_proj = nn.Linear(d_model, hidden)
        self.down_proj = nn.Linear(hidden, d_model)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, hidden) in between


def make_feed_forward(config: ModernConfig) -> nn.Module:
    """:class:`SwiGLU` of width ``config.swiglu_hidden``, or lesson 06's ReLU FeedForward of width d_ff."""
    return SwiGLU(config.d_model, config.swiglu_hidden) if config.swiglu else FeedForward(config.d_model, config.d_ff)


# ----------------------------------------------------------------- 10.2 the rolling cache
def rolling_cache(cache, new, window: int):
    """Append the keys (or values) of the newest positions and keep only the last ``window`` positions.

    cache (B, g, S, d) or None, new (B, g, n, d) -> (B, g, min(window, S + n), d): the last positions of
    their concatenation along dim 2, oldest first.
    """
    full = new if cache is None else torch.cat([cache, new], dim=2)  # (B, g, S + n, d)
    return full[:, :, -window:]


# ----------------------------------------------------------------- attention
def attention_mask(query_positions, key_positions, window: int | None = None):
    """(Lq, Lk) bool, True where query i may attend to key j: 0 <= pos_i - pos_j (< window, if given)."""
    offset = query_positions[:, None] - key_positions[None, :]  # how far key j lies behind query i
    allowed = offset >= 0
    return allowed & (offset < window) if window is not None else allowed


class CausalSelfAttention(nn.Module):
    """Causal self-attention with ``num_kv_heads`` key/value heads (GQA), optional RoPE and sliding window.

    Layers ``q_proj`` (D -> D), ``k_proj`` and ``v_proj`` (D -> g * d_head: only g heads, the KV cache is g/h
    as big) and ``out_proj`` (D -> D): at g = h exactly lesson 05's :class:`~utils.attention.MultiHeadAttention`.

    forward(x (B, n, D), positions (n,) int64: the positions of x's tokens in the text, cache=None or
    (k, v) each (B, g, S, d_head): the keys and values of the S positions just before them, already rotated)
    -> (output (B, n, D), (k, v) of x's own positions, each (B, g, n, d_head), rotated when RoPE is on).
    """

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_heads, config.kv_heads
        self.rope, self.window = config.rope, config.window
        d_kv = config.kv_heads * config.d_head
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, d_kv)
        self.v_proj = nn.Linear(config.d_model, d_kv)
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, x, positions, cache=None):
        q = split_heads(self.q_proj(x), self.num_heads)  # (B, h, n, d)
        k = split_heads(self.k_proj(x), self.num_kv_heads)  # (B, g, n, d)
        v = split_heads(self.v_proj(x), self.num_kv_heads)  # (B, g, n, d)
        if self.rope:  # rotate by the tokens' true positions in the text, not by their place in x
            q, k = apply_rope(q, positions), apply_rope(k, positions)
        keys, values = k, v
        if cache is not None:
            keys, values = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (B, g, S + n, d)
        first = positions[0] - (keys.shape[2] - k.shape[2])  # the cache holds the positions just before x's
        key_positions = torch.arange(keys.shape[2], device=x.device) + first
        mask = attention_mask(positions, key_positions, self.window)  # (n, S + n)
        heads = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                               enable_gqa=self.num_kv_heads != self.num_heads)  # (B, h, n, d)
        return self.out_proj(merge_heads(heads)), (k, v)


# ----------------------------------------------------------------- 10.3 the block
class ModernBlock(nn.Module):
    """A pre-norm block: x = x + Attn(Norm_1(x)), then x = x + FFN(Norm_2(x)).

    Layers ``norm1`` and ``norm2`` (``make_norm(config)``: RMSNorm or LayerNorm), ``self_attn``
    (``CausalSelfAttention(config)``) and ``ff`` (``make_feed_forward(config)``: SwiGLU or ReLU).
    forward(x (B, n, D), positions (n,), cache=None or (k, v) each (B, g, S, d_head)) -> (x (B, n, D),
    (k, v) of these n positions, each (B, g, n, d_head)): what the attention layer returns, for the cache.
    """

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.norm1 = make_norm(config)
        self.self_attn = CausalSelfAttention(config)
        self.norm2 = make_norm(config)
        self.ff = make_feed_forward(config)

    def forward(self, x, positions, cache=None):
        out, kv = self.self_attn(self.norm1(x), positions, cache)
        x = x + out
        x = x + self.ff(self.norm2(x))
        return x, kv


# ----------------------------------------------------------------- the model
class ModernGPT(nn.Module):
    """Lesson 08's GPT with switchable modern pieces: forward(ids (B, T)) -> logits (B, T, V).

    Layers ``tok_emb`` (V, D), ``pos_emb`` (block_size, D; only without RoPE), ``blocks`` (a ModuleList of
    ``block(config)``, :class:`ModernBlock` by default), ``norm`` (the final norm) and ``head`` (tied to
    ``tok_emb``). Without RoPE, T <= block_size (a learned table has no rows beyond); with RoPE any T.
    """

    def __init__(self, config: ModernConfig, block=None):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        if not config.rope:
            self.pos_emb = nn.Embedding(config.block_size, config.d_model)
        self.blocks = nn.ModuleList((block or ModernBlock)(config) for _ in range(config.num_layers))
        self.norm = make_norm(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied, as lesson 08
        self.apply(init_weights)

    @property
    def block_size(self) -> int:
        return self.config.block_size

    def embed(self, ids, start: int = 0):
        """Token embeddings (and, without RoPE, learned positions start .. start + T - 1): (B, T, D)."""
        x = self.tok_emb(ids)
        if not self.config.rope:
            end = start + ids.shape[1]
            if end > self.config.block_size:
                raise ValueError(f"learned positions: the table has rows for positions 0..{self.config.block_size - 1} "
                                 f"only, and this text reaches position {end - 1}. RoPE has no such limit.")
            x = x + self.pos_emb(torch.arange(start, end, device=ids.device))
        return x

    def forward(self, ids):
        x = self.embed(ids)
        positions = torch.arange(ids.shape[1], device=ids.device)
        for block in self.blocks:
            x, _ = block(x, positions)
        return self.head(self.norm(x))  # (B, T, V)

    def step(self, ids, caches, start: int, roll=None):
        """Run the new tokens ids (B, n), at positions start .. start + n - 1, on every layer's cache.

        caches: a list with each layer's (k, v) or None. Returns (logits of the last position (B, V), the
        caches with these positions added: with a window, a rolling cache of the last ``window`` positions,
        trimmed by ``roll`` (default :func:`rolling_cache`, 10.2)).
        """
        x = self.embed(ids, start)
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            x, kv = block(x, positions, cache)
            new_caches.append(grow_cache(cache, kv, self.config.window, roll or rolling_cache))
        return self.head(self.norm(x[:, -1])), new_caches


def grow_cache(cache, new, window: int | None, roll=rolling_cache):
    """Add a layer's new (k, v) to its cache (k, v) or None: all of it without a window; with one, the last
    ``window`` positions, ``roll(cache, new, window)`` for the keys and for the values."""
    old = cache if cache is not None else (None, None)
    if window is not None:
        return roll(old[0], new[0], window), roll(old[1], new[1], window)
    return new if cache is None else (torch.cat([old[0], new[0]], dim=2), torch.cat([old[1], new[1]], dim=2))


def cache_bytes(caches) -> int:
    """Bytes held by a list of per-layer (k, v) caches."""
    return sum(t.numel() * t.element_size() for kv in caches if kv is not None for t in kv)


def kv_bytes_per_token(config: ModernConfig, bytes_per_element: int = 4) -> int:
    """Bytes one token adds to the KV cache: keys and values, every layer, g heads of d_head (float32)."""
    return kv_cache_bytes(config.num_layers, config.kv_heads, config.d_head, 1, bytes_per_element)


@torch.no_grad()
def generate(model: ModernGPT, prompt, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             generator=None, use_cache: bool = True, sample=sample_next, roll=None, return_logits: bool = False,
             on_step=None):
    """Continue ``prompt`` (B, T0) by ``max_new_tokens`` tokens -> ids (B, T0 + max_new_tokens).

    With ``use_cache=True`` the prompt fills every layer's cache in one pass, then each step runs the newest
    token only; with a window the cache is rolling (the last ``window`` positions, trimmed by ``roll``), so
    its memory stops growing. With ``use_cache=False`` each step reruns the model over the whole text (with
    learned positions, over its last block_size tokens, as lesson 08). ``return_logits=True`` also returns
    the logits that chose each new token, (B, max_new_tokens, V); ``on_step(caches)``, if given, is called
    after every step.
    """
    ids = prompt
    if ids.shape[1] < 1:
        raise ValueError("the prompt needs at least one token")
    if use_cache and not model.config.rope and ids.shape[1] + max_new_tokens > model.block_size:
        raise ValueError(f"learned positions: with the cache, prompt + new tokens ({ids.shape[1]} + {max_new_tokens}) "
                         f"must fit in block_size={model.block_size}; use use_cache=False for longer texts")
    caches, fed, chosen = [None] * len(model.blocks), 0, []  # fed: how many tokens the caches have seen
    for _ in range(max_new_tokens):
        if use_cache:
            logits, caches = model.step(ids[:, fed:], caches, fed, roll)
            fed = ids.shape[1]
        else:
            context = ids if model.config.rope else ids[:, -model.block_size:]
            logits = model(context)[:, -1]
        token = sample(logits, temperature, top_k, generator)  # (B,)
        chosen.append(logits)
        ids = torch.cat([ids, token[:, None]], dim=1)
        if on_step is not None:
            on_step(caches)
    if return_logits:
        return ids, (torch.stack(chosen, dim=1) if chosen else torch.zeros(ids.shape[0], 0, model.config.vocab_size))
    return ids

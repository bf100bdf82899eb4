"""Reference code of lesson 09, attention in today's language models (the exercises' solutions, and
the fallback for a learner who has not finished them): the online softmax of FlashAttention, rotary
position embeddings (RoPE), grouped-query attention (GQA) and sliding-window attention, and the small
models and tasks the lesson measures them on.

Conventions, the same as :mod:`utils.attention`: batch first, heads second ``(B, h, L, d)``; a boolean
mask is ``True`` where attention is *allowed* and broadcasts against the scores ``(..., Lq, Lk)``.
RoPE uses the *rotate-half* layout of GPT-NeoX and Hugging Face's transformers (feature ``i`` pairs with
``i + d/2``); the RoFormer paper, GPT-J and Meta's reference Llama code pair neighbours ``(2i, 2i+1)``
instead: equally valid, a different layout of the same rotation, so weights of one layout do not work
with code of the other.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from utils.attention import padding_mask, scaled_dot_product_attention, split_heads, merge_heads
from utils.data import PAD, SOS, Batch, Vocab
from utils.transformer import FeedForward, sinusoidal_positional_encoding


# ----------------------------------------------------------------- 09.1 the online softmax
def online_softmax_attention(q, k, v, block_size: int, causal: bool = False):
    """softmax(q k^T / sqrt(d)) v, computed over blocks of ``block_size`` keys, never the (Lq, Lk) matrix.

    q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv) -> (..., Lq, dv). A loop over the blocks of *keys*
    holds one block's scores (..., Lq, block_size) at a time (no full row of scores for any query, no
    (Lq, Lk) mask). For each block it keeps, per query, the running maximum m of the scores so far, the
    running denominator l = sum exp(s - m) and the running output o = sum exp(s - m) v; when a block
    raises the maximum, l and o are rescaled by exp(m_old - m_new). causal=True: query i sees keys
    j <= i, as F.scaled_dot_product_attention(..., is_causal=True).
    """
    Lq, Lk = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1])
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))  # (..., Lq, 1) running maximum of the scores
    l = q.new_zeros((*q.shape[:-1], 1))  # (..., Lq, 1) running denominator
    o = q.new_zeros((*q.shape[:-1], v.shape[-1]))  # (..., Lq, dv) running output, not yet divided by l
    rows = torch.arange(Lq, device=q.device)[:, None]  # (Lq, 1) query positions
    for start in range(0, Lk, block_size):
        kb, vb = k[..., start:start + block_size, :], v[..., start:start + block_size, :]  # (..., b, d)
        s = q @ kb.transpose(-2, -1) * scale  # (..., Lq, b): the scores of this block only
        if causal:
            cols = torch.arange(start, start + kb.shape[-2], device=q.device)  # the keys' positions
            s = s.masked_fill(cols > rows, float("-inf"))  # (Lq, b): key j > query i is the future
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (..., Lq, 1)
        alpha = torch.exp(m - m_new)  # rescales what was summed against the old maximum (0 at the start)
        p = torch.exp(s - m_new)  # (..., Lq, b), every entry <= 1: no overflow
        l = l * alpha + p.sum(dim=-1, keepdim=True)
        o = o * alpha + p @ vb
        m = m_new
    return o / l  # (..., Lq, dv); l > 0: every query sees key 0 (causal) or every key


# ----------------------------------------------------------------- 09.2 rotary position embeddings
def apply_rope(x, positions, base: float = 10000.0):
    """Rotate each feature pair (i, i + d/2) of x by the angle positions * base^(-2i/d) (rotate-half).

    x (B, h, T, d) queries or keys (d even), positions (T,) -> (B, h, T, d). Then the score of a query
    at position m and a key at position n depends on m - n only, not on m and n themselves.
    """
    d = x.shape[-1]
    half = d // 2
    freqs = base ** (-2 * torch.arange(half, dtype=torch.float32, device=x.device) / d)  # (d/2,) theta_i
    angles = positions.to(device=x.device, dtype=torch.float32)[:, None] * freqs  # (T, d/2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]  # feature i and its partner i + d/2
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # a 2-D rotation of each pair


# ----------------------------------------------------------------- 09.3 grouped-query attention
def grouped_query_attention(q, k, v, mask=None):
    """h query heads share g key/value heads: query head i uses key/value head i // (h // g).

    q (B, h, Lq, d), k (B, g, Lk, d), v (B, g, Lk, dv), h divisible by g, mask as in 03.1
    -> (output (B, h, Lq, dv), weights (B, h, Lq, Lk)).
    """
    h, g = q.shape[1], k.shape[1]
    if h % g:
        raise ValueError(f"the {h} query heads cannot be shared evenly by {g} key/value heads")
    k = k.repeat_interleave(h // g, dim=1)  # (B, h, Lk, d): heads 0..h/g-1 get kv head 0, and so on
    v = v.repeat_interleave(h // g, dim=1)
    return scaled_dot_product_attention(q, k, v, mask)


# ----------------------------------------------------------------- 09.4 sliding-window attention
def sliding_window_mask(n: int, window: int, device=None):
    """(n, n) bool, True where 0 <= i - j < window: query i sees itself and the window - 1 keys before it."""
    i = torch.arange(n, device=device)
    offset = i[:, None] - i[None, :]  # (n, n): how far key j lies behind query i
    return (offset >= 0) & (offset < window)


def sliding_window_attention(q, k, v, window: int):
    """Causal sliding-window attention that only computes the band: O(n * window) work and memory.

    q, k (..., n, d), v (..., n, dv) -> (..., n, dv), equal to
    ``scaled_dot_product_attention(q, k, v, sliding_window_mask(n, window))``. The queries are cut into
    chunks of ``window`` positions; a chunk's keys are its own chunk and the one before, so each chunk
    costs (window x 2 window) scores whatever n is. A mask alone would still compute all n^2 scores.
    """
    n, c = q.shape[-2], window
    pad = (-n) % c  # pad n up to a whole number of chunks
    pad_rows = lambda x, before, after: torch.cat(  # noqa: E731 (zeros before and after the positions)
        [x.new_zeros(*x.shape[:-2], before, x.shape[-1]), x, x.new_zeros(*x.shape[:-2], after, x.shape[-1])], dim=-2)
    qc = pad_rows(q, 0, pad).unflatten(-2, (-1, c))  # (..., N, c, d): N chunks of c queries
    N = qc.shape[-3]
    # keys of chunk t: positions t*c - c .. t*c + c - 1, i.e. a window of 2c over keys padded by c in front
    kc = pad_rows(k, c, pad).unfold(-2, 2 * c, c).transpose(-2, -1)  # (..., N, 2c, d)
    vc = pad_rows(v, c, pad).unfold(-2, 2 * c, c).transpose(-2, -1)  # (..., N, 2c, dv)
    a = torch.arange(c, device=q.device)[:, None]  # query's place in its chunk
    b = torch.arange(2 * c, device=q.device)[None, :]  # key's place in the chunk's keys
    offset = a + c - b  # (c, 2c): query position minus key position
    key_pos = torch.arange(N, device=q.device)[:, None, None] * c - c + b  # (N, 1, 2c)
    mask = (offset >= 0) & (offset < window) & (key_pos >= 0)  # (N, c, 2c)
    out, _ = scaled_dot_product_attention(qc, kc, vc, mask)  # (..., N, c, dv)
    return out.flatten(-3, -2)[..., :n, :]


# ----------------------------------------------------------------- the attention layer of the lesson
class GroupedQueryAttention(nn.Module):
    """Multi-head attention whose h query heads share g key/value heads, with optional RoPE.

    g = h is multi-head attention (the same parameters as :class:`utils.attention.MultiHeadAttention`),
    g = 1 multi-query attention. ``k_proj`` and ``v_proj`` produce only g heads: (D, g * D / h).

    forward(query (B, Lq, D), key (B, Lk, D), value (B, Lk, D), mask=None broadcastable to
    (B, h, Lq, Lk)) -> (output (B, Lq, D), weights (B, h, Lq, Lk)). With ``rope=True`` the queries and
    keys are rotated by their positions 0, 1, ... (:func:`apply_rope`) before the scores.
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int | None = None, rope: bool = False):
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if d_model % num_heads or num_heads % num_kv_heads:
            raise ValueError(f"need d_model % num_heads == 0 and num_heads % num_kv_heads == 0, not "
                             f"{d_model}, {num_heads}, {num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.rope = num_heads, num_kv_heads, rope
        d_head = d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, num_kv_heads * d_head)  # g heads only: the KV cache is g/h as big
        self.v_proj = nn.Linear(d_model, num_kv_heads * d_head)
        self.out_proj = nn.Linear(d_model, d_model)

    def keys_values(self, x):
        """What a KV cache stores for the positions of x (B, L, D): keys and values, each (B, g, L, D/h)."""
        k = split_heads(self.k_proj(x), self.num_kv_heads)
        if self.rope:
            k = apply_rope(k, torch.arange(x.shape[1], device=x.device))
        return k, split_heads(self.v_proj(x), self.num_kv_heads)

    def forward(self, query, key, value, mask=None):
        q = split_heads(self.q_proj(query), self.num_heads)  # (B, h, Lq, d)
        k = split_heads(self.k_proj(key), self.num_kv_heads)  # (B, g, Lk, d)
        v = split_heads(self.v_proj(value), self.num_kv_heads)  # (B, g, Lk, d)
        if self.rope:
            q = apply_rope(q, torch.arange(query.shape[1], device=query.device))
            k = apply_rope(k, torch.arange(key.shape[1], device=key.device))
        heads, weights = grouped_query_attention(q, k, v, mask)  # (B, h, Lq, d), (B, h, Lq, Lk)
        return self.out_proj(merge_heads(heads)), weights


class Block(nn.Module):
    """A pre-LN Transformer block (lesson 06) around :class:`GroupedQueryAttention`.

    forward(x (B, S, D), mask broadcastable to (B, h, S, S)) -> (B, S, D)
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, d_ff: int, rope: bool):
        super().__init__()
        self.attn = GroupedQueryAttention(d_model, num_heads, num_kv_heads, rope=rope)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, mask)[0]
        return x + self.ff(self.norm2(x))


class Tagger(nn.Module):
    """Embed, add positions, a stack of :class:`Block`, and classify every position (lesson 06's tagger).

    positional: None, "sinusoidal", "learned" (a table of max_len rows: nothing beyond) or "rope"
    (rotations inside every attention layer, nothing added to the embedding). causal: query i sees
    keys j <= i only; window: a sliding window of that width (causal). num_kv_heads: GQA's g.
    forward(src (B, S), src_lengths (B,), tgt=None) -> logits (B, S, V) (the course's training contract).
    """

    def __init__(self, vocab_size: int, positional="rope", *, d_model: int = 32, num_heads: int = 4,
                 num_kv_heads: int | None = None, d_ff: int = 64, num_layers: int = 2, max_len: int = 16,
                 causal: bool = False, window: int | None = None):
        super().__init__()
        if positional not in (None, "sinusoidal", "learned", "rope"):
            raise ValueError(f"positional must be None, 'sinusoidal', 'learned' or 'rope', not {positional!r}")
        self.d_model, self.positional, self.max_len = d_model, positional, max_len
        self.causal, self.window = causal or window is not None, window
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)  # std 1 after the sqrt(D) scale, like PE
        if positional == "learned":
            self.pos_embedding = nn.Embedding(max_len, d_model)
        self.layers = nn.ModuleList(Block(d_model, num_heads, num_kv_heads or num_heads, d_ff, positional == "rope")
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def embed(self, src):
        S = src.shape[1]
        x = self.embedding(src) * math.sqrt(self.d_model)  # (B, S, D)
        if self.positional == "sinusoidal":
            x = x + sinusoidal_positional_encoding(S, self.d_model).to(x.device)
        elif self.positional == "learned":
            if S > self.max_len:
                raise ValueError(f"the learned position table has rows for positions 0..{self.max_len - 1} only; "
                                 f"a sequence of {S} tokens has no embedding for positions {self.max_len}..{S - 1}")
            x = x + self.pos_embedding(torch.arange(S, device=src.device))
        return x

    def mask(self, src, src_lengths):
        """(B, 1, S, S) bool: real keys only, and the causal band or window when asked for."""
        S = src.shape[1]
        mask = padding_mask(src_lengths.to(src.device), S)[:, None, None, :]  # (B, 1, 1, S)
        if self.window is not None:
            mask = mask & sliding_window_mask(S, self.window, device=src.device)
        elif self.causal:
            mask = mask & torch.ones(S, S, dtype=torch.bool, device=src.device).tril()
        return mask

    def forward(self, src, src_lengths, tgt=None):
        x, mask = self.embed(src), self.mask(src, src_lengths)
        for layer in self.layers:
            x = layer(x, mask)
        return self.out(self.norm(x))  # (B, S, V)


# ----------------------------------------------------------------- tasks
class LagTask:
    """Label each position of a random symbol sequence with the symbol ``lag`` positions before it.

    Positions 0 .. lag-1 have no such symbol and are labelled ``<sos>``. lag = 1 is lesson 06's order
    task ("which symbol came just before me?"); a larger lag needs a longer reach. With ``lags=(a, b)``
    the label is the sum, modulo the number of symbols, of the symbols a and b positions before: two
    things to look up per position.
    sample(batch_size, generator, length=None) -> Batch with src and tgt (B, S), padded with PAD.
    """

    def __init__(self, lags=(1,), num_symbols: int = 10, min_len: int = 4, max_len: int = 16):
        self.lags = tuple(lags) if not isinstance(lags, int) else (lags,)
        self.num_symbols, self.min_len, self.max_len = num_symbols, min_len, max_len
        self.vocab = Vocab([chr(ord("a") + i) for i in range(num_symbols)])

    def labels(self, src, real):
        """src (B, S) symbol ids -> tgt (B, S): <sos> where a lag reaches before the start."""
        B, S = src.shape
        sym = src - 3  # symbols as 0 .. num_symbols-1
        total = torch.zeros_like(src)
        valid = torch.ones_like(src, dtype=torch.bool)
        for lag in self.lags:
            shifted = torch.cat([torch.zeros(B, min(lag, S), dtype=src.dtype), sym[:, :max(S - lag, 0)]], dim=1)
            total = total + shifted
            valid &= torch.arange(S)[None, :] >= lag
        tgt = torch.where(valid, total % self.num_symbols + 3, torch.full_like(src, SOS))
        return tgt.masked_fill(~real, PAD)

    def sample(self, batch_size: int, generator=None, *, length=None) -> Batch:
        if length is None:
            lengths = torch.randint(self.min_len, self.max_len + 1, (batch_size,), generator=generator)
        else:
            lengths = torch.full((batch_size,), length)
        S = int(lengths.max())
        real = torch.arange(S) < lengths[:, None]  # (B, S)
        src = torch.randint(3, 3 + self.num_symbols, (batch_size, S), generator=generator).masked_fill(~real, PAD)
        return Batch(src, lengths, self.labels(src, real), lengths)


@torch.no_grad()
def tagging_accuracy(model, task, *, length=None, n: int = 300, seed: int = 1234, from_position: int = 0):
    """Accuracy over the real positions >= from_position of n fresh sequences -> (accuracy, per position (S,))."""
    batch = task.sample(n, torch.Generator().manual_seed(seed), length=length)
    model.eval()
    device = next(model.parameters()).device
    pred = model(batch.src.to(device), batch.src_lengths.to(device)).argmax(-1).cpu()  # (n, S)
    real = batch.tgt != PAD
    real[:, :from_position] = False
    right = (pred == batch.tgt) & real
    return right.sum().item() / max(1, real.sum().item()), right.sum(0) / real.sum(0).clamp(min=1)


# ----------------------------------------------------------------- measuring
def receptive_field(layers, n: int, d: int, *, seed: int = 0) -> int:
    """How many input positions the last output of a stack of layers depends on (measured by its gradient).

    layers: modules taking x (1, n, d) and returning (1, n, d) (or a tuple whose first item is).
    Returns the number of positions j with d y_{n-1} / d x_j != 0; a masked key gets exactly zero weight,
    so the gradient is exactly zero where no path of attention connects j to the last position.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, d, generator=g, requires_grad=True)
    h = x
    for layer in layers:
        out = layer(h)
        h = out[0] if isinstance(out, tuple) else out
    h[0, -1].sum().backward()
    return int((x.grad[0].abs().sum(-1) > 0).sum())


def kv_cache_bytes(layers: int, kv_heads: int, d_head: int, n: int, bytes_per_element: int = 2, window=None) -> int:
    """Bytes a KV cache holds for one sequence of n tokens: keys and values of every layer and kv head.

    With a sliding window only the last ``window`` positions need keeping.
    """
    kept = n if window is None else min(n, window)
    return 2 * layers * kv_heads * d_head * kept * bytes_per_element

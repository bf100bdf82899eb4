"""Reference Transformer of lessons 06 and 07 (the exercises' solutions, and the fallback for a
learner who has not finished them), built from :mod:`utils.attention`.

Where the course deviates from "Attention Is All You Need", and why:

* no dropout anywhere (the course's models are small and trained briefly; it also makes every
  layer deterministic, so it can be compared with PyTorch's own);
* ``norm_first=True`` (pre-LN, x + Sublayer(LayerNorm(x))) is the default; the paper's post-LN
  (LayerNorm(x + Sublayer(x))) is ``norm_first=False``. Pre-LN trains stably without a learning-rate
  warm-up, and it needs a final LayerNorm after the last layer of each stack (post-LN does not,
  its last operation already is one);
* boolean masks are True where attention is *allowed* (PyTorch's ``nn.Transformer*`` use the
  opposite: the helpers that copy weights into them say how to convert).

The :class:`Transformer` keeps the seq2seq contract of :mod:`utils.rnn`, so the course's training
loop, evaluation and comparisons serve it unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from utils.attention import MultiHeadAttention, causal_mask, copy_into_torch_mha, fused_attention, padding_mask
from utils.data import EOS, PAD, SOS
from utils.rnn import shift_right


# ----------------------------------------------------------------- lesson 06: the encoder
def sinusoidal_positional_encoding(num_positions: int, d_model: int):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

    -> (num_positions, d_model), positions 0 .. num_positions-1. Each pair of features is a clock of
    its own frequency, from one turn per 2*pi positions (i = 0) down to one per 10000*2*pi.
    """
    pos = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)  # (ceil(D/2),): the even feature indices 2i
    angles = pos / 10000 ** (two_i / d_model)  # (P, ceil(D/2))
    pe = torch.zeros(num_positions, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # for an odd d_model the last sin has no cos partner
    return pe  # (P, D)


def layer_norm(x, weight, bias, eps: float = 1e-5):
    """Normalise each position's feature vector to mean 0 and variance 1, then scale and shift.

    x (..., D), weight (D,), bias (D,) -> (..., D). Unlike BatchNorm, the statistics are over the
    features of one example, so it does not depend on the batch (or on padding in it).
    """
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1): biased (divide by D), as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to each position separately.

    forward(x (B, L, d_model)) -> (B, L, d_model)
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(x)))  # (B, L, d_ff) in between


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in a residual connection and a LayerNorm.

    post-LN (paper, norm_first=False): x = LN(x + Sublayer(x)); pre-LN (norm_first=True): x = x + Sublayer(LN(x)).
    forward(x (B, S, D), mask=None e.g. (B, 1, S): a key padding mask with a query axis, True at the
    real tokens (not PyTorch's True = padding)) -> (B, S, D).
    Attend through ``self._sa(h, mask)``: it keeps the last self-attention weights (B, h, S, S),
    detached, in ``last_self_weights`` for the heatmaps.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, norm_first: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm_first = norm_first
        self.last_self_weights = None

    def _sa(self, x, mask):
        out, weights = self.self_attn(x, x, x, mask)
        self.last_self_weights = weights.detach()
        return out

    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, mask))
        return self.norm2(x + self.ff(x))


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer`, with a final LayerNorm when ``norm_first`` (pre-LN).

    forward(x (B, S, D) embedded source, mask=None) -> memory (B, S, D)
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, num_layers: int, norm_first: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, num_heads, d_ff, norm_first) for _ in range(num_layers))
        # Pre-LN layers add to an un-normalised residual stream; the final norm normalises it.
        self.norm = nn.LayerNorm(d_model) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm is not None else x


# ----------------------------------------------------------------- lesson 07: the decoder
class DecoderLayer(nn.Module):
    """Masked self-attention over the target, cross-attention to the encoder output, feed-forward.

    Layers: ``self_attn`` and ``cross_attn`` (each ``MultiHeadAttention(d_model, num_heads)``),
    ``ff`` (``FeedForward(d_model, d_ff)``), ``norm1``, ``norm2``, ``norm3`` (``nn.LayerNorm(d_model)``,
    one each, in the sublayers' order), and ``self.norm_first``.

    forward(x (B, T, D), memory (B, S, D), tgt_mask=None e.g. (1, T, T) causal,
            memory_mask=None e.g. (B, 1, S) source padding, True at real tokens) -> (B, T, D).
    In cross-attention the queries come from the decoder, the keys and values from ``memory``.
    Attend through ``self._sa`` and ``self._ca``: they keep the last weights, detached,
    ``last_self_weights`` (B, h, T, T) and ``last_cross_weights`` (B, h, T, S), for heatmaps. In a
    training step (train mode, gradients on) they keep None and attend with PyTorch's fused kernel
    (:func:`~utils.attention.fused_attention`: the same function, faster).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, norm_first: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.norm_first = norm_first
        self.last_self_weights = self.last_cross_weights = None

    def _sa(self, x, mask):
        if self.training and torch.is_grad_enabled():  # a training step: nobody reads the weights
            self.last_self_weights = None
            return fused_attention(self.self_attn, x, x, x, mask)  # the same attention, fused: faster
        out, weights = self.self_attn(x, x, x, mask)
        self.last_self_weights = weights.detach()
        return out

    def _ca(self, x, memory, mask):
        if self.training and torch.is_grad_enabled():
            self.last_cross_weights = None
            return fused_attention(self.cross_attn, x, memory, memory, mask)
        out, weights = self.cross_attn(x, memory, memory, mask)
        self.last_cross_weights = weights.detach()
        return out

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask)
            x = x + self._ca(self.norm2(x), memory, memory_mask)  # memory was normalised by the encoder's final norm
            return x + self.ff(self.norm3(x))
        x = self.norm1(x + self._sa(x, tgt_mask))
        x = self.norm2(x + self._ca(x, memory, memory_mask))
        return self.norm3(x + self.ff(x))


class Decoder(nn.Module):
    """A stack of :class:`DecoderLayer`, with a final LayerNorm when ``norm_first`` (pre-LN).

    forward(x (B, T, D) embedded target, memory (B, S, D), tgt_mask=None, memory_mask=None) -> (B, T, D)
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, num_layers: int, norm_first: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, num_heads, d_ff, norm_first) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else None

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return self.norm(x) if self.norm is not None else x


class Transformer(nn.Module):
    """The encoder-decoder Transformer, with the seq2seq contract of :mod:`utils.rnn`:

    * ``forward(src (B, S), src_lengths (B,), tgt (B, T)) -> logits (B, T, V)`` (teacher forcing);
    * ``generate(src, src_lengths, max_len) -> ids (B, L)``, greedy, ``EOS`` kept, ``PAD`` after it.

    Source and target share one vocabulary and one token embedding, scaled by sqrt(d_model) as in
    the paper. ``positional`` is ``"sinusoidal"`` (fixed), ``"learned"`` (an ``nn.Embedding`` of
    positions) or ``None`` (no positions: attention alone cannot tell the order). Sequences are at
    most ``max_len`` tokens long.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, num_heads: int = 4, num_layers: int = 2,
                 d_ff: int = 128, max_len: int = 64, norm_first: bool = True, positional: str | None = "sinusoidal"):
        super().__init__()
        if positional not in ("sinusoidal", "learned", None):
            raise ValueError(f"positional must be 'sinusoidal', 'learned' or None, not {positional!r}")
        self.d_model, self.max_len, self.positional = d_model, max_len, positional
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        # Initialised with std 1/sqrt(D) (as in the authors' tensor2tensor code), so that after the
        # sqrt(D) scale in embed() tokens have std 1, the size of the positional encodings, instead of
        # drowning them (nn.Embedding's default std 1 would give std sqrt(D)).
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()  # padding_idx's row starts at 0, as nn.Embedding makes it
        if positional == "learned":
            self.pos_embedding = nn.Embedding(max_len, d_model)
        elif positional == "sinusoidal":
            # A buffer moves with .to(device) but is not trained; not persistent: it is a formula, not state.
            self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.encoder = Encoder(d_model, num_heads, d_ff, num_layers, norm_first)
        self.decoder = Decoder(d_model, num_heads, d_ff, num_layers, norm_first)
        self.out = nn.Linear(d_model, vocab_size)

    def embed(self, ids):
        """ids (B, L) -> token embedding * sqrt(d_model) + positional encoding, (B, L, D)."""
        L = ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"a sequence of {L} tokens is longer than this model's max_len={self.max_len}")
        x = self.embedding(ids) * math.sqrt(self.d_model)  # (B, L, D)
        if self.positional == "learned":
            x = x + self.pos_embedding(torch.arange(L, device=ids.device))  # (L, D) broadcast over the batch
        elif self.positional == "sinusoidal":
            x = x + self.pe[:L]
        return x

    def encode(self, src, src_lengths):
        """src (B, S), src_lengths (B,) -> (memory (B, S, D), src_mask (B, S) bool, True at real tokens)."""
        src_mask = padding_mask(src_lengths.to(src.device), src.shape[1])  # (B, S)
        memory = self.encoder(self.embed(src), src_mask[:, None, :])  # mask (B, 1, S): no query sees the padding
        return memory, src_mask

    def decode(self, tgt_in, memory, src_mask):
        """tgt_in (B, T) decoder input (starts with SOS), memory (B, S, D), src_mask (B, S) -> logits (B, T, V).

        Position t sees tgt_in[:, :t+1] only (causal mask). No target padding mask is needed: the
        padding comes after the real tokens, so the causal mask already hides it from them.
        """
        T = tgt_in.shape[1]
        tgt_mask = causal_mask(T, device=tgt_in.device)[None]  # (1, T, T): the same for every sequence
        x = self.decoder(self.embed(tgt_in), memory, tgt_mask, src_mask[:, None, :])  # (B, T, D)
        return self.out(x)  # (B, T, V)

    def forward(self, src, src_lengths, tgt):
        memory, src_mask = self.encode(src, src_lengths)
        return self.decode(shift_right(tgt), memory, src_mask)  # (B, T, V)

    @torch.no_grad()
    def generate(self, src, src_lengths, max_len: int, return_attention: bool = False):
        """Greedy decoding: src (B, S), src_lengths (B,) -> ids (B, L), L <= max_len; each row ends with
        ``EOS`` (unless it ran out of steps) and has ``PAD`` after it.

        With ``return_attention``, also the last decoder layer's cross-attention weights averaged over
        the heads, (B, L, S), as ``AttentionSeq2Seq.generate`` returns its alphas.
        """
        memory, src_mask = self.encode(src, src_lengths)  # the source is encoded once
        ys = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)  # (B, 1)
        finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        out = []
        for _ in range(max_len):
            # No cache: the decoder reruns over the whole prefix, and only the newest position is new.
            token = self.decode(ys, memory, src_mask)[:, -1].argmax(dim=-1)  # (B,)
            out.append(torch.where(finished, PAD, token))  # nothing after EOS
            finished |= token == EOS
            if finished.all():
                break
            ys = torch.cat([ys, token[:, None]], dim=1)  # (B, t+2)
        ids = torch.stack(out, dim=1)  # (B, L)
        if return_attention:  # the last decode call saw all L positions
            return ids, self.decoder.layers[-1].last_cross_weights.mean(dim=1)  # (B, L, S)
        return ids


# ----------------------------------------------------------------- comparing with PyTorch's modules
# PyTorch's layers are equal to ours given the same weights when built with batch_first=True,
# dropout=0.0, activation="relu" and the same norm_first. Their boolean masks are True where
# attention is NOT allowed: pass src_key_padding_mask=~pad, tgt_mask=~causal_mask(T),
# memory_key_padding_mask=~pad. (Compare with gradients enabled or in train mode: in eval mode under
# no_grad, nn.TransformerEncoder takes a "fast path" through nested tensors that returns zeros at the
# padded positions, where ours returns whatever those positions computed.)
@torch.no_grad()
def _copy_ff_norms(ours, theirs, num_norms: int):
    if theirs.norm_first != ours.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, theirs {theirs.norm_first}")
    theirs.linear1.load_state_dict(ours.ff.linear1.state_dict())
    theirs.linear2.load_state_dict(ours.ff.linear2.state_dict())
    for i in range(1, num_norms + 1):
        getattr(theirs, f"norm{i}").load_state_dict(getattr(ours, f"norm{i}").state_dict())


def copy_into_torch_encoder_layer(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer):
    """Copy our weights into ``nn.TransformerEncoderLayer``; returns ``theirs``."""
    copy_into_torch_mha(ours.self_attn, theirs.self_attn)
    _copy_ff_norms(ours, theirs, 2)
    return theirs


def copy_into_torch_decoder_layer(ours: DecoderLayer, theirs: nn.TransformerDecoderLayer):
    """Copy our weights into ``nn.TransformerDecoderLayer`` (its cross-attention is ``multihead_attn``); returns ``theirs``."""
    copy_into_torch_mha(ours.self_attn, theirs.self_attn)
    copy_into_torch_mha(ours.cross_attn, theirs.multihead_attn)
    _copy_ff_norms(ours, theirs, 3)
    return theirs


def _copy_stack(ours, theirs, copy_layer):
    if len(ours.layers) != len(theirs.layers):
        raise ValueError(f"{len(ours.layers)} layers in ours, {len(theirs.layers)} in theirs")
    for our_layer, their_layer in zip(ours.layers, theirs.layers):
        copy_layer(our_layer, their_layer)
    if (ours.norm is None) != (theirs.norm is None):
        raise ValueError("one stack has a final LayerNorm and the other has not")
    if ours.norm is not None:
        theirs.norm.load_state_dict(ours.norm.state_dict())
    return theirs


def copy_into_torch_encoder(ours: Encoder, theirs: nn.TransformerEncoder):
    """Copy our encoder stack into ``nn.TransformerEncoder`` (``norm=`` LayerNorm iff ours is pre-LN); returns ``theirs``."""
    return _copy_stack(ours, theirs, copy_into_torch_encoder_layer)


def copy_into_torch_decoder(ours: Decoder, theirs: nn.TransformerDecoder):
    """Copy our decoder stack into ``nn.TransformerDecoder`` (``norm=`` LayerNorm iff ours is pre-LN); returns ``theirs``."""
    return _copy_stack(ours, theirs, copy_into_torch_decoder_layer)


def copy_into_torch_transformer(ours: Transformer, theirs: nn.Transformer):
    """Copy our encoder and decoder stacks into ``nn.Transformer``; returns ``theirs``.

    ``nn.Transformer`` has no embeddings or output layer (feed it ``ours.embed(...)`` and apply
    ``ours.out`` to its output), and it *always* ends each stack with a LayerNorm, so it matches
    our pre-LN model (norm_first=True) only.
    """
    copy_into_torch_encoder(ours.encoder, theirs.encoder)
    copy_into_torch_decoder(ours.decoder, theirs.decoder)
    return theirs

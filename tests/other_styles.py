"""Right answers to the exercises of lessons 08, 09 and 10, written in other styles than the course's references
(other names, a registered buffer, 0-d tensors, tiles of queries and keys, inverse-CDF sampling, ...).

``filled(lesson)`` gives the lesson's solution notebook with each exercise cell replaced by its answer here:
tests/test_quick_claims.py runs it in the quick setting (every check must pass, "Using your ..." for every
exercise, and the lesson must run to the end with the learner's code), and the same notebook, run in full,
shows that every claim holds with these answers too.
"""
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent

ANSWERS = {
    "08_decoder_only_gpt": {
        "class GPT(nn.Module):": '''
class GPT(nn.Module):
    """nanoGPT's habits: the tie written the other way round, the causal mask a registered buffer."""

    def __init__(self, vocab_size, d_model, num_heads, num_layers, d_ff, block_size, causal=True):
        super().__init__()
        self.block_size = block_size
        self.causal = causal
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.tok_emb.weight = self.head.weight
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList([Block(d_model, num_heads, d_ff) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool))[None, None])
        self.apply(init_weights)

    def forward(self, idx):
        B, T = idx.shape
        h = self.tok_emb(idx) + self.pos_emb.weight[:T]
        for blk in self.blocks:
            h = blk(h, self.mask[:, :, :T, :T] if self.causal else None)
        return self.head(self.norm(h))
''',
        "def next_token_loss(logits, tokens):": '''
def next_token_loss(logits, tokens):
    """Classes in dimension 1, as F.cross_entropy also accepts them."""
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:])
''',
        "def sample_next(logits,": '''
def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """Top-k on the probabilities, the temperature as a power, and the draw by inverting the cumulative sum."""
    if temperature == 0:
        return logits.argmax(-1)
    p = torch.softmax(logits, dim=-1)
    if top_k is not None:
        kth = torch.topk(p, min(top_k, p.shape[-1]), dim=-1).values[:, -1:]
        p = torch.where(p >= kth, p, torch.zeros(()))
    p = p ** (1.0 / torch.tensor(temperature))
    cdf = torch.cumsum(p / p.sum(-1, keepdim=True), dim=-1)
    u = torch.rand(p.shape[0], 1, generator=generator)
    return torch.searchsorted(cdf, u).squeeze(-1).clamp(max=p.shape[-1] - 1)
''',
        "def prefix_matching_score(weights, tokens):": '''
def prefix_matching_score(weights, tokens):
    """Plain loops over the queries and their earlier occurrences."""
    per_query = []
    for t in range(len(tokens)):
        after = [j + 1 for j in range(t) if tokens[j] == tokens[t]]
        if after:
            per_query.append(weights[:, t, after].sum(-1))
    return torch.stack(per_query, dim=-1).mean(-1)
''',
    },
    "09_modern_attention": {
        "def online_softmax_attention(q, k, v,": '''
def online_softmax_attention(q, k, v, block_size, causal=False):
    """Tiles of queries outside (FlashAttention-2), blocks of keys inside; the scale and -inf as 0-d tensors."""
    scale = 1 / torch.sqrt(torch.tensor(q.shape[-1], dtype=q.dtype))
    neg_inf = torch.tensor(float("-inf"))
    outs = []
    for q0 in range(0, q.shape[-2], 64):
        qt = q[..., q0:q0 + 64, :]
        rows = torch.arange(q0, q0 + qt.shape[-2])[:, None]
        m = torch.full((*qt.shape[:-1], 1), float("-inf"))
        l = torch.zeros((*qt.shape[:-1], 1))
        acc = torch.zeros((*qt.shape[:-1], v.shape[-1]))
        for k0 in range(0, k.shape[-2], block_size):
            s = torch.einsum("...qd,...kd->...qk", qt, k[..., k0:k0 + block_size, :]) * scale
            if causal:
                s = torch.where(torch.arange(k0, k0 + s.shape[-1]) > rows, neg_inf, s)
            m_new = torch.maximum(m, s.max(dim=-1, keepdim=True).values)
            correction = torch.exp(m - m_new).nan_to_num(0.0)
            p = torch.exp(s - m_new).nan_to_num(0.0)
            l = correction * l + p.sum(-1, keepdim=True)
            acc = correction * acc + p @ v[..., k0:k0 + block_size, :]
            m = m_new
        outs.append(acc / l)
    return torch.cat(outs, dim=-2)
''',
        "def apply_rope(x, positions,": '''
def apply_rope(x, positions, base=10000.0):
    """Hugging Face's form: x * cos + rotate_half(x) * sin, with the angles of each pair written twice."""
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    emb = torch.cat([positions.float()[:, None] * inv_freq] * 2, dim=-1)  # (T, d)
    rotated = torch.cat([-x[..., d // 2:], x[..., :d // 2]], dim=-1)
    return x * emb.cos() + rotated * emb.sin()
''',
        "def grouped_query_attention(q, k, v,": '''
def grouped_query_attention(q, k, v, mask=None):
    """Llama's repeat_kv: expand a new axis and fold it into the heads."""
    B, g, L, d = k.shape
    r = q.shape[1] // g
    k = k[:, :, None].expand(B, g, r, L, d).reshape(B, g * r, L, d)
    v = v[:, :, None].expand(B, g, r, L, v.shape[-1]).reshape(B, g * r, L, v.shape[-1])
    return scaled_dot_product_attention(q, k, v, mask)
''',
        "def sliding_window_mask(n: int, window: int,": '''
def sliding_window_mask(n, window, device=None):
    """The causal lower triangle, minus the triangle that lies window or more positions back."""
    ones = torch.ones(n, n, dtype=torch.bool, device=device)
    return ones.tril() & ~ones.tril(-window)
''',
    },
    "10_modern_gpt": {
        "def rms_norm(x,": '''
def rms_norm(x, weight, eps=1e-6):
    """The root mean square as a norm, divided by sqrt(D): the same number."""
    D = x.shape[-1]
    rms = torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / D + eps)
    return weight * (x / rms)
''',
        "def rolling_cache(cache,": '''
def rolling_cache(cache, new, window):
    """narrow instead of a slice, the None case written out."""
    if cache is not None:
        new = torch.cat((cache, new), dim=-2)
    keep = min(window, new.shape[2])
    return new.narrow(2, new.shape[2] - keep, keep)
''',
        "class ModernBlock(nn.Module):": '''
class ModernBlock(nn.Module):
    """Other local names, the residuals written with torch.add, a (k, v) list."""

    def __init__(self, config):
        super().__init__()
        self.norm1, self.norm2 = make_norm(config), make_norm(config)
        self.self_attn = CausalSelfAttention(config)
        self.ff = make_feed_forward(config)

    def forward(self, x, positions, cache=None):
        attended, (keys, values) = self.self_attn(self.norm1(x), positions, cache)
        h = torch.add(x, attended)
        return torch.add(h, self.ff(self.norm2(h))), [keys, values]
''',
    },
}


def filled(lesson: str):
    """The solution notebook of ``lesson`` with every exercise cell replaced by its answer above, outputs cleared."""
    nb = nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4)
    replaced = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        for start, answer in ANSWERS[lesson].items():
            # the definition's name, whatever the formatter did to its arguments' lines
            if "### BEGIN SOLUTION" in cell.source and start.split("(")[0] + "(" in cell.source:
                cell.source = answer.strip() + "\n"
                replaced.add(start)
    missing = set(ANSWERS[lesson]) - replaced
    assert not missing, f"no exercise cell starts with {missing} in {lesson}"
    return nb

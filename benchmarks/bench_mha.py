"""Multi-head attention: forward + backward, batch 8, d_model 128, 4 heads (ms: median (min-max) of 10, one thread)

Lesson 05's module (utils.attention.MultiHeadAttention, which always returns every head's weights)
against torch.nn.MultiheadAttention with and without its weights returned, and against the same
projections around F.scaled_dot_product_attention (PyTorch's fused attention). Run with
``python -m benchmarks.run --no-notebooks`` (or ``python -m benchmarks.bench_mha``).

Why the fused path is faster and lighter: with ``need_weights=False`` nn.MultiheadAttention calls
F.scaled_dot_product_attention, which computes softmax(Q K^T / sqrt(d_k)) V in one routine, in
blocks, without storing the (B, h, L, L) weights for the backward pass; returning the weights
forces them to be built and kept, as the course's module does.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.timing import fmt_spread, load, spread, times

B, D, H = 8, 128, 4
LENGTHS = (64, 128, 256, 512)


def measure(L: int, repeat: int = 10) -> dict:
    """Seconds per forward + backward of each implementation on self-attention over (B, L, D):
    ``{name: [seconds of each repeat]}``."""
    from utils.attention import MultiHeadAttention, copy_into_torch_mha

    torch.manual_seed(0)
    ours = MultiHeadAttention(D, H)
    theirs = copy_into_torch_mha(ours, nn.MultiheadAttention(D, H, batch_first=True))
    x = torch.randn(B, L, D, requires_grad=True)

    def fused():  # our projections around PyTorch's fused attention
        q, k, v = (p(x).view(B, L, H, D // H).transpose(1, 2) for p in (ours.q_proj, ours.k_proj, ours.v_proj))
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, h, L, d_k); the weights are never returned
        return ours.out_proj(heads.transpose(1, 2).reshape(B, L, D))

    fns = {
        "course": lambda: ours(x, x, x)[0].sum().backward(),
        "torch, weights": lambda: theirs(x, x, x, need_weights=True, average_attn_weights=False)[0].sum().backward(),
        "torch, no weights": lambda: theirs(x, x, x, need_weights=False)[0].sum().backward(),
        "fused": lambda: fused().sum().backward(),
    }
    return times(fns, repeat)


def table() -> list[str]:
    rows = ["| sequence length | course MultiHeadAttention | nn.MultiheadAttention, weights | "
            "nn.MultiheadAttention, no weights | projections + F.scaled_dot_product_attention | "
            "course / nn (both with weights, medians) | weights stored (MiB) | load |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print(*rows, sep="\n", flush=True)
    for L in LENGTHS:
        t = measure(L)
        weights_mib = B * H * L * L * 4 / 2**20  # float32 (B, h, L, L), kept for the backward pass
        ratio = spread(t["course"])[1] / spread(t["torch, weights"])[1]
        rows.append(f"| {L} | {fmt_spread(t['course'])} | {fmt_spread(t['torch, weights'])} | "
                    f"{fmt_spread(t['torch, no weights'])} | {fmt_spread(t['fused'])} | "
                    f"{ratio:.2f} | {weights_mib:.1f} | {load():.1f} |")
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(__doc__.splitlines()[0])
    table()

# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,cellView,jupyter,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 05 · Multi-head attention
#
# **Why this lesson:** one attention head gives each query *one* weighted average of the values.
# When a token needs two different things at once (its left neighbour *and* its right one, a
# subject *and* a verb), one average must blend them. Multi-head attention runs several smaller
# attentions side by side, each in its own subspace, for the same price as one. Here you build
# it, prove it equals PyTorch's `nn.MultiheadAttention`, and *measure* that its heads learn
# different things.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/05_multi_head_attention.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/05_multi_head_attention.ipynb)
#
# **You will be able to**
# 1. split a $d_{model}$-wide representation into $h$ heads of width $d_k = d_{model}/h$ and merge them back;
# 2. write multi-head attention, with masks, and show it equals `torch.nn.MultiheadAttention` given the same weights;
# 3. count what $h$ heads cost against one head of the full width (the same FLOPs, apart from the
#    softmax, but $h$ times the attention weights), and measure it;
# 4. show, with accuracies and ablations, that trained heads attend to different things, and spot
#    the classic head-split bug that still trains.
#
# **Exercises:** 05.1 split and merge the heads (★☆☆) · 05.2 multi-head attention (★★☆).
# Stuck? `utils.hint("05.1")`, `utils.hint("05.1", 2)`, `utils.solution("05.1")`. The lesson runs
# to the end even before you finish: later cells use the course's reference code until yours
# passes its check.

# %% cellView="form" jupyter={"source_hidden": true}
# @title Setup: the course's code and a check of your library versions (click to show)
# Runs unchanged locally, on Binder and on Colab. Folded by its cell metadata (tools/make_exercises.py).
import importlib.util
import os
import runpy
import subprocess
import sys

COURSE_REPO = "attention-course/attention-transformers"  # where the course is published (a fork: python -m tools.retarget OWNER/NAME)
COURSE_REF = "main"  # the branch or tag this notebook belongs to


def fetch_course(repo=COURSE_REPO, ref=COURSE_REF):
    """On Colab: clone the course's code (not PyTorch: Colab's own is kept) and return its folder."""
    folder = repo.split("/")[-1]
    if os.path.isfile(os.path.join(folder, "utils", "__init__.py")):
        return folder  # fetched by an earlier run of this cell
    if os.path.exists(folder):
        raise RuntimeError(f"./{folder} exists but holds no course code: delete it (!rm -rf {folder}) and run this cell again.")
    url = f"https://github.com/{repo}"
    clone = ["git", "clone", "--quiet", "--depth", "1", url, folder]
    done = subprocess.run([*clone[:-2], "--branch", ref, *clone[-2:]], capture_output=True, text=True)
    if done.returncode and "not found in upstream" in done.stderr:  # no such branch or tag (any more)
        print(f"⚠️ {repo} has no {ref!r}: using its default branch, which may not match this notebook.")
        done = subprocess.run(clone, capture_output=True, text=True)
    if done.returncode or not os.path.isfile(os.path.join(folder, "utils", "__init__.py")):
        raise RuntimeError(
            f"Could not fetch the course's code from {url}: {done.stderr.strip()[-300:] or 'the clone has no utils/'}\n"
            "* No network? Colab needs the internet to fetch it: check the connection, then run this cell again.\n"
            f"* A fork? This notebook fetches {repo}: set COURSE_REPO above to OWNER/NAME (in the fork, "
            "`python -m tools.retarget OWNER/NAME` does it in every lesson).\n"
            "* A private repository? Colab cannot clone it without your credentials: make it public, or upload "
            f"the course's folder as ./{folder} (Files pane) and run this cell again.")
    return folder


if "google.colab" in sys.modules:  # Colab: fetch the course's code; install nothing
    sys.path.insert(0, fetch_course())
else:
    sys.path.insert(0, os.path.abspath(".."))  # the repository root, for `import utils`
course = importlib.util.find_spec("utils")  # where `import utils` will look (finding it imports nothing)
if course:  # before anything can fail: say if a library is outside the versions the course supports
    runpy.run_path(os.path.join(os.path.dirname(course.origin), "versions.py"))["check_versions"]()

import utils

utils.setup(seed=0)

# %%
import contextlib
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.attention import (
    causal_mask,
    copy_into_torch_mha,
    padding_mask,
    scaled_dot_product_attention,
)
from utils.data import Batch
from utils.plots import PALETTE, plot_attention, plot_losses
from utils.training import count_parameters, train

# %% [markdown]
# ## 1. From one head to $h$ heads
#
# Lesson 03's attention, for queries $Q$, keys $K$ and values $V$, is
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V .$$
#
# Each row of the softmax sums to 1, so each query receives **one** convex combination of the
# values. Multi-head attention ("Attention Is All You Need", section 3.2.2) projects the queries,
# keys and values $h$ times, with different learned matrices, into $h$ lower-dimensional
# subspaces, attends in each, concatenates the results and projects them back:
#
# $$\begin{aligned}
# \mathrm{MultiHead}(Q, K, V) &= \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\, W^O,\\
# \mathrm{head}_i &= \mathrm{Attention}(Q W_i^Q,\ K W_i^K,\ V W_i^V),
# \end{aligned}$$
#
# with $W_i^Q, W_i^K, W_i^V \in \mathbb{R}^{d_{model} \times d_k}$, $W^O \in \mathbb{R}^{h d_k \times d_{model}}$
# and $d_k = d_{model} / h$. Each head has its own softmax, so each can look somewhere else: the
# heads' subspaces can reflect different aspects of alignment (section 5 trains a model whose two
# heads learn two different ones).
#
# In code nobody runs $h$ separate small matrix products. The $h$ matrices $W_i^Q$ side by side
# form one $d_{model} \times d_{model}$ matrix $[W_1^Q \cdots W_h^Q]$: **one** `nn.Linear` computes
# every head's queries at once, and the head $i$ owns the features $i\,d_k, \dots, (i+1)\,d_k - 1$
# of its output. Two reshapes then separate and re-join the heads:
#
# | step | shape | |
# |---|---|---|
# | `q_proj(query)` | $(B, L, d_{model})$ | all heads' queries, side by side |
# | `.view(B, L, h, d_k)` | $(B, L, h, d_k)$ | cut the feature axis into $h$ blocks |
# | `.transpose(1, 2)` | $(B, h, L, d_k)$ | heads in front: each head is an $(L, d_k)$ matrix |
# | attention, per head | $(B, h, L, d_k)$ | `@` broadcasts over $B$ and $h$ |
# | `.transpose(1, 2).reshape(B, L, h d_k)` | $(B, L, d_{model})$ | $\mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)$ |
#
# ### Exercise 05.1 · Split and merge the heads (★☆☆, about 10 min)
#
# Write `split_heads` and its exact inverse `merge_heads`. The transpose matters: `view(B, h, L, d_k)`
# has the right shape and the wrong numbers (section 6 trains a model with that bug).

# %%
def split_heads(x, num_heads: int):
    """(B, L, D) -> (B, h, L, D/h): head i gets the features i*D/h .. (i+1)*D/h - 1 of every position."""
    ### BEGIN SOLUTION
    B, L, D = x.shape
    if D % num_heads:
        raise ValueError(
            f"the model width {D} is not divisible by num_heads={num_heads}"
        )
    # view splits the last axis into (h, d); the transpose then puts heads before
    # positions, so that each head is a separate (L, d) matrix. view(B, h, L, d) instead
    # would mix positions and heads.
    return x.view(B, L, num_heads, D // num_heads).transpose(1, 2)  # (B, h, L, d)
    ### END SOLUTION


def merge_heads(x):
    """(B, h, L, d) -> (B, L, h*d), the exact inverse of :func:`split_heads` (concatenates the heads)."""
    ### BEGIN SOLUTION
    B, h, L, d = x.shape
    # reshape copies: after the transpose x is not contiguous
    return x.transpose(1, 2).reshape(B, L, h * d)
    ### END SOLUTION


# %%
utils.check("05.1", (split_heads, merge_heads))

# %% [markdown]
# Which numbers land in which head? One sequence of 3 positions, 4 features each, numbered
# `100 * position + feature`, split into 2 heads of 2 features:

# %%
split_heads, merge_heads = utils.use("05.1", (split_heads, merge_heads))

# (1, 3, 4)
x = (100 * torch.arange(3)[:, None] + torch.arange(4)[None, :]).float()[None]
heads = split_heads(x, 2)  # (1, 2, 3, 2)
for i in range(2):
    print(
        f"head {i}: positions as rows, its 2 features as columns\n{heads[0, i].long()}"
    )
wrong = x.view(1, 2, 3, 2)  # the bug: the right shape, without the transpose
print(
    f"view(B, h, L, d) without the transpose, 'head 0':\n{wrong[0, 0].long()}  <- rows are halves of positions 0 and 1"
)
utils.claim(
    torch.equal(merge_heads(heads), x),
    "merge_heads(split_heads(x)) gives x back exactly",
    needs_training=False,
)

# %% [markdown]
# ## 2. The multi-head attention module
#
# ### Exercise 05.2 · Multi-head attention (★★☆, about 20 min)
#
# Write the module of the equation above, with the names of `nn.MultiheadAttention`'s parts:
# `q_proj`, `k_proj`, `v_proj` hold $[W_1^Q \cdots W_h^Q]$, $[W_1^K \cdots W_h^K]$, $[W_1^V \cdots W_h^V]$,
# `out_proj` holds $W^O$ (each an `nn.Linear(d_model, d_model)`, with a bias, as in PyTorch). Use your
# `split_heads` and `merge_heads`, and lesson 03's `scaled_dot_product_attention`: it works on any
# number of leading axes, so it attends in every head at once.
#
# **Masks.** The same boolean masks as in lesson 03 (True = may attend), applied to every head:
# a key padding mask $(B, L_k)$, one mask for the whole batch such as a causal mask $(L_q, L_k)$,
# or a full mask $(B, L_q, L_k)$. The weights now have a head axis, $(B, h, L_q, L_k)$, so a mask
# needs one too before it meets them: `mask[:, None, None, :]` for padding and `mask[:, None]` for a
# full mask. Without it, broadcasting lines the mask's *batch* axis up with the *head* axis: an
# error when $B \ne h$, and silently wrong numbers when $B = h$. Write that in the small helper
# `_head_mask`. One case cannot be decided from the shape: a 2-D mask when $B = L_q$ could be
# either a padding mask or a shared one. The helper refuses to guess and raises a `ValueError`
# that says what to pass instead (see the cell after the check). The check tests the class, and
# the helper through it; `utils.hint("05.2", 3)` describes the helper, and `utils.solution("05.2")`
# shows the class (the helper's reference is `_head_mask` in `utils/attention.py`).

# %%
def _head_mask(mask, B: int, Lq: int, Lk: int):
    """Give a mask of :class:`MultiHeadAttention` a head axis, so that it broadcasts against (B, h, Lq, Lk)."""
    ### BEGIN SOLUTION
    if mask is None or mask.dim() == 4:
        return mask
    if mask.dim() == 3:
        return mask[:, None]  # (B, 1, Lq, Lk): the same for every head
    if mask.dim() != 2:
        raise ValueError(
            f"mask must have 2, 3 or 4 dimensions, not shape {tuple(mask.shape)}"
        )
    is_padding, is_shared = mask.shape == (B, Lk), mask.shape == (Lq, Lk)
    if is_padding and is_shared and B > 1:
        raise ValueError(
            f"a 2-D mask of shape {tuple(mask.shape)} is ambiguous when batch size = query length = {B}: "
            "pass mask[:, None, :] for a (B, Lk) key padding mask, or mask[None] for an (Lq, Lk) mask"
        )
    if is_padding:
        return mask[:, None, None, :]  # (B, 1, 1, Lk): for every head and every query
    if is_shared:
        return mask  # (Lq, Lk) already broadcasts against (B, h, Lq, Lk)
    raise ValueError(
        f"a 2-D mask must be (B, Lk) = {(B, Lk)} or (Lq, Lk) = {(Lq, Lk)}, not {tuple(mask.shape)}"
    )
    ### END SOLUTION


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    Each head works in a d_k = d_model / h dimensional subspace, so all heads together cost about
    as much as one full-width head. As in ``nn.MultiheadAttention``, the projections have biases.

    Attributes: ``self.num_heads`` (later cells read it) and four ``nn.Linear(d_model, d_model)``
    named ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``.

    forward(query (B, Lq, D), key (B, Lk, D), value (B, Lk, D), mask=None)
        -> (output (B, Lq, D), weights (B, h, Lq, Lk))

    The bool mask (True = may attend) is the same for every head and may be
      * (B, Lk): a key padding mask, e.g. from :func:`padding_mask`;
      * (Lq, Lk): one mask for the whole batch, e.g. :func:`causal_mask`;
      * (B, Lq, Lk) (or (1, Lq, Lk), (B, 1, Lk)): anything broadcasting against (B, Lq, Lk);
      * (B, h, Lq, Lk) or anything else 4-D that broadcasts against the weights.
    A 2-D mask when B == Lq > 1 could be either of the first two: that raises a ValueError asking for
    ``mask[:, None, :]`` (padding) or ``mask[None]`` (shared) instead of guessing.
    A query whose keys are all masked gets zero weights (its output is ``out_proj``'s bias), never
    NaN: lesson 03's ``scaled_dot_product_attention`` does that.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        ### BEGIN SOLUTION
        if d_model % num_heads:
            raise ValueError(
                f"d_model={d_model} is not divisible by num_heads={num_heads}"
            )
        self.num_heads = num_heads
        # The h matrices W_i^Q (each D x D/h) side by side form one D x D matrix: one
        # Linear computes all heads' queries at once, and split_heads separates them.
        # Likewise for W^K and W^V.
        self.q_proj = nn.Linear(d_model, d_model)  # [W_1^Q ... W_h^Q]
        self.k_proj = nn.Linear(d_model, d_model)  # [W_1^K ... W_h^K]
        self.v_proj = nn.Linear(d_model, d_model)  # [W_1^V ... W_h^V]
        self.out_proj = nn.Linear(d_model, d_model)  # W^O
        ### END SOLUTION

    def forward(self, query, key, value, mask=None):
        ### BEGIN SOLUTION
        # Q W_i^Q for every head i: (B, h, Lq, d_k)
        q = split_heads(self.q_proj(query), self.num_heads)
        k = split_heads(self.k_proj(key), self.num_heads)  # (B, h, Lk, d_k)
        v = split_heads(self.v_proj(value), self.num_heads)  # (B, h, Lk, d_k)
        mask = _head_mask(mask, query.shape[0], query.shape[1], key.shape[1])
        # (B, h, Lq, d_k), (B, h, Lq, Lk)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        # Concat(head_1..head_h) W^O: (B, Lq, D)
        return self.out_proj(merge_heads(heads)), weights
        ### END SOLUTION


# %%
utils.check("05.2", MultiHeadAttention)

# %% [markdown]
# Bad input gets a clear answer. A batch of 4 queries of length 4 with a 2-D mask: is it a
# padding mask (one row per sequence) or a causal mask (one row per query)? The module says so
# rather than guess:

# %%
MultiHeadAttention = utils.use("05.2", MultiHeadAttention)

torch.manual_seed(0)
mha = MultiHeadAttention(d_model=8, num_heads=2)
x4 = torch.randn(4, 4, 8)  # B = Lq = 4
try:
    mha(x4, x4, x4, causal_mask(4))
except ValueError as err:
    print("ValueError:", err)
# (1, Lq, Lk): shared by the whole batch, unambiguous
out, weights = mha(x4, x4, x4, causal_mask(4)[None])
print("with mask[None]: output", tuple(out.shape), "weights", tuple(weights.shape))

# %% [markdown]
# ## 3. The same as `torch.nn.MultiheadAttention`
#
# PyTorch's module computes exactly this, with its parameters stored differently: the three input
# projections are stacked into one `in_proj_weight` $(3D, D) = [W^Q; W^K; W^V]$ and one `in_proj_bias`,
# and `out_proj` is $W^O$. `copy_into_torch_mha` copies ours across. Its masks are the one thing to
# translate: **PyTorch has two opposite boolean-mask conventions.** `F.scaled_dot_product_attention`
# (and this course) use True = *may attend*; `nn.MultiheadAttention` and `nn.Transformer*` use
# True = *masked out*. The conversion is one `~`, and for a full mask PyTorch wants one mask per
# head, $(B\,h, L_q, L_k)$, batch-major:
#
# ```python
# key_padding_mask = ~pad                                 # (B, Lk)
# attn_mask        = ~causal                              # (Lq, Lk)
# attn_mask        = (~full).repeat_interleave(h, dim=0)  # (B, Lq, Lk) -> (B*h, Lq, Lk)
# ```
#
# Below, cross-attention ($L_q = 5$ queries, $L_k = 7$ keys), with each mask form.

# %%
B, Lq, Lk, D, h = 3, 5, 7, 16, 4
torch.manual_seed(1)
ours = MultiHeadAttention(D, h)
theirs = copy_into_torch_mha(ours, nn.MultiheadAttention(D, h, batch_first=True))
query, key = torch.randn(B, Lq, D), torch.randn(B, Lk, D)

pad = padding_mask(torch.tensor([7, 4, 2]), Lk)  # (B, Lk), True at real keys
causal = causal_mask(Lk)[-Lq:]  # (Lq, Lk): query i sees keys 0 .. i + 2
full = torch.rand(B, Lq, Lk, generator=torch.Generator().manual_seed(2)) < 0.5
full[..., 0] = True  # no query without a key (see below)
cases = {  # name: (our mask, PyTorch's keyword arguments)
    "no mask": (None, {}),
    "padding (B, Lk)": (pad, {"key_padding_mask": ~pad}),
    "causal (Lq, Lk)": (causal, {"attn_mask": ~causal}),
    "full (B, Lq, Lk)": (full, {"attn_mask": (~full).repeat_interleave(h, dim=0)}),
}
worst = 0.0
for name, (mask, torch_masks) in cases.items():
    out, w = ours(query, key, key, mask)
    out_t, w_t = theirs(
        query, key, key, need_weights=True, average_attn_weights=False, **torch_masks
    )
    d_out, d_w = (out - out_t).abs().max().item(), (w - w_t).abs().max().item()
    worst = max(worst, d_out, d_w)
    print(
        f"{name:<17} output {tuple(out.shape)}, weights {tuple(w.shape)}: max |difference| "
        f"{'< 1e-6' if max(d_out, d_w) < 1e-6 else f'{max(d_out, d_w):.1e}'}"
    )
utils.claim(
    worst < 1e-5,
    "with the same weights, our module and nn.MultiheadAttention give the same output and "
    "per-head weights, with and without masks",
    needs_training=False,
)

# %% [markdown]
# **A query whose keys are all masked.** Lesson 03's function gives it all-zero weights and a zero
# attention output (here the output is then just `out_proj`'s bias). `nn.MultiheadAttention` gives
# NaN there, which then spreads through everything downstream:

# %%
none_allowed = torch.ones(B, Lq, Lk, dtype=torch.bool)
none_allowed[0, 0] = False  # query 0 of sequence 0 may attend to nothing
out, w = ours(query, key, key, none_allowed)
out_t, w_t = theirs(
    query,
    key,
    key,
    attn_mask=(~none_allowed).repeat_interleave(h, dim=0),
    average_attn_weights=False,
)
print(
    f"ours : weights of that query sum to {w[0, :, 0].sum(-1).tolist()}, output finite: {torch.isfinite(out).all().item()}"
)
print(
    f"torch: NaN in its weights: {torch.isnan(w_t[0, :, 0]).any().item()}, NaN in its output: {torch.isnan(out_t).any().item()}"
)
utils.claim(
    torch.isfinite(out).all() and torch.equal(out[0, 0], ours.out_proj.bias),
    "a fully masked query gets zero attention, never NaN, in the course's module",
    needs_training=False,
)

# %% [markdown]
# ## 4. What do $h$ heads cost?
#
# **Parameters.** $W^Q, W^K, W^V, W^O$ are $d_{model} \times d_{model}$ whatever $h$ is: splitting
# the width into heads only decides which features go together, so $4 d_{model}^2 + 4 d_{model}$
# parameters for any $h$.
#
# **Operations** (multiply-adds counted as 2 FLOPs, one sequence of $L$ tokens, self-attention):
#
# | part | FLOPs | depends on $h$? |
# |---|---|---|
# | projections $Q, K, V$ and $W^O$ | $4 \cdot 2 L d_{model}^2$ | no |
# | scores $Q_i K_i^\top$, all heads | $h \cdot 2 L^2 d_k = 2 L^2 d_{model}$ | no |
# | weighted sum of values, all heads | $h \cdot 2 L^2 d_k = 2 L^2 d_{model}$ | no |
# | softmax (max, subtract, exp, sum, divide) | about $5\, h L^2$ | **yes**, $h$ softmaxes of $L^2$ |
#
# So in FLOPs, $h$ heads of width $d_{model}/h$ cost the same as one head of width $d_{model}$, apart
# from the softmax, which is small next to the rest as long as $d_{model} \gg 5$.

# %%
def mha_flops(L: int, d_model: int, h: int) -> dict:
    """FLOPs of multi-head self-attention on one sequence of L tokens (a multiply-add = 2)."""
    d_k = d_model // h
    return {
        "projections": 4 * 2 * L * d_model**2,
        "scores": h * 2 * L * L * d_k,
        "weighted sum": h * 2 * L * L * d_k,
        "softmax": 5 * h * L * L,
    }


L_cost, D_cost = 128, 64
print(f"d_model = {D_cost}, L = {L_cost}")
print(
    f"{'heads':>5} {'d_k':>4} {'parameters':>11} {'projections':>12} {'scores':>10} {'weighted':>10} {'softmax':>9} {'total MFLOP':>12}"
)
costs = {}
for n_heads in (1, 2, 4, 8):
    costs[n_heads] = f = mha_flops(L_cost, D_cost, n_heads)
    params = count_parameters(MultiHeadAttention(D_cost, n_heads))
    print(
        f"{n_heads:>5} {D_cost // n_heads:>4} {params:>11,} {f['projections']:>12,} {f['scores']:>10,} "
        f"{f['weighted sum']:>10,} {f['softmax']:>9,} {sum(f.values()) / 1e6:>12.2f}"
    )
same_params = (
    len({count_parameters(MultiHeadAttention(D_cost, n)) for n in (1, 2, 4, 8)}) == 1
)
same_matmuls = (
    len({(f["projections"], f["scores"], f["weighted sum"]) for f in costs.values()})
    == 1
)
extra = (sum(costs[8].values()) - sum(costs[1].values())) / sum(costs[1].values())
utils.claim(
    same_params and same_matmuls,
    "h heads have the same parameters and matrix-product FLOPs as one full-width head",
    needs_training=False,
)
print(f"8 heads instead of 1: {extra:.1%} more FLOPs, all in the softmax")

# %% [markdown]
# **Memory is another matter.** Each head has its own $L \times L$ weight matrix, so the scores and
# weights take $h\,L^2$ numbers per sequence instead of $L^2$, and every elementwise step on them
# (scale, mask, softmax) reads and writes $h$ times more memory, although it does no more
# multiplications. And $h$ small matrix products of inner width $d_k$ use a CPU less well than one
# wide product. So in *time*, several heads cost more than their FLOPs say. Below, the forward pass
# of a batch of 16 sequences of 128 tokens, $d_{model} = 64$, for 1, 2, 4 and 8 heads (the median of
# several runs, measured alternately so that a busy machine slows each alike). The times depend on
# your machine, so this cell's output is not compared under test.

# %%
# NBVAL_IGNORE_OUTPUT
def median_time(fn, repeat: int = 5) -> float:
    """Median seconds of fn() over ``repeat`` runs, after a warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


x_cost = torch.randn(16, L_cost, D_cost)  # on the CPU, whatever utils.device() is
timed = {n: MultiHeadAttention(D_cost, n).eval() for n in (1, 2, 4, 8)}
with torch.no_grad():
    rounds = [
        {
            n: median_time(lambda m=m: m(x_cost, x_cost, x_cost))
            for n, m in timed.items()
        }
        for _ in range(3)
    ]
    # (B, h, L, L)
    weight_numbers = {n: m(x_cost, x_cost, x_cost)[1].numel() for n, m in timed.items()}
seconds = {n: sorted(r[n] for r in rounds)[1] for n in timed}
print(
    f"{'heads':>5} {'d_k':>4} {'attention weights stored':>25} {'forward time':>13} {'vs 1 head':>10}"
)
for n, s in seconds.items():
    print(
        f"{n:>5} {D_cost // n:>4} {weight_numbers[n]:>25,} {utils.fmt_time(s):>13} {utils.measured(s / seconds[1], '.1f'):>10}x"
    )
utils.claim(
    all(weight_numbers[n] == n * weight_numbers[1] for n in timed),
    "h heads store h times as many attention weights as one head",
    needs_training=False,
)

# %% [markdown]
# So the honest statement is: the same parameters and the same matrix-product FLOPs, but $h$ times
# the attention weights, and on a CPU more time (the table above; your numbers will differ). The
# standard remedy is a **fused kernel**, as in `F.scaled_dot_product_attention` and
# `nn.MultiheadAttention`'s fast path: one routine computes softmax$(Q K^\top/\sqrt{d_k})\,V$ for every
# head in blocks, keeping each block of scores in fast memory, so that the $(B, h, L_q, L_k)$ weights
# are never written out whole and memory grows with $L$, not $L^2$ (the "flash attention" idea), and
# no Python dispatches each step. Our module returns every head's weights, so it must build that
# tensor, as `nn.MultiheadAttention` does when asked for its weights (`need_weights=True`). The
# benchmark (`python -m benchmarks.run --no-notebooks`, table "Multi-head attention") compares them.
#
# ## 5. Why several heads: a task that needs two alignments at once
#
# **The task.** A sequence of 12 symbols from an alphabet of 16. At every position $i$ the model
# must name *both* neighbours of the input there: the symbol at $i-1$ and the symbol at $i+1$
# (cyclically: position 0's left neighbour is position 11). Two outputs per position, two
# different alignments per query.
#
# **The model** is as small as it can be: embed each symbol, add a learned position embedding,
# one multi-head self-attention layer, and a linear read-out of both answers from the attention
# output. No residual connection and no feed-forward layer, so everything the read-out knows has
# come through attention. We train it twice, with $h = 2$ heads of width 16 and with $h = 1$
# head of width 32: the same $d_{model}$, the same parameters, the same budget.

# %%
SYMBOLS = "abcdefghijklmnop"


class NeighbourTask:
    """Name each position's neighbours: src (B, L) symbol ids -> tgt (B, L, K), cyclic.

    ``offsets=(-1, +1)``: tgt[b, i] = (src[b, i-1], src[b, i+1]). Ids are 0 .. num_symbols-1 (no
    padding: every sequence has the same length).
    """

    def __init__(self, num_symbols: int = 16, length: int = 12, offsets=(-1, +1)):
        self.num_symbols, self.length, self.offsets = (
            num_symbols,
            length,
            tuple(offsets),
        )

    def sample(self, batch_size: int, generator=None) -> Batch:
        src = torch.randint(
            0, self.num_symbols, (batch_size, self.length), generator=generator
        )
        # (B, L, K)
        tgt = torch.stack(
            [torch.roll(src, -off, dims=1) for off in self.offsets], dim=-1
        )
        lengths = torch.full((batch_size,), self.length)
        return Batch(src, lengths, tgt, lengths)

    def show(self, ids) -> str:
        return " ".join(SYMBOLS[i] for i in ids.tolist())


class NeighbourNet(nn.Module):
    """Embeddings -> one multi-head self-attention -> a linear read-out of K answers per position.

    forward(src (B, L), src_lengths=None, tgt=None) -> logits (B, L, K, V). The attention weights of the
    last call are kept in ``last_weights`` (B, h, L, L).
    """

    def __init__(
        self, task: NeighbourTask, d_model: int, num_heads: int, attention_class=None
    ):
        super().__init__()
        self.V, self.K = task.num_symbols, len(task.offsets)
        self.tok = nn.Embedding(self.V, d_model)
        self.pos = nn.Embedding(task.length, d_model)
        self.attn = (attention_class or MultiHeadAttention)(d_model, num_heads)
        self.readout = nn.Linear(d_model, self.K * self.V)
        self.last_weights = None

    def forward(self, src, src_lengths=None, tgt=None):
        B, L = src.shape
        x = self.tok(src) + self.pos.weight[:L]  # (B, L, D): what and where
        out, weights = self.attn(x, x, x)  # (B, L, D), (B, h, L, L)
        self.last_weights = weights.detach()
        return self.readout(out).view(B, L, self.K, self.V)  # logits of each answer


def neighbour_loss(logits, tgt):
    """Mean cross-entropy over every answer: logits (B, L, K, V), tgt (B, L, K)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))


@torch.no_grad()
def answer_accuracy(model, task, n: int = 2000, seed: int = 123):
    """Accuracy of each answer (K,) and of both together, on n fresh sequences."""
    batch = task.sample(n, torch.Generator().manual_seed(seed))
    right = model(batch.src).argmax(-1) == batch.tgt  # (n, L, K)
    return right.float().mean((0, 1)).cpu(), right.all(-1).float().mean().item()


task = NeighbourTask()
batch = task.sample(2, torch.Generator().manual_seed(0))
for i in range(2):
    print(f"input            : {task.show(batch.src[i])}")
    print(f"left neighbours  : {task.show(batch.tgt[i, :, 0])}")
    print(f"right neighbours : {task.show(batch.tgt[i, :, 1])}\n")

# %%
D_MODEL, STEPS, BATCH = 32, utils.budget(400, 40), 128
models, histories = {}, {}
for n_heads in (2, 1):
    name = f"{n_heads} head{'s' if n_heads > 1 else ''} of width {D_MODEL // n_heads}"
    torch.manual_seed(0)
    models[name] = NeighbourNet(task, D_MODEL, n_heads)
    print(f"{name}: {count_parameters(models[name]):,} parameters")
    histories[name] = train(
        models[name],
        task,
        steps=STEPS,
        batch_size=BATCH,
        lr=3e-3,
        desc=name,
        loss_fn=neighbour_loss,
    )
multi, single = models.values()
MULTI, SINGLE = models

# %%
accuracies = {name: answer_accuracy(m, task) for name, m in models.items()}
print(f"{'model':<22} {'left':>7} {'right':>7} {'both':>7}")
for name, (per_answer, both) in accuracies.items():
    print(
        f"{name:<22} {utils.measured(per_answer[0], '.1%'):>8} {utils.measured(per_answer[1], '.1%'):>8} {utils.measured(both, '.1%'):>8}"
    )
_ = plot_losses(
    histories, title="Same width, same budget: two heads solve it, one does not"
)

# %%
(multi_parts, multi_both), (single_parts, single_both) = accuracies.values()
utils.claim(
    multi_both >= 0.98,
    f"two heads name both neighbours ({utils.measured(multi_both, '.1%')} of positions fully right, >= 98%)",
)
utils.claim(
    single_both <= multi_both - 0.5,
    f"one head of the same width, trained alike, gets far fewer right "
    f"({utils.measured(single_both, '.1%')}, at least 50 points lower)",
)
utils.claim(
    single_parts.min() < 0.5,
    f"the single head fails one of the two alignments ({utils.measured(single_parts.min(), '.1%')} "
    f"on it, chance is {1 / task.num_symbols:.1%})",
)

# %% [markdown]
# Why can one head not do it? For query $i$ a head outputs one average
# $\sum_j \alpha_{ij}\, v_j$. To carry both neighbours it must split its weight between them,
# $\alpha\, v_{i-1} + (1-\alpha)\, v_{i+1}$: one vector in which the two symbols are *added*, and a
# linear read-out cannot tell which symbol came from which side. It learns one neighbour well
# and guesses the other. Two heads each put all their weight on one neighbour, in separate
# subspaces (separate features of the concatenation), and $W^O$ keeps them apart.
#
# ### Where do the heads look?
#
# Each row of a heatmap is a query position and shows how it spreads its attention over the
# keys (the same 12 positions; the labels are position:symbol).

# %%
sample_batch = task.sample(1, torch.Generator().manual_seed(5))
labels = [f"{i}:{SYMBOLS[s]}" for i, s in enumerate(sample_batch.src[0].tolist())]
with torch.no_grad():
    multi(sample_batch.src)
    single(sample_batch.src)
panels = [(multi.last_weights[0, i], f"{MULTI}: head {i + 1}") for i in range(2)] + [
    (single.last_weights[0, 0], SINGLE)
]
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
for ax, (weights, title) in zip(axes, panels):
    plot_attention(
        weights.cpu(),
        labels,
        labels,
        title=title,
        ax=ax,
        xlabel="key (position:symbol)",
        ylabel="query (position:symbol)",
        colorbar=ax is axes[-1],
    )
fig.suptitle(
    "Attention weights of one sequence: each head of the 2-head model follows one diagonal",
    y=1.02,
)
plt.tight_layout()

# %% [markdown]
# The pictures, as numbers: over 500 sequences, the mean weight each head gives the key at $i-1$
# and at $i+1$.

# %%
@torch.no_grad()
def neighbour_weight(model, n: int = 500, seed: int = 7):
    """(h, 2): the mean attention weight of each head on the key at i-1 and at i+1."""
    batch = task.sample(n, torch.Generator().manual_seed(seed))
    model(batch.src)
    w = model.last_weights.cpu()  # (n, h, L, L)
    L = w.shape[-1]
    i = torch.arange(L)
    return torch.stack(
        [w[:, :, i, (i - 1) % L].mean((0, 2)), w[:, :, i, (i + 1) % L].mean((0, 2))],
        dim=-1,
    )


for name, m in models.items():
    for head, (left, right) in enumerate(neighbour_weight(m).tolist()):
        print(
            f"{name}, head {head + 1}: weight on i-1 {utils.measured(left, '.1%')}, on i+1 {utils.measured(right, '.1%')}"
        )
nw = neighbour_weight(multi)
left_head = int(nw[:, 0].argmax())  # the head that follows the left neighbour
right_head = 1 - left_head
utils.claim(
    nw[left_head, 0] > 0.9 and nw[right_head, 1] > 0.9,
    f"the two heads split the work: head {left_head + 1} puts {utils.measured(nw[left_head, 0], '.0%')} of its weight on i-1, "
    f"head {right_head + 1} puts {utils.measured(nw[right_head, 1], '.0%')} on i+1",
)

# %% [markdown]
# ### Ablation: switch one head off
#
# A picture can mislead; an ablation measures. We zero one head's output (its $d_k$ features of the
# concatenation, just before $W^O$) and measure both answers again. If the heads really do
# different things, switching off one should destroy one answer and leave the other intact.

# %%
@contextlib.contextmanager
def heads_off(model, off):
    """Within the block, the heads in ``off`` (0-based) output zeros: their slice of Concat(...) before W^O."""
    h = model.attn.num_heads

    def zero_heads(module, inputs):
        (concat,) = inputs  # (B, L, D) = Concat(head_1, ..., head_h)
        B, L, D = concat.shape
        keep = torch.ones(h, device=concat.device)
        keep[list(off)] = 0.0
        return ((concat.view(B, L, h, D // h) * keep[:, None]).view(B, L, D),)

    handle = model.attn.out_proj.register_forward_pre_hook(zero_heads)
    try:
        yield model
    finally:
        handle.remove()


ablation = {}
for off in ([], [0], [1]):
    with heads_off(multi, off):
        ablation[tuple(off)] = answer_accuracy(multi, task)[0]
print(f"{MULTI}          left neighbour  right neighbour")
for off, (left, right) in ablation.items():
    label = "all heads on" if not off else f"head {off[0] + 1} off"
    print(
        f"{label:<24} {utils.measured(left, '.1%'):>16} {utils.measured(right, '.1%'):>17}"
    )
drop_left = ablation[()][0] - ablation[(left_head,)][0]
drop_right = ablation[()][1] - ablation[(right_head,)][1]
kept_right, kept_left = ablation[(left_head,)][1], ablation[(right_head,)][0]
utils.claim(
    drop_left > 0.7 and kept_right > 0.95,
    f"switching off head {left_head + 1} costs the left answer {utils.measured(100 * drop_left, '.1f')} points and leaves the "
    f"right one at {utils.measured(kept_right, '.1%')}",
)
utils.claim(
    drop_right > 0.7 and kept_left > 0.95,
    f"switching off head {right_head + 1} costs the right answer {utils.measured(100 * drop_right, '.1f')} points and leaves the "
    f"left one at {utils.measured(kept_left, '.1%')}",
)

# %% [markdown]
# ## 6. The classic bug: a head split without the transpose
#
# A very common mistake in multi-head code is to split the heads with `view(B, h, L, d_k)` straight
# away, skipping the transpose. The shapes are all right, nothing crashes, and the model trains.
# Here it is, on an *easier* task, one alignment only (name the left neighbour), next to the
# correct module with the same budget:

# %%
class ViewBugAttention(MultiHeadAttention):
    """MultiHeadAttention with the classic bug: heads split with view(B, h, L, d), no transpose."""

    def forward(self, query, key, value, mask=None):
        B, h = query.shape[0], self.num_heads

        # (B, L, D) -> (B, h, L, d) with the right shape and the wrong content
        def split(x):
            return x.view(B, h, x.shape[1], x.shape[2] // h)

        q, k, v = (
            split(self.q_proj(query)),
            split(self.k_proj(key)),
            split(self.v_proj(value)),
        )
        # (B, h, Lq, d), (B, h, Lq, Lk); masks left out here
        heads, weights = scaled_dot_product_attention(q, k, v)
        # and the merge undoes it alike
        return self.out_proj(heads.reshape(B, query.shape[1], -1)), weights


left_task = NeighbourTask(offsets=(-1,))
easy, easy_histories = {}, {}
for name, cls in (
    ("correct split", MultiHeadAttention),
    ("view without transpose", ViewBugAttention),
):
    torch.manual_seed(0)
    easy[name] = NeighbourNet(left_task, D_MODEL, 2, attention_class=cls)
    easy_histories[name] = train(
        easy[name],
        left_task,
        steps=STEPS,
        batch_size=BATCH,
        lr=3e-3,
        desc=name,
        loss_fn=neighbour_loss,
    )
bug_model = easy["view without transpose"]
bug_loss = easy_histories["view without transpose"].losses
bug_acc = answer_accuracy(bug_model, left_task)[1]
good_acc = answer_accuracy(easy["correct split"], left_task)[1]
print(
    f"buggy model: loss {utils.measured(bug_loss[0], '.2f')} -> {utils.measured(easy_histories['view without transpose'].final_loss, '.2f')}, accuracy {utils.measured(bug_acc, '.1%')}"
    f" (correct split: {utils.measured(good_acc, '.1%')})"
)
_ = plot_losses(easy_histories, title="The buggy model's loss falls too")
utils.claim(
    easy_histories["view without transpose"].final_loss < 0.3 * bug_loss[0]
    and bug_acc > 0.75,
    f"the buggy model trains: its loss falls by over 70% and it gets {utils.measured(bug_acc, '.1%')} right",
)

# %% [markdown]
# Had we never seen the correct model, over 80% right and a falling loss would look like a model that needs
# a little more training. The **equality test** of section 3 tells at once, before any training:

# %%
torch.manual_seed(0)
buggy = ViewBugAttention(D, h)
theirs = copy_into_torch_mha(buggy, nn.MultiheadAttention(D, h, batch_first=True))
diff = (buggy(query, key, key)[0] - theirs(query, key, key)[0]).abs().max().item()
print(f"max |ours - nn.MultiheadAttention| = {utils.measured(diff, '.2f')}")
verdict = utils.check("05.2", ViewBugAttention)
print(verdict)
utils.claim(
    diff > 0.01 and not verdict and "transpose" in verdict.message,
    "the equality test with nn.MultiheadAttention catches the missing transpose",
    needs_training=False,
)

# %% [markdown]
# And it explains that score. With `view(B, h, L, d_k)`, "head 0" is the first $L \cdot d_k$ numbers of
# the projection: all the features of positions 0 to 5. "Head 1" is positions 6 to 11. Each half of
# the sequence attends only within itself, so the two positions whose left neighbour lies in the
# other half, 0 (neighbour 11) and 6 (neighbour 5), cannot be answered: $10/12 = 83\%$ plus lucky
# guesses. Accuracy by position shows it:

# %%
with torch.no_grad():
    eval_batch = left_task.sample(2000, torch.Generator().manual_seed(123))
    # (L,)
    by_position = (
        (bug_model(eval_batch.src).argmax(-1) == eval_batch.tgt)[..., 0]
        .float()
        .mean(0)
        .cpu()
    )
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.bar(range(left_task.length), 100 * by_position.numpy(), color=PALETTE[1])
ax.set(
    xlabel="position i",
    ylabel="accuracy of the left neighbour (%)",
    ylim=(0, 102),
    title="The view bug cuts the sequence in two, one half per 'head'",
    xticks=range(left_task.length),
)
cut = [0, left_task.length // 2]
others = [i for i in range(left_task.length) if i not in cut]
print(
    "accuracy by position:",
    " ".join(f"{utils.measured(a, '.0%')}" for a in by_position.tolist()),
)
utils.claim(
    by_position[cut].max() < 0.3 and by_position[others].min() > 0.95,
    "the buggy model fails exactly at positions 0 and L/2, whose left neighbour is in the other half",
)

# %% [markdown]
# With one head the bug does nothing (`view(B, 1, L, D)` is the correct split), so tests with $h = 1$
# never see it: always test with several heads, against a reference.
#
# ## 7. Explore the heads
#
# Choose a model, an example and a head: the heatmap shows where that head looks, with the
# symbols on the axes. Untick a head to switch it off and watch which answers go wrong (red).
# (Our models have a single attention layer, so the model takes the place of a layer choice.)

# %%
import html

import ipywidgets as widgets
from IPython.display import HTML, display

N_EXAMPLES = 20
examples = task.sample(N_EXAMPLES, torch.Generator().manual_seed(11))


def render(model_name: str, example: int = 0, head: int = 0, enabled=(True, True)):
    """Heatmap of one head on one example, and the model's answers with the heads in ``enabled`` on.

    -> (figure, html of the answers, number of wrong answers)
    """
    model = models[model_name]
    h = model.attn.num_heads
    head = min(head, h - 1)
    off = [i for i in range(h) if not enabled[i]]
    src, tgt = examples.src[example : example + 1], examples.tgt[example].cpu()
    with torch.no_grad(), heads_off(model, off):
        pred = model(src).argmax(-1)[0].cpu()  # (L, K)
    with torch.no_grad():
        # the weights with every head on (switching a head off changes its output, not
        # its weights)
        model(src)
    labels = [f"{i}:{SYMBOLS[s]}" for i, s in enumerate(src[0].tolist())]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    state = "off" if head in off else "on"
    plot_attention(
        model.last_weights[0, head].cpu(),
        labels,
        labels,
        ax=ax,
        xlabel="key (position:symbol)",
        ylabel="query (position:symbol)",
        title=f"{model_name}, head {head + 1} ({state})",
    )
    rows = []
    for k, side in enumerate(("left ", "right")):
        cells = [
            f'<span style="color:{PALETTE[2] if p == t else PALETTE[1]};'
            f'{"" if p == t else "text-decoration:underline;font-weight:bold"}">{SYMBOLS[p]}</span>'
            for p, t in zip(pred[:, k].tolist(), tgt[:, k].tolist())
        ]
        rows.append(
            f"{side} : {' '.join(cells)}   (target {html.escape(task.show(tgt[:, k]))})"
        )
    wrong = int((pred != tgt).sum())
    text = (
        f"<pre style='font-size:14px;line-height:1.6'>input : {html.escape(task.show(src[0]))}\n"
        + "\n".join(rows)
        + f"</pre><p>heads off: {', '.join(str(i + 1) for i in off) or 'none'} · {wrong} wrong answer"
        f"{'s' if wrong != 1 else ''} out of {tgt.numel()}</p>"
    )
    return fig, text, wrong


def show(model_name, example, head, head_1_on, head_2_on):
    fig, text, _ = render(model_name, example, head, (head_1_on, head_2_on))
    plt.show()
    display(HTML(text))


# %%
# NBVAL_IGNORE_OUTPUT
explorer = widgets.interactive(
    show,
    model_name=widgets.Dropdown(options=list(models), description="model"),
    example=widgets.IntSlider(
        min=0, max=N_EXAMPLES - 1, value=0, description="example"
    ),
    head=widgets.Dropdown(
        options=[("head 1", 0), ("head 2", 1)], value=0, description="head"
    ),
    head_1_on=widgets.Checkbox(value=True, description="head 1 on"),
    head_2_on=widgets.Checkbox(value=True, description="head 2 on"),
)
explorer

# %% [markdown]
# The same view without the widget: example 0 of the two-head model, with both heads on, then
# with the left-neighbour head switched off.

# %%
for enabled in ((True, True), tuple(i != left_head for i in range(2))):
    fig, text, wrong = render(MULTI, 0, left_head, enabled)
    plt.show()
    display(HTML(text))
    print(f"heads on {enabled}: {wrong} wrong answers")

# %% [markdown]
# ## Summary
#
# * Multi-head attention projects $Q$, $K$, $V$ into $h$ subspaces of width $d_k = d_{model}/h$,
#   attends in each with its own softmax, concatenates, and mixes with $W^O$. In code: one
#   `Linear` per projection, `view(B, L, h, d_k)` **then** `transpose(1, 2)`, and back.
# * With the same weights it equals `nn.MultiheadAttention` (which stores $W^Q, W^K, W^V$ stacked
#   in `in_proj_weight`, and whose boolean masks mean the opposite: True = masked out).
# * $h$ heads cost what one full-width head costs in parameters and matrix-product FLOPs; but they
#   store $h$ times the attention weights, which costs memory traffic and, on a CPU, time. Fused
#   kernels (`F.scaled_dot_product_attention`) avoid storing them.
# * One head gives each query one average; two alignments at once need two heads. Trained on the
#   neighbour task, two heads learned one neighbour each (ablating one destroys exactly its
#   answer), and one head of the same width could not do both.
# * The head split without the transpose trains and fails quietly; an equality test against a
#   reference with several heads catches it at once.
#
# ## Going further
#
# 1. Give `NeighbourNet` a feed-forward layer (an MLP) before the read-out. Can one head now do
#    better, by blending the neighbours with *unequal* weights that the MLP can untangle? At what
#    cost in training steps?
# 2. Ask for three neighbours ($i-2, i-1, i+1$) with $h = 2$, then $h = 4$. How many heads does a
#    task with $k$ alignments need?
# 3. The paper uses $h = 8$, $d_{model} = 512$, $d_k = 64$. Count its attention FLOPs at $L = 512$: which
#    term dominates, and when does the $L^2$ term overtake the projections (lesson 04)?
# 4. Lesson 06 stacks these layers into an encoder, with positional encodings and LayerNorm.

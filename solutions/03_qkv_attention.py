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
# # Lesson 03 · Queries, keys and values: attention without the RNN
#
# **Why this lesson:** in lesson 02 the decoder scored every encoder state against its own state
# and took a weighted sum. Here that idea becomes a building block of its own: every position
# *asks* with a query, *is found* by its key and *gives* its value. No RNN is left, and the
# block serves every layer of the Transformer.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/03_qkv_attention.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/03_qkv_attention.ipynb)
#
# **You will be able to**
# 1. write scaled dot-product attention for any batch shape, with a boolean mask;
# 2. explain, with numbers you measured, why the scores are divided by $\sqrt{d_k}$;
# 3. build padding and causal masks, and show that a masked position has no influence at all;
# 4. build a self-attention layer, tell self- from cross-attention, and show that self-attention
#    ignores the order of its inputs;
# 5. pass masks to PyTorch's own attention without falling into its two opposite conventions.
#
# **Exercises:** 03.1 scaled dot-product attention (★★☆) · 03.2 the causal mask (★☆☆) ·
# 03.3 a padding mask (★☆☆) · 03.4 a self-attention layer (★☆☆). Stuck? `utils.hint("03.1")`,
# `utils.hint("03.1", 2)`, `utils.solution("03.1")`. The lesson runs to the end even before you
# finish: later cells use the course's reference code until yours passes its check.

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
import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.data import PAD, Batch, SymbolTask
from utils.plots import PALETTE, plot_attention, plot_losses
from utils.training import count_parameters, train

# %% [markdown]
# ## 1. From lesson 02's scores to queries, keys and values
#
# In lesson 02 the previous decoder state $s_{i-1}$ scored each encoder state $h_j$, with an additive
# score $e_{ij} = w_v^\top \tanh(W_q s_{i-1} + W_k h_j)$ or Luong's dot score $e_{ij} = s_{i-1}^\top h_j$;
# the softmax turned the scores into weights $\alpha_{ij}$, and the context was
# $c_i = \sum_j \alpha_{ij} h_j$.
# The encoder state $h_j$ played two parts there: it was *compared* with the decoder state, and it
# was *summed*. Give each part its own vector, computed from the inputs $x$ by its own matrix:
# (From here on vectors are *rows*, as in the code, where a batch of positions is the rows of a
# matrix: lesson 02's $W_q s$, a matrix times a column, becomes $x W_Q$, a row times a matrix; it
# is what `nn.Linear` computes, and `self.W_q` in the code is $W_Q$.)
#
# * the **query** $q_i = x_i W_Q$: what position $i$ is looking for;
# * the **key** $k_j = x_j W_K$: what position $j$ offers to be found by;
# * the **value** $v_j = x_j W_V$: what position $j$ hands over when it is found.
#
# The score of key $j$ for query $i$ is the dot product $q_i \cdot k_j$; the weights are a softmax over
# the keys; the output is the weighted sum of the values. For all queries at once, with
# $Q$ $(L_q \times d_k)$, $K$ $(L_k \times d_k)$ and $V$ $(L_k \times d_v)$:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V,$$
#
# where the softmax runs over each row (the keys), so that row $i$ holds the weights
# $\alpha_{ij}$ of query $i$ and sums to 1. Section 2 is about the $\sqrt{d_k}$.
#
# **A soft dictionary.** A Python dict returns the one value whose key *equals* the query.
# Attention compares the query with *every* key and returns a mix of all the values, each weighted
# by how well its key matches. With a query close to one key, it is nearly a plain look-up;
# between two keys, it blends their values.

# %%
# (Lk, d_k): four keys
keys = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0], [0.0, -4.0]])
# (Lk, d_v): what each key hands over
values = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
for query in ([0.0, 1.0], [0.7, 0.7]):  # close to key 1; half-way between keys 0 and 1
    q = torch.tensor([query])  # (Lq = 1, d_k)
    # (1, Lk): how well each key matches the query
    weights = torch.softmax(q @ keys.T, dim=-1)
    print(
        f"query {query}: weights {weights[0].numpy().round(3)} -> output {(weights @ values).item():.2f}"
    )

# %% [markdown]
# ### Exercise 03.1 · Scaled dot-product attention (★★☆, about 15 min)
#
# Write the formula above for tensors with **any number of leading batch dimensions**: `q`
# $(\dots, L_q, d_k)$, `k` $(\dots, L_k, d_k)$, `v` $(\dots, L_k, d_v)$. Return the output
# $(\dots, L_q, d_v)$ *and* the weights $(\dots, L_q, L_k)$: we will want to look at them.
#
# The optional `mask` is a **bool** tensor that broadcasts against the scores $(\dots, L_q, L_k)$ and is
# `True` where query $i$ **may attend** to key $j$ (as in `torch.nn.functional.scaled_dot_product_attention`).
# Set the masked scores to $-\infty$ *before* the softmax: $e^{-\infty} = 0$, so a masked key gets a
# weight of exactly 0, and the softmax shares the weight among the allowed keys.
#
# One corner case: a query whose keys are **all** masked has a row of $-\infty$, and the softmax
# gives $0/0$ = NaN there. The course's attention gives such a query all-zero weights and a zero
# output instead. (PyTorch's `F.scaled_dot_product_attention` does the same since version 2.5;
# `nn.MultiheadAttention` returns NaN.) Many implementations fill masked scores with a large
# negative number such as $-10^9$ instead of $-\infty$: the weights are the same, except in such a
# row, where $-10^9$ spreads the weight evenly over the masked keys.

# %%
def scaled_dot_product_attention(q, k, v, mask=None):
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, with any number of leading batch dims.

    q (..., Lq, d_k), k (..., Lk, d_k), v (..., Lk, d_v), mask bool broadcastable to (..., Lq, Lk),
    True = may attend -> (output (..., Lq, d_v), weights (..., Lq, Lk)), in the inputs' dtype
    (float64 in, float64 out). q, k, v and mask are not changed in place.

    A fully masked row (a query with no allowed key) gets all-zero weights and therefore a zero
    output, instead of the NaN that softmax over a row of -inf gives (0/0). Recent PyTorch's
    ``F.scaled_dot_product_attention`` (2.5 and later) also returns zeros there; older versions
    return NaN, and so does ``nn.MultiheadAttention`` (checked with 2.13).
    """
    ### BEGIN SOLUTION
    d_k = q.shape[-1]
    # Dividing by sqrt(d_k) keeps the scores' variance near 1 whatever d_k is, so the
    # softmax does not saturate (and its gradient vanish) for wide keys.
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., Lq, Lk)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), not {mask.dtype}"
            )
        # exp(-inf) = 0: a masked key has no weight
        scores = scores.masked_fill(~mask, float("-inf"))
    # (..., Lq, Lk), each row sums to 1 over the keys
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        # A row of -inf gives NaN in the softmax; give such rows zero weights instead.
        # The gradient stays finite too: masked_fill sends no gradient back to the
        # masked scores.
        weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)
    return weights @ v, weights  # (..., Lq, d_v), (..., Lq, Lk)
    ### END SOLUTION


# %%
utils.check("03.1", scaled_dot_product_attention)

# %% [markdown]
# From here on the lesson uses your attention once it passes (else the course's). First, the
# claim that it is *the* attention of PyTorch: `F.scaled_dot_product_attention` computes the same
# output, here with two leading batch dimensions and a mask, in double precision.

# %%
scaled_dot_product_attention = utils.use("03.1", scaled_dot_product_attention)

g = torch.Generator().manual_seed(1)
q, k, v = (
    torch.randn(2, 3, L, d, generator=g, dtype=torch.float64)
    for L, d in ((4, 8), (6, 8), (6, 5))
)
mask = torch.rand(2, 3, 4, 6, generator=g) > 0.4  # (B, h, Lq, Lk)
mask[..., 0] = True  # every query may attend to at least one key
ours, ours_weights = scaled_dot_product_attention(q, k, v, mask)
theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
print("output", tuple(ours.shape), "weights", tuple(ours_weights.shape))
gap = (ours - theirs).abs().max().item()
print(
    f"largest difference from F.scaled_dot_product_attention: below 1e-12: {gap < 1e-12}"
)
utils.claim(
    gap < 1e-12,
    "our attention equals torch.nn.functional.scaled_dot_product_attention (to 1e-12, float64)",
    needs_training=False,
)
utils.claim(
    torch.allclose(ours_weights.sum(-1), torch.ones(2, 3, 4, dtype=torch.float64))
    and bool((ours_weights[~mask] == 0).all()),
    "each row of weights sums to 1, and masked keys get exactly 0",
    needs_training=False,
)

# %% [markdown]
# ## 2. Why divide by $\sqrt{d_k}$?
#
# Suppose the components of $q$ and $k$ are independent, with mean 0 and variance 1. Then
# $q \cdot k = \sum_{m=1}^{d_k} q_m k_m$ is a sum of $d_k$ terms of variance 1: its variance is $d_k$.
# With $d_k = 512$ the scores are spread over about $\pm 2\sqrt{512} \approx \pm 45$, and a softmax of
# such numbers is nearly one-hot. A saturated softmax has almost no gradient: its Jacobian
# $\partial \alpha_i / \partial e_j = \alpha_i(\delta_{ij} - \alpha_j)$ vanishes when one $\alpha$ is 1 and
# the rest are 0, so learning stalls. Dividing by $\sqrt{d_k}$ brings the variance back to 1 for
# every $d_k$ ("Attention Is All You Need", section 3.2.1).
#
# Let us measure the three links of that chain, for 1000 random queries against 16 random keys each:
# the variance of the scores, how saturated the softmax is (the largest weight of each query; $1/16$
# would be uniform, 1 one-hot), and the size of the gradient that reaches the scores for a random
# loss $\mathcal{L} = \sum g \odot \mathrm{output}$.

# %%
def score_statistics(
    d_k: int, scale: bool, n: int = 1000, num_keys: int = 16, seed: int = 0
) -> dict:
    """Variance of the scores, mean largest weight, and mean gradient norm at the scores, for random q, k, v."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 1, d_k, generator=g)  # (n, 1, d_k): one query per example
    k = torch.randn(n, num_keys, d_k, generator=g)  # (n, Lk, d_k)
    v = torch.randn(n, num_keys, 8, generator=g)  # (n, Lk, d_v)
    # (n, 1, Lk)
    scores = (q @ k.transpose(-2, -1)) / (math.sqrt(d_k) if scale else 1.0)
    scores.requires_grad_(True)  # we want the gradient that reaches the scores
    weights = torch.softmax(scores, dim=-1)
    output = weights @ v  # (n, 1, d_v)
    (output * torch.randn(output.shape, generator=g)).sum().backward()  # a random loss
    return {
        "variance": scores.detach().var().item(),
        "max weight": weights.detach().max(-1).values.mean().item(),
        "gradient": scores.grad.norm(dim=-1).mean().item(),
    }


D_K = [4, 16, 64, 256, 1024]
stats = {scale: [score_statistics(d, scale) for d in D_K] for scale in (False, True)}
print(
    f"{'d_k':>5} | {'variance of q.k':>16} {'largest weight':>15} {'gradient':>9} | "
    f"{'var of q.k/sqrt(d_k)':>20} {'largest weight':>15} {'gradient':>9}"
)
for i, d in enumerate(D_K):
    raw, scaled = stats[False][i], stats[True][i]
    print(
        f"{d:>5} | {utils.measured(raw['variance'], '.1f'):>17} {utils.measured(raw['max weight'], '.3f'):>16} {utils.measured(raw['gradient'], '.3f'):>10} | "
        f"{utils.measured(scaled['variance'], '.2f'):>21} {utils.measured(scaled['max weight'], '.3f'):>16} {utils.measured(scaled['gradient'], '.3f'):>10}"
    )

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for scale, label, marker in ((False, "q·k (no scale)", "o"), (True, "q·k / √d_k", "s")):
    for ax, key in zip(axes, ("variance", "max weight", "gradient")):
        ax.plot(D_K, [s[key] for s in stats[scale]], marker=marker, label=label)
axes[0].set(
    xscale="log",
    yscale="log",
    xlabel="key dimension d_k",
    ylabel="variance of the scores",
    title="Scores grow with d_k unless scaled",
)
axes[1].axhline(1 / 16, color="grey", linestyle=":", label="uniform (1/16)")
axes[1].set(
    xscale="log",
    ylim=(0, 1.02),
    xlabel="key dimension d_k",
    ylabel="largest weight (mean over queries)",
    title="Unscaled, the softmax saturates",
)
axes[2].set(
    xscale="log",
    xlabel="key dimension d_k",
    ylabel="‖∂L/∂scores‖ (mean over queries)",
    title="... and its gradient fades",
)
for ax in axes:
    ax.legend()
plt.tight_layout()

# %%
raw_var = [s["variance"] / d for s, d in zip(stats[False], D_K)]
scaled_var = [s["variance"] for s in stats[True]]
raw, scaled = stats[False][-1], stats[True][-1]
grads = [s["gradient"] for s in stats[True]]
utils.claim(
    all(0.9 < r < 1.1 for r in raw_var),
    "the variance of q·k is d_k (within 10%, every d_k measured)",
    needs_training=False,
)
utils.claim(
    all(0.9 < s < 1.1 for s in scaled_var),
    "divided by sqrt(d_k), the variance stays near 1 (within 10%)",
    needs_training=False,
)
utils.claim(
    raw["max weight"] > 0.9 > 0.3 > scaled["max weight"],
    f"at d_k = {D_K[-1]} the unscaled softmax is nearly one-hot (largest weight {utils.measured(raw['max weight'], '.2f')}), "
    f"the scaled one is not ({utils.measured(scaled['max weight'], '.2f')})",
    needs_training=False,
)
utils.claim(
    raw["gradient"] < scaled["gradient"] / 5 and max(grads) < 1.2 * min(grads),
    f"at d_k = {D_K[-1]} the gradient reaching the unscaled scores is more than 5 times smaller; with the "
    "scale it stays the same (within 20%) for every d_k",
    needs_training=False,
)

# %% [markdown]
# Dividing the scores by a number is what a **temperature** does to a softmax: $\sqrt{d_k}$ is a
# temperature chosen so that the scores start out with variance 1. A higher temperature spreads
# the weights, a lower one sharpens them; the widget at the end lets you turn it.
#
# ## 3. Masks: who may attend to whom
#
# For a query $q_n$ we often must **mask out** some keys, so that their values $v_j$ do not contribute
# to its output at all. Two masks do almost all the work:
#
# * a **padding mask**: a batch pads short sequences to the longest one; no query may attend to the
#   padding, which is not part of the input;
# * a **causal mask**: when a model generates a sequence one token at a time, position $i$ must not
#   see the tokens after it, which do not exist yet at generation time. Query $i$ may attend to
#   keys $0, \dots, i$: itself and the past.
#
# Masks are bool, `True` = may attend, and broadcast against the scores $(B, L_q, L_k)$.
#
# ### Exercise 03.2 · The causal mask (★☆☆, about 5 min)
#
# Row $i$ is query $i$, column $j$ is key $j$: `True` on and below the diagonal.

# %%
def causal_mask(n: int, device=None):
    """(n, n) bool, True on and below the diagonal: query i may attend to keys 0..i, not the future."""
    ### BEGIN SOLUTION
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()
    ### END SOLUTION


# %%
utils.check("03.2", causal_mask)

# %% [markdown]
# ### Exercise 03.3 · A padding mask from the lengths (★☆☆, about 5 min)
#
# A batch of sequences of lengths `lengths` $(B,)$, padded to `max_len`: row $b$ is `True` at the
# real positions $0, \dots, \text{lengths}[b]-1$ and `False` at the padding. As a *key* mask it needs
# a query axis to broadcast against the scores $(B, L_q, L_k)$: `mask[:, None, :]` is $(B, 1, L_k)$.

# %%
def padding_mask(lengths, max_len: int):
    """lengths (B,) -> (B, max_len) bool, True at the real positions, False at the padding.

    As a key mask it must broadcast against the scores: write ``mask[:, None, :]`` (B, 1, Lk) for
    scores (B, Lq, Lk), and ``mask[:, None, None, :]`` (B, 1, 1, Lk) for scores (B, h, Lq, Lk).
    """
    ### BEGIN SOLUTION
    # (B, max_len)
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
    ### END SOLUTION


# %%
utils.check("03.3", padding_mask)

# %% [markdown]
# Both masks, and the two together (an `&` of bool tensors), for the sequence `c a b d` padded to
# 6 tokens. Bright = may attend.

# %%
causal_mask = utils.use("03.2", causal_mask)
padding_mask = utils.use("03.3", padding_mask)

tokens = ["c", "a", "b", "d", "<pad>", "<pad>"]
# (B=1, 1, Lk): the same for every query
pad = padding_mask(torch.tensor([4]), 6)[:, None, :]
both = pad & causal_mask(6)  # (1, 6, 6): broadcasting makes a mask for every query
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, m, title in zip(
    axes,
    (pad.expand(1, 6, 6), causal_mask(6)[None], both),
    ("padding mask", "causal mask", "padding & causal"),
):
    plot_attention(
        m[0].float(),
        tokens,
        tokens,
        title=title,
        ax=ax,
        colorbar=False,
        xlabel="key",
        ylabel="query",
    )
plt.tight_layout()

# %% [markdown]
# **A masked value has no influence, exactly.** Take random queries, keys and values for these 6
# positions and attend with both masks. Then change the value vector of a padding position to
# something huge: not a single output moves, not even in the last bit, because its weight is exactly
# 0. Change the value of the real token at position 2 instead: the outputs of the queries that may
# see it (positions 2 and later) change, and those before it (0 and 1) stay exactly the same.

# %%
g = torch.Generator().manual_seed(2)
q, k, v = (torch.randn(1, 6, 4, generator=g) for _ in range(3))  # (B, L, d)
out, weights = scaled_dot_product_attention(q, k, v, both)

v_pad = v.clone()
v_pad[0, 5] = 1e6  # the value of a padding position
out_pad, _ = scaled_dot_product_attention(q, k, v_pad, both)

v_real = v.clone()
v_real[0, 2] += 1.0  # the value of the real token 'b' at position 2
out_real, _ = scaled_dot_product_attention(q, k, v_real, both)
moved = (out_real - out).abs().amax(-1)[0]  # (L,): how much each query's output moved

print(
    "weights of the masked keys:", weights[~both.expand_as(weights)].unique().tolist()
)
print("outputs changed by the padding value:", int((out_pad != out).sum()))
print(
    "queries whose output changed with position 2's value:",
    [i for i in range(6) if moved[i] > 0],
)
utils.claim(
    torch.equal(out_pad, out),
    "changing the value of a masked (padding) position changes no output, bit for bit",
    needs_training=False,
)
utils.claim(
    torch.equal(out_real[:, :2], out[:, :2]) and bool((moved[2:] > 1e-3).all()),
    "changing an unmasked value changes exactly the outputs of the queries allowed to see it",
    needs_training=False,
)

# %% [markdown]
# **A fully masked row.** When a query may attend to nothing (for instance an empty sequence in a
# batch), the softmax has nothing to share. Three ways to handle it, for one query with three keys,
# all masked:

# %%
scores = torch.tensor([[0.3, -1.2, 2.0]])  # (Lq = 1, Lk = 3)
none_allowed = torch.zeros(1, 3, dtype=torch.bool)
print(
    "softmax over -inf (the plain formula):",
    torch.softmax(scores.masked_fill(~none_allowed, float("-inf")), -1),
)
print(
    "large negative number (-1e9)         :",
    torch.softmax(scores.masked_fill(~none_allowed, -1e9), -1),
)
_, w_course = scaled_dot_product_attention(
    torch.ones(1, 2), torch.ones(3, 2), torch.ones(3, 2), none_allowed
)
print("the course's attention               :", w_course)
utils.claim(
    bool((w_course == 0).all()),
    "the course's attention gives a fully masked row zero weights, not NaN",
    needs_training=False,
)

# %% [markdown]
# ### PyTorch's two opposite mask conventions
#
# Be careful when you hand a bool mask to PyTorch: its two attention APIs read it the opposite way.
#
# | API | bool mask `True` means | the course's `mask` becomes |
# |---|---|---|
# | `F.scaled_dot_product_attention(..., attn_mask=mask)` | **may attend** (as in this course) | `mask` |
# | `nn.MultiheadAttention(...)(..., key_padding_mask=..., attn_mask=...)`, `nn.Transformer*` | **masked out** | `~mask` |
#
# (A *float* mask is added to the scores in both: 0 where allowed, $-\infty$ where not. That is what
# `nn.Transformer.generate_square_subsequent_mask` returns.) The tiny demonstration: one sequence of 3
# real tokens padded to 5, the weights of its first query.

# %%
torch.manual_seed(0)
x = torch.randn(1, 5, 4)  # (B, L, d)
real = padding_mask(torch.tensor([3]), 5)  # (1, 5): True at the 3 real tokens
# attending over an identity matrix of values returns the weights themselves
eye = torch.eye(5)[None]
w_sdpa = F.scaled_dot_product_attention(x, x, eye, attn_mask=real[:, None, :])[0, 0]
# lesson 05 builds this module
mha = nn.MultiheadAttention(4, num_heads=1, batch_first=True)
# True = ignore this key: the opposite convention
_, w_mha = mha(x, x, x, key_padding_mask=~real)
# the course's mask passed unchanged
_, w_mha_wrong = mha(x, x, x, key_padding_mask=real)
print(
    "keys:                                             ",
    ["x1", "x2", "x3", "pad", "pad"],
)
print(
    "F.scaled_dot_product_attention, attn_mask=mask:   ",
    w_sdpa.detach().numpy().round(3),
)
print(
    "nn.MultiheadAttention, key_padding_mask=~mask:     ",
    w_mha[0, 0].detach().numpy().round(3),
)
print(
    "nn.MultiheadAttention, key_padding_mask=mask (bug):",
    w_mha_wrong[0, 0].detach().numpy().round(3),
)
utils.claim(
    bool((w_sdpa[3:] == 0).all() and (w_mha[0, 0, 3:] == 0).all()),
    "with the mask the right way round, both give the padding exactly zero weight",
    needs_training=False,
)
utils.claim(
    bool((w_mha_wrong[0, 0, :3] == 0).all()),
    "passing the course's mask unchanged to nn.MultiheadAttention attends *only* to the padding",
    needs_training=False,
)

# %% [markdown]
# ## 4. Self-attention and cross-attention
#
# Where do $Q$, $K$ and $V$ come from?
#
# * **Self-attention:** all three from the *same* sequence $X$: $Q = XW_Q$, $K = XW_K$, $V = XW_V$.
#   Every position looks at every position of its own sequence. The Transformer's encoder and the
#   first sublayer of its decoder are self-attention.
# * **Cross-attention:** the queries from one sequence, the keys and values from another, as in
#   lesson 02, where the decoder state asked and the encoder states answered. The Transformer's
#   decoder uses it to read the encoder's output (lesson 07).
#
# ### Exercise 03.4 · A self-attention layer (★☆☆, about 10 min)
#
# Create three projections `self.W_q`, `self.W_k`, `self.W_v`, each `nn.Linear(d_model, d_k, bias=False)`
# (with `d_k = d_model` when it is not given), and attend with your `scaled_dot_product_attention`.

# %%
class SelfAttention(nn.Module):
    """Single-head self-attention: Q = X W_q, K = X W_k, V = X W_v, all computed from the same X.

    Layers: ``self.W_q``, ``self.W_k``, ``self.W_v``, each ``nn.Linear(d_model, d_k, bias=False)``
    (d_k = d_model when None); later cells read them by these names.

    forward(x (B, L, d_model), mask=None broadcastable to (B, L, L)) -> (output (B, L, d_k), weights (B, L, L))
    """

    def __init__(self, d_model: int, d_k: int | None = None):
        super().__init__()
        ### BEGIN SOLUTION
        d_k = d_k or d_model
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_k, bias=False)
        ### END SOLUTION

    def forward(self, x, mask=None):
        ### BEGIN SOLUTION
        return scaled_dot_product_attention(self.W_q(x), self.W_k(x), self.W_v(x), mask)
        ### END SOLUTION


# %%
utils.check("03.4", SelfAttention)

# %% [markdown]
# **Self-attention does not know the order of its inputs.** Nothing in $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$
# refers to positions: permute the input positions with a permutation $\pi$, and the outputs are
# permuted by the same $\pi$ (the layer is *permutation-equivariant*). To self-attention, "the cat
# sat" is a bag of three words; lesson 06 gives it a sense of order with positional encodings.

# %%
SelfAttention = utils.use("03.4", SelfAttention)

torch.manual_seed(0)
layer = SelfAttention(8)
x = torch.randn(1, 6, 8)  # (B, L, d_model)
perm = torch.tensor([3, 0, 5, 1, 4, 2])  # a permutation of the 6 positions
out, weights = layer(x)
out_perm, weights_perm = layer(x[:, perm])  # the same inputs, in another order
print(
    "output of the permuted input == permuted output:",
    torch.allclose(out_perm, out[:, perm], atol=1e-6),
)
utils.claim(
    torch.allclose(out_perm, out[:, perm], atol=1e-6)
    and torch.allclose(weights_perm, weights[:, perm][:, :, perm], atol=1e-6),
    "self-attention is permutation-equivariant: permuting the inputs permutes the outputs (and the "
    "weights' rows and columns) the same way",
    needs_training=False,
)

# %% [markdown]
# Cross-attention is the same function with two inputs: 3 queries from a "decoder" sequence attend
# over 5 keys and values from an "encoder" sequence, so the weights are $3 \times 5$. Permuting the
# encoder positions (keys and values together) leaves every query's output unchanged: attention
# reads a *set* of key-value pairs.

# %%
W_q, W_k, W_v = (nn.Linear(8, 8, bias=False) for _ in range(3))
# (B, Lq, d), (B, Lk, d)
decoder_states, encoder_states = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
out, weights = scaled_dot_product_attention(
    W_q(decoder_states), W_k(encoder_states), W_v(encoder_states)
)
shuffled = encoder_states[:, torch.tensor([4, 2, 0, 3, 1])]
out_shuffled, _ = scaled_dot_product_attention(
    W_q(decoder_states), W_k(shuffled), W_v(shuffled)
)
print(
    "cross-attention weights",
    tuple(weights.shape),
    "rows sum to",
    weights.sum(-1).detach().numpy().round(4),
)
utils.claim(
    torch.allclose(out_shuffled, out, atol=1e-6),
    "cross-attention's output does not depend on the order of the keys and values",
    needs_training=False,
)

# %% [markdown]
# ## 5. A trained example: the running maximum
#
# Time to let attention *learn* its weights. The task: read a sequence of symbols `a` to `j` and
# output, at every position, the largest symbol so far, $y_i = \max(x_1, \dots, x_i)$:
#
# | input | `c` | `a` | `f` | `b` | `h` | `d` |
# |---|---|---|---|---|---|---|
# | output | `c` | `c` | `f` | `f` | `h` | `h` |
#
# The model is as bare as it gets: an embedding, **one** causal self-attention layer (yours) and a
# linear read-out; no RNN and no positions. To answer at position $i$, the query must find, among
# the keys $0, \dots, i$ it may see, the one holding the largest symbol, and copy its value: the
# score of a key must grow with its symbol. The causal mask is what makes the answer depend on $i$.

# %%
class RunningMaxTask(SymbolTask):
    """Output, at every position, the largest symbol so far: y_i = max(x_1, ..., x_i)."""

    def __init__(self, num_symbols: int = 10, min_len: int = 2, max_len: int = 12):
        super().__init__(
            "copy", num_symbols=num_symbols, min_len=min_len, max_len=max_len
        )

    def sample(self, batch_size, generator=None, *, length=None) -> Batch:
        batch = super().sample(batch_size, generator, length=length)
        # Symbol ids grow with the symbol (a = 3, b = 4, ...), so a running max of the
        # ids does it.
        # (B, S)
        tgt = torch.where(batch.src != PAD, batch.src.cummax(dim=1).values, PAD)
        return Batch(batch.src, batch.src_lengths, tgt, batch.src_lengths)

    def __repr__(self) -> str:
        return f"RunningMaxTask({self.num_symbols} symbols, lengths {self.min_len}-{self.max_len})"


class RunningMaxModel(nn.Module):
    """Embedding -> one self-attention layer (padding and causal masks) -> linear read-out.

    forward(src (B, L), src_lengths (B,), tgt=None, causal=True) -> logits (B, L, V); the weights
    (B, L, L) of the last call are kept in ``self.weights``.
    """

    def __init__(self, vocab_size: int, d_model: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.attention = SelfAttention(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def masks(self, src, src_lengths, causal: bool = True):
        L = src.shape[1]
        # (B, 1, L): no query attends to the padding
        mask = padding_mask(src_lengths, L)[:, None, :]
        if causal:
            # (B, L, L): nor to the future
            mask = mask & causal_mask(L, device=src.device)
        return mask

    # tgt: unused (train's contract)
    def forward(self, src, src_lengths, tgt=None, causal: bool = True):
        # (B, L, d), (B, L, L)
        h, weights = self.attention(
            self.embedding(src), self.masks(src, src_lengths, causal)
        )
        self.weights = weights.detach()
        return self.out(h)  # (B, L, V)


task = RunningMaxTask()
example = task.sample(2, torch.Generator().manual_seed(0))
for i in range(2):
    print(
        f"input: {task.show(example.src[i]):<24} running max: {task.show(example.tgt[i])}"
    )

torch.manual_seed(0)
model = RunningMaxModel(len(task.vocab))
print(f"{count_parameters(model):,} parameters")
history = train(
    model, task, steps=utils.budget(400, 40), batch_size=64, lr=1e-2, desc="running max"
)
_ = plot_losses(
    {"one self-attention layer": history}, title="Learning the running maximum"
)

# %% [markdown]
# How well does it do, and does it attend where it should? We measure on 500 fresh sequences: the
# accuracy of every output, and the weight each query puts on the key(s) holding its running
# maximum. Then we take the causal mask away, so that each query also sees the future.

# %%
test = task.sample(500, torch.Generator().manual_seed(123))
real = test.tgt != PAD  # (B, L): the real output positions
with torch.no_grad():
    accuracy = (
        (model(test.src, test.src_lengths).argmax(-1) == test.tgt)[real]
        .float()
        .mean()
        .item()
    )
    weights = model.weights  # (B, L, L)
    # key j holds the running max of query i if j <= i and x_j == y_i
    holds_max = (test.src[:, None, :] == test.tgt[:, :, None]) & causal_mask(
        test.src.shape[1]
    )
    on_max = (weights * holds_max).sum(-1)[real].mean().item()
    no_causal = (
        (model(test.src, test.src_lengths, causal=False).argmax(-1) == test.tgt)[real]
        .float()
        .mean()
        .item()
    )
print(
    f"accuracy: {utils.measured(accuracy, '.1%')}; weight on the running maximum: {utils.measured(on_max, '.1%')}; "
    f"accuracy without the causal mask: {utils.measured(no_causal, '.1%')}"
)
utils.claim(
    accuracy >= 0.98,
    f"one self-attention layer computes the running maximum ({utils.measured(accuracy, '.1%')} >= 98%)",
)
utils.claim(
    on_max >= 0.85,
    f"each query puts most of its weight on the key holding its running maximum "
    f"({utils.measured(on_max, '.1%')} >= 85%)",
)
utils.claim(
    no_causal <= accuracy - 0.2,
    "without the causal mask the queries see the future maximum, and accuracy "
    f"falls by at least 20 points ({utils.measured(no_causal, '.1%')})",
)

# %% [markdown]
# The weights of one sequence: row $i$ is query $i$ (its symbol and the model's output), column $j$ is
# key $j$. With the causal mask (left) each row lights up the largest symbol in its past; without it
# (right) every row finds the largest symbol of the whole sequence.

# %%
one = task.sample(1, torch.Generator().manual_seed(7), length=10)
symbols = task.vocab.decode(one.src[0])
fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
for ax, causal in zip(axes, (True, False)):
    with torch.no_grad():
        pred = model(one.src, one.src_lengths, causal=causal).argmax(-1)[0]
    rows = [f"{s} → {p}" for s, p in zip(symbols, task.vocab.decode(pred))]
    plot_attention(
        model.weights[0].cpu(),
        symbols,
        rows,
        ax=ax,
        xlabel="key (input symbol)",
        ylabel="query: symbol → output",
        title="causal mask: the largest so far"
        if causal
        else "no mask: the largest of all",
    )
plt.tight_layout()

# %% [markdown]
# ## 6. See it for yourself
#
# Pick a sequence and a query position; turn the **temperature** $T$ (the scores are divided by
# $T\sqrt{d_k}$, so $T = 1$ is the trained model) and switch the causal mask on and off. Left: the
# weights of that query over the keys (a grey band = masked). Right: the model's output distribution.
# At a low temperature the softmax becomes a hard look-up; at a high one it averages everything.

# %%
examples = task.sample(8, torch.Generator().manual_seed(11), length=10)
# A sequence whose running maximum at query 5 is not yet its overall maximum: there the
# causal mask matters.
first = next(
    i for i in range(len(examples)) if examples.tgt[i, 5] < examples.tgt[i].max()
)


@torch.no_grad()
def render(
    example: int = 0, query: int = 5, temperature: float = 1.0, causal: bool = True
):
    """Draw one query's weights and the model's output; returns (figure, summary dict)."""
    # (1, L)
    src, lengths = (
        examples.src[example : example + 1],
        examples.src_lengths[example : example + 1],
    )
    a, x = model.attention, model.embedding(src)  # x: (1, L, d)
    mask = model.masks(src, lengths, causal)
    # Dividing the queries by T divides every score by T: softmax(Q K^T / (T
    # sqrt(d_k))).
    out, weights = scaled_dot_product_attention(
        a.W_q(x) / temperature, a.W_k(x), a.W_v(x), mask
    )
    # (num_symbols,): the symbols a..j
    probs = model.out(out)[0, query].softmax(-1)[3:].cpu()
    w, allowed = (
        weights[0, query].cpu(),
        mask.expand(1, *weights.shape[1:])[0, query].cpu(),
    )
    symbols = task.vocab.decode(src[0])
    target = task.vocab.decode(examples.tgt[example : example + 1, query])[0]
    prediction = task.vocab.itos[3 + int(probs.argmax())]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.3))
    for j in (~allowed).nonzero()[:, 0].tolist():  # a grey band behind every masked key
        ax1.axvspan(j - 0.5, j + 0.5, color="#DDDDDD", zorder=0)
    ax1.bar(range(len(symbols)), w.numpy(), color=PALETTE[0])
    ax1.set_xticks(range(len(symbols)), [f"{j}:{s}" for j, s in enumerate(symbols)])
    ax1.set(
        xlabel="key (position:symbol); grey band = masked",
        ylabel="attention weight",
        ylim=(0, 1.05),
        title=f"query {query} ('{symbols[query]}'), T = {temperature:g}, {'causal' if causal else 'no mask'}",
    )
    ax2.bar(
        range(task.num_symbols),
        probs.numpy(),
        color=[PALETTE[2] if s == target else PALETTE[1] for s in task.vocab.itos[3:]],
    )
    ax2.set_xticks(range(task.num_symbols), task.vocab.itos[3:])
    ax2.set(
        xlabel="output symbol (green = correct)",
        ylabel="probability",
        ylim=(0, 1.05),
        title=f"output '{prediction}', correct '{target}'",
    )
    plt.tight_layout()
    top = int(w.argmax())
    return fig, {
        "prediction": prediction,
        "target": target,
        "top key": f"{top}:{symbols[top]}",
        # logits (1, L, V)
        "top weight": float(w.max()),
        "logits": model.out(out),
    }


def show(example, query, temperature, causal):
    render(example, query, temperature, causal)
    plt.show()


# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets

widgets.interactive(
    show,
    example=widgets.IntSlider(
        min=0, max=len(examples) - 1, value=first, description="sequence"
    ),
    query=widgets.IntSlider(
        min=0, max=examples.src.shape[1] - 1, value=5, description="query"
    ),
    temperature=widgets.FloatLogSlider(
        value=1.0, base=10, min=-1, max=1, step=0.1, description="temperature T"
    ),
    causal=widgets.Checkbox(value=True, description="causal mask"),
)

# %% [markdown]
# The same view, without the widget: query 5 of a sequence whose largest symbol comes later, at
# $T = 1$; then with the mask off (the query now sees the future maximum); then at $T = 10$.

# %%
views = {}
for temperature, causal in ((1.0, True), (1.0, False), (10.0, True)):
    fig, info = render(first, 5, temperature, causal)
    views[temperature, causal] = info
    print(
        f"T = {temperature:>4}, {'causal ' if causal else 'no mask'}: output '{info['prediction']}' "
        f"(correct '{info['target']}'), top key {info['top key']} with weight {utils.measured(info['top weight'], '.2f')}"
    )
with torch.no_grad():
    # (1, L, V): its own forward
    own = model(
        examples.src[first : first + 1], examples.src_lengths[first : first + 1]
    )
utils.claim(
    torch.allclose(views[1.0, True]["logits"], own, atol=1e-6),
    "at T = 1 the widget computes exactly the model's own output",
    needs_training=False,
)
causal_view, open_view = views[1.0, True], views[1.0, False]
utils.claim(
    causal_view["prediction"] == causal_view["target"] != open_view["prediction"],
    "with the causal mask the query finds its running maximum; without it, it copies a later, larger symbol",
)
utils.claim(
    views[10.0, True]["top weight"] < causal_view["top weight"],
    "a higher temperature spreads the weights",
)

# %% [markdown]
# ## Summary
#
# * Attention is a soft dictionary look-up: $\mathrm{Attention}(Q, K, V) = \mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$,
#   with queries $Q = XW_Q$, keys $K = XW_K$ and values $V = XW_V$. Each query's weights sum to 1
#   over the keys.
# * Without the $1/\sqrt{d_k}$, the scores' variance grows like $d_k$, the softmax saturates and its
#   gradient fades (measured above); with it, all three stay the same for every $d_k$.
# * A bool mask (`True` = may attend) sets masked scores to $-\infty$: their values have exactly no
#   influence. Padding masks hide the padding, causal masks hide the future. A fully masked row
#   gets zero weights in this course. PyTorch's `nn.MultiheadAttention` reads bool masks the other
#   way round (`True` = masked out): pass it `~mask`.
# * Self-attention takes $Q$, $K$, $V$ from one sequence and is permutation-equivariant: it has no
#   notion of order. Cross-attention takes the queries from another sequence, as in lesson 02.
#
# One head computes one set of weights: one notion of "relevant". Lesson 04 measures what attention
# costs; lesson 05 gives it several heads, each looking for something else.
#
# ## Going further
#
# 1. Replace $-\infty$ by $-10^9$ in your attention. Which of this lesson's claims still hold? Which
#    would break in half precision (`float16`, whose largest number is 65504)?
# 2. Train the running-maximum model without the causal mask. What does it learn, and why can it
#    not do the task? What would the *running minimum* need?
# 3. Build the running-maximum model with `d_model=256` and train it twice: with the scale, and
#    without it (replace `math.sqrt(d_k)` by 1 in your function). Compare the loss curves.
# 4. Why does the running-maximum model need no positional information, while reversing a
#    sequence (lesson 01) would?

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
# # Lesson 04 · The cost of attention, measured
#
# **Why this lesson:** self-attention lets every position look at every other position, so it
# pays for $n^2$ pairs where a recurrent layer pays for $n$ steps. Here you count that cost, then
# measure it on your own machine: time, memory, the number of steps that must run one after
# another, and how far a signal has to travel. Together they reproduce Table 1 of "Attention Is
# All You Need" (Vaswani et al., 2017) by measurement, and explain why the Transformer won anyway.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/04_complexity.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/04_complexity.ipynb)
#
# **You will be able to**
# 1. count the FLOPs and the memory of a self-attention layer, an LSTM layer and a convolution,
#    and say which term dominates when;
# 2. read a growth rate off a log-log plot of measured times, and find where attention stops
#    being cheaper than recurrence (the $n$-vs-$d$ crossover);
# 3. measure *sequential operations* and *maximum path length*, the two columns of Table 1 that
#    made attention worth its quadratic cost;
# 4. measure the memory that PyTorch's fused attention saves, and name the families of efficient
#    attention.
#
# **Exercises:** 04.1 the FLOPs of self-attention (★☆☆) · 04.2 the FLOPs of an LSTM (★☆☆) ·
# 04.3 the memory of naive attention (★☆☆). Stuck? `utils.hint("04.1")`, `utils.hint("04.1", 2)`,
# `utils.solution("04.1")`. The lesson runs to the end even before you finish: later cells use
# the course's reference code until yours passes its check.

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
import matplotlib.ticker as mticker
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import cost
from utils.attention import SelfAttention, scaled_dot_product_attention
from utils.plots import PALETTE
from utils.progress import progress


def plain_log_ticks(ax, xticks=None, yticks=None):
    """Write a log axis's ticks as 0.5, 1, 1000 rather than 5x10^-1, 10^0, 10^3."""
    for axis, ticks in ((ax.xaxis, xticks), (ax.yaxis, yticks)):
        if ticks is not None:
            axis.set_ticks(ticks)
        axis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(mticker.NullFormatter())


# We measure on the CPU, whatever the machine has. On a GPU these small layers take a
# few microseconds each, mostly kernel-launch overhead, which hides how their cost grows
# with n.
DEVICE = torch.device("cpu")

# %% [markdown]
# ## 1. Counting FLOPs
#
# We count **floating-point operations** (FLOPs) with one convention for the whole lesson: a
# multiply-add is 2 FLOPs, so a matrix product of shapes $(a, b) \times (b, c)$, which computes
# $a \cdot c$ dot products of length $b$, costs $2abc$. We count matrix products only: biases,
# the softmax and the gate nonlinearities are elementwise, and we check below how small they are.
#
# A single-head **self-attention** layer (`utils.attention.SelfAttention`, lesson 03) maps the
# inputs $X \in \mathbb{R}^{n \times d}$ of $n$ positions to
#
# $$Q = XW_q,\quad K = XW_k,\quad V = XW_v,\qquad S = \frac{QK^\top}{\sqrt{d}},\quad
# A = \mathrm{softmax}(S),\quad Y = AV,$$
#
# with $W_q, W_k, W_v \in \mathbb{R}^{d \times d}$. Each line is a matrix product whose shapes you
# know:
#
# | product | shapes | grows like |
# |---|---|---|
# | $XW_q$, $XW_k$, $XW_v$ | $(n, d) \times (d, d)$, three times | $n d^2$ |
# | $QK^\top$ | $(n, d) \times (d, n)$ | $n^2 d$ |
# | $AV$ | $(n, n) \times (n, d)$ | $n^2 d$ |
#
# ### Exercise 04.1 · The FLOPs of a self-attention layer (★☆☆, about 10 min)

# %%
def attention_flops(n: int, d: int) -> int:
    """FLOPs of one single-head self-attention layer (``utils.attention.SelfAttention``) on one sequence.

    n positions, model width d = d_k = d_v. Matrix products only, a multiply-add = 2 FLOPs:
    Q, K, V = X W_q, X W_k, X W_v (3 products (n, d) @ (d, d)), S = Q K^T ((n, d) @ (d, n)) and
    Y = A V ((n, n) @ (n, d)). A formula of n and d: later cells also call it with a float n.
    """
    ### BEGIN SOLUTION
    projections = 3 * 2 * n * d * d  # O(n d^2)
    scores = 2 * n * n * d  # Q K^T: n^2 dot products of length d
    weighted_sum = 2 * n * n * d  # A V: n x d outputs, each a sum over n keys
    return projections + scores + weighted_sum
    ### END SOLUTION


# %%
utils.check("04.1", attention_flops)

# %% [markdown]
# A **recurrent** layer does something quite different with the same $X$: it reads the positions
# one at a time. An LSTM with input and hidden size $d$ computes, at each step $t$, four gates
#
# $$\begin{aligned}
# i_t &= \sigma(W_{ii} x_t + W_{hi} h_{t-1} + b_i), & f_t &= \sigma(W_{if} x_t + W_{hf} h_{t-1} + b_f),\\
# g_t &= \tanh(W_{ig} x_t + W_{hg} h_{t-1} + b_g), & o_t &= \sigma(W_{io} x_t + W_{ho} h_{t-1} + b_o),
# \end{aligned}$$
#
# then $c_t = f_t \odot c_{t-1} + i_t \odot g_t$ and $h_t = o_t \odot \tanh(c_t)$. Every $W$ is
# $d \times d$. Step $t$ needs $h_{t-1}$, so the $n$ steps must run one after another.
#
# ### Exercise 04.2 · The FLOPs of an LSTM layer (★☆☆, about 10 min)

# %%
def lstm_flops(n: int, d: int) -> int:
    """FLOPs of one LSTM layer (input size d, hidden size d) over a sequence of n positions.

    At each of the n steps, each of the 4 gates (input, forget, cell, output) multiplies the input
    x_t by a (d, d) matrix and the previous state h_{t-1} by another. Matrix products only, a
    multiply-add = 2 FLOPs. A formula of n and d: later cells also call it with a float n.
    """
    ### BEGIN SOLUTION
    per_gate = 2 * d * d + 2 * d * d  # W_i x_t + W_h h_{t-1}
    return n * 4 * per_gate  # O(n d^2), in n steps that must run one after the other
    ### END SOLUTION


# %%
utils.check("04.2", lstm_flops)

# %% [markdown]
# A **convolution** with kernel width $k$ computes each of its $n \times d$ outputs from $k$
# neighbouring positions of $d$ channels: $2knd^2$ FLOPs (`cost.conv_flops`). The paper counts a
# recurrent layer as $n d^2$ and a convolution as $k$ times that; with its four gates and two
# matrices per gate, an LSTM is $16nd^2$, dearer than a $k = 3$ convolution: the constants that
# $O(\cdot)$ hides matter. Side by side, for a model of width $d = 64$ (the next cell uses your
# functions once they pass):

# %%
attention_flops = utils.use("04.1", attention_flops)
lstm_flops = utils.use("04.2", lstm_flops)

D_TABLE, K = 64, 3
print(f"d = {D_TABLE}, convolution kernel k = {K}\n")
print(
    f"{'n':>6} {'self-attention':>15} {'of it, n^2 d':>13} {'LSTM':>10} {'convolution':>12}"
)
for n in [16, 64, 160, 512, 2048]:
    att = attention_flops(n, D_TABLE)
    print(
        f"{n:>6} {cost.format_count(att, 'FLOP'):>15} {4 * n * n * D_TABLE / att:>13.0%} "
        f"{cost.format_count(lstm_flops(n, D_TABLE), 'FLOP'):>10} {cost.format_count(cost.conv_flops(n, D_TABLE, K), 'FLOP'):>12}"
    )

# What we left out: the scale, the softmax, biases and gate nonlinearities.
n = 512
left_out = cost.elementwise_flops(n, D_TABLE)
share_att = left_out["self-attention"] / attention_flops(n, D_TABLE)
share_lstm = left_out["LSTM"] / lstm_flops(n, D_TABLE)
print(
    f"\nelementwise work at n = {n}: {share_att:.1%} of the attention count, {share_lstm:.1%} of the LSTM count"
)
utils.claim(
    max(share_att, share_lstm) < 0.05,
    "the elementwise operations we leave out are under 5% of the count",
    needs_training=False,
)

# %% [markdown]
# For short sequences the projections ($n d^2$) dominate attention's cost; for long ones the
# $n^2 d$ of $QK^\top$ and $AV$ takes over. Attention is cheaper than the LSTM when
# $6nd^2 + 4n^2d < 16nd^2$, that is when $n < 2.5\,d$. The paper, which drops constants, says
# "when $n < d$", and notes that sentence lengths in translation (tens of tokens) are usually
# well below model widths (512). Let us find the crossover from the counts:

# %%
def count_crossover(d: int) -> int:
    """The first n at which self-attention costs more FLOPs than an LSTM of width d."""
    return next(
        n for n in range(1, 100 * d) if attention_flops(n, d) > lstm_flops(n, d)
    )


for d in [32, 64, 128, 512]:
    print(
        f"d = {d:>3}: attention costs more than the LSTM from n = {count_crossover(d)} on "
        f"({count_crossover(d) / d:.2f} d)"
    )
utils.claim(
    all(2.4 * d < count_crossover(d) <= 2.5 * d + 1 for d in [32, 64, 128, 512]),
    "by the counts, the crossover is at n = 2.5 d, proportional to the width",
    needs_training=False,
)

# %% [markdown]
# ## 2. Measuring time against sequence length
#
# Counts are a model of the machine. Let us ask the machine. If a layer's time grows like
# $t \approx c\,n^p$, then $\log t = \log c + p \log n$: on **log-log axes** it is a straight line
# whose slope is the exponent $p$. We expect $p \approx 2$ for self-attention (once $n^2 d$
# dominates) and $p \approx 1$ for the LSTM and the convolution.
#
# Timing is noisy, so four precautions:
# * **one thread** (`cost.single_thread()`), so that all the work happens where we measure it;
# * **CPU time** of that thread (`time.thread_time`), not wall-clock time: while the operating
#   system runs other programs, our clock stops, so a busy machine does not inflate the long runs;
# * the **minimum** of several runs, interleaved across lengths: other programs can still only
#   *add* time (they evict our data from the caches), and a burst of load hits every length alike;
# * the slope is fitted three times and we keep the median. The assertions use generous ranges,
#   never absolute times: your machine is not ours.
#
# The measured layers are the course's `SelfAttention`, PyTorch's `nn.LSTM` and a convolution of
# kernel width 3, all of width $d = 32$, forward pass only. Each gets lengths long enough that
# the per-call overhead of Python and PyTorch (a fraction of a millisecond) does not hide its
# growth, and attention a batch of 4 sequences: with one, attention at $n = 256$ is mostly
# overhead, and its slope can come out as low as 1.4.

# %%
class Convolution(nn.Module):
    """A 1-D convolution over positions, batch first like the other layers.

    forward(x (B, n, d)) -> (B, n, d); 'same' padding, so the output has one vector per position.
    """

    def __init__(self, d: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(d, d, k, padding=k // 2)

    def forward(self, x):
        return self.conv(x.transpose(1, 2)).transpose(1, 2)  # Conv1d wants (B, d, n)


D_TIME = 32
torch.manual_seed(0)
layers = {
    "self-attention": SelfAttention(D_TIME),
    "LSTM": nn.LSTM(D_TIME, D_TIME, batch_first=True),
    "convolution": Convolution(D_TIME),
}
batches = {"self-attention": 4, "LSTM": 1, "convolution": 1}
lengths = {
    "self-attention": [256, 512, 1024, 2048],
    "LSTM": [1024, 2048, 4096, 8192, 16384],
    "convolution": [2048, 4096, 8192, 16384, 32768],
}
REPEATS, TRIALS = utils.budget(7, 3), utils.budget(3, 1)

# %%
# NBVAL_IGNORE_OUTPUT
slopes = {name: [] for name in layers}
times = {}
runs = progress([(trial, name) for trial in range(TRIALS) for name in layers], "timing")
with cost.single_thread():
    for trial, name in runs:
        t = cost.time_layers(
            {name: layers[name].to(DEVICE)},
            lengths[name],
            D_TIME,
            batch=batches[name],
            repeats=REPEATS,
            device=DEVICE,
            desc=None,
        )[name]
        slopes[name].append(cost.loglog_slope(lengths[name], t))
        # best over trials
        times[name] = [min(a, b) for a, b in zip(times.get(name, t), t)]
runs.finish(
    f"timed {len(layers)} layers in {TRIALS} trials, best of {REPEATS} runs each"
)
slope = {name: float(np.median(s)) for name, s in slopes.items()}
for name in layers:
    cells = "  ".join(
        f"n={n}: {utils.fmt_time(t)}" for n, t in zip(lengths[name], times[name])
    )
    print(f"{name:>15}: time ~ n^{utils.measured(slope[name], '.2f')}   ({cells})")

# Timing claims are asserted in full runs; in the quick setting (fewer repeats) they are
# only reported.
utils.claim(
    1.5 <= slope["self-attention"] <= 2.8,
    f"self-attention's time grows about like n^2 (slope {utils.measured(slope['self-attention'], '.2f')})",
)
utils.claim(
    0.6 <= slope["LSTM"] <= 1.4,
    f"the LSTM's time grows about like n (slope {utils.measured(slope['LSTM'], '.2f')})",
)
utils.claim(
    0.6 <= slope["convolution"] <= 1.4,
    f"the convolution's time grows about like n (slope {utils.measured(slope['convolution'], '.2f')})",
)
utils.claim(
    slope["self-attention"] - slope["LSTM"] >= 0.5,
    "self-attention's time grows clearly faster with n than the LSTM's",
)

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
for i, name in enumerate(layers):
    ns, ts = np.array(lengths[name]), 1e3 * np.array(times[name])
    ax.loglog(ns, ts, "o", color=PALETTE[i], label=f"{name}: slope {slope[name]:.2f}")
    fit = np.polyfit(np.log(ns), np.log(ts), 1)
    ax.loglog(ns, np.exp(np.polyval(fit, np.log(ns))), "-", color=PALETTE[i], alpha=0.6)
ax.set(
    xlabel="sequence length n (positions)",
    ylabel="forward time (ms of CPU, one thread, per batch)",
    title=f"Measured time per layer, d = {D_TIME}: the slope is the exponent",
)
plain_log_ticks(ax)
ax.legend()
plt.tight_layout()

# %% [markdown]
# Self-attention's slope comes out near 2, but rarely at 2 exactly. Two effects pull it *below*:
# at these lengths the projections (linear in $n$) still take part of the time, and bigger matrix
# products run at more FLOPs per second than small ones. One pushes it *above*: once the batch's
# $n \times n$ matrices no longer fit in the processor's cache (at $n = 2048$ they take
# $4 \cdot 2048^2 \cdot 4$ bytes = 64 MiB), each of their elements costs more to read and write.
# Which wins depends on the machine. The LSTM is
# fast here because PyTorch runs it with a fused CPU kernel (oneDNN's, `aten::mkldnn_rnn_layer`):
# the products with the inputs $x_t$ do not depend on $h_{t-1}$, so it does them for all positions
# in one big product; only the products with $h_{t-1}$ must run step by step.
#
# ## 3. The $n$-vs-$d$ crossover, measured
#
# The counts say attention is cheaper than the LSTM while $n < 2.5\,d$: the crossover should move
# right in proportion to $d$. We time both layers for three widths and plot the ratio of their
# times against $n / d$. To compare like with like, every call processes the same number of
# tokens, 2048, as $2048 / n$ sequences of length $n$: the LSTM's work is then the same at every
# $n$ (it is linear in the number of tokens), attention's grows with $n$, and no call is so small
# that Python's overhead decides the race. If the crossover is proportional to $d$, the three curves cross 1 near
# the same $n / d$. Each crossover $n^*$ comes from a straight line fitted through all the points
# of its curve, $\text{time ratio} \approx (n / n^*)^p$, not from the two points around the crossing,
# so that one noisy timing cannot move it far.

# %%
# NBVAL_IGNORE_OUTPUT
WIDTHS, CROSS_LENGTHS, TOKENS = [32, 64, 128], [16, 32, 64, 128, 256, 512, 1024], 2048
grid, ratio_slope, measured_n_star = {}, {}, {}
runs = progress(total=len(WIDTHS) * len(CROSS_LENGTHS), desc="timing")
with cost.single_thread():
    for d in WIDTHS:
        torch.manual_seed(d)
        pair = {
            "self-attention": SelfAttention(d),
            "LSTM": nn.LSTM(d, d, batch_first=True),
        }
        grid[d] = {name: [] for name in pair}
        # TOKENS // n sequences of length n: the same number of tokens at every n
        for n in CROSS_LENGTHS:
            t = cost.time_layers(
                pair, [n], d, batch=TOKENS // n, repeats=utils.budget(5, 2), desc=None
            )
            runs.update()
            for name in pair:
                grid[d][name].append(t[name][0])
        # time(attention) / time(LSTM) ~ (n / n*)^p: fitted through all lengths, robust
        # to one noisy point
        ratio_slope[d], measured_n_star[d] = cost.ratio_crossover(
            CROSS_LENGTHS, grid[d]["self-attention"], grid[d]["LSTM"]
        )
        print(
            f"d = {d:>3}: attention becomes slower than the LSTM at n = {utils.measured(measured_n_star[d], '.0f')} "
            f"({utils.measured(measured_n_star[d] / d, '.1f')} d; the FLOP counts say {count_crossover(d) / d:.1f} d)"
        )
runs.finish(f"timed {len(WIDTHS)} widths at {len(CROSS_LENGTHS)} lengths")

utils.claim(
    all(CROSS_LENGTHS[0] < measured_n_star[d] < CROSS_LENGTHS[-1] for d in WIDTHS),
    "for every width there is a crossover: attention is faster on short sequences, slower on long ones",
)
utils.claim(
    all(grid[d]["self-attention"][-1] > grid[d]["LSTM"][-1] for d in WIDTHS),
    f"for every width, attention is slower than the LSTM on long sequences (n = {CROSS_LENGTHS[-1]})",
)
utils.claim(
    measured_n_star[WIDTHS[-1]] > measured_n_star[WIDTHS[0]],
    "the measured crossover moves to longer sequences as the model gets wider",
)

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
for i, d in enumerate(WIDTHS):
    ratio = np.array(grid[d]["self-attention"]) / np.array(grid[d]["LSTM"])
    ax.loglog(
        np.array(CROSS_LENGTHS) / d,
        ratio,
        "o-",
        color=PALETTE[i],
        label=f"measured, d = {d}",
    )
x = np.geomspace(CROSS_LENGTHS[0] / WIDTHS[-1], CROSS_LENGTHS[-1] / WIDTHS[0], 50)
ax.loglog(
    x,
    [attention_flops(r * 64, 64) / lstm_flops(r * 64, 64) for r in x],
    "--",
    color="grey",
    label="FLOP count ratio",
)
ax.axhline(1, color="black", linewidth=0.8)
ax.axvline(2.5, color="grey", linestyle=":", label="n = 2.5 d (counts)")
ax.set(
    xlabel="n / d (sequence length over model width)",
    ylabel="time(attention) / time(LSTM)",
    title="Attention is cheaper below the crossover, dearer above it",
)
plain_log_ticks(
    ax, xticks=[0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32], yticks=[0.25, 0.5, 1, 2, 4, 8]
)
ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# The measured crossover need not sit at the counted $2.5\,d$: the counts ignore memory traffic
# (attention's $n \times n$ matrices, the softmax) and per-call overheads, and the LSTM's fused
# kernel does its FLOPs at a different speed from our attention. That constant depends on the
# machine; that the crossover grows with $d$ is what the asymptotics promise, and what every run
# measured (the claim above). Whether it grows *in proportion* to $d$, these timings cannot tell:
# $n^*/d$ moves from one width to the next by about as much as it moves between two runs of this
# notebook, and in the runs made for this lesson the width with the largest $n^*/d$ was not the
# same twice. Compare the table with your own run: the law $n^* \propto d$ is neither confirmed
# nor refuted at this precision.
#
# ## 4. Sequential operations
#
# FLOPs are not the whole story. A GPU does thousands of operations at once, *if* they do not
# depend on each other. The least time a layer can take is set by its longest chain of operations
# that must run one after another: the paper's **sequential operations** column. We measure it in
# the autograd graph, which records every operation and what it consumed: `cost.graph_depth` finds
# the longest chain from an input to the output.
#
# To let autograd see each step of the LSTM, we write the same computation as a loop over
# `nn.LSTMCell` (PyTorch's fused `nn.LSTM` hides the steps inside one kernel, but still has to
# run them in order).

# %%
class UnrolledLSTM(nn.Module):
    """The LSTM as a Python loop over positions: the same maths as nn.LSTM, step by visible step.

    forward(x (B, n, d)) -> h (B, n, d), the hidden state after each position.
    """

    def __init__(self, d: int):
        super().__init__()
        self.cell = nn.LSTMCell(d, d)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[0], self.cell.hidden_size)  # (B, d)
        outputs = []
        # step t needs h_{t-1}: this loop cannot be parallelised
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outputs.append(h)
        return torch.stack(outputs, dim=1)  # (B, n, d)


D_DEPTH, DEPTH_LENGTHS = 16, [16, 32, 64, 128]
torch.manual_seed(0)
depth_layers = {
    "self-attention": lambda x: SelfAttention(D_DEPTH)(x)[0],
    "LSTM": UnrolledLSTM(D_DEPTH),
    "convolution": Convolution(D_DEPTH),
}
depth = {
    name: [
        cost.graph_depth(f(torch.randn(1, n, D_DEPTH, requires_grad=True)))
        for n in DEPTH_LENGTHS
    ]
    for name, f in depth_layers.items()
}
print("longest chain of operations (autograd graph depth)")
print(f"{'n':>16} " + " ".join(f"{n:>6}" for n in DEPTH_LENGTHS))
for name, ds in depth.items():
    print(f"{name:>16} " + " ".join(f"{x:>6}" for x in ds))

grow = {name: ds[-1] / ds[0] for name, ds in depth.items()}
span = DEPTH_LENGTHS[-1] / DEPTH_LENGTHS[0]
utils.claim(
    grow["self-attention"] == 1 and grow["convolution"] == 1,
    "self-attention and convolution need the same number of sequential operations at every length: O(1)",
    needs_training=False,
)
utils.claim(
    0.9 * span <= grow["LSTM"] <= 1.1 * span,
    f"the LSTM's chain grows in proportion to n: x{grow['LSTM']:.1f} for x{span:.0f} positions, O(n)",
    needs_training=False,
)

# %% [markdown]
# ## 5. Maximum path length
#
# To learn that the output at position $n$ depends on the input at position 1, a gradient has to
# travel between them. The fewer operations on the way, the easier it is to learn long-range
# dependencies: the paper's **maximum path length**. In an RNN the path from $x_1$ to $y_n$ passes
# through all $n - 1$ steps; in self-attention it is one step, whatever the distance.
#
# We measure it as lesson 01 felt it: the size of the gradient $\lVert \partial y_n / \partial x_j
# \rVert$ of the last output with respect to each input, against the distance $n - j$, for a
# freshly initialised LSTM and self-attention layer ($n = 64$, averaged over 8 random sequences).
# (At distance 0 attention's gradient is a little larger: $x_n$ also makes the query.)

# %%
N_PATH, D_PATH = 64, 32
torch.manual_seed(0)
grads = {
    "self-attention": cost.gradient_by_distance(SelfAttention(D_PATH), N_PATH, D_PATH),
    "LSTM": cost.gradient_by_distance(
        nn.LSTM(D_PATH, D_PATH, batch_first=True), N_PATH, D_PATH
    ),
}
# input j is n - 1 - j positions before the last output
distance = np.arange(N_PATH)[::-1]
for name, g in grads.items():
    # distances 1 .. n-1 (at distance 0, x_n also makes the query itself)
    others = g[:-1]
    print(
        f"{name:>15}: gradient at distance 1: 10^{utils.measured(np.log10(g[-2]), '.1f')}, at distance {N_PATH - 1}: "
        f"10^{utils.measured(np.log10(g[0]), '.1f')}  (max/min over distances 1..{N_PATH - 1}: 10^{utils.measured(np.log10(others.max() / others.min()), '.1f')})"
    )

utils.claim(
    grads["LSTM"][0] < 1e-6 * grads["LSTM"][-2],
    f"the LSTM's gradient shrinks more than a million-fold from distance 1 to {N_PATH - 1}",
    needs_training=False,
)
flat = grads["self-attention"][:-1]
utils.claim(
    flat.max() < 3 * flat.min(),
    "self-attention's gradient is about the same size at every distance (within a factor 3)",
    needs_training=False,
)

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for i, (name, g) in enumerate(grads.items()):
    ax.semilogy(distance, g, "o-", markersize=3, color=PALETTE[i], label=name)
ax.set(
    xlabel="distance n - j between input x_j and the last output y_n (positions)",
    ylabel="gradient norm ||dy_n / dx_j||",
    title="Path length, felt by the gradient: one step vs n - j steps",
)
ax.legend()
plt.tight_layout()

# %% [markdown]
# A convolution sits in between: one layer with kernel width $k$ only sees $k$ neighbours, so
# $y_n$ depends on $x_1$ only after a stack of layers. With contiguous kernels each layer reaches
# $k - 1$ positions further, so it takes $O(n/k)$ layers; with *dilated* kernels (dilation
# $1, k, k^2, \dots$) the reach multiplies by $k$ each layer: $O(\log_k n)$. We measure it by
# sending a signal from $x_1$ through a growing stack until it arrives at $y_n$:

# %%
print(f"{'n':>6} {'contiguous k=3':>15} {'dilated k=3':>12}")
conv_depths = {}
for n in [16, 64, 256, 1024]:
    conv_depths[n] = (
        cost.conv_layers_to_connect(n, 3),
        cost.conv_layers_to_connect(n, 3, dilated=True),
    )
    print(f"{n:>6} {conv_depths[n][0]:>15} {conv_depths[n][1]:>12}")
utils.claim(
    all(c == math.ceil((n - 1) / 2) for n, (c, _) in conv_depths.items()),
    "contiguous convolutions need (n - 1) / (k - 1) layers to connect the ends: O(n / k)",
    needs_training=False,
)
utils.claim(
    all(3 ** (dl - 1) < n <= 3**dl for n, (_, dl) in conv_depths.items()),
    "dilated convolutions need about log_k(n) layers: O(log_k n)",
    needs_training=False,
)

# %% [markdown]
# ## 6. Memory: the $n \times n$ matrix
#
# Time is one cost; memory is often the one that stops you. Naive attention writes down the whole
# $n \times n$ matrix of scores, and then the whole matrix of weights.
#
# ### Exercise 04.3 · The memory of naive attention (★☆☆, about 10 min)
#
# Count the bytes that `scaled_dot_product_attention(q, k, v)` from lesson 03 holds at its peak,
# beyond its inputs: the tensors it creates and which exist at the same time.

# %%
def attention_memory(n: int, d: int, batch: int = 1, bytes_per_element: int = 4) -> int:
    """Bytes that naive attention softmax(Q K^T / sqrt(d)) V holds at its peak, beyond its inputs.

    The scores S = Q K^T / sqrt(d) (batch, n, n), the weights A = softmax(S) (batch, n, n) -- the
    softmax is out of place, so S and A exist together -- and the output A V (batch, n, d).
    """
    ### BEGIN SOLUTION
    return batch * (2 * n * n + n * d) * bytes_per_element
    ### END SOLUTION


# %%
utils.check("04.3", attention_memory)

# %% [markdown]
# Now measure it. `cost.peak_memory(fn)` runs `fn` under PyTorch's profiler, which records every
# allocation and every free on the CPU, and returns the highest total reached. We compare the
# course's attention with PyTorch's fused `F.scaled_dot_product_attention`, which computes the
# same output block by block (tiles of queries and keys, with a running softmax) and never stores
# the $n \times n$ matrix. One detail: on the CPU, PyTorch 2.13 and older use the fused kernel only
# for 4-D inputs `(batch, heads, n, d)`; given 3-D inputs they fall back to a plain "math" version
# that does store the matrix (PyTorch 2.14 no longer does). The last column shows what yours does.

# %%
# NBVAL_IGNORE_OUTPUT
attention_memory = utils.use("04.3", attention_memory)

D_MEM, MEM_LENGTHS = 64, [256, 512, 1024, 2048]
memory = {
    "counted": [],
    "course's attention": [],
    "fused, 4-D": [],
    "PyTorch, 3-D input": [],
}
with cost.single_thread():
    for n in MEM_LENGTHS:
        # (batch, heads, n, d)
        q, k, v = (torch.randn(1, 1, n, D_MEM) for _ in range(3))
        memory["counted"].append(attention_memory(n, D_MEM))
        memory["course's attention"].append(
            cost.peak_memory(lambda: scaled_dot_product_attention(q, k, v))
        )
        memory["fused, 4-D"].append(
            cost.peak_memory(lambda: F.scaled_dot_product_attention(q, k, v))
        )
        memory["PyTorch, 3-D input"].append(
            cost.peak_memory(lambda: F.scaled_dot_product_attention(q[0], k[0], v[0]))
        )
print(f"{'n':>6} " + " ".join(f"{name:>20}" for name in memory))
for i, n in enumerate(MEM_LENGTHS):
    print(
        f"{n:>6} "
        + " ".join(f"{cost.format_bytes(memory[name][i]):>20}" for name in memory)
    )

utils.claim(
    memory["course's attention"] == memory["counted"],
    "the measured peak of the course's attention is exactly the count S + A + output",
    needs_training=False,
)
fused_slope = cost.loglog_slope(MEM_LENGTHS, memory["fused, 4-D"])
utils.claim(
    fused_slope < 1.5 and cost.loglog_slope(MEM_LENGTHS, memory["counted"]) > 1.8,
    f"naive attention's memory grows like n^2, the fused kernel's about like n (slope {utils.measured(fused_slope, '.2f')})",
    needs_training=False,
)
utils.claim(
    memory["fused, 4-D"][-1] * 10 < memory["course's attention"][-1],
    f"at n = {MEM_LENGTHS[-1]} the fused kernel needs less than a tenth of the memory",
    needs_training=False,
)
stores = memory["PyTorch, 3-D input"][-1] > 4 * memory["fused, 4-D"][-1]
torch_version = torch.__version__.split("+")[0]
print(
    f"PyTorch {torch_version}, 3-D inputs: {'a fallback that stores' if stores else 'the fused kernel, without'} the n x n matrix"
)
if tuple(int(part) for part in torch_version.split(".")[:2]) <= (2, 13):
    utils.claim(
        stores,
        "with 3-D inputs PyTorch 2.13 and older fall back to a version that stores the n x n matrix",
        needs_training=False,
    )

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for i, name in enumerate(["course's attention", "fused, 4-D", "PyTorch, 3-D input"]):
    ax.loglog(
        MEM_LENGTHS, np.array(memory[name]) / 2**20, "o-", color=PALETTE[i], label=name
    )
ax.loglog(
    MEM_LENGTHS,
    np.array(memory["counted"]) / 2**20,
    "x",
    color="black",
    markersize=9,
    label="counted: batch (2n² + nd) × 4 bytes",
)
ax.set(
    xlabel="sequence length n (positions)",
    ylabel="peak memory (MiB)",
    title=f"Memory of one attention call, d = {D_MEM}: n² vs about n",
)
plain_log_ticks(ax, xticks=MEM_LENGTHS, yticks=[0.125, 0.5, 2, 8, 32])
ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# With a batch of 32 sequences and 8 heads, the $n \times n$ matrices of one layer at $n = 4096$
# take `attention_memory(4096, 64, batch=32 * 8)` bytes:

# %%
big = attention_memory(4096, 64, batch=32 * 8)
print(
    f"{cost.format_bytes(big)} for one layer's scores and weights: more than most GPUs hold"
)
utils.claim(
    big > 32 * 2**30,
    "naive attention over 4096 positions needs tens of GiB per layer",
    needs_training=False,
)

# %% [markdown]
# ### What practitioners do about the quadratic cost
#
# * **Exact, IO-aware attention** (FlashAttention, and PyTorch's fused
#   `F.scaled_dot_product_attention`): the same result, computed in tiles with a running softmax,
#   so the $n \times n$ matrix never exists in memory. The FLOPs stay $O(n^2 d)$; the memory becomes
#   $O(n d)$, and on GPUs it is also much faster because memory traffic, not arithmetic, was the
#   bottleneck.
# * **Sparse and local attention** (the paper's own *restricted* self-attention, Longformer,
#   BigBird): each query attends to a window of $r$ neighbours plus a few global tokens:
#   $O(n r d)$, at the price of a longer path, $O(n / r)$, between distant positions.
# * **Low-rank and kernel approximations** (Linformer, Performer, linear attention): replace
#   $\mathrm{softmax}(QK^\top)V$ with something computable in $O(n d^2)$ without the $n \times n$
#   matrix; approximate, and usually somewhat less accurate.
# * **Recurrence and state-space models** (Transformer-XL's segment memory, RWKV, Mamba): bring
#   back a fixed-size state for very long sequences, trading some of attention's short paths for
#   linear cost.
#
# ## 7. Table 1 of "Attention Is All You Need", reproduced
#
# The paper's Table 1 gives, per layer type, the complexity per layer, the minimum number of
# sequential operations and the maximum path length. Here it is with what we measured beside each
# asymptotic figure.

# %%
# NBVAL_IGNORE_OUTPUT
from IPython.display import Markdown, display

n_p = N_PATH
att_flat = grads["self-attention"][:-1].max() / grads["self-attention"][:-1].min()
lstm_drop = grads["LSTM"][-2] / grads["LSTM"][0]
rows = [
    (
        "Self-attention",
        "O(n²·d)",
        f"{utils.measured(slope['self-attention'], '.2f')}",
        "O(1)",
        " → ".join(map(str, depth["self-attention"])),
        "O(1)",
        f"1 layer; gradient flat over {n_p - 1} positions (max/min {utils.measured(att_flat, '.1f')})",
    ),
    (
        "Recurrent (LSTM)",
        "O(n·d²)",
        f"{utils.measured(slope['LSTM'], '.2f')}",
        "O(n)",
        " → ".join(map(str, depth["LSTM"])),
        "O(n)",
        f"{n_p - 1} steps; gradient falls 10^{utils.measured(np.log10(lstm_drop), '.0f')}-fold",
    ),
    (
        "Convolutional (k = 3)",
        "O(k·n·d²)",
        f"{utils.measured(slope['convolution'], '.2f')}",
        "O(1)",
        " → ".join(map(str, depth["convolution"])),
        "O(log_k n) dilated (O(n/k) contiguous)",
        f"{conv_depths[64][0]} layers, or {conv_depths[64][1]} dilated (n = 64)",
    ),
]
header = (
    "| layer type | complexity per layer (paper) | measured time exponent in n | sequential operations (paper) "
    f"| measured longest chain, n = {' → '.join(map(str, DEPTH_LENGTHS))} | maximum path length (paper) "
    f"| measured path, n = {n_p} |\n|---|---|---|---|---|---|---|\n"
)
display(Markdown(header + "\n".join("| " + " | ".join(r) + " |" for r in rows)))

# %% [markdown]
# Read the table row by row. Self-attention pays $n^2$ in compute and memory, but needs a constant
# number of sequential operations (so it uses all of a GPU's parallelism, in training and over
# the whole sequence at once) and connects any two positions in one step (so long-range
# dependencies are easy to learn). The LSTM is linear in $n$, but sequential in $n$ and its
# gradients fade over distance: lesson 01's bottleneck, measured here from the other side.
#
# ## 8. Explore: choose $n$ and $d$
#
# Slide $n$ and $d$ to compare what each layer type costs, by the counts, side by side; where this
# notebook timed that size (section 3), the measured CPU time of one sequence is shown too.

# %%
import ipywidgets as widgets
from IPython.display import HTML


def render(n: int, d: int, k: int = 3):
    """HTML table of the predicted cost of each layer type at sequence length n and width d.

    Returns (html, rows); each row is a dict with the layer's FLOPs, activation memory (bytes,
    forward pass, counted), sequential operations, path length and measured CPU time of one sequence
    (None where section 3 did not time it).
    """
    if not (isinstance(n, int) and isinstance(d, int) and n >= 2 and d >= 1):
        raise ValueError(
            f"render needs whole numbers n >= 2 and d >= 1, not n={n!r}, d={d!r}"
        )
    measured = grid.get(d, {})

    # section 3 timed TOKENS // n sequences at once: the time of one of them
    def timed(name):
        return (
            measured[name][CROSS_LENGTHS.index(n)] / (TOKENS // n)
            if name in measured and n in CROSS_LENGTHS
            else None
        )

    rows = [
        {
            "layer": "self-attention",
            "flops": attention_flops(n, d),
            # + Q, K, V
            "memory": attention_memory(n, d) + 3 * n * d * cost.BYTES_PER_FLOAT,
            "sequential": 1,
            "path": 1,
            "time": timed("self-attention"),
        },
        {
            "layer": "LSTM",
            "flops": lstm_flops(n, d),
            # 4 gate pre-activations + h, per position
            "memory": 5 * n * d * cost.BYTES_PER_FLOAT,
            "sequential": n,
            "path": n - 1,
            "time": timed("LSTM"),
        },
        {
            "layer": f"convolution (k = {k})",
            "flops": cost.conv_flops(n, d, k),
            "memory": n * d * cost.BYTES_PER_FLOAT,  # the output
            "sequential": 1,
            "path": math.ceil((n - 1) / (k - 1)),
            "time": None,
        },
    ]
    cheapest = min(rows, key=lambda r: r["flops"])["layer"]
    cells = "".join(
        f"<tr><td>{'<b>' + r['layer'] + '</b>' if r['layer'] == cheapest else r['layer']}</td>"
        f"<td>{cost.format_count(r['flops'], 'FLOP')}</td><td>{cost.format_bytes(r['memory'])}</td>"
        f"<td>{r['sequential']}</td><td>{r['path']}</td>"
        f"<td>{utils.fmt_time(r['time']) if r['time'] is not None else 'not timed'}</td></tr>"
        for r in rows
    )
    html = (
        f"<p>n = {n}, d = {d}: fewest FLOPs: <b>{cheapest}</b> "
        f"(attention's n² d share: {4 * n * n * d / attention_flops(n, d):.0%})</p>"
        "<table><tr><th>layer</th><th>FLOPs (count)</th><th>activations (count)</th>"
        "<th>sequential ops</th><th>path length</th><th>measured time (one sequence)</th></tr>"
        + cells
        + "</table>"
    )
    return html, rows


# %%
# NBVAL_IGNORE_OUTPUT
explorer = widgets.interactive(
    lambda n, d: display(HTML(render(n, d)[0])),
    n=widgets.SelectionSlider(
        options=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
        value=256,
        description="n",
    ),
    d=widgets.SelectionSlider(
        options=[16, 32, 64, 128, 256, 512, 1024], value=64, description="d"
    ),
)
explorer

# %% [markdown]
# The same view, without the widget (the measured times vary from run to run, so only the counts
# are printed here):

# %%
for n, d in [(64, 128), (1024, 32)]:
    html, rows = render(n, d)
    print(f"n = {n}, d = {d}:")
    for r in rows:
        print(
            f"  {r['layer']:>20}: {cost.format_count(r['flops'], 'FLOP'):>11}, "
            f"{cost.format_bytes(r['memory']):>10}, sequential {r['sequential']:>4}, path {r['path']:>4}, "
            f"{'timed' if r['time'] is not None else 'not timed'}"
        )
# rows: attention, LSTM, convolution
short_wide, long_narrow = render(64, 128)[1], render(1024, 32)[1]
utils.claim(
    short_wide[0]["flops"] < short_wide[1]["flops"]
    and long_narrow[0]["flops"] > long_narrow[1]["flops"],
    "by the counts, attention beats the LSTM for short sequences of wide vectors, not for long narrow ones",
    needs_training=False,
)
utils.claim(
    short_wide[0]["time"] is not None and long_narrow[1]["time"] is not None,
    "the widget shows the measured time where this notebook took it",
    needs_training=False,
)

# %% [markdown]
# ## Summary
#
# * Self-attention costs $6nd^2 + 4n^2d$ FLOPs per layer (projections, then $QK^\top$ and $AV$),
#   an LSTM $16nd^2$, a convolution $2knd^2$. Attention is the cheaper one while $n < 2.5\,d$.
# * Measured, attention's time grows about like $n^2$ and the LSTM's like $n$ (log-log slopes);
#   the measured crossover moves to longer sequences as $d$ grows, as the counts predict; whether
#   in proportion, the timings cannot tell ($n^*/d$ moves as much between runs as between widths).
# * Naive attention stores two $n \times n$ matrices: $(2n^2 + nd)$ floats per sequence, exactly as
#   measured. Fused attention (`F.scaled_dot_product_attention`, FlashAttention) computes the same
#   output in tiles and needs memory that grows about like $n$.
# * What attention buys for its $n^2$: a constant number of sequential operations (parallel
#   training) and a path of length 1 between any two positions (gradients do not fade with
#   distance), where the LSTM needs $n$ of each.
#
# ## Going further
#
# 1. On a machine with a GPU, set `DEVICE = torch.device("cuda")` and time the layers again (remove
#    `single_thread`). Where does the slope of attention start to look like 2, and why not for
#    small $n$?
# 2. Multi-head attention (lesson 05) splits $d$ into $h$ heads of width $d/h$. Count its FLOPs:
#    does the number of heads change the cost? What about the memory of the weights?
# 3. With a window of $r$ neighbours (restricted self-attention), what are the complexity per
#    layer and the maximum path length? Modify `scaled_dot_product_attention` with a band mask and
#    measure whether the time really drops (hint: a mask alone does not skip any work).

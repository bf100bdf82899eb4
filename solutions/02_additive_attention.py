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
# # Lesson 02 · Additive (Bahdanau) attention
#
# **Why this lesson:** in lesson 01 the decoder saw the input only through one fixed-size vector
# $v$, and accuracy fell as inputs grew. Here the decoder looks back at **every** encoder state,
# and at each output step chooses which ones matter. With the same task, hidden size and
# training budget, the fall disappears.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/02_additive_attention.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/02_additive_attention.ipynb)
#
# **You will be able to**
# 1. compute additive attention: alignment scores $e_{ij}$, weights $\alpha_{ij}$ and a context
#    vector $c_i$ for every output step, with padding masked out;
# 2. build a decoder that attends to the encoder's states at each step;
# 3. show with numbers and heatmaps that attention removes the bottleneck, and *which* input
#    each output used;
# 4. write Luong's dot and general scores, the bridge to the next lesson.
#
# **Exercises:** 02.1 additive attention (★★☆) · 02.2 the attention decoder step (★★☆) ·
# 02.3 Luong's dot and general scores (★☆☆). Stuck? `utils.hint("02.1")`, `utils.hint("02.1", 2)`,
# `utils.solution("02.1")`. The lesson runs to the end even before you finish: later cells use
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
import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from IPython.display import HTML, display

from utils.cost import best_times
from utils.data import EOS, PAD, SOS, DateTask, SymbolTask
from utils.plots import plot_accuracy_by_length, plot_attention, plot_losses
from utils.rnn import BottleneckSeq2Seq, Encoder, shift_right
from utils.training import (
    accuracy_by_length,
    count_parameters,
    exact_match,
    print_accuracy_table,
    token_accuracy,
    train,
)

# %% [markdown]
# ## 1. The idea: a different context for every output token
#
# The encoder of lesson 01 already computes a state $h_j$ for every input position $j$; the
# bottleneck model threw all of them away except the last. Bahdanau, Cho and Bengio (2015) keep
# them. Before emitting output token $i$, the decoder, in state $s_{i-1}$, gives every input
# position an **alignment score**
#
# $$e_{ij} = w_v^\top \tanh\!\left(W_q\, s_{i-1} + W_k\, h_j\right),$$
#
# a small one-hidden-layer network that asks "how well does input $j$ match what I need now?".
# A softmax over the positions turns the scores into **weights** that are positive and sum to 1,
#
# $$\alpha_{ij} = \frac{\exp(e_{ij})}{\sum_{k} \exp(e_{ik})},$$
#
# and the **context vector** is the weighted sum of the encoder states,
#
# $$c_i = \sum_j \alpha_{ij}\, h_j .$$
#
# Three things to notice:
#
# * $c_i$ has the index $i$: every output token gets **its own** context, because the query
#   $s_{i-1}$ changes from step to step, and so does $\alpha_{i\cdot}$;
# * a high score $e_{ij}$ means a large $\alpha_{ij}$, so input $j$'s features **dominate** the
#   weighted sum $c_i$;
# * $W_k h_j$ does not depend on $i$: a decoder can compute it **once per sequence** and reuse it
#   at every step (the optional `projected_keys` argument below).
#
# Inputs in a batch are padded. A padded position must get no weight at all, so its score is set
# to $-\infty$ before the softmax ($e^{-\infty} = 0$). As everywhere in this course, a boolean
# mask is `True` where attention is **allowed** (the convention of
# `torch.nn.functional.scaled_dot_product_attention`; `nn.MultiheadAttention` uses the opposite).
# If *every* position of a row were masked, the softmax would be $0/0 =$ NaN; the course's
# attention returns zero weights and a zero context for such a row instead. (Our inputs always
# have at least one token, so the model never meets one.)
#
# ### Exercise 02.1 · Additive attention (★★☆, about 20 min)
#
# In the code the query $s_{i-1}$ is `query`, the states $h_j$ are `keys`, and the names of the
# layers are those of the equations.

# %%
class AdditiveAttention(nn.Module):
    """Bahdanau attention: e_j = w_v^T tanh(W_q s + W_k h_j), alpha = softmax_j(e), c = sum_j alpha_j h_j.

    Layers, without bias (the names of the equation; the model calls ``attention.W_k`` itself):
    ``self.W_q = nn.Linear(query_dim, attn_dim, bias=False)``, ``self.W_k = nn.Linear(key_dim, attn_dim,
    bias=False)``, ``self.w_v = nn.Linear(attn_dim, 1, bias=False)``.

    forward(query (B, Dq), keys (B, S, Dk), mask=None (B, S) bool, True = may attend,
            projected_keys=None (B, S, A), W_k(keys) if the caller computed it already)
        -> (context (B, Dk), weights (B, S))

    A row whose keys are all masked gets zero weights and a zero context, never NaN.
    The inputs are not changed in place: the model passes the same ``projected_keys`` at every step.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.w_v = nn.Linear(attn_dim, 1, bias=False)
        ### END SOLUTION

    def forward(self, query, keys, mask=None, projected_keys=None):
        ### BEGIN SOLUTION
        if projected_keys is None:
            # (B, S, A); it does not depend on the query
            projected_keys = self.W_k(keys)
        # W_q s is one vector per example: [:, None, :] broadcasts it over all S
        # positions.
        # e: (B, S)
        scores = self.w_v(
            torch.tanh(self.W_q(query)[:, None, :] + projected_keys)
        ).squeeze(-1)
        if mask is not None:
            # exp(-inf) = 0: padding gets no weight
            scores = scores.masked_fill(~mask, float("-inf"))
        # alpha: (B, S), each row sums to 1 over the positions
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            # all masked: 0, not NaN
            weights = torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)
        # c = sum_j alpha_j h_j: (B, Dk)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)
        return context, weights
        ### END SOLUTION


# %%
utils.check("02.1", AdditiveAttention)

# %% [markdown]
# The check tried your module on several shapes, with and without padding. Two of its
# properties are worth seeing with our own eyes: the weights of each row sum to 1, and a padded
# position has **no influence**: we can put anything there and the context does not move.

# %%
AdditiveAttention = utils.use("02.1", AdditiveAttention)

torch.manual_seed(0)
attention = AdditiveAttention(query_dim=8, key_dim=8, attn_dim=16)
query, keys = torch.randn(2, 8), torch.randn(2, 5, 8)  # (B, Dq), (B, S, Dk)
# second row: 2 pads
mask = torch.tensor([[True, True, True, True, True], [True, True, True, False, False]])
with torch.no_grad():
    context, weights = attention(query, keys, mask)
    # change only the padding
    garbage = torch.where(mask[..., None], keys, 1e3 * torch.randn(2, 5, 8))
    context2, _ = attention(query, garbage, mask)
print("alpha (B, S):\n", weights.numpy().round(3))
print("row sums:", weights.sum(-1).numpy().round(6))
utils.claim(
    torch.allclose(weights.sum(-1), torch.ones(2)),
    "each row of alpha sums to 1",
    needs_training=False,
)
utils.claim(
    bool((weights[~mask] == 0).all()) and torch.allclose(context, context2),
    "padded positions get weight exactly 0 and have no influence on the context",
    needs_training=False,
)

# %% [markdown]
# ## 2. The decoder step, with attention
#
# The decoder is still an LSTM that produces one token per step, but now each step first
# attends (the query is the previous state $s_{i-1}$), then feeds the context into the LSTM
# cell together with the previous token, and finally reads both the new state and the context
# to score the next token:
#
# $$\begin{aligned}
# c_i,\ \alpha_{i\cdot} &= \mathrm{attention}(s_{i-1},\ h_{1..S}),\\
# s_i &= \mathrm{LSTMCell}\big([\mathrm{emb}(y_{i-1});\ c_i],\ s_{i-1}\big),\\
# \mathrm{logits}_i &= W_{out}\,[s_i;\ c_i] + b_{out}.
# \end{aligned}$$
#
# $[a; b]$ is concatenation. Here $s$ is the LSTM's *hidden* state $h$ (the first item of its
# state pair), not its cell state. The decoder starts from the encoder's final state, as in
# lesson 01, but it no longer depends on it alone. Because $s_i$ needs $s_{i-1}$, the steps run
# one after the other, so the step is a module of its own, called in a loop.
#
# ### Exercise 02.2 · The attention decoder step (★★☆, about 15 min)

# %%
class AttentionDecoder(nn.Module):
    """One decoder step with additive attention; the query is the previous decoder state s_{i-1}.

    Layers: ``self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)``, ``self.attention =
    AdditiveAttention(hidden_dim, hidden_dim, attn_dim)``, ``self.cell = nn.LSTMCell(emb_dim + hidden_dim,
    hidden_dim)``, ``self.out = nn.Linear(2 * hidden_dim, vocab_size)``.

    forward(token (B,), state ((B, H), (B, H)), enc_outputs (B, S, H), mask (B, S), projected_keys=None (B, S, A))
        -> (logits (B, V), new state ((B, H), (B, H)), weights (B, S))
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, attn_dim: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.attention = AdditiveAttention(hidden_dim, hidden_dim, attn_dim)
        self.cell = nn.LSTMCell(emb_dim + hidden_dim, hidden_dim)
        self.out = nn.Linear(2 * hidden_dim, vocab_size)
        ### END SOLUTION

    def forward(self, token, state, enc_outputs, mask, projected_keys=None):
        ### BEGIN SOLUTION
        s_prev = state[0]  # (B, H): the hidden state, not the LSTM's cell state
        # c_i (B, H), alpha_i (B, S)
        context, weights = self.attention(s_prev, enc_outputs, mask, projected_keys)
        # s_i from [emb(y_{i-1}); c_i]
        s, cell = self.cell(torch.cat([self.embedding(token), context], dim=-1), state)
        logits = self.out(torch.cat([s, context], dim=-1))  # (B, V): from [s_i; c_i]
        return logits, (s, cell), weights
        ### END SOLUTION


# %%
utils.check("02.2", AttentionDecoder)

# %% [markdown]
# ## 3. The whole model
#
# The encoder is lesson 01's, unchanged (`utils.rnn.Encoder`). The model keeps all its outputs
# $h_1, \dots, h_S$, computes the mask and $W_k h_j$ once, and loops over the output steps with
# your decoder step. It keeps the course's contract: `model(src, src_lengths, tgt)` gives logits
# with teacher forcing, and `model.generate(...)` decodes greedily; both can also return the
# weights $\alpha$, one row per output token.

# %%
AttentionDecoder = utils.use("02.2", AttentionDecoder)


class AttentionSeq2Seq(nn.Module):
    """Lesson 01's encoder, and a decoder that attends to every encoder state at every step."""

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int = 32,
        hidden_dim: int = 64,
        attn_dim: int = 64,
    ):
        super().__init__()
        self.encoder = Encoder(vocab_size, emb_dim, hidden_dim)
        self.decoder = AttentionDecoder(vocab_size, emb_dim, hidden_dim, attn_dim)

    def _start(self, src, src_lengths):
        enc_outputs, (h, c) = self.encoder(src, src_lengths)  # (B, S, H)
        # (B, S)
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths[
            :, None
        ].to(src.device)
        # (B, S, A): once per sequence, not per step
        projected_keys = self.decoder.attention.W_k(enc_outputs)
        return enc_outputs, mask, projected_keys, (h[0], c[0])

    def forward(self, src, src_lengths, tgt, return_attention: bool = False):
        enc_outputs, mask, keys, state = self._start(src, src_lengths)
        inputs = shift_right(tgt)  # teacher forcing
        logits, alphas = [], []
        for i in range(tgt.shape[1]):  # sequential: s_i needs s_{i-1}
            step_logits, state, weights = self.decoder(
                inputs[:, i], state, enc_outputs, mask, keys
            )
            logits.append(step_logits)
            alphas.append(weights)
        logits = torch.stack(logits, dim=1)  # (B, T, V)
        # weights (B, T, S)
        return (logits, torch.stack(alphas, dim=1)) if return_attention else logits

    @torch.no_grad()
    def generate(self, src, src_lengths, max_len: int, return_attention: bool = False):
        """Greedy decoding -> ids (B, L), and with ``return_attention`` also weights (B, L, S)."""
        enc_outputs, mask, keys, state = self._start(src, src_lengths)
        # (B,)
        token = torch.full((src.shape[0],), SOS, dtype=torch.long, device=src.device)
        finished = torch.zeros_like(token, dtype=torch.bool)
        out, alphas = [], []
        for _ in range(max_len):
            logits, state, weights = self.decoder(token, state, enc_outputs, mask, keys)
            token = logits.argmax(dim=-1)  # (B,)
            out.append(torch.where(finished, PAD, token))  # nothing after EOS
            alphas.append(weights)
            finished |= token == EOS
            if finished.all():
                break
        ids = torch.stack(out, dim=1)  # (B, L)
        # weights (B, L, S)
        return (ids, torch.stack(alphas, dim=1)) if return_attention else ids


# %% [markdown]
# ## 4. Experiment 1: the same budget as lesson 01, at every length
#
# Same task (reverse, lengths 2 to 24 mixed), same hidden size 64, same training budget
# (400 steps of 128 examples, Adam, learning rate $3 \cdot 10^{-3}$), same evaluation on fresh
# inputs of each length. First lesson 01's bottleneck model again (so that both curves come from
# this notebook), then the attention model. Attention adds parameters (the attention layers, and a
# decoder cell and output layer that also read the context): we count them, and compare.

# %%
task = SymbolTask("reverse", num_symbols=10, min_len=2, max_len=24)
HIDDEN, STEPS, BATCH = 64, utils.budget(400, 40), 128
EVAL_LENGTHS = [4, 8, 12, 16, 20, 24]

torch.manual_seed(0)
# the very model of lesson 01
bottleneck = BottleneckSeq2Seq(len(task.vocab), emb_dim=32, hidden_dim=HIDDEN)
torch.manual_seed(0)
model = AttentionSeq2Seq(len(task.vocab), emb_dim=32, hidden_dim=HIDDEN, attn_dim=64)
print(
    f"bottleneck: {count_parameters(bottleneck):,} parameters; attention: {count_parameters(model):,} parameters"
)

histories = {
    "bottleneck LSTM": train(
        bottleneck, task, steps=STEPS, batch_size=BATCH, lr=3e-3, desc="bottleneck LSTM"
    )
}
torch.manual_seed(0)
model = AttentionSeq2Seq(len(task.vocab), emb_dim=32, hidden_dim=HIDDEN, attn_dim=64)
histories["LSTM + attention"] = train(
    model, task, steps=STEPS, batch_size=BATCH, lr=3e-3, desc="LSTM + attention"
)

results = {
    "bottleneck LSTM": accuracy_by_length(bottleneck, task, EVAL_LENGTHS),
    "LSTM + attention": accuracy_by_length(model, task, EVAL_LENGTHS),
}
print_accuracy_table(results)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
plot_losses(histories, ax=axes[0])
plot_accuracy_by_length(
    results, ax=axes[1], title="Reversing: attention does not fall with length"
)
plt.tight_layout()

# %% [markdown]
# This is the shape of Figure 2 of Bahdanau et al. (2015): the model without attention degrades
# as the input grows, the model with attention does not. The claim, in numbers:

# %%
att = {n: results["LSTM + attention"][n]["token"] for n in EVAL_LENGTHS}
bot = {n: results["bottleneck LSTM"][n]["token"] for n in EVAL_LENGTHS}
longest = EVAL_LENGTHS[-1]
print(
    f"attention: lowest token accuracy {utils.measured(min(att.values()), '.1%')}; at length {longest}: "
    f"attention {utils.measured(att[longest], '.1%')}, bottleneck {utils.measured(bot[longest], '.1%')}"
)
utils.claim(
    min(att.values()) >= 0.90,
    f"with attention, token accuracy stays high at every length "
    f"(lowest {utils.measured(min(att.values()), '.1%')} >= 90%)",
)
utils.claim(
    bot[longest] <= bot[EVAL_LENGTHS[0]] - 0.30,
    "without attention it falls with length, as in lesson 01",
)
utils.claim(
    att[longest] >= bot[longest] + 0.30,
    f"at length {longest} attention is at least 30 points better "
    f"({utils.measured(att[longest], '.1%')} vs {utils.measured(bot[longest], '.1%')})",
)

# %% [markdown]
# ## 5. Experiment 2: which input did each output use?
#
# The weights $\alpha_{ij}$ are a by-product we can read. Draw them as a heatmap, one row per
# output token $i$ and one column per input token $j$. For reversing, output $i$ copies input
# $n + 1 - i$, so we expect an **anti-diagonal**.

# %%
example = task.sample(1, torch.Generator().manual_seed(3), length=12)
# alpha (1, L, S)
ids, alpha = model.generate(
    example.src, example.src_lengths, max_len=14, return_attention=True
)
src_tokens = task.vocab.decode(example.src[0])
# "<eos>" included: it attends too
out_tokens = [task.vocab.itos[i] for i in ids[0].tolist()]
print("input :", " ".join(src_tokens))
print("output:", " ".join(out_tokens))
_ = plot_attention(
    alpha[0], src_tokens, out_tokens, title="Reversing 12 symbols: an anti-diagonal"
)

# %% [markdown]
# The weight of output token $i$ sits on the mirrored input $n + 1 - i$ **or its right-hand
# neighbour**: our encoder reads left to right, so the state $h_{j+1}$ still remembers $x_j$, and
# the model may read $x_j$ from either. Measured on 200 inputs of length 16: where does each
# output token put most of its weight, and does that place move from one output token to the next?

# %%
n = 16
probe = task.sample(200, torch.Generator().manual_seed(5), length=n)
ids, alpha = model.generate(
    probe.src, probe.src_lengths, max_len=n + 1, return_attention=True
)
alpha = alpha[:, :n]  # (200, n, n): the n output symbols, without <eos>
mirror = n - 1 - torch.arange(n)  # 0-based: output i reverses input n-1-i
on_diagonal = (alpha.argmax(-1) - mirror).abs().le(1).float().mean().item()
# (200, n): the weighted mean input position of each output
centre = (alpha * torch.arange(n)).sum(-1)
moves_left = (centre[:, 1:] - centre[:, :-1] < -0.5).float().mean().item()
print(
    f"largest weight on the mirrored input or a neighbour: {utils.measured(on_diagonal, '.1%')}"
)
print(
    f"centre of the weights moves left by more than half a position at each output token: {utils.measured(moves_left, '.1%')}"
)
utils.claim(
    on_diagonal >= 0.9,
    "reversing, each output attends at its mirrored input (the anti-diagonal)",
)
utils.claim(
    moves_left >= 0.85,
    "alpha differs for each output token: its centre moves one input further left each time",
)

# %% [markdown]
# ### Dates: alignments a person can read
#
# Reversal is easy to predict. Dates are a small translation task: the input is a date written in
# one of seven formats ("3rd of March 1987", "Tue 03/03/87", ...), the output its ISO form
# `1987-03-03`, character by character. The same model, trained briefly (250 steps) from scratch:

# %%
dates = DateTask()
print(
    dates,
    "·",
    ", ".join(
        text for text, _ in dates.random_dates(3, torch.Generator().manual_seed(0))
    ),
)
torch.manual_seed(0)
date_model = AttentionSeq2Seq(len(dates.vocab), emb_dim=32, hidden_dim=64, attn_dim=64)
date_history = train(
    date_model,
    dates,
    steps=utils.budget(250, 20),
    batch_size=128,
    lr=3e-3,
    desc="dates",
)
test_dates = dates.sample(500, torch.Generator().manual_seed(11))
pred = date_model.generate(test_dates.src, test_dates.src_lengths, max_len=12)
date_tok, date_exact = (
    token_accuracy(pred, test_dates.tgt).mean().item(),
    exact_match(pred, test_dates.tgt).mean().item(),
)
print(
    f"500 new dates: {utils.measured(date_tok, '.1%')} of characters right, {utils.measured(date_exact, '.1%')} dates entirely right"
)

# %%
def date_heatmap(text, ax):
    src, src_lengths = dates.encode_texts([text])
    ids, alpha = date_model.generate(
        src, src_lengths, max_len=12, return_attention=True
    )
    out = [dates.vocab.itos[i] for i in ids[0].tolist()]
    plot_attention(
        alpha[0],
        list(text),
        out,
        ax=ax,
        title=f"{text!r} -> {''.join(out[:-1])}",
        colorbar=False,
    )


fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
for text, ax in zip(["3rd of March 1987", "Tue 03/03/87", "March 3, 1987"], axes):
    date_heatmap(text, ax)
plt.tight_layout()

# %% [markdown]
# Read the rows. The four year digits of the output put nearly all their weight on the year
# in the input, wherever the format puts it; the month digits look at the month, written as a
# name ("March": its last letters) or as digits; the day digits look at the day. The weight
# often sits on the *last* character of a group: our encoder reads left to right, so $h_j$ at the
# end of "March" has seen the whole word. (A bidirectional encoder, as Bahdanau et al. used,
# makes every $h_j$ see both sides.) The model was trained only briefly and is not perfect (the
# numbers above): the rows of the month and the day are less sharp than the year's, and a
# title whose output differs from the input's date shows a mistake you can inspect row by row.
#
# The year, measured on 300 new dates: does each year digit of the output weigh most a
# character of the input's year?

# %%
pairs = dates.random_dates(300, torch.Generator().manual_seed(12))
probe = dates.make_batch(pairs)
# alpha (300, L, S)
ids, alpha = date_model.generate(
    probe.src, probe.src_lengths, max_len=12, return_attention=True
)
hits = []
for k, (text, iso) in enumerate(pairs):
    # a four-digit year in the input, else the two-digit one at the end
    start = text.rfind(iso[:4])
    span = (
        range(start, start + 4)
        if start >= 0
        else range(text.rfind(iso[2:4]), text.rfind(iso[2:4]) + 2)
    )
    # output characters 0-3: the year
    hits += [alpha[k, i].argmax().item() in span for i in range(4)]
year_on_year = float(np.mean(hits))
print(
    f"year digits whose largest weight is on the input's year: {utils.measured(year_on_year, '.1%')}"
)
utils.claim(
    date_tok >= 0.90,
    f"a short training run gets most date characters right ({utils.measured(date_tok, '.1%')})",
)
utils.claim(
    year_on_year >= 0.80,
    "the year digits of the output attend to the year in the input, in every format",
)

# %% [markdown]
# ## 6. See it for yourself
#
# Pick a task and an example, then step through the output tokens: the input is shaded by the
# weight $\alpha_{ij}$ that output token $i$ gives each input token $j$ (dark = none, yellow =
# most), and the number under each input token is its weight in percent.

# %%
def alpha_strip(tokens, weights):
    """HTML: each token on a background shaded by its weight (viridis), its weight in % underneath."""
    cmap = plt.get_cmap("viridis")
    cells = []
    for token, w in zip(tokens, weights):
        r, g, b, _ = cmap(float(w))
        ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        cells.append(
            f'<td style="background:rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f});color:{ink};'
            f'padding:4px 6px;text-align:center;font-family:monospace">{html.escape("␣" if token == " " else token)}'
            f"<br><small>{100 * float(w):.0f}</small></td>"
        )
    return (
        "<table style='border-collapse:collapse'><tr>"
        + "".join(cells)
        + "</tr></table>"
    )


def make_explorer(cases, n_examples=8, seed=21):
    """cases: {name: (model, task, sample(n, generator) -> Batch)}. Returns (widget, render)."""
    cache = {}

    def examples(name):
        if name not in cache:
            m, t, sample = cases[name]
            batch = sample(n_examples, torch.Generator().manual_seed(seed))
            ids, alpha = m.generate(
                batch.src,
                batch.src_lengths,
                max_len=batch.tgt.shape[1] + 2,
                return_attention=True,
            )
            cache[name] = (t, batch, ids, alpha)
        return cache[name]

    def render(name, example=0, step=0):
        """-> (html, (output token, input token it weighs most, that weight))"""
        t, batch, ids, alpha = examples(name)
        S = int(batch.src_lengths[example])
        src = [t.vocab.itos[i] for i in batch.src[example, :S].tolist()]
        out = [t.vocab.itos[i] for i in ids[example].tolist()]
        out = out[: out.index("<eos>") + 1] if "<eos>" in out else out
        step = min(step, len(out) - 1)  # this example may be shorter than the slider
        weights = alpha[example, step, :S]
        top = int(weights.argmax())
        shown = " ".join(
            f"<b><u>{html.escape(tok)}</u></b>" if k == step else html.escape(tok)
            for k, tok in enumerate(out)
        )
        text = (
            f"<p style='font-family:monospace'>output: {shown}</p>"
            f"<p>output token {step + 1} <b>{html.escape(out[step])}</b> weighs input token {top + 1} "
            f"<b>{html.escape(src[top])}</b> most ({utils.measured(float(weights[top]), '.0%')})</p>"
            + alpha_strip(src, weights)
        )
        return text, (out[step], src[top], float(weights[top]))

    def show(name, example, step):
        display(HTML(render(name, example, step)[0]))

    widget = widgets.interactive(
        show,
        name=widgets.ToggleButtons(options=list(cases), description="task"),
        example=widgets.IntSlider(
            min=0, max=n_examples - 1, value=0, description="example"
        ),
        step=widgets.IntSlider(min=0, max=15, value=0, description="output token"),
    )
    return widget, render


cases = {
    "dates": (date_model, dates, dates.sample),
    "reverse": (model, task, lambda k, g: task.sample(k, g, length=12)),
}

# %%
# NBVAL_IGNORE_OUTPUT
explorer, render = make_explorer(cases)
explorer

# %% [markdown]
# The same view, without the widget: the first output tokens of one date.

# %%
# NBVAL_IGNORE_OUTPUT
# (which tokens a trained model writes can change with the CPU; what render shows is
# asserted below)
for step in range(4):
    _, (out_token, in_token, weight) = render("dates", 0, step)
    print(
        f"output token {step + 1} {out_token!r}: weighs input {in_token!r} most ({utils.measured(weight, '.0%')})"
    )
page, (out_token, in_token, weight) = render("dates", 0, 0)
display(HTML(page))
utils.claim(
    html.escape(out_token) in page
    and html.escape(in_token) in page
    and 0 < weight <= 1
    and "<td" in page,
    "render shows the output token, the input token it weighs most, and the shaded input tokens",
    needs_training=False,
)

# %% [markdown]
# ## 7. Towards lesson 03: other ways to score
#
# The additive score runs a small network for every (query, key) pair. Luong, Pham and Manning
# (2015) proposed cheaper, **multiplicative** scores:
#
# $$e_{ij}^{\text{dot}} = s^\top h_j, \qquad e_{ij}^{\text{general}} = s^\top W\, h_j .$$
#
# "dot" needs the query and the keys to have the same size; "general" learns a matrix $W$
# between them. (Luong et al. also used the *current* state $s_i$ as the query rather than
# $s_{i-1}$; what matters here is the score.) The softmax and the weighted sum stay the same.
#
# ### Exercise 02.3 · Luong's dot and general scores (★☆☆, about 10 min)

# %%
def luong_score(query, keys, W=None):
    """Luong et al. (2015) multiplicative alignment scores, no softmax and no scaling.

    query (B, Dq), keys (B, S, Dk), W None or (Dq, Dk) -> scores (B, S):
    "dot" e_j = s^T h_j when W is None (needs Dq == Dk), "general" e_j = s^T W h_j.
    """
    ### BEGIN SOLUTION
    if W is not None:
        query = query @ W  # (B, Dk): s^T W, computed once for all positions
    return torch.bmm(keys, query[:, :, None]).squeeze(-1)  # (B, S): e_j = h_j . query
    ### END SOLUTION


# %%
utils.check("02.3", luong_score)

# %% [markdown]
# Why does this matter? A dot-product score for **all** queries at once is a single matrix
# product. Stack the $L$ queries of a sequence as the rows of $Q$ (L, D) and its $S$ keys as the
# rows of $K$ (S, D): the scores of every query against every key are $Q K^\top$ (L, S), with no
# loop and no per-pair network. Lesson 03 builds on exactly this product (and explains why it
# is divided by $\sqrt{d}$). Here we check that it equals your scores, query by query:

# %%
luong_score = utils.use("02.3", luong_score)

torch.manual_seed(1)
Q, K = torch.randn(2, 6, 16), torch.randn(2, 9, 16)  # (B, L, D) queries, (B, S, D) keys
# (B, L, S): every query against every key, one product
all_at_once = Q @ K.transpose(1, 2)
# (B, L, S)
one_by_one = torch.stack([luong_score(Q[:, i], K) for i in range(Q.shape[1])], dim=1)
W = torch.randn(16, 16)
general = torch.stack([luong_score(Q[:, i], K, W) for i in range(Q.shape[1])], dim=1)
print(
    "Q K^T equals the dot scores query by query:",
    torch.allclose(all_at_once, one_by_one, atol=1e-5),
)
print(
    "(Q W) K^T equals the general scores query by query:",
    torch.allclose((Q @ W) @ K.transpose(1, 2), general, atol=1e-4),
)
utils.claim(
    torch.allclose(all_at_once, one_by_one, atol=1e-5)
    and torch.allclose((Q @ W) @ K.transpose(1, 2), general, atol=1e-4),
    "all dot (and general) scores of a sequence are one matrix product, Q K^T (and (Q W) K^T)",
    needs_training=False,
)

# %% [markdown]
# ## 8. What is still wrong: the encoder is a recurrence
#
# Attention removed the bottleneck, but additive attention still relies on an RNN for **feature
# extraction**: the states $h_j$ come from an LSTM, and $h_j$ cannot be computed before
# $h_{j-1}$. An input of length $n$ costs $n$ steps **one after the other**, however many cores
# there are. Let us time lesson 01's encoder (the one our model uses) on a batch of 32 inputs of
# growing length, next to a layer that treats all positions at once (a linear map of the same
# width).

# %%
# NBVAL_IGNORE_OUTPUT
timing_lengths = [16, 32, 64, 128, 256]
# lesson 01's encoder, on the CPU (timing needs no training)
encoder = Encoder(len(task.vocab), 32, HIDDEN)
linear = nn.Linear(32, HIDDEN)


rnn_times, parallel_times = [], []
with torch.no_grad():
    for n in timing_lengths:
        src = torch.randint(3, 13, (32, n))
        lengths = torch.full((32,), n)
        x = encoder.embedding(src)
        # the fastest of seven runs each, the two taking turns: other programs only ever
        # slow a run down
        t_rnn, t_par = best_times([lambda: encoder(src, lengths), lambda: linear(x)])
        rnn_times.append(t_rnn)
        parallel_times.append(t_par)
for n, t_rnn, t_par in zip(timing_lengths, rnn_times, parallel_times):
    print(
        f"length {n:>4}: LSTM encoder {utils.fmt_time(t_rnn):>9} ({utils.fmt_time(t_rnn / n)} per position), "
        f"all positions at once {utils.fmt_time(t_par):>9}"
    )
slope = np.polyfit(np.log(timing_lengths), np.log(rnn_times), 1)[0]
print(
    f"log-log slope of the encoder's time against length: {utils.measured(slope, '.2f')} (1 = linear)"
)
utils.claim(
    slope > 0.6, "the LSTM encoder's time grows about linearly with the input length"
)

fig, ax = plt.subplots(figsize=(6.4, 3.6))
ax.loglog(
    timing_lengths,
    1e3 * np.array(rnn_times),
    "o-",
    label="LSTM encoder (n steps in sequence)",
)
ax.loglog(
    timing_lengths,
    1e3 * np.array(parallel_times),
    "s-",
    label="linear layer (all positions at once)",
)
ax.set(
    xlabel="input length n (tokens)",
    ylabel="time per batch of 32 (ms)",
    title="The recurrence is sequential",
)
ax.set_xticks(timing_lengths, [str(n) for n in timing_lengths])
ax.minorticks_off()
_ = ax.legend()

# %% [markdown]
# The encoder's time grows with the length, close to linearly (a log-log slope near 1; short
# inputs cost a little more per position, since each call has a fixed overhead), and the steps
# cannot be spread over positions: step $j$ waits for step $j-1$. The decoder is a recurrence too. Lesson 03 drops the
# recurrence altogether: queries, keys and values computed from every position **at once**, and
# scores that are the matrix product above. Lesson 04 measures what that costs in turn.
#
# ## Summary
#
# * Additive attention scores every encoder state against the decoder's state,
#   $e_{ij} = w_v^\top \tanh(W_q s_{i-1} + W_k h_j)$, normalises the scores with a softmax into
#   $\alpha_{ij}$, and hands the decoder the context $c_i = \sum_j \alpha_{ij} h_j$.
# * $\alpha$ differs for every output token, and where it is high, that input's features dominate
#   the context: the heatmaps show which input each output used.
# * With the same task, hidden size and budget as lesson 01, accuracy no longer falls with length.
# * Padding is masked with $-\infty$ before the softmax (`True` = may attend); an all-masked row
#   gives zero weights in this course, not NaN.
# * Luong's dot and general scores are products; for all queries at once, $Q K^\top$.
# * The encoder is still an RNN: its cost is sequential in the length.
#
# ## Going further
#
# 1. Bahdanau et al. used a **bidirectional** encoder, so that $h_j$ summarises the words on both
#    sides of position $j$. Give `Encoder` `bidirectional=True` (the keys then have size
#    `2 * hidden_dim`). Do the date alignments get sharper?
# 2. Replace the additive score in `AttentionDecoder` by `luong_score` (dot). Does the reverse
#    task still train within the budget? What must hold for the sizes?
# 3. Train on lengths 2 to 16 only and evaluate up to 32. Which model extrapolates better, and why
#    might attention still fail beyond the trained lengths?

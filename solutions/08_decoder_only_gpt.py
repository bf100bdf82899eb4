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
# # Lesson 08 · Drop the encoder: a GPT that learns from real text
#
# **Why this lesson:** lesson 07's Transformer reads an input with its encoder and writes an output
# with its decoder. Drop the encoder and the cross-attention, and what is left, one stack of
# causally masked blocks that predicts the next token, is a **language model**: GPT. Here you
# build one, train it on real text that is already on your machine (the Python standard library's
# own source code), sample from it, and then open a smaller model up to find the **induction
# heads** that let it continue a pattern it has seen only once.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/08_decoder_only_gpt.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/08_decoder_only_gpt.ipynb)
#
# **You will be able to**
# 1. turn lesson 07's decoder into a decoder-only language model, with tied input and output embeddings;
# 2. train it with the next-token loss, in bits per character, against unigram and bigram baselines;
# 3. show why the causal mask matters, from the side of a model trained without it;
# 4. generate with greedy, temperature and top-k sampling, and with lesson 07's key/value cache;
# 5. watch a 2-layer model learn to copy from its context in a sudden drop of the loss, find its
#    previous-token and induction heads by their scores, and test them by ablation.
#
# **Exercises:** 08.1 the next-token loss (★☆☆) · 08.2 sampling with temperature and top-k (★★☆) ·
# 08.3 the GPT model (★★☆) · 08.4 the prefix-matching score (★★★). Stuck? `utils.hint("08.1")`,
# `utils.hint("08.1", 2)`, `utils.solution("08.1")`. The lesson runs to the end even before you
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
import html
import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.attention import causal_mask
from utils.cost import best_times
from utils.data import TextCorpus
from utils.gpt import (
    Block,
    ablate_heads,
    attention_weights,
    bits_per_char,
    copy_into_torch_encoder_layer,
    generate,
    init_weights,
    learning_rate,
    loss_per_position,
    train_lm,
)
from utils.plots import PALETTE, plot_attention

# %% [markdown]
# ## 1. Real text, nothing downloaded: the standard library's source
#
# A language model needs text. Every Python installation carries a few megabytes of it: the
# standard library's own source files. `TextCorpus.from_modules()` reads a fixed list of modules
# that exist on Python 3.10 to 3.13 (found by `importlib` in the running interpreter, never
# downloaded), and splits them **by file** into training and validation: every 8th module, in
# alphabetical order, is held out, so the validation text is code the model has never seen, not
# lines of a file it has. We model **characters**: the vocabulary is every character of the
# training split, plus `<unk>` (id 0) for any character that only the validation split contains.
# (Your Python's version decides the exact files, so the sizes below may differ slightly on yours.)

# %%
corpus = TextCorpus.from_modules()
V = len(corpus)
print(
    f"training:   {len(corpus.train_names)} files, {utils.measured(len(corpus.train) / 1e6, '.2f')} million characters"
)
print(
    f"validation: {len(corpus.val_names)} files, {utils.measured(len(corpus.val) / 1e6, '.2f')} million characters:",
    ", ".join(corpus.val_names),
)
print(
    f"vocabulary: {utils.measured(V, '.0f')} symbols (<unk> and the training split's characters)"
)
print(
    f"unknown characters in validation: {utils.measured((corpus.val == 0).float().mean().item(), '.3%')}"
)
print("\nthe first lines of the training text:\n" + corpus.decode(corpus.train[:180]))

# %% [markdown]
# ### How good is "good"? Two baselines
#
# We measure a model by its cross-entropy on the validation text in **bits per character**: the
# average of $-\log_2 p(x_{t+1} \mid x_{\le t})$. A model that knows nothing pays $\log_2 V$ bits
# per character. Two honest baselines, counted on the training split (with add-one smoothing, so
# that no character has probability 0):
#
# * **unigram**: $p(x_{t+1})$, how often each character occurs, ignoring the context;
# * **bigram**: $p(x_{t+1} \mid x_t)$, which character follows which.
#
# A Transformer that reads 64 characters of context must beat both, by a clear margin.

# %%
def ngram_bits(train, val, V, order: int) -> float:
    """Bits per character on ``val`` of a unigram (order 1) or bigram (order 2) model counted on ``train``."""
    if order == 1:
        counts = torch.bincount(train, minlength=V).double() + 1  # add-one smoothing
        return -(counts / counts.sum()).log2()[val[1:]].mean().item()
    # [previous, next]
    pairs = (
        torch.bincount(train[:-1] * V + train[1:], minlength=V * V).double().view(V, V)
        + 1
    )
    probs = pairs / pairs.sum(dim=1, keepdim=True)
    return -probs[val[:-1], val[1:]].log2().mean().item()


baselines = {
    "uniform": math.log2(V),
    "unigram": ngram_bits(corpus.train, corpus.val, V, 1),
    "bigram": ngram_bits(corpus.train, corpus.val, V, 2),
}
for name, bits in baselines.items():
    print(f"{name:>8}: {utils.measured(bits, '.3f')} bits per character")

# %% [markdown]
# ## 2. The model: lesson 07's decoder without the encoder
#
# Lesson 07's decoder block had three sublayers: masked self-attention, cross-attention to the
# encoder, feed-forward. With no encoder there is nothing to cross-attend to, and the block is
# left with two, each in a pre-LN residual branch:
#
# $$h = x + \mathrm{SelfAttn}\big(\mathrm{LN}_1(x);\ \text{causal}\big), \qquad y = h + \mathrm{FFN}\big(\mathrm{LN}_2(h)\big).$$
#
# That is exactly **lesson 06's encoder block, given a causal mask**. The course's `Block`
# (`utils/gpt.py`) is made of lesson 05's `MultiHeadAttention` and lesson 06's `FeedForward`;
# given the same weights it equals PyTorch's `nn.TransformerEncoderLayer(norm_first=True)` called
# with a causal mask (PyTorch's boolean masks mean the opposite of ours, hence `~`):

# %%
torch.manual_seed(1)
block = Block(32, 4, 64)
theirs = copy_into_torch_encoder_layer(
    block,
    nn.TransformerEncoderLayer(
        32, 4, 64, dropout=0.0, batch_first=True, norm_first=True
    ),
)
x = torch.randn(3, 10, 32)
diff = (
    (block(x, causal_mask(10)[None]) - theirs(x, src_mask=~causal_mask(10)))
    .abs()
    .max()
    .item()
)
print(f"max |ours - nn.TransformerEncoderLayer| < 1e-5: {diff < 1e-5}")
utils.claim(
    diff < 1e-5,
    "the GPT block equals nn.TransformerEncoderLayer(norm_first=True) with a causal mask",
    needs_training=False,
)

# %% [markdown]
# The whole model, as GPT-2 builds it:
#
# 1. **token and position embeddings**, both learned: $x_t = E[\text{token}_t] + P[t]$, for
#    positions $t < $ `block_size` (the longest context the model reads);
# 2. the stack of blocks, every one with the causal mask;
# 3. a **final LayerNorm** (pre-LN blocks add to a residual stream that nothing normalises);
# 4. the **output layer tied to the token embedding**: the logits are $\mathrm{LN}(h_t)\,E^\top$, so
#    one $V \times D$ matrix both reads characters in and scores them out. Why: a character that
#    the model would *write* in a context should look like what it *reads*, and it saves a whole
#    $V \times D$ matrix (counted below: a small share for about a hundred characters; for GPT-2 small,
#    whose vocabulary has 50,257 tokens of width 768, it is 38.6 million numbers, against 124 million
#    parameters in the tied model). GPT-2 and nanoGPT do the same.
#
# Unlike lesson 07, the embeddings are not scaled by $\sqrt{D}$: GPT initialises them small
# (`init_weights`, given) and adds token and position embeddings as they are.
#
# ### Exercise 08.3 · The GPT model (★★☆, about 20 min)
#
# Create `tok_emb`, `pos_emb`, `blocks` (an `nn.ModuleList` of `Block(d_model, num_heads, d_ff)`),
# `norm` and `head` (`nn.Linear(d_model, vocab_size, bias=False)`, its weight tied to `tok_emb`'s),
# and keep `block_size` and `causal`; end with `self.apply(init_weights)` (given: GPT-2's small
# embeddings, which the tied output layer needs). In `forward`, pass the causal mask as `causal_mask(T)[None]`
# (shape (1, T, T): a 2-D mask is ambiguous for `MultiHeadAttention` when the batch size equals T),
# or no mask when `causal=False` (an experiment of section 4).

# %%
class GPT(nn.Module):
    """A decoder-only language model: forward(ids (B, T)) -> logits (B, T, V), T <= block_size.

    logits[:, t] scores the token that follows ids[:, t], from ids[:, :t+1] only (causal mask),
    unless ``causal=False``, which lets every position see the whole sequence (an experiment).
    Layers: ``tok_emb`` (V, D), ``pos_emb`` (block_size, D), ``blocks`` (a ModuleList of
    ``Block(d_model, num_heads, d_ff)``), ``norm`` (the final LayerNorm), ``head`` (D -> V, no bias),
    whose weight *is* ``tok_emb.weight`` (tied); attributes ``block_size`` and ``causal``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        d_ff: int,
        block_size: int,
        causal: bool = True,
    ):
        super().__init__()
        ### BEGIN SOLUTION
        self.block_size, self.causal = block_size, causal
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, d_ff) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        # tied: one (V, D) matrix reads tokens in and scores them out
        self.head.weight = self.tok_emb.weight
        self.apply(init_weights)
        ### END SOLUTION

    def forward(self, ids):
        ### BEGIN SOLUTION
        T = ids.shape[1]
        # (B, T, D)
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))
        # (1, T, T): True on and below the diagonal
        mask = causal_mask(T, device=ids.device)[None] if self.causal else None
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))  # (B, T, V)
        ### END SOLUTION


# %%
utils.check("08.3", GPT)

# %% [markdown]
# The model of this lesson is small, so that it trains in a minute or two on one CPU core: width
# $D = 64$, 4 heads, 2 blocks, a context of 64 characters. Tying saves a whole $V \times D$ matrix:

# %%
GPT = utils.use("08.3", GPT)

CONFIG = dict(
    vocab_size=V, d_model=64, num_heads=4, num_layers=2, d_ff=256, block_size=64
)
torch.manual_seed(0)
model = GPT(**CONFIG)
# a tied Parameter is counted once
n_params = sum(p.numel() for p in model.parameters())
saved = CONFIG["vocab_size"] * CONFIG["d_model"]
print(
    f"parameters: {utils.measured(n_params, '.0f')} tied; {utils.measured(n_params + saved, '.0f')} with a separate "
    f"output layer (tying saves V x D = {utils.measured(saved, '.0f')}, {utils.measured(saved / (n_params + saved), '.0%')})"
)

# %% [markdown]
# ## 3. Training: predict the next character
#
# A window of $T$ characters is $T-1$ training examples at once: position $t$ has read
# $x_{\le t}$ (the causal mask sees to it) and is scored on $x_{t+1}$,
#
# $$\mathcal{L} = -\frac{1}{B\,(T-1)} \sum_{b=1}^{B} \sum_{t=1}^{T-1} \log p_\theta\big(x^{(b)}_{t+1} \mid x^{(b)}_{\le t}\big).$$
#
# Lesson 07 shifted the decoder's *input* right (`<sos>` first); a language model has no
# `<sos>`: it shifts the *targets* left instead, and the last position, which has no next
# character, is not scored.
#
# ### Exercise 08.1 · The next-token loss (★☆☆, about 10 min)

# %%
def next_token_loss(logits, tokens):
    """The mean cross-entropy (nats) of predicting tokens[:, t+1] from logits[:, t].

    logits (B, T, V), tokens (B, T) int64 -> a scalar: the mean over every row and every t < T-1,
    that is over B * (T-1) predictions (the last position has no next token to score).
    """
    ### BEGIN SOLUTION
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))
    ### END SOLUTION


# %%
utils.check("08.1", next_token_loss)

# %% [markdown]
# Before training, the model knows nothing: its loss should be close to $\ln V$ nats (the uniform
# guess), which is $\log_2 V$ bits.

# %%
next_token_loss = utils.use("08.1", next_token_loss)

# (N, 64), fixed
val_windows = corpus.windows(
    "val", CONFIG["block_size"], max_windows=utils.budget(600, 60)
)
with torch.no_grad():
    first = next_token_loss(model(val_windows[:64]), val_windows[:64]).item()
print(
    f"untrained: {utils.measured(first, '.3f')} nats per character; ln V = {utils.measured(math.log(V), '.3f')}"
)
utils.claim(
    abs(first - math.log(V)) < 0.3,
    "an untrained model's loss is close to ln V",
    needs_training=False,
)

# %% [markdown]
# ### The learning-rate schedule
#
# The course's earlier models trained with a constant learning rate. Language models are trained
# with a **warm-up** (the rate grows linearly over the first steps: Adam's first updates are large
# and noisy, as its moment estimates start from nothing) and a **decay** (a cosine down to a tenth:
# large steps at the end keep the weights bouncing around a minimum instead of settling into it).

# %%
STEPS, LR, WARMUP, BATCH = utils.budget(500, 40), 3e-3, 50, 32
fig, ax = plt.subplots(figsize=(5.5, 2.6))
ax.plot(
    [learning_rate(s, STEPS, LR, WARMUP) for s in range(STEPS)],
    label="warm-up and cosine decay",
)
ax.plot(
    [learning_rate(s, STEPS, LR, WARMUP, schedule=False) for s in range(STEPS)],
    "--",
    label="constant",
)
ax.set(
    xlabel="training step", ylabel="learning rate", title="Two learning-rate schedules"
)
ax.legend()
plt.tight_layout()

# %% [markdown]
# Now train: batches of 32 random windows of 64 characters from the training split.

# %%
def train_batch(generator):
    return corpus.batch("train", BATCH, CONFIG["block_size"], generator)  # (B, T)


torch.manual_seed(0)
model = GPT(**CONFIG)
history = train_lm(
    model,
    train_batch,
    steps=STEPS,
    lr=LR,
    warmup=WARMUP,
    loss_fn=next_token_loss,
    desc="GPT",
)
gpt_bits = bits_per_char(model, val_windows)
print(
    f"validation: {utils.measured(gpt_bits, '.3f')} bits per character "
    f"(bigram {utils.measured(baselines['bigram'], '.3f')}, unigram {utils.measured(baselines['unigram'], '.3f')})"
)
utils.claim(
    gpt_bits < baselines["bigram"] - 0.5,
    "the GPT beats the bigram baseline by more than 0.5 bits per character (and so the unigram)",
    budget=STEPS,
)

# %% [markdown]
# Did the schedule matter? The same model, the same batches, a constant learning rate:

# %%
torch.manual_seed(0)
constant = GPT(**CONFIG)
history_constant = train_lm(
    constant,
    train_batch,
    steps=STEPS,
    lr=LR,
    schedule=False,
    loss_fn=next_token_loss,
    desc="GPT, constant learning rate",
)
constant_bits = bits_per_char(constant, val_windows)
print(
    f"validation bits per character: warm-up and decay {utils.measured(gpt_bits, '.3f')}, "
    f"constant {utils.measured(constant_bits, '.3f')}"
)
utils.claim(
    abs(gpt_bits - constant_bits) < 0.15,
    "at this size and budget the schedule changes the validation loss by less than 0.15 bits per character",
    budget=STEPS,
)

# %% [markdown]
# An honest null result: for a model this small and shallow, trained this briefly, with pre-LN
# blocks (which lesson 07 noted train stably without a warm-up), the schedule hardly matters, and
# it can even cost a little, since its warm-up and decay spend steps at small learning rates. It
# pays off where GPT-2 and nanoGPT use it: deep models, large learning rates and long runs, where
# the first large Adam steps can throw training off for good and the decay finds a lower minimum.
#
# ## 4. Without the causal mask, the model reads the answer
#
# Lesson 07 showed the mask from the inside: output $t$ does not move when a later input changes.
# Here is the other side. Train the same model with `causal=False`: position $t$ now sees
# $x_{t+1}$, the very character it is asked to predict.

# %%
NO_MASK_STEPS = utils.budget(400, 20)
torch.manual_seed(0)
peeking = GPT(**CONFIG, causal=False)
history_peeking = train_lm(
    peeking,
    train_batch,
    steps=NO_MASK_STEPS,
    lr=LR,
    schedule=False,
    loss_fn=next_token_loss,
    # a constant rate: no decay to slow the collapse
    desc="GPT without the causal mask",
)
# the masked model after as many steps
masked_then = sum(history.losses[NO_MASK_STEPS - 20 : NO_MASK_STEPS]) / 20
print(
    f"training loss after {NO_MASK_STEPS} steps: without the mask {utils.measured(history_peeking.final_loss, '.3f')}, "
    f"with it {utils.measured(masked_then, '.3f')} nats per character"
)
utils.claim(
    history_peeking.final_loss < masked_then / 2,
    "without the mask the training loss collapses far below the masked model's (less than half)",
    budget=NO_MASK_STEPS,
)

# %% [markdown]
# Look at the curves: for a few hundred steps the unmasked model learns like the masked one, then
# its loss falls off a cliff, a *phase change* of the kind we meet again in section 7. What it
# learned shows in its attention: after training, measured on validation text, heads of its first
# layer put almost all of their weight on position $t+1$, the character to predict, and copy it.

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.4))
for name, h in {
    "causal mask, warm-up and decay": history,
    "causal mask, constant rate": history_constant,
    "no mask": history_peeking,
}.items():
    k = 20
    smooth = [sum(h.losses[i : i + k]) / k for i in range(len(h.losses) - k + 1)]
    ax.plot(range(k, len(h.losses) + 1), smooth, label=name)
ax.set(
    xlabel="training step",
    ylabel="training loss (nats per character)",
    yscale="log",
    title="Training loss, moving average over 20 steps",
)
ax.legend()
plt.tight_layout()

# %%
probe_windows = val_windows[: utils.budget(64, 8)]
T_probe = probe_windows.shape[1]
ahead = attention_weights(peeking, probe_windows)[
    ..., torch.arange(T_probe - 1), torch.arange(1, T_probe)
]
on_next = ahead.mean(dim=(1, 3))  # (layers, h): each head's mean weight on position t+1
for l in range(len(on_next)):
    print(
        f"without the mask, layer {l + 1}: mean weight on position t+1, per head: "
        + " ".join(utils.measured(w, ".2f") for w in on_next[l].tolist())
    )
print(
    f"(spread evenly over the {T_probe} positions, a head would put 1/{T_probe} = {1 / T_probe:.3f} there)"
)
utils.claim(
    on_next.max() > 0.5,
    "without the mask, a head learns to attend to position t+1: more than half of its "
    "weight goes there",
    budget=NO_MASK_STEPS,
)

# %% [markdown]
# A wonderful training loss, and a useless model. When it generates, the next character does not
# exist yet, so at the last position there is nothing to copy. Measure what it can do when it
# reads only the past, as in generation: for each $t$, run it on $x_{\le t}$ alone and score its
# prediction of $x_{t+1}$.

# %%
@torch.no_grad()
def bits_when_generating(model, windows):
    """Bits per character when position t's prediction comes from a run on x_<=t only (no future to read)."""
    total = 0.0
    for t in range(1, windows.shape[1]):
        logits = model(windows[:, :t])[:, -1]  # (N, V): the last position of the prefix
        total += F.cross_entropy(logits, windows[:, t]).item()
    return total / (windows.shape[1] - 1) / math.log(2)


peeking_bits, masked_bits = (
    bits_when_generating(peeking, probe_windows),
    bits_when_generating(model, probe_windows),
)
print(
    f"bits per character from the past only: without the mask {utils.measured(peeking_bits, '.2f')}, "
    f"with it {utils.measured(masked_bits, '.2f')}; unigram baseline {utils.measured(baselines['unigram'], '.2f')}"
)
utils.claim(
    peeking_bits > masked_bits + 1.0,
    "from the past alone, as in generation, the unmasked model is far worse than the masked one (by more than 1 bit)",
    budget=NO_MASK_STEPS,
)
# every position in one pass, as in training
at_once = bits_per_char(model, probe_windows)
print(
    f"the masked model on the same windows, all positions in one pass: {utils.measured(at_once, '.2f')} bits per "
    f"character; from the past only, position by position: {utils.measured(masked_bits, '.2f')}; they differ by "
    f"less than 1e-4: {abs(at_once - masked_bits) < 1e-4}"
)
utils.claim(
    abs(at_once - masked_bits) < 1e-4,
    "for the masked model, predicting from the past alone gives exactly what "
    "one pass over the whole window gives (up to float error)",
    needs_training=False,
)

# %%
# NBVAL_IGNORE_OUTPUT
def sampled(m, seed=0):
    return corpus.decode(
        generate(
            m,
            corpus.encode("def ")[None],
            60,
            temperature=0.8,
            top_k=10,
            generator=torch.Generator().manual_seed(seed),
        )[0]
    )


def judged_bits(text):
    """Bits per character of ``text`` under the masked model: how plausible it is as Python."""
    ids = corpus.encode(text)[None]
    with torch.no_grad():
        return next_token_loss(model(ids), ids).item() / math.log(2)


peek_text, own_text = sampled(peeking), sampled(model)
print(
    f"the unmasked model writes:\n{peek_text}\n\nthe masked model writes:\n{own_text}"
)
# judged over 8 samples each, not one: a single sample of a model at its phase change is
# too much a matter of luck
peek_judged = sum(judged_bits(sampled(peeking, seed)) for seed in range(8)) / 8
own_judged = sum(judged_bits(sampled(model, seed)) for seed in range(8)) / 8
utils.claim(
    peek_judged > own_judged + 0.3,
    "the masked model finds the unmasked model's texts far less likely than its own (by more than 0.3 bits per character)",
    budget=NO_MASK_STEPS,
)

# %% [markdown]
# (For the masked model the two measurements agree up to float error, as printed above: a causal
# model's prediction at $t$ *is* its prediction from $x_{\le t}$ alone. That is what makes training
# on all positions at once legitimate. The validation figure of section 3 is larger or smaller only
# because it averages over other windows.)
#
# ## 5. Generation: greedy, temperature, top-k
#
# To generate, feed a prompt, turn the last position's logits into the next character, append it,
# and repeat. **Greedy** takes the argmax; it is deterministic and soon loops. **Sampling** draws
# from $\mathrm{softmax}(z / \tau)$: the **temperature** $\tau < 1$ sharpens the distribution
# (safer, duller text), $\tau > 1$ flattens it (more varied, more mistakes). **Top-k** first keeps
# only the $k$ most likely characters, so that the long tail of unlikely ones is never drawn.
#
# ### Exercise 08.2 · Sampling the next token (★★☆, about 15 min)
#
# Draw with `generator` (a `torch.Generator`) and nothing else, so that a seed reproduces a text.

# %%
def sample_next(
    logits, temperature: float = 1.0, top_k: int | None = None, generator=None
):
    """Draw the next token of each row: logits (B, V) -> (B,) int64.

    ``temperature == 0`` is greedy (argmax); otherwise the token is drawn from softmax(logits /
    temperature), restricted to the ``top_k`` largest logits (renormalised) when top_k is given,
    with ``generator`` (a torch.Generator) as the only source of randomness.
    """
    ### BEGIN SOLUTION
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None:
        # (B, 1): the k-th largest
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        # the others get probability 0
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)  # (B, V), renormalised over what is left
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    ### END SOLUTION


# %%
utils.check("08.2", sample_next)

# %% [markdown]
# Three prompts, three ways of choosing. The text depends on the trained weights, so this cell's
# output is not compared by the tests; it asserts what it shows: greedy decoding repeats itself.

# %%
# NBVAL_IGNORE_OUTPUT
sample_next = utils.use("08.2", sample_next)


def continue_text(prompt: str, n: int = 120, **kw) -> str:
    ids = generate(model, corpus.encode(prompt)[None], n, sample=sample_next, **kw)
    return corpus.decode(ids[0])


greedy_texts = []
for prompt in ("def ", "class ", "import "):
    greedy_texts.append(continue_text(prompt, temperature=0))
    print(f"--- greedy from {prompt!r}\n{greedy_texts[-1]}")
    print(
        f"--- temperature 0.8, top-k 10\n{continue_text(prompt, temperature=0.8, top_k=10, generator=torch.Generator().manual_seed(0))}\n"
    )
repeats = [
    len(set(t[i : i + 8] for i in range(len(t) - 8))) / (len(t) - 8)
    for t in greedy_texts
]
utils.claim(
    min(repeats) < 0.9,
    "greedy text repeats itself: some 8-character piece comes back",
    budget=STEPS,
)

# %% [markdown]
# ### Temperature trades diversity for likelihood, measured
#
# At three temperatures, 16 texts of 60 characters each from the prompt `def ` (the prompt and the
# text fill the model's context of 64). Two numbers:
# the **distinct 4-gram ratio** (distinct 4-character pieces over all of them: 1 means nothing
# repeats) and the text's **log-likelihood per character under the model itself** at $\tau = 1$
# (how plausible the model finds what it wrote).

# %%
def diversity_and_likelihood(temperature, n=16, length=60, seed=0):
    prompt = corpus.encode("def ")[None].repeat(n, 1)
    ids, _ = generate(
        model,
        prompt,
        length,
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed),
        sample=sample_next,
        return_logits=True,
    )
    new = ids[:, prompt.shape[1] :]  # (n, length)
    with torch.no_grad():
        logp = (
            model(ids)[:, prompt.shape[1] - 1 : -1]
            .log_softmax(-1)
            .gather(-1, new[..., None])
            .mean()
            .item()
        )
    grams = [tuple(row[i : i + 4]) for row in new.tolist() for i in range(length - 3)]
    return len(set(grams)) / len(grams), logp / math.log(2)


temperatures = (0.5, 1.0, 1.5)
measured_t = {t: diversity_and_likelihood(t) for t in temperatures}
print(f"{'temperature':>11} {'distinct 4-grams':>17} {'log2-likelihood per char':>25}")
for t, (div, ll) in measured_t.items():
    print(f"{t:>11} {utils.measured(div, '.2f'):>17} {utils.measured(ll, '.2f'):>25}")
divs, lls = (
    [measured_t[t][0] for t in temperatures],
    [measured_t[t][1] for t in temperatures],
)
utils.claim(
    divs[0] < divs[1] < divs[2], "diversity grows with the temperature", budget=STEPS
)
utils.claim(
    lls[0] > lls[1] > lls[2],
    "the model's own likelihood of its text falls as the temperature grows",
    budget=STEPS,
)

# %% [markdown]
# ## 6. The key/value cache, decoder-only
#
# Lesson 07's cache carries over unchanged, minus the cross-attention: at each step, each block
# computes the query, key and value of the *newest* position only, appends the key and value to
# its cache, and attends over the cache (`generate(..., use_cache=True)`; the prompt fills the
# cache in one pass). Since a causal model's earlier positions never change, the tokens must be
# the same, greedy or sampled with the same generator:

# %%
prompts = corpus.encode("import ")[None].repeat(8, 1)
# the cache holds at most block_size positions
n_new = CONFIG["block_size"] - prompts.shape[1]
same = []
for kw in ({"temperature": 0}, {"temperature": 1.0, "top_k": 20}):
    a = generate(
        model, prompts, n_new, generator=torch.Generator().manual_seed(1), **kw
    )
    b = generate(
        model,
        prompts,
        n_new,
        generator=torch.Generator().manual_seed(1),
        use_cache=True,
        **kw,
    )
    same.append(torch.equal(a, b))
print("the same tokens with and without the cache (greedy, sampled):", same)
utils.claim(
    all(same), "the key/value cache gives exactly the same tokens", needs_training=False
)

# %% [markdown]
# And faster: without the cache step $t$ redoes the work of all $t$ positions (the best of five
# runs, the two taking turns so that another program slows both alike; times vary by machine, so
# the output is not compared; the cell asserts a wide margin).

# %%
# NBVAL_IGNORE_OUTPUT
slow, fast = best_times(
    [
        lambda: generate(model, prompts, n_new, temperature=0),
        lambda: generate(model, prompts, n_new, temperature=0, use_cache=True),
    ],
    repeats=5,
)
print(
    f"{n_new} new characters for 8 prompts: recompute {utils.fmt_time(slow)}, cache {utils.fmt_time(fast)}, "
    f"speed-up {utils.measured(slow / fast, '.1f')}x"
)
utils.claim(
    slow / fast > 1.2, "the cache is faster (at least 1.2x here)", needs_training=False
)

# %% [markdown]
# ## 7. Inside a smaller model: induction heads
#
# How does a Transformer continue a pattern it has seen only once in its context, a name
# defined ten lines up, a repeated argument list? Olsson et al. (2022) found a two-head circuit,
# the **induction head**: a *previous-token head* in one layer writes into each position "the token
# before me was A"; a head in a later layer, at a position holding A, looks for earlier positions
# whose previous token was A, attends to them, and copies what it finds there, B, as the
# prediction. In short: having seen `A B ... A`, predict `B`.
#
# It needs two layers (the second head's query is matched against what the first head wrote) and
# no feed-forward layer, so we study it in a small **attention-only** model (`d_ff=0`), on data where
# only the context can help. Each training sequence follows **a rule of its own**: every token $a$ has
# a successor $\mathrm{rule}[a]$, drawn at random for that sequence, and each next token is the
# successor of the current one with probability 0.8, a random token otherwise. The rules differ from
# one sequence to the next, so nothing the model learns about the tokens themselves predicts anything:
# it has to read the rule from the context, by finding where the current token occurred before and
# copying what came after it. That is induction, and no fixed offset can stand in for it, since a
# token recurs wherever chance puts it.
#
# The test is a task the model never trains on: $T/2$ distinct random tokens, then the same $T/2$
# again. From position $T/2 + 1$ on, every token can be predicted, by induction and only by induction:
# the token before it occurred exactly once before, and what followed it then follows it now.

# %%
# tokens, sequence length, how often a sequence follows its rule
IND_V, IND_T, IND_FOLLOW = 24, 32, 0.8


def rule_following_tokens(n, generator):
    """(n, IND_T) tokens; each sequence has its own random successor of every token, which comes next with probability IND_FOLLOW."""
    # rule[i, a]: what follows a in sequence i
    rule = torch.randint(0, IND_V, (n, IND_V), generator=generator)
    # (n, T): where the rule is followed
    follows = torch.rand(n, IND_T, generator=generator) < IND_FOLLOW
    # random tokens, kept where it is not
    tokens = torch.randint(0, IND_V, (n, IND_T), generator=generator)
    for t in range(1, IND_T):
        # (n,): rule[i, tokens[i, t-1]]
        successor = rule.gather(1, tokens[:, t - 1 : t]).squeeze(1)
        tokens[:, t] = torch.where(follows[:, t], successor, tokens[:, t])
    return tokens


def repeated_half(n, generator):
    """(n, IND_T): IND_T/2 distinct random tokens, then the same IND_T/2 again."""
    # no token twice
    first = torch.rand(n, IND_V, generator=generator).argsort(dim=1)[:, : IND_T // 2]
    return torch.cat([first, first], dim=1)


print(
    "a training sequence:",
    rule_following_tokens(1, torch.Generator().manual_seed(1))[0].tolist(),
)
test_seqs = repeated_half(256, torch.Generator().manual_seed(123))
print("a test sequence:    ", test_seqs[0].tolist())

# %% [markdown]
# Two models, trained alike on the rule-following sequences: two attention-only layers, and one. Every
# 25 steps we measure the loss on the test's repeated half, to see *when* the model learns to copy.
# One detail of the recipe: the position embeddings start from $\mathcal{N}(0, 0.2^2)$ rather than
# GPT-2's $\mathcal{N}(0, 0.02^2)$. A previous-token head has to tell position $t-1$ from the others,
# and with positions that start as small as GPT-2's the plateau below lasted about twice as long or
# more in the course's trials. (To see it, set `IND_POS_STD = 0.02` and `IND_STEPS = 3000` and rerun
# the cell: a few minutes.)

# %%
IND_STEPS, IND_LR, IND_BATCH, IND_POS_STD = utils.budget(1000, 40), 1e-2, 64, 0.2
EVERY = 25  # steps between two measurements of the test loss
# predictions of tokens 1 .. T/2-1: random, unpredictable
first_half = slice(0, IND_T // 2 - 1)
# predictions of tokens T/2+1 .. T-1: each repeats an earlier one
second_half = slice(IND_T // 2, IND_T - 1)


def halves(model):
    loss = loss_per_position(model, test_seqs)  # (T-1,)
    return loss[first_half].mean().item(), loss[second_half].mean().item(), loss


def train_attention_only(layers, seed=0):
    torch.manual_seed(seed)
    m = GPT(IND_V, 64, 2, layers, 0, IND_T)  # d_ff=0: attention only; 2 heads per layer
    nn.init.normal_(m.pos_emb.weight, std=IND_POS_STD)
    # the test loss on the repeated half, before steps 0, EVERY, 2 EVERY, ...
    curve, step = [], 0

    def batch(generator):
        nonlocal step
        if step % EVERY == 0:
            m.eval()
            curve.append(halves(m)[1])
            m.train()
        step += 1
        return rule_following_tokens(IND_BATCH, generator)

    hist = train_lm(
        m,
        batch,
        steps=IND_STEPS,
        lr=IND_LR,
        warmup=50,
        loss_fn=next_token_loss,
        seed=seed,
        desc=f"{layers}-layer attention-only",
    )
    return m, hist, curve


two, two_history, two_curve = train_attention_only(2)
one, one_history, one_curve = train_attention_only(1)
first2, second2, loss2 = halves(two)
first1, second1, loss1 = halves(one)
uniform = math.log(IND_V)
print(
    f"2 layers: first half {utils.measured(first2, '.2f')}, repeated half {utils.measured(second2, '.2f')} nats "
    f"(a uniform guess: ln {IND_V} = {uniform:.2f}); trained in {two_history.seconds:.0f} s"
)
print(
    f"1 layer:  first half {utils.measured(first1, '.2f')}, repeated half {utils.measured(second1, '.2f')} nats"
)
utils.claim(
    second2 < first2 - 1.5,
    "with two layers the repeated half is predicted far better than the random first half (by over 1.5 nats)",
    budget=IND_STEPS,
)
utils.claim(
    second1 > first1 - 0.5 and min(one_curve) > uniform - 0.5,
    "with one layer it never is: its repeated half is never more than 0.5 nats below its first half or ln V",
    budget=IND_STEPS,
)

# the phase change: the largest fall of the repeated half's loss within 150 steps, and
# what came before it
window = 150 // EVERY
falls = [two_curve[i] - two_curve[i + window] for i in range(len(two_curve) - window)]
k = max(range(len(falls)), key=falls.__getitem__) if falls else 0
if falls:
    print(
        f"largest fall within 150 steps: {utils.measured(falls[k], '.2f')} nats, from step {utils.measured(EVERY * k, '.0f')}; "
        f"in the {utils.measured(EVERY * k, '.0f')} steps before, {utils.measured(two_curve[0] - two_curve[k], '.2f')} nats"
    )
else:
    print(f"{IND_STEPS} steps are too few to look for a drop")
utils.claim(
    bool(falls)
    and falls[k] > 1.0
    and k * EVERY >= 150
    and two_curve[0] - two_curve[k] < 0.5,
    "the 2-layer model learns to copy suddenly: its loss falls by over 1 nat within 150 steps, "
    "after a plateau of at least 150 steps in which it fell by less than 0.5",
    budget=IND_STEPS,
)

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
ax1.plot(range(1, IND_T), loss2.numpy(), marker="o", ms=3, label="2 layers")
ax1.plot(range(1, IND_T), loss1.numpy(), marker="s", ms=3, label="1 layer")
ax1.axhline(uniform, color="grey", ls=":", label=f"uniform guess, ln {IND_V}")
ax1.axvline(IND_T // 2, color="grey", ls="--")
ax1.set(
    xlabel="position of the predicted token",
    ylabel="cross-entropy (nats)",
    title="Loss per position: the second half repeats the first",
)
ax1.legend()
steps_axis = [EVERY * i for i in range(len(two_curve))]
ax2.plot(steps_axis, two_curve, label="2 layers")
ax2.plot(steps_axis, one_curve, label="1 layer")
ax2.axhline(uniform, color="grey", ls=":")
ax2.set(
    xlabel="training step",
    ylabel="cross-entropy on the repeated half (nats)",
    title="Learning to copy from the context: a sudden drop",
)
ax2.legend()
plt.tight_layout()

# %% [markdown]
# The right-hand curve is the **phase change** of Olsson et al., in well under a minute on a CPU.
# For a few hundred steps the 2-layer model sits near the uniform guess. Then, within a hundred
# steps or so, it learns to copy, and the repeated half's loss falls far below the first half's
# (left). The first half, where nothing can be predicted, ends near ln V or a little above it, for
# both models: their training taught them that tokens already in the context tend to come back, and
# in the test's first half no token ever does. The second half is not flat either: at a few
# positions the copy still fails often, where the induction head has not found its target (in the
# heatmap below, look for a row of the second half whose bright cell is off the diagonal). The
# 1-layer model never drops. One layer can attend to the earlier copies of the current token, but a
# key at position $j$ holds only its own token and position, not the token before it, so one layer
# cannot find the position *after* an earlier copy by its content.
#
# ### Finding the heads by their scores
#
# A **previous-token head** puts its weight on position $t-1$: its score is the mean of
# $\alpha_{t,t-1}$. An **induction head**, at a query $t$ whose token occurred earlier at $j < t$,
# attends to $j + 1$, the token that followed it: its **prefix-matching score** is that weight,
# averaged over the queries that have an earlier occurrence. For a baseline we score attention that
# is spread evenly over the past, $1/(t+1)$ on each of the positions $0..t$, on the same sequences.
# The last position is left out of both scores: its output predicts nothing, so no loss ever trained
# its query (its position embedding is still the random one it started with).
#
# ### Exercise 08.4 · The prefix-matching score (★★★, about 20 min)

# %%
def prefix_matching_score(weights, tokens):
    """How much each head attends to the token *after* an earlier occurrence of the current token.

    weights (h, T, T) attention of one sequence (row t = query t), tokens (T,) with a repeated token
    -> (h,): per head, over the query positions t whose token occurred earlier, the mean of the
    weight summed over the positions j+1 that follow each earlier occurrence j < t of tokens[t].
    """
    ### BEGIN SOLUTION
    T = tokens.shape[0]
    # [t, j]: j < t
    before = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril(diagonal=-1)
    # [t, j]: j < t holds the token of t
    earlier = (tokens[:, None] == tokens[None, :]) & before
    after = torch.zeros_like(earlier)
    # [t, j+1]: the position that follows each earlier occurrence j
    after[:, 1:] = earlier[:, :-1]
    queries = earlier.any(dim=-1)  # (T,): t's token occurred before
    # (h, T): the weight on those positions, per query
    score = (weights * after).sum(dim=-1)
    return score[:, queries].mean(dim=-1)  # (h,)
    ### END SOLUTION


# %%
utils.check("08.4", prefix_matching_score)

# %%
prefix_matching_score = utils.use("08.4", prefix_matching_score)


def head_scores(weights, seqs):
    """weights (layers, N, h, T, T) of seqs (N, T) -> (layers, h) previous-token and (layers, h) prefix-matching
    scores, averaged over the sequences and over every query but the last."""
    # causal: the first T-1 queries see only the first T-1 keys
    w, seqs = weights[..., :-1, :-1], seqs[:, :-1]
    T = seqs.shape[1]
    # weight on t-1, (layers, h)
    prev = w[..., torch.arange(1, T), torch.arange(T - 1)].mean(dim=(1, 3))
    match = torch.stack(
        [
            torch.stack(
                [prefix_matching_score(w[l, i], seqs[i]) for i in range(len(seqs))]
            ).mean(0)
            for l in range(len(w))
        ]
    )  # (layers, h)
    return prev, match


def uniform_weights(seqs):
    """(1, N, 1, T, T): attention spread evenly over the past, 1/(t+1) on each key 0..t, for seqs (N, T)."""
    T = seqs.shape[1]
    even = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]
    return even.expand(1, len(seqs), 1, T, T)


def print_scores(prev, match):
    """One line per layer: each head's previous-token and prefix-matching score, (layers, h) each."""
    for l in range(len(prev)):
        print(
            f"layer {l + 1}: previous-token "
            + " ".join(utils.measured(s, ".2f") for s in prev[l].tolist())
            + " | prefix-matching "
            + " ".join(utils.measured(s, ".2f") for s in match[l].tolist())
        )


score_seqs = test_seqs[: utils.budget(64, 8)]
prev, match = head_scores(attention_weights(two, score_seqs), score_seqs)
even_prev, even_match = (
    x.item() for x in head_scores(uniform_weights(score_seqs), score_seqs)
)
prev_head = int(prev[0].argmax())  # the best previous-token head of layer 1
ind_head = int(match[1].argmax())  # the best prefix-matching head of layer 2
print_scores(prev, match)
print(
    f"attention spread evenly: previous-token {even_prev:.3f} | prefix-matching {even_match:.3f}"
)
utils.claim(
    prev[0].max() > max(0.4, 3 * even_prev),
    "layer 1 has a previous-token head (score above 0.4, "
    "over three times the even spread's)",
    budget=IND_STEPS,
)
utils.claim(
    match[1].max() > max(0.3, 3 * even_match) and match[0].max() < 0.2,
    "layer 2 has an induction head (prefix-matching score above 0.3, over three times the even spread's), "
    "and layer 1 has none (all below 0.2)",
    budget=IND_STEPS,
)

# %%
seq = test_seqs[0]
w = attention_weights(two, seq[None])  # (2, 1, h, T, T)
labels = [str(t) for t in seq.tolist()]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.6))
plot_attention(
    w[0, 0, prev_head],
    labels,
    labels,
    ax=ax1,
    xlabel="key token",
    ylabel="query token",
    title=f"Layer 1, head {prev_head + 1}: best previous-token score",
)
plot_attention(
    w[1, 0, ind_head],
    labels,
    labels,
    ax=ax2,
    xlabel="key token",
    ylabel="query token",
    title=f"Layer 2, head {ind_head + 1}: best prefix-matching score",
)
plt.tight_layout()

# %% [markdown]
# On the left, the previous-token head: a diagonal just below the main one. On the right, the induction
# head: in the second half, each query looks at the key one position *after* the earlier copy of its
# own token, a diagonal $T/2 - 1$ positions back, which is where the next token is.
#
# ### The test: switch the heads off
#
# A score says where a head looks, not what the model needs. **Ablation** asks the second question:
# zero the output of the heads (`ablate_heads`) and measure the loss on the repeated half again. We
# switch off the induction heads of layer 2 (those that score at least half as much as the best), then
# instead the previous-token heads of layer 1 (the same rule), then each head alone.

# %%
induction_heads = [(1, h) for h in range(2) if match[1, h] >= match[1].max() / 2]
previous_heads = [(0, h) for h in range(2) if prev[0, h] >= prev[0].max() / 2]
with ablate_heads(two, induction_heads):
    without_induction = halves(two)[1]
with ablate_heads(two, previous_heads):
    without_previous = halves(two)[1]
alone = []
for layer in range(2):
    for h in range(2):
        with ablate_heads(two, [(layer, h)]):
            alone.append(
                f"layer {layer + 1} head {h + 1}: {utils.measured(halves(two)[1], '.2f')}"
            )
print(
    f"repeated half: {utils.measured(second2, '.2f')} nats; without the induction heads "
    f"{utils.measured(without_induction, '.2f')}; without the previous-token heads {utils.measured(without_previous, '.2f')} "
    f"(ln {IND_V} = {uniform:.2f})"
)
print("one head switched off, repeated half: " + "; ".join(alone))
utils.claim(
    min(without_induction, without_previous) > uniform - 0.5,
    "switching off either part of the circuit sends the repeated half back to a uniform guess or worse "
    "(above ln V - 0.5)",
    budget=IND_STEPS,
)

# %% [markdown]
# Either half of the circuit alone is worth nothing: without the previous-token heads the induction
# heads have nothing to match, without the induction heads nothing is copied, and the repeated half is
# as unpredictable as the first. The heads switched off one at a time show how the work is shared.
# Where both heads of a layer have learned the job, either one alone still does much of it; and a
# head can matter that scores high on neither pattern (compare each head's loss with its scores).
# Zeroing a head is the bluntest test: it also moves the next layer's inputs where training never
# took them. Replacing the head's output by its mean over many sequences is a gentler variant.
#
# One trap, which we found while building this lesson: trained on the test's own shape (always a half
# that repeats), even a 1-layer model learns the repeat perfectly, with a purely positional head that
# attends $T/2 - 1$ positions back, and that head scores high on prefix matching too. That is why the
# models here train on rules and are tested on repeats: a score alone does not prove a mechanism, a
# test on other data does.
#
# ### And in the GPT trained on Python?
#
# The same probe on this lesson's character model: 64 sequences of 32 distinct random letters and
# digits, each written twice (64 characters, its whole context). Random letters never occur in the
# training text in this order, so only copying from the context can predict the second copy.

# %%
g = torch.Generator().manual_seed(7)
alnum = torch.tensor(
    [i for i, c in enumerate(corpus.itos) if c.isascii() and c.isalnum()]
)
# 32 distinct characters per row
run = alnum[torch.rand(64, len(alnum), generator=g).argsort(dim=1)[:, :32]]
# (64, 64): a random run of 32 characters, twice
char_seqs = torch.cat([run, run], dim=1)
char_loss = loss_per_position(model, char_seqs)  # (63,)
char_first, char_second = char_loss[:31].mean().item(), char_loss[32:].mean().item()
probe = char_seqs[: utils.budget(32, 4)]
char_prev, char_match = head_scores(attention_weights(model, probe), probe)
char_even_prev, char_even_match = (
    x.item() for x in head_scores(uniform_weights(probe), probe)
)
print(
    f"GPT on Python, random characters: first copy {utils.measured(char_first, '.2f')}, second copy "
    f"{utils.measured(char_second, '.2f')} nats per character (ln V = {math.log(V):.2f})"
)
print_scores(char_prev, char_match)
print(
    f"attention spread evenly: previous-token {char_even_prev:.3f} | prefix-matching {char_even_match:.3f}"
)
utils.claim(
    char_match.max() < 0.2 and char_first - char_second < 1.0,
    "this GPT has no induction head: no head's prefix-matching score reaches 0.2, "
    "and the second copy is predicted less than 1 nat better than the first",
    budget=STEPS,
)
utils.claim(
    char_match.max() < 2 * char_even_match and char_prev.max() < prev[0].max() / 2,
    "its prefix-matching scores stay below twice the even spread's, and its best previous-token score below half "
    "that of the attention-only model's previous-token head",
    budget=STEPS,
)

# %% [markdown]
# It has none. On prefix matching its heads score about what attention spread evenly scores, and
# on the previous token, although some heads put up to a few times the even spread there, none
# comes near the attention-only model's previous-token head; the second copy is hardly easier than
# the first. Both copies cost more than a uniform guess over the characters, because the
# model expects Python, and random letters are far from it. A model with induction heads would predict
# the second copy far better than the first. This GPT is small and has trained for a minute or two
# (about a million characters); the language models of Olsson et al. formed their induction heads
# after far more training than that. The attention-only model above formed them in a thousand steps,
# because its data rewarded nothing else.

# %% [markdown]
# ## 8. Try it: write with the model
#
# Type a prompt, choose the temperature and top-k (0 = no top-k) and a seed. Each generated
# character is shaded by the probability the model gave it (at temperature 1; hover to read it):
# dark where the model was sure, pale where it was guessing.

# %%
def render(
    prompt: str,
    temperature: float = 0.8,
    top_k: int = 10,
    seed: int = 0,
    length: int = 80,
):
    """Continue ``prompt`` with the trained GPT; return ``(html, n)``, n = the number of characters generated."""
    if not prompt:
        return "<p>Type a prompt, e.g. <code>def </code>.</p>", 0
    unknown = sorted({c for c in prompt if c not in corpus.stoi})
    if unknown:
        return (
            f"<p>The model has never seen {html.escape(', '.join(repr(c) for c in unknown))}: "
            "it reads the characters of Python source (ASCII and a few more).</p>"
        ), 0
    ids, logits = generate(
        model,
        corpus.encode(prompt)[None],
        length,
        temperature=temperature,
        top_k=top_k or None,
        generator=torch.Generator().manual_seed(seed),
        sample=sample_next,
        return_logits=True,
    )
    new = ids[0, -length:]
    # (length,): p of each chosen character, at tau = 1
    probs = logits[0].softmax(-1).gather(-1, new[:, None])[:, 0]
    spans = []
    for c, p in zip(corpus.decode(new), probs.tolist()):
        shown = html.escape(c).replace("\n", "↵<br>")
        spans.append(
            f"<span title='p = {p:.2f}' style='background:rgba(0,114,178,{0.15 + 0.85 * p:.2f});"
            f"color:{'white' if p > 0.5 else 'black'}'>{shown}</span>"
        )
    page = (
        f"<pre style='font-size:13px;line-height:1.5'><b>{html.escape(prompt)}</b>{''.join(spans)}</pre>"
        f"<p>mean probability of the generated characters: {probs.mean().item():.2f}</p>"
    )
    return page, len(spans)


# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets
from IPython.display import HTML, display


def show(prompt, temperature, top_k, seed):
    display(HTML(render(prompt, temperature, top_k, seed)[0]))


widgets.interactive(
    show,
    prompt=widgets.Text(value="def ", description="prompt"),
    temperature=widgets.FloatSlider(
        min=0.0, max=2.0, step=0.1, value=0.8, description="temperature"
    ),
    top_k=widgets.IntSlider(min=0, max=V, value=10, description="top-k"),
    seed=widgets.IntSlider(min=0, max=20, value=0, description="seed"),
)

# %% [markdown]
# The same view without the widget, and what it says to a prompt it cannot read:

# %%
for prompt in ("", "def π(x):"):
    print(render(prompt)[0])
page, n = render("class ", temperature=1.0, top_k=0, seed=3, length=40)
print("characters generated:", n, "| shaded spans:", page.count("<span"))

# %% [markdown]
# ## Summary
#
# * A **decoder-only** Transformer is lesson 07's decoder without cross-attention, that is lesson
#   06's encoder block with a causal mask (equal to `nn.TransformerEncoderLayer` with one), stacked,
#   between token and position embeddings and an output layer tied to the token embedding.
# * Trained with the **next-token loss** on a few megabytes of Python, a small model beats the
#   unigram and the bigram baselines by more than half a bit per character, in a few minutes on a CPU.
# * The **causal mask** is what makes this training honest: without it the loss collapses because
#   each position reads its answer, and the model is useless when the answer does not exist yet.
# * **Temperature** trades diversity for likelihood; **top-k** cuts off the unlikely tail; the
#   **key/value cache** of lesson 07 gives the same tokens, faster.
# * **Induction heads**, a previous-token head in layer 1 and a head in layer 2 that attends to
#   the token after an earlier occurrence of the current one, let a 2-layer model continue a
#   sequence it has seen once. A 2-layer attention-only model learns them in a sudden drop of the loss,
#   a 1-layer model never does, and switching off either part of the circuit undoes the copying. The
#   GPT trained briefly on Python has none yet.
#
# ## Going further
#
# 1. **Scale.** Double the width, then the depth, then the context. Which buys the most bits per
#    character for a minute of training? (nanoGPT's `shakespeare_char` config is a good next step.)
# 2. **Byte-level or BPE.** Replace characters by bytes (`text.encode()`), then by a small BPE
#    vocabulary. How does the loss per *character* compare?
# 3. **Dropout and weight decay.** This lesson's model is too small to overfit in a minute. Train
#    ten times longer and watch the validation loss: when does it turn up?
# 4. **Induction on text.** Feed the GPT a piece of real code twice. Is the second copy predicted
#    better? Which heads look at the token after the earlier occurrence?
# 5. **Lesson 09** asks what today's language models change: FlashAttention's online softmax,
#    rotary positions, grouped-query attention and sliding windows.

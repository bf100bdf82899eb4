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
# # Lesson 07 · The Transformer decoder and the full model
#
# **Why this lesson:** the encoder of lesson 06 *reads* a sequence; to *write* one, token by
# token, the Transformer needs a decoder that looks only at the past of its own output and at
# the whole input. Here you build it, train the full model by maximum likelihood, generate with
# it, and put it side by side with the two recurrent models of lessons 01 and 02.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/07_transformer_decoder.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/07_transformer_decoder.ipynb)
#
# **You will be able to**
# 1. build the decoder block: masked self-attention, cross-attention to the encoder, feed-forward;
# 2. show that the causal mask makes output $t$ depend on target tokens before $t$ only;
# 3. train a sequence model by maximum likelihood (teacher forcing + cross-entropy), by hand;
# 4. generate with batched greedy decoding, and make it faster with a key/value cache;
# 5. compare the bottleneck LSTM, the attention RNN and the Transformer on the same task.
#
# **Exercises:** 07.1 the decoder block (★★☆) · 07.2 the target shift and the loss (★★☆) ·
# 07.3 batched greedy decoding (★★☆). Stuck? `utils.hint("07.1")`, `utils.hint("07.1", 2)`,
# `utils.solution("07.1")`. The lesson runs to the end even before you finish: later cells use
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
import math
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.attention import (
    MultiHeadAttention,
    causal_mask,
    fused_attention,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)
from utils.cost import best_times
from utils.data import EOS, PAD, SOS, DateTask, SymbolTask
from utils.plots import PALETTE, plot_accuracy_by_length, plot_attention, plot_losses
from utils.rnn import AttentionSeq2Seq, BottleneckSeq2Seq
from utils.training import (
    accuracy_by_length,
    count_parameters,
    exact_match,
    sequence_loss,
    token_accuracy,
    train,
)
from utils.transformer import (
    FeedForward,
    Transformer,
    copy_into_torch_decoder_layer,
    copy_into_torch_transformer,
)

# %% [markdown]
# ## 1. The decoder block
#
# The decoder reads the target produced so far, $y_{<t}$, and the encoder's output, the
# **memory** $m = \mathrm{Encoder}(x)$ of shape (B, S, D). Each of its blocks has three
# sublayers where the encoder block had two:
#
# 1. **masked self-attention** over the target: position $t$ may attend to positions $\le t$
#    only (the causal mask of lesson 03), because at generation time the later tokens do not
#    exist yet;
# 2. **cross-attention**: the queries come from the decoder, the keys and values from the
#    memory, so every output position can look at every input position (lesson 02's idea,
#    with lesson 05's heads);
# 3. the position-wise **feed-forward** network of lesson 06.
#
# Each sublayer sits in a residual connection with a LayerNorm. The course uses **pre-LN**
# (the norm inside the residual branch), which trains stably without a learning-rate warm-up:
#
# $$\begin{aligned}
# h_1 &= x + \mathrm{SelfAttn}\big(\mathrm{LN}_1(x);\ \text{causal}\big),\\
# h_2 &= h_1 + \mathrm{CrossAttn}\big(Q=\mathrm{LN}_2(h_1),\ K=V=m\big),\\
# y &= h_2 + \mathrm{FFN}\big(\mathrm{LN}_3(h_2)\big).
# \end{aligned}$$
#
# *Where the course deviates from the paper:* "Attention Is All You Need" uses **post-LN**,
# $h_1 = \mathrm{LN}_1(x + \mathrm{SelfAttn}(x))$ and so on, with a learning-rate warm-up. Both
# are here: `norm_first=False` gives the paper's block. There is no dropout in the course.
#
# ### Exercise 07.1 · The decoder block (★★☆, about 20 min)
#
# Create the layers `self_attn` and `cross_attn` (each a `MultiHeadAttention(d_model, num_heads)`
# of lesson 05), `ff` (the `FeedForward(d_model, d_ff)` of lesson 06), `norm1`, `norm2`, `norm3`
# (`nn.LayerNorm(d_model)`), and keep `norm_first`; the checks load the course's weights into
# yours by these names. The two helpers `_sa` and `_ca` are given: they run an attention and keep
# its weights, detached, for the heatmaps later. While the model trains, nobody looks at the
# weights, so there they call `fused_attention` instead: the same attention (the same projections,
# scores and softmax), computed by PyTorch's fused `F.scaled_dot_product_attention`, which never
# stores the weights and trains faster. Masks are `True` where attention is allowed, as everywhere
# in the course.

# %%
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

    def __init__(
        self, d_model: int, num_heads: int, d_ff: int, norm_first: bool = True
    ):
        super().__init__()
        ### BEGIN SOLUTION
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.norm_first = norm_first
        self.last_self_weights = self.last_cross_weights = None
        ### END SOLUTION

    def _sa(self, x, mask):
        # a training step: nobody reads the weights
        if self.training and torch.is_grad_enabled():
            self.last_self_weights = None
            # the same attention, fused: faster
            return fused_attention(self.self_attn, x, x, x, mask)
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
        ### BEGIN SOLUTION
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask)
            # memory was normalised by the encoder's final norm
            x = x + self._ca(self.norm2(x), memory, memory_mask)
            return x + self.ff(self.norm3(x))
        x = self.norm1(x + self._sa(x, tgt_mask))
        x = self.norm2(x + self._ca(x, memory, memory_mask))
        return self.norm3(x + self.ff(x))
        ### END SOLUTION


# %%
utils.check("07.1", DecoderLayer)

# %% [markdown]
# ### Is it the standard decoder block? Compare with PyTorch's
#
# `nn.TransformerDecoderLayer` computes the same block. Given the same weights, with
# `batch_first=True`, `dropout=0` and the same `norm_first`, it must give the same output.
# One trap: PyTorch's boolean masks mean the *opposite* of ours (`True` = **not** allowed),
# so we pass `~mask`.

# %%
DecoderLayer = utils.use("07.1", DecoderLayer)

torch.manual_seed(1)
B, T, S, D = 3, 7, 9, 32
x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
src_pad = padding_mask(torch.tensor([9, 5, 2]), S)  # (B, S) True at real source tokens
for norm_first in (True, False):
    ours = DecoderLayer(D, 4, 64, norm_first=norm_first)
    theirs = nn.TransformerDecoderLayer(
        D, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    copy_into_torch_decoder_layer(ours, theirs)
    # our masks: True = may attend
    a = ours(x, memory, causal_mask(T), src_pad[:, None, :])
    # theirs: True = masked
    b = theirs(x, memory, tgt_mask=~causal_mask(T), memory_key_padding_mask=~src_pad)
    diff = (a - b).abs().max().item()
    utils.claim(
        diff < 1e-5,
        f"our decoder block equals nn.TransformerDecoderLayer (norm_first={norm_first}), "
        f"max difference < 1e-5",
        needs_training=False,
    )

# %% [markdown]
# ### The decoder cannot see the future
#
# The claim, in one sentence: *the decoder masks future words, so the model is trained to
# predict each word from the previous words only.* Here is the proof by experiment. We build a full
# Transformer with your decoder block, feed it a target, change **one** target token at
# position $j$, and measure how much each output position $t$ moves. If the mask works, the
# output at $t$ moves only when $j \le t$.

# %%
def use_your_decoder_block(model):
    """Replace every decoder layer of the course's ``model`` by your DecoderLayer (fresh weights); returns it."""
    old = model.decoder.layers[0]
    model.decoder.layers = nn.ModuleList(
        DecoderLayer(
            model.d_model,
            old.self_attn.num_heads,
            old.ff.linear1.out_features,
            old.norm_first,
        )
        for _ in model.decoder.layers
    )
    return model


torch.manual_seed(0)
probe = use_your_decoder_block(
    Transformer(13, d_model=32, num_heads=4, d_ff=64, num_layers=2)
).eval()
src = torch.randint(3, 13, (1, 6))
tgt_in = torch.randint(3, 13, (1, 8))  # a decoder input: 8 positions
with torch.no_grad():
    memory, src_mask = probe.encode(src, torch.tensor([6]))
    base = probe.decode(tgt_in, memory, src_mask)  # (1, 8, V)
    # [j, t]: how far output t moves when input token j changes
    influence = torch.zeros(8, 8)
    for j in range(8):
        changed = tgt_in.clone()
        changed[0, j] = 3 + (changed[0, j] - 3 + 1) % 10  # another symbol
        influence[j] = (
            (probe.decode(changed, memory, src_mask) - base).abs().amax(dim=-1)[0]
        )

fig, ax = plt.subplots(figsize=(4.6, 3.8))
image = ax.imshow(influence.numpy(), cmap="viridis")
ax.set(
    xlabel="output position t",
    ylabel="changed input position j",
    title="Changing token j moves outputs t ≥ j only",
)
ax.grid(False)
plt.colorbar(image, ax=ax, label="max |change| in logits")
plt.tight_layout()

# %%
later = influence.tril(diagonal=-1)  # [j, t] with j > t: a later input token changed
print(
    f"largest change of an output caused by a later input token: {later.max().item():.1e}"
)
utils.claim(
    later.max().item() == 0.0,
    "changing decoder input t+1 or later leaves output t exactly unchanged",
    needs_training=False,
)
earlier_or_same = influence[torch.ones(8, 8, dtype=torch.bool).triu()]  # j <= t
print(
    f"smallest change of an output caused by an earlier (or the same) input token: {utils.measured(earlier_or_same.min().item(), '.3f')}"
)
utils.claim(
    earlier_or_same.min().item() > 1e-3,
    "changing decoder input t or an earlier one changes output t",
    needs_training=False,
)

# %% [markdown]
# Only the upper triangle, diagonal included, is non-zero: row $j$ (the changed input) moves
# the outputs $t \ge j$ only. That is the causal mask of lesson 03 seen from the outside, and
# transposed: the mask's rows are the queries (here the columns $t$), its lower triangle the
# keys each may see. It is what makes
# training efficient: all $T$ positions are computed in **one** pass, each predicting its next
# token as if the later ones did not exist, where the RNN decoder needed $T$ sequential steps.
#
# ## 2. Training is maximum likelihood
#
# The model defines the probability of a whole output sequence, one token at a time:
#
# $$p(y \mid x) = \prod_{t=1}^{T} p(y_t \mid y_{<t}, x), \qquad
#   -\log p(y \mid x) = -\sum_{t=1}^{T} \log p(y_t \mid y_{<t}, x).$$
#
# Maximum-likelihood training minimises this **negative log-likelihood** (NLL), averaged over
# the real target tokens. With **teacher forcing** the decoder's input is the gold target shifted
# right (`<sos>` first), so position $t$ sees $y_{<t}$ and is scored on $y_t$, for all $t$ at once:
#
# | position $t$ | 1 | 2 | 3 | 4 |
# |---|---|---|---|---|
# | decoder input | `<sos>` | $y_1$ | $y_2$ | $y_3$ |
# | scored on | $y_1$ | $y_2$ | $y_3$ | `<eos>` |
#
# Shorter sequences of a batch are padded with `<pad>`; padding is not a token to predict, so
# it must not count in the loss.
#
# ### Exercise 07.2 · The target shift and the loss (★★☆, about 15 min)
#
# Compute the NLL by hand (`log_softmax` and `gather`), not with `F.cross_entropy`: the next
# cell checks that the two agree.

# %%
def teacher_forcing_loss(model, src, src_lengths, tgt):
    """The mean negative log-likelihood of the target, per real target token, with teacher forcing.

    src (B, S), src_lengths (B,), tgt (B, T) ending with EOS and padded with PAD -> a scalar.
    ``model`` has ``encode(src, src_lengths) -> (memory, src_mask)`` and
    ``decode(tgt_in (B, T), memory, src_mask) -> logits (B, T, V)`` (and ``model(src, src_lengths, tgt)``
    gives the same teacher-forced logits). The loss keeps its gradient; ``tgt`` is not changed.
    """
    ### BEGIN SOLUTION
    memory, src_mask = model.encode(src, src_lengths)  # (B, S, D), (B, S)
    # (B, T): SOS y_1 .. y_{T-1}
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], dim=1)
    # (B, T, V): position t has seen y_<t only
    logits = model.decode(tgt_in, memory, src_mask)
    log_probs = logits.log_softmax(dim=-1)  # (B, T, V): log p(. | y_<t, x)
    # (B, T): -log p(y_t | y_<t, x)
    nll = -log_probs.gather(-1, tgt[..., None]).squeeze(-1)
    real = tgt != PAD  # (B, T): padding is not a token to predict
    # mean over the real tokens of the whole batch
    return (nll * real).sum() / real.sum()
    ### END SOLUTION


# %%
utils.check("07.2", teacher_forcing_loss)

# %% [markdown]
# PyTorch's `F.cross_entropy(logits, targets, ignore_index=PAD)` is exactly this NLL (it applies
# the log-softmax itself, which is why models return raw logits). The course's `train` uses it
# through `utils.training.sequence_loss`. Check on a real batch, with padding:

# %%
teacher_forcing_loss = utils.use("07.2", teacher_forcing_loss)

task = SymbolTask("reverse", num_symbols=10, min_len=2, max_len=24)
batch = task.sample(16, torch.Generator().manual_seed(3))
by_hand = teacher_forcing_loss(probe, batch.src, batch.src_lengths, batch.tgt)
# forward shifts the target right itself
logits = probe(batch.src, batch.src_lengths, batch.tgt)
library = F.cross_entropy(
    logits.reshape(-1, logits.shape[-1]), batch.tgt.reshape(-1), ignore_index=PAD
)
print(
    f"NLL by hand: {utils.measured(by_hand.item(), '.4f')} nats/token, F.cross_entropy: {utils.measured(library.item(), '.4f')} nats/token, "
    f"padding: {(batch.tgt == PAD).float().mean().item():.0%} of the target"
)
utils.claim(
    abs(by_hand.item() - library.item()) < 1e-5,
    "the hand-written NLL equals F.cross_entropy(..., ignore_index=PAD)",
    needs_training=False,
)
print(
    f"an untrained model is close to uniform: ln(V) = ln({len(task.vocab)}) = {math.log(len(task.vocab)):.4f}"
)

# %% [markdown]
# *An aside, label smoothing.* The paper trains against a target that puts $1 - \varepsilon$ on
# the gold token and spreads $\varepsilon = 0.1$ over the vocabulary, which discourages
# over-confident logits: `F.cross_entropy(..., label_smoothing=0.1)`, one argument. The course's
# tasks have one right answer, so it trains without.
#
# ## 3. Generating: greedy decoding
#
# At generation time there is no gold target. The decoder starts from `<sos>`, predicts the next
# token from the **last** position's logits, appends it to its input, and goes again, until every
# sequence of the batch has produced `<eos>`.
#
# ### Exercise 07.3 · Batched greedy decoding (★★☆, about 15 min)
#
# Use `model.encode` once and `model.decode` at every step. Rows of a batch finish at different
# steps: after a row's `<eos>`, fill it with `<pad>`.

# %%
@torch.no_grad()
def greedy_decode(model, src, src_lengths, max_len: int):
    """Generate with ``model.encode`` and ``model.decode``, always taking the most likely next token.

    src (B, S), src_lengths (B,) -> ids (B, L) torch.long, L <= max_len; each row ends with ``EOS``
    (unless it ran out of steps) and has ``PAD`` after it. Stops as soon as every row has produced
    ``EOS``, and after max_len steps even when a row never does. Not ``model.generate``: the
    lesson's model.generate calls this function.
    """
    ### BEGIN SOLUTION
    # encode the source once: (B, S, D)
    memory, src_mask = model.encode(src, src_lengths)
    # (B, 1) decoder input so far
    ys = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_len):
        # (B, t+1, V): the whole prefix again, no cache
        logits = model.decode(ys, memory, src_mask)
        # (B,): only the newest position predicts the next token
        token = logits[:, -1].argmax(dim=-1)
        out.append(torch.where(finished, PAD, token))  # nothing after EOS
        finished |= token == EOS
        if finished.all():
            break
        ys = torch.cat([ys, token[:, None]], dim=1)  # (B, t+2)
    return torch.stack(out, dim=1)  # (B, L)
    ### END SOLUTION


# %%
utils.check("07.3", greedy_decode)

# %% [markdown]
# ## 4. The whole model, on the task of lessons 01 and 02
#
# The model wires your three pieces together: your decoder block in every layer, your greedy
# decoding to generate. (`train` minimises `F.cross_entropy`, equal to your loss as shown above.)
#
# *In the quick setting* (`COURSE_QUICK=1`, a few training steps only) a claim that needs the
# full run prints "… not checked in the quick setting", and the text after it still describes
# the full run's results: run the notebook without it to see them.

# %%
greedy_decode = utils.use("07.3", greedy_decode)


class Seq2SeqTransformer(Transformer):
    """The course's Transformer with your decoder block and your greedy decoding."""

    def __init__(self, vocab_size, **kwargs):
        super().__init__(vocab_size, **kwargs)
        use_your_decoder_block(self)

    def generate(self, src, src_lengths, max_len: int):
        return greedy_decode(self, src, src_lengths, max_len)


# %% [markdown]
# The task is lesson 01's: reverse a sequence of 2 to 24 symbols. The Transformer has two
# encoder and two decoder layers of width 64 with 4 heads. It trains with Adam at a learning rate
# of 2e-3, then a few more steps at 5e-4: a two-step version of the decaying learning rate the
# paper uses, which lets it settle on the last, hardest examples (the longest inputs). At the
# higher rate the loss still jumps from batch to batch, so the first phase's final loss (the mean
# of its last 20 steps) differs by a factor of two or more from one CPU to another; the second
# phase's, and the accuracies, hardly move.

# %% tags=["tolerance-factor=4"]
def train_in_two_phases(model, task, steps, *, desc):
    """``train`` at lr 2e-3 for ``steps`` steps, then at 5e-4 for a fifth as many; one History for both."""
    first = train(model, task, steps=steps, batch_size=64, lr=2e-3, desc=desc)
    second = train(
        model,
        task,
        steps=steps // 5,
        batch_size=64,
        lr=5e-4,
        seed=1,
        desc=desc + ", lower lr",
    )
    first.losses += second.losses
    first.seconds += second.seconds
    return first


EVAL_LENGTHS = [4, 8, 12, 16, 20, 24]

torch.manual_seed(0)
transformer = Seq2SeqTransformer(
    len(task.vocab), d_model=64, num_heads=4, num_layers=2, d_ff=128
)
print(f"Transformer: {count_parameters(transformer):,} parameters")
tf_history = train_in_two_phases(
    transformer, task, utils.budget(500, 30), desc="Transformer"
)
results = {"Transformer": accuracy_by_length(transformer, task, EVAL_LENGTHS)}
tf_acc = [results["Transformer"][n]["token"] for n in EVAL_LENGTHS]
print(
    "token accuracy by length:",
    "  ".join(f"{n}: {utils.measured(a, '.1%')}" for n, a in zip(EVAL_LENGTHS, tf_acc)),
)
utils.claim(
    min(tf_acc) >= 0.95,
    f"the Transformer reverses at every length, 4 to 24 (lowest: {utils.measured(min(tf_acc), '.1%')} >= 95%)",
)

# %% [markdown]
# ### The three models, side by side
#
# Now the two recurrent models of lessons 01 and 02, with lesson 01's recipe (embeddings of 32,
# a hidden state of 64, batches of 128 at a learning rate of 3e-3) but **200 steps instead of
# 400**, to keep this lesson within a couple of minutes on a laptop CPU: the attention RNN's
# decoder loops over the output one step at a time, in training too, which makes it the slowest
# of the three to train. Lessons 01 and 02 show them with their full budget. So short a run leaves
# the attention RNN still learning the longest inputs (lesson 02's full run gets them right), and
# its accuracy there sensitive to the last bits of its arithmetic: on other CPUs it lands up to
# about twenty points away, always far above the bottleneck.

# %%
histories = {"Transformer": tf_history}
models = {"Transformer": transformer}
for name, Model in [
    ("bottleneck LSTM", BottleneckSeq2Seq),
    ("attention RNN", AttentionSeq2Seq),
]:
    torch.manual_seed(0)
    models[name] = Model(len(task.vocab), emb_dim=32, hidden_dim=64)
    histories[name] = train(
        models[name],
        task,
        steps=utils.budget(200, 15),
        batch_size=128,
        lr=3e-3,
        desc=name,
    )
    results[name] = accuracy_by_length(models[name], task, EVAL_LENGTHS)

# %%
order = ["bottleneck LSTM", "attention RNN", "Transformer"]
fig, axes = plt.subplots(1, 2, figsize=(11.5, 3.9))
plot_accuracy_by_length(
    {n: results[n] for n in order},
    ax=axes[0],
    trained_max=24,
    title="Reversing: three models, one task",
)
plot_losses({n: histories[n] for n in order}, ax=axes[1], title="Training loss")
plt.tight_layout()

# %% tags=["tolerance-points=25"]
print(
    f"{'model':<17} {'parameters':>10} {'steps x batch':>14} {'length 4':>9} {'length 24':>10} {'mean':>7}  training time"
)
for n in order:
    acc = [results[n][k]["token"] for k in EVAL_LENGTHS]
    steps_batch = f"{len(histories[n].losses)} x {64 if n == 'Transformer' else 128}"
    print(
        f"{n:<17} {count_parameters(models[n]):>10,} {steps_batch:>14} {utils.measured(acc[0], '.1%'):>10} {utils.measured(acc[-1], '.1%'):>11} "
        # time last: its width varies
        f"{utils.measured(sum(acc) / len(acc), '.1%'):>8}  {utils.fmt_time(histories[n].seconds)}"
    )
tf24, lstm24 = (
    results["Transformer"][24]["token"],
    results["bottleneck LSTM"][24]["token"],
)
utils.claim(
    tf24 >= lstm24 + 0.3,
    f"at length 24 the Transformer ({utils.measured(tf24, '.1%')}) beats the bottleneck LSTM ({utils.measured(lstm24, '.1%')}) "
    "by 30 points or more",
)

# %% [markdown]
# The bottleneck LSTM falls with length: everything must pass through its context vector $v$.
# Both attention models stay far above it at every length (the attention RNN with half of
# lesson 02's training): attention, not recurrence, removes the bottleneck.
# What differs is how they compute. The attention RNN's decoder is a loop, in training too:
# step $t$ waits for step $t-1$. The Transformer computes every position
# of a training example at once (the whole encoder, and the whole decoder under teacher forcing),
# so its work is a few large matrix products that a GPU runs in parallel. The table gives what
# each cost on this machine, a small CPU; the Transformer also has about twice the parameters of
# the attention RNN, most of them in its attention projections and feed-forward layers.
#
# ## 5. Dates, and what cross-attention reads
#
# The second task of the course: dates written in seven formats, to ISO `YYYY-MM-DD`. Same
# model, same training loop, a vocabulary of characters.

# %%
dates = DateTask()
torch.manual_seed(0)
date_model = Seq2SeqTransformer(
    len(dates.vocab), d_model=64, num_heads=4, num_layers=2, d_ff=128
)
date_history = train_in_two_phases(
    date_model, dates, utils.budget(350, 20), desc="Transformer, dates"
)

# dates drawn with another seed
held_out = dates.sample(500, torch.Generator().manual_seed(2024))
pred = date_model.generate(held_out.src, held_out.src_lengths, max_len=12)
date_exact = exact_match(pred, held_out.tgt).mean().item()
print(f"exact match on 500 unseen dates: {utils.measured(date_exact, '.1%')}")
utils.claim(
    date_exact >= 0.97,
    f"the Transformer normalises unseen dates ({utils.measured(date_exact, '.1%')} exactly right >= 97%)",
)

examples = [
    "3rd of March 1987",
    "Tue 03/03/87",
    "December 25, 2019",
    "1 Jan 01",
    "Saturday, 29 February 2048",
    "07.11.1955",
    "31-Oct-2000",
]
src, src_lengths = dates.encode_texts(examples)
out = date_model.generate(src, src_lengths, max_len=12)
for text, ids in zip(examples, out):
    print(f"{text:>28}  ->  {dates.show(ids)}")

# %% [markdown]
# Which input characters does each output character read? The cross-attention weights of the
# last decoding step hold the answer for every output position, in every layer and head.

# %%
text = "Saturday, 29 February 2048"
src, src_lengths = dates.encode_texts([text])
ids = date_model.generate(src, src_lengths, max_len=12)  # (1, L) with EOS
# one teacher-forced pass over the generated output fills last_cross_weights
with torch.no_grad():
    memory, src_mask = date_model.encode(src, src_lengths)
    date_model.decode(
        torch.cat([torch.full((1, 1), SOS), ids[:, :-1]], dim=1), memory, src_mask
    )
# "<eos>" last
src_tokens, out_tokens = list(text), [dates.vocab.itos[i] for i in ids[0].tolist()]
layers = date_model.decoder.layers
fig, axes = plt.subplots(len(layers), 4, figsize=(16, 3.4 * len(layers)))
for i, layer in enumerate(layers):
    for h in range(4):
        plot_attention(
            layer.last_cross_weights[0, h],
            src_tokens,
            out_tokens,
            ax=axes[i, h],
            colorbar=False,
            title=f"layer {i + 1}, head {h + 1}",
            xlabel="input character",
            ylabel="output character",
        )
fig.suptitle(f"Cross-attention while writing {dates.show(ids[0])}", fontweight="bold")
plt.tight_layout()

# %% [markdown]
# Read the last layer (bottom row): while the model writes the year `2048`, its heads look at the
# digits `2048` of the input, one after the other; while it writes the month `02`, at the start
# of `February`; while it writes the day `29`, at `29`. Hardly any weight goes to `Saturday`:
# the weekday says nothing that the date does not. The first layer is less tidy; its output is
# refined by the second. (Attention shows where a head reads, a clue to what the model does, not
# a complete explanation of it.)
#
# ## 6. Faster generation with a key/value cache
#
# `greedy_decode` reruns the decoder over the whole prefix at every step: step $t$ recomputes
# the queries, keys and values of positions $1 \dots t-1$, which have not changed (the causal
# mask guarantees it: a position never sees what came after it). A **key/value cache** keeps
# each layer's self-attention keys and values and computes, at each step, only the newest
# position's; the cross-attention keys and values depend only on the memory and are computed
# once. The projections and the feed-forward then cost the same at every step, one position's
# worth; only the attention of the new query over the cache still grows with $t$ (it reads $t$
# keys and values), so a step costs $O(t\,d)$ for attention instead of recomputing all $t$
# positions' $O(t\,d^2)$ projections and feed-forwards.
#
# Two claims check it. The cache computes the logits that recomputing computes, up to float
# rounding (the same sums, added in another order). So greedy decoding picks the same tokens, as
# long as no two candidates tie within that rounding: true of a trained model, not always of one
# that barely trained (the quick setting), where a near-tie can go either way on another CPU.

# %%
def embed_position(model, token, t: int):
    """The embedding of ``token`` (B, 1) at position t, as ``model.embed`` computes it for a whole sequence."""
    x = model.embedding(token) * math.sqrt(model.d_model)  # (B, 1, D)
    if model.positional == "sinusoidal":
        x = x + model.pe[t]
    elif model.positional == "learned":
        x = x + model.pos_embedding.weight[t]
    return x


def attend(mha, query, k, v, mask=None):
    """``mha`` with precomputed keys and values k, v (B, h, Lk, d_k): query (B, Lq, D) -> (B, Lq, D)."""
    q = split_heads(mha.q_proj(query), mha.num_heads)  # (B, h, Lq, d_k)
    heads, _ = scaled_dot_product_attention(q, k, v, mask)
    return mha.out_proj(merge_heads(heads))


@torch.no_grad()
def greedy_decode_cached(
    model, src, src_lengths, max_len: int, return_logits: bool = False
):
    """Greedy decoding with a key/value cache; the same contract and the same tokens as ``greedy_decode``.

    Each step runs the decoder on the newest token only (B, 1, D); for a pre-LN model (norm_first=True).
    return_logits=True also returns each step's next-token logits, (B, L, V).
    """
    memory, src_mask = model.encode(src, src_lengths)  # (B, S, D), (B, S)
    layers = model.decoder.layers
    if not all(layer.norm_first for layer in layers):
        raise ValueError(
            "greedy_decode_cached is written for pre-LN layers (norm_first=True)"
        )
    kv_mask = src_mask[:, None, None, :]  # (B, 1, 1, S): for every head and query
    # computed once: (B, h, S, d_k)
    cross_kv = [
        (
            split_heads(l.cross_attn.k_proj(memory), l.cross_attn.num_heads),
            split_heads(l.cross_attn.v_proj(memory), l.cross_attn.num_heads),
        )
        for l in layers
    ]
    # per layer: self-attention keys and values of positions 0..t, (B, h, t+1, d_k)
    cache = [None] * len(layers)
    # (B, 1)
    token = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    out, step_logits = [], []
    for t in range(max_len):
        x = embed_position(model, token, t)  # (B, 1, D): the newest position only
        for i, layer in enumerate(layers):
            h = layer.norm1(x)
            # (B, h, 1, d_k)
            k = split_heads(layer.self_attn.k_proj(h), layer.self_attn.num_heads)
            v = split_heads(layer.self_attn.v_proj(h), layer.self_attn.num_heads)
            if cache[i] is not None:
                # (B, h, t+1, d_k)
                k, v = (
                    torch.cat([cache[i][0], k], dim=2),
                    torch.cat([cache[i][1], v], dim=2),
                )
            cache[i] = (k, v)
            # no mask: the cache holds only positions <= t
            x = x + attend(layer.self_attn, h, k, v)
            x = x + attend(layer.cross_attn, layer.norm2(x), *cross_kv[i], kv_mask)
            x = x + layer.ff(layer.norm3(x))
        step_logits.append(model.out(model.decoder.norm(x)))  # (B, 1, V)
        token = step_logits[-1].argmax(dim=-1)  # (B, 1)
        out.append(torch.where(finished[:, None], PAD, token))
        finished |= token[:, 0] == EOS
        if finished.all():
            break
    if return_logits:
        return torch.cat(out, dim=1), torch.cat(step_logits, dim=1)  # (B, L), (B, L, V)
    return torch.cat(out, dim=1)  # (B, L)


@torch.no_grad()
def cache_gap(model, src, src_lengths, cached) -> float:
    """Largest |logit with the cache - logit recomputed from the whole prefix| over every step.

    cached: the logits ``greedy_decode_cached(..., return_logits=True)`` returned, (B, L, V). Both read
    the tokens the cached decoder fed itself; thanks to the causal mask, one pass of ``model.decode``
    over them gives every step's recomputed logits at once.
    """
    sos = torch.full_like(cached[:, :1, 0], SOS, dtype=torch.long)  # (B, 1)
    fed = torch.cat([sos, cached.argmax(-1)[:, :-1]], dim=1)  # (B, L)
    memory, src_mask = model.encode(src, src_lengths)
    return (model.decode(fed, memory, src_mask) - cached).abs().max().item()


def same_tokens(a, b):
    """Equal outputs, up to PAD after the end (a decoder may stop early or run to max_len)."""
    width = max(a.shape[1], b.shape[1])
    return torch.equal(
        F.pad(a, (0, width - a.shape[1]), value=PAD),
        F.pad(b, (0, width - b.shape[1]), value=PAD),
    )


same, gaps = [], []
for n in EVAL_LENGTHS:
    b = task.sample(100, torch.Generator().manual_seed(n), length=n)
    ids, logits = greedy_decode_cached(
        transformer, b.src, b.src_lengths, n + 3, return_logits=True
    )
    same.append(
        same_tokens(ids, greedy_decode(transformer, b.src, b.src_lengths, n + 3))
    )
    gaps.append(cache_gap(transformer, b.src, b.src_lengths, logits))
ids, logits = greedy_decode_cached(
    date_model, held_out.src, held_out.src_lengths, 12, return_logits=True
)
same.append(same_tokens(ids, pred))
gaps.append(cache_gap(date_model, held_out.src, held_out.src_lengths, logits))
print(f"identical outputs: {sum(same)} of {len(same)} batches of 100 to 500 sequences")
print(
    f"largest logit difference, cache vs recomputed, over every step < 1e-4: {max(gaps) < 1e-4}"
)
utils.claim(
    max(gaps) < 1e-4,
    "the key/value cache computes the logits of recomputing the prefix, up to float rounding",
    needs_training=False,
)
utils.claim(
    all(same),
    "the key/value cache gives exactly the same tokens as recomputing the prefix",
    budget=utils.budget(500, 30),
)

# %% [markdown]
# And the time, on the reversing model, for outputs of growing length (100 sequences at once,
# the best of five runs, the two decoders taking turns so that another program slows both
# alike). Times differ from machine to machine, so this cell's output is not compared by the
# tests; it asserts only that the cache is faster at every length. Without the cache, step $t$
# redoes the work of all $t$ positions, so generating $n$ tokens costs about $n^2/2$
# position-steps against $n$ with it; on a small CPU and these short outputs, the fixed cost of
# each step (Python, small matrix products) blurs that growth, and the speed-up you see may be
# about the same at every length. It grows for long outputs, where recomputing dominates.

# %%
# NBVAL_IGNORE_OUTPUT
speedups = {}
print(f"{'output length':>13} {'recompute':>11} {'KV cache':>10} {'speed-up':>9}")
for n in (4, 12, 24):
    b = task.sample(100, torch.Generator().manual_seed(n), length=n)
    slow, fast = best_times(
        [
            lambda: greedy_decode(transformer, b.src, b.src_lengths, n + 1),
            lambda: greedy_decode_cached(transformer, b.src, b.src_lengths, n + 1),
        ],
        repeats=5,
    )
    speedups[n] = slow / fast
    print(
        f"{n + 1:>13} {utils.fmt_time(slow):>11} {utils.fmt_time(fast):>10} {utils.measured(speedups[n], '.1f'):>9}x"
    )
utils.claim(
    min(speedups.values()) > 1.1,
    "the cache is faster at every output length measured",
    needs_training=False,
)

# %% [markdown]
# ## 7. Try it: your own dates
#
# Type a date in any of the task's formats (`3rd of March 1987`, `Tue 03/03/87`, `03.03.1987`,
# `March 3, 1987`, `3 Mar 87`, `Tuesday, 3 March 1987`, `03-Mar-1987`) and move the slider through
# the output: each step shows the character written and where each head of each layer looked.

# %%
def render_date(text: str, step: int = 0):
    """Translate ``text`` with ``date_model``; return ``(html, weights)`` for output step ``step``.

    weights (layers * heads, S): the cross-attention of that step, or None when the input is not usable.
    """
    text = text.strip()
    unknown = sorted({c for c in text if c not in dates.vocab.stoi})
    if not text:
        return "<p>Type a date, e.g. <code>3rd of March 1987</code>.</p>", None
    if unknown:
        return (
            f"<p>The model does not know the character{'s' if len(unknown) > 1 else ''} "
            f"{html.escape(', '.join(repr(c) for c in unknown))}. It reads digits, the letters of month and day names, "
            "spaces and <code>- , . /</code>.</p>"
        ), None
    if len(text) > date_model.max_len:
        return (
            f"<p>That is {len(text)} characters; the model reads at most {date_model.max_len}.</p>",
            None,
        )
    src, src_lengths = dates.encode_texts([text])
    ids = date_model.generate(src, src_lengths, max_len=12)  # (1, L)
    # one teacher-forced pass over the output fills every layer's cross-attention
    with torch.no_grad():
        memory, src_mask = date_model.encode(src, src_lengths)
        date_model.decode(
            torch.cat([torch.full((1, 1), SOS), ids[:, :-1]], dim=1), memory, src_mask
        )
    tokens = [
        "<eos>" if i == EOS else dates.vocab.itos[i]
        for i in ids[0].tolist()
        if i != PAD
    ]
    step = max(0, min(int(step), len(tokens) - 1))
    # (layers*h, S)
    weights = torch.cat(
        [layer.last_cross_weights[0, :, step] for layer in date_model.decoder.layers]
    )
    # "<eos>" must show as text, not as an HTML tag
    esc = [html.escape(t) for t in tokens]
    shown = "".join(
        f"<b style='background:#E69F00'>{t}</b>"
        if i == step
        else (
            f"<span>{t}</span>" if i < step else f"<span style='color:#999'>{t}</span>"
        )
        for i, t in enumerate(esc)
    )
    looked_at = ", ".join(
        html.escape(repr(text[j])) for j in weights.argmax(-1).unique().tolist()
    )
    page = (
        f"<pre style='font-size:14px'>input : {html.escape(text)}\noutput: {shown}</pre>"
        f"<p>step {step + 1} of {len(tokens)}: the model writes <b>{esc[step]}</b>; "
        f"the heads look most at {looked_at}</p>"
    )
    return page, weights


# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets
from IPython.display import HTML, display

text_box = widgets.Text(value="3rd of March 1987", description="date")
step_slider = widgets.IntSlider(min=0, max=10, value=5, description="step")


def show(text, step):
    page, weights = render_date(text, step)
    display(HTML(page))
    if weights is not None:
        heads = date_model.decoder.layers[0].cross_attn.num_heads
        rows = [f"L{i // heads + 1} H{i % heads + 1}" for i in range(weights.shape[0])]
        plot_attention(
            weights,
            list(text.strip()),
            rows,
            title="Cross-attention of this step",
            xlabel="input character",
            ylabel="layer, head",
        )
        plt.show()


widgets.interactive(show, text=text_box, step=step_slider)

# %% [markdown]
# The same view without the widget, and what it says to input it cannot read:

# %%
# NBVAL_IGNORE_OUTPUT
# (where a trained model's heads look can change with the CPU: the cell asserts what it
# shows)
page, weights = render_date("3rd of March 1987", 3)
display(HTML(page))
print("attention rows (layers x heads, input characters):", tuple(weights.shape))
utils.claim(
    tuple(weights.shape)
    == (
        len(date_model.decoder.layers)
        * date_model.decoder.layers[0].cross_attn.num_heads,
        len("3rd of March 1987"),
    )
    and torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-5)
    and "step 4 of" in page,
    "render_date shows the step and one row of cross-attention weights (summing to 1) per layer and head",
    needs_training=False,
)

# %%
for text in ("March 3 1987 #1", ""):
    display(HTML(render_date(text)[0]))

# %% [markdown]
# ## 8. The Transformer, assembled: equal to `nn.Transformer`
#
# One last check. PyTorch's `nn.Transformer` is the encoder-decoder stack without embeddings or
# an output layer. Loaded with our trained weights (your decoder block included) and given our
# embeddings, it must compute the same logits as our model. Pre-LN, because `nn.Transformer`
# always ends each stack with a LayerNorm, as our pre-LN stacks do.

# %%
b = task.sample(8, torch.Generator().manual_seed(11))
# a note that pre-LN layers skip its nested-tensor fast path: irrelevant here
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    theirs = nn.Transformer(
        d_model=64,
        nhead=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=128,
        dropout=0.0,
        batch_first=True,
        norm_first=True,
    )
copy_into_torch_transformer(transformer, theirs)
src_pad = padding_mask(b.src_lengths, b.src.shape[1])  # (B, S) True at real tokens
tgt_in = torch.cat([torch.full_like(b.tgt[:, :1], SOS), b.tgt[:, :-1]], dim=1)
# gradients on: nn.Transformer's eval fast path is off
ours_logits = transformer(b.src, b.src_lengths, b.tgt)
their_out = theirs(
    transformer.embed(b.src),
    transformer.embed(tgt_in),
    tgt_mask=~causal_mask(tgt_in.shape[1]),
    # their masks: True = blocked
    src_key_padding_mask=~src_pad,
    memory_key_padding_mask=~src_pad,
)
their_logits = transformer.out(their_out)
diff = (ours_logits - their_logits).abs().max().item()
utils.claim(
    diff < 1e-4,
    "our trained Transformer equals nn.Transformer given the same weights (max difference < 1e-4)",
    needs_training=False,
)

# %% [markdown]
# ## Summary: the course, piece by piece
#
# | lesson | the question | the piece of the Transformer it built |
# |---|---|---|
# | 01 | Why do encoder-decoder RNNs fail on long inputs? | the seq2seq contract, teacher forcing, greedy decoding, and the bottleneck they motivate |
# | 02 | What if the decoder could look at every encoder state? | attention weights $\alpha$ and context vectors: the idea of **cross-attention** |
# | 03 | Can we attend with queries, keys and values? | scaled dot-product attention, padding and **causal masks** |
# | 04 | What does attention cost? | the $n^2$ cost, and the parallelism that makes it worth paying |
# | 05 | Why several heads? | **multi-head attention**, the engine of every sublayer here |
# | 06 | How do we give attention order, and depth? | positional encodings, LayerNorm, residuals, feed-forward: the **encoder** |
# | 07 | How does the full model generate? | the **decoder** block, maximum-likelihood training, greedy decoding, the KV cache |
#
# * The decoder block is masked self-attention, cross-attention and a feed-forward network, each
#   in a residual branch with a LayerNorm; the causal mask makes output $t$ depend on $y_{<t}$ only
#   (measured above), so training scores all positions in one pass.
# * Training is maximum likelihood: the NLL of the target shifted right, padding ignored, which is
#   `F.cross_entropy(..., ignore_index=PAD)`.
# * Generation is a loop; a key/value cache computes only the newest position's projections and
#   feed-forward at each step (a constant cost); its attention over the cache still grows with $t$.
# * On the reversing task the Transformer is right at every length, where the bottleneck LSTM
#   fails on long inputs; on dates its heads read the day, the month and the year.
#
# ## Going further
#
# 1. **Decoder-only models.** GPT drops the encoder and the cross-attention: one stack of masked
#    self-attention blocks over "input, then output". Rewrite the reversing task that way (feed
#    `src <sep> tgt` and score only the part after `<sep>`). What does the model lose, or gain?
#    **Lesson 08** ([`08_decoder_only_gpt`](08_decoder_only_gpt.ipynb)) builds that model, trains it
#    on real text (the Python standard library's source), then watches a smaller one learn the
#    induction heads that copy from the context.
# 2. **Beam search.** Greedy decoding commits to one token at each step. Keep the $k$ best partial
#    outputs instead. On the date task, does it change anything? Why would it matter more for
#    translation?
# 3. **Efficient attention.** Lesson 04 measured the $n^2$ cost. FlashAttention computes exact
#    attention in tiles without storing the $n \times n$ weights (`F.scaled_dot_product_attention`
#    uses it on GPUs); sparse and linear attentions approximate it. Time `F.scaled_dot_product_attention`
#    against lesson 03's attention for $n$ up to 4096.
# 4. **The paper's recipe.** Switch to post-LN (`norm_first=False`) and train the reversing task with
#    the same learning rate. Then add the paper's warm-up schedule. What changes?
# 5. **Length generalisation.** Evaluate the Transformer on inputs of 30 symbols, longer than any it
#    was trained on. Do sinusoidal positions extrapolate? Try `positional="learned"`.

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
# # Lesson 01 · The LSTM bottleneck
#
# **Why this lesson:** an encoder-decoder RNN squeezes a whole input sequence into one
# fixed-size vector $v$; here you build one and *measure* how it fails as inputs grow.
# That failure is the reason attention exists.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/01_lstm_bottleneck.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/01_lstm_bottleneck.ipynb)
#
# **You will be able to**
# 1. build an LSTM encoder that returns the final state of variable-length, padded sequences;
# 2. train a decoder with *teacher forcing* and generate with *greedy decoding*;
# 3. explain, with a curve you computed, why one context vector $v$ is a bottleneck.
#
# **Exercises:** 01.1 the encoder (★★☆) · 01.2 teacher forcing (★☆☆) · 01.3 the decoder (★★☆) ·
# 01.4 greedy decoding (★★☆). Stuck? `utils.hint("01.1")`, `utils.hint("01.1", 2)`,
# `utils.solution("01.1")`. The lesson runs to the end even before you finish: later cells use
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
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.data import EOS, PAD, SOS, SymbolTask
from utils.plots import plot_accuracy_by_length, plot_losses
from utils.training import (
    accuracy_by_length,
    count_parameters,
    print_accuracy_table,
    train,
)
from utils.widgets import prediction_explorer

# %% [markdown]
# ## 1. The task: reverse a sequence
#
# Our stress test is deliberately simple, so that only *length* makes it hard. The input is a
# sequence of $n$ symbols from an alphabet of 10; the output is the same sequence reversed.
# Every task of the course is generated from a seed by `utils.data`: nothing is downloaded.

# %%
task = SymbolTask("reverse", num_symbols=10, min_len=2, max_len=24)
batch = task.sample(3, torch.Generator().manual_seed(0))
print(task)
print(task.vocab)
for i in range(3):
    print(f"input: {task.show(batch.src[i]):<48} target: {task.show(batch.tgt[i])}")
print("src ids (B, S):", tuple(batch.src.shape), "\n", batch.src)

# %% [markdown]
# A batch holds sequences of different lengths, so shorter ones are **padded** with `<pad>`
# (id 0) to the longest. The target ends with `<eos>` (id 2), so the model can say when it is done.
#
# ## 2. The encoder-decoder, and its context vector $v$
#
# The **encoder** reads the input $x_1, \dots, x_n$ one token at a time:
#
# $$h_t, c_t = \mathrm{LSTM}(\mathrm{emb}(x_t),\ (h_{t-1}, c_{t-1})).$$
#
# Its final state $v = (h_n, c_n)$ is the **context vector**: a fixed-size summary of the whole
# input, with `hidden_dim` numbers in $h_n$ whatever $n$ is. The **decoder** is a second LSTM
# that starts from $v$ and produces the output one token at a time. Everything it knows about
# the input must pass through $v$, so $v$ has to capture as much information as possible.
#
# ### Exercise 01.1 · The encoder and its final state (★★☆, about 15 min)
#
# Write the encoder. Careful with the padding: for a sequence of length 3 in a batch padded to
# 8, the final state we want is $h_3$, not the state after five padding steps.

# %%
class Encoder(nn.Module):
    """Embed the source and run an LSTM over it.

    Layers: ``self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)`` and
    ``self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)`` (these names: the check loads
    the course's weights into them, and later cells read them).

    forward(src (B, S), src_lengths (B,)) -> (outputs (B, S, H), (h, c) each (1, B, H)),
    where (h, c) is the state after each sequence's *last real token*, not after the padding.
    outputs has all S positions even when the batch is padded past its longest sequence.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        ### END SOLUTION

    def forward(self, src, src_lengths):
        ### BEGIN SOLUTION
        x = self.embedding(src)  # (B, S, E)
        # Packing makes the LSTM stop at each sequence's own length, so (h, c) is not
        # polluted by the padding steps of the shorter sequences.
        packed = pack_padded_sequence(
            x, src_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        packed_outputs, (h, c) = self.lstm(packed)  # h, c: (1, B, H)
        outputs, _ = pad_packed_sequence(
            packed_outputs, batch_first=True, total_length=src.shape[1]
        )
        return outputs, (h, c)  # (B, S, H), ((1, B, H), (1, B, H))
        ### END SOLUTION


# %%
utils.check("01.1", Encoder)

# %% [markdown]
# ### Exercise 01.2 · Teacher forcing (★☆☆, about 5 min)
#
# During training the decoder is given the **gold** previous token rather than its own guess:
# this is *teacher forcing*. To predict target token $y_t$ it sees $y_{t-1}$; to predict $y_1$ it
# sees a start token `<sos>`. So the decoder's input is the target **shifted right**:
#
# | step $t$ | 1 | 2 | 3 | 4 |
# |---|---|---|---|---|
# | decoder input | `<sos>` | $y_1$ | $y_2$ | $y_3$ |
# | to predict | $y_1$ | $y_2$ | $y_3$ | `<eos>` |

# %%
def shift_right(tgt, sos: int = SOS):
    """Teacher forcing: the decoder's input at step t is the gold token t-1, and ``sos`` at t=0.

    tgt (B, T) -> decoder input (B, T)
    """
    ### BEGIN SOLUTION
    start = torch.full_like(tgt[:, :1], sos)  # (B, 1)
    # (B, T): drop the last token, keep the length
    return torch.cat([start, tgt[:, :-1]], dim=1)
    ### END SOLUTION


# %%
utils.check("01.2", shift_right)

# %% [markdown]
# ### Exercise 01.3 · The decoder, started from $v$ (★★☆, about 10 min)
#
# $$s_t, c'_t = \mathrm{LSTM}(\mathrm{emb}(y_{t-1}),\ (s_{t-1}, c'_{t-1})), \qquad (s_0, c'_0) = v,
# \qquad \mathrm{logits}_t = W_{out}\, s_t + b_{out}.$$
#
# The decoder takes a whole teacher-forced input at once in training, and one token at a time
# when generating (then $T = 1$): the same code serves both.

# %%
class Decoder(nn.Module):
    """An LSTM language model over the target, started from the encoder's final state.

    Layers: ``self.embedding`` (nn.Embedding, padding_idx=PAD), ``self.lstm`` (nn.LSTM,
    batch_first=True) and ``self.out = nn.Linear(hidden_dim, vocab_size)``.

    forward(inputs (B, T), state ((1, B, H), (1, B, H))) -> (logits (B, T, V), new state (h, c)):
    raw scores (no softmax); one token at a time, carrying the state, gives the same logits.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)
        ### END SOLUTION

    def forward(self, inputs, state):
        ### BEGIN SOLUTION
        x = self.embedding(inputs)  # (B, T, E)
        # (B, T, H): the state v is the decoder's only view of the source
        outputs, state = self.lstm(x, state)
        return self.out(outputs), state  # logits (B, T, V), not probabilities
        ### END SOLUTION


# %%
utils.check("01.3", Decoder)

# %% [markdown]
# ### Exercise 01.4 · Greedy decoding (★★☆, about 15 min)
#
# At test time there is no gold target to feed. The decoder starts from `<sos>`, and at each
# step feeds back its own most likely token, $\hat y_t = \arg\max \mathrm{logits}_t$, until it
# says `<eos>`. Decode the whole batch at once; once a row has produced `<eos>`, pad the rest
# of it with `<pad>`.

# %%
@torch.no_grad()
def greedy_decode(model, src, src_lengths, max_len: int):
    """Generate with ``model.encoder`` and ``model.decoder``, one token at a time, always the most likely.

    src (B, S), src_lengths (B,) -> ids (B, L) torch.long, L <= max_len; each row ends with ``EOS``
    (unless it ran out of steps) and has ``PAD`` after it. At most max_len steps, even when a row
    never produces ``EOS``. Not ``model.generate``: that one calls this function.
    """
    ### BEGIN SOLUTION
    _, state = model.encoder(src, src_lengths)
    # (B, 1)
    token = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_len):
        # (B, 1, V): feed back our own last guess
        logits, state = model.decoder(token, state)
        token = logits.argmax(dim=-1)  # (B, 1)
        out.append(torch.where(finished[:, None], PAD, token))  # nothing after EOS
        finished |= token[:, 0] == EOS
        if finished.all():
            break
    return torch.cat(out, dim=1)  # (B, L)
    ### END SOLUTION


# %%
utils.check("01.4", greedy_decode)

# %% [markdown]
# ## 3. The whole model
#
# The model wires your four pieces together. Each piece is yours once it passes its check;
# until then the course's reference stands in, and the next cell says so.

# %%
Encoder = utils.use("01.1", Encoder)
shift_right = utils.use("01.2", shift_right)
Decoder = utils.use("01.3", Decoder)
greedy_decode = utils.use("01.4", greedy_decode)


class BottleneckSeq2Seq(nn.Module):
    """The decoder sees the source only through the encoder's final state ``v``."""

    def __init__(self, vocab_size: int, emb_dim: int = 32, hidden_dim: int = 64):
        super().__init__()
        self.encoder = Encoder(vocab_size, emb_dim, hidden_dim)
        self.decoder = Decoder(vocab_size, emb_dim, hidden_dim)

    def forward(self, src, src_lengths, tgt):
        # v = (h, c): the fixed-size context vector
        _, v = self.encoder(src, src_lengths)
        logits, _ = self.decoder(shift_right(tgt), v)
        return logits  # (B, T, V)

    def generate(self, src, src_lengths, max_len: int):
        return greedy_decode(self, src, src_lengths, max_len)


# %% [markdown]
# ## 4. Train it, then measure accuracy against length
#
# We train with the cross-entropy of each target token given the previous gold ones
# (maximum likelihood, lesson 07 says more), on lengths 2 to 24 mixed, with Adam. Then we
# generate greedily for fresh inputs of each length and count the tokens that come out right.
# `HIDDEN` is the size of $h$: the context vector $v$ is `2 * HIDDEN` numbers ($h$ and $c$).

# %%
HIDDEN, STEPS, BATCH = 64, utils.budget(400, 40), 128
EVAL_LENGTHS = [4, 8, 12, 16, 20, 24]

torch.manual_seed(0)
model = BottleneckSeq2Seq(len(task.vocab), emb_dim=32, hidden_dim=HIDDEN)
print(f"{count_parameters(model):,} parameters")
history = train(
    model, task, steps=STEPS, batch_size=BATCH, lr=3e-3, desc="bottleneck LSTM"
)
results = {f"LSTM, v = 2 x {HIDDEN}": accuracy_by_length(model, task, EVAL_LENGTHS)}
print_accuracy_table(results)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
plot_losses({"bottleneck LSTM": history}, ax=axes[0])
plot_accuracy_by_length(
    results, ax=axes[1], title="Reversing: accuracy falls with length"
)
plt.tight_layout()

# %% [markdown]
# The claim of this lesson, as numbers: the same model, with the same hidden size, is nearly
# perfect on short inputs and much worse on the longest ones.

# %%
acc = results[f"LSTM, v = 2 x {HIDDEN}"]
short, long = acc[EVAL_LENGTHS[0]]["token"], acc[EVAL_LENGTHS[-1]]["token"]
print(
    f"token accuracy: {utils.measured(short, '.1%')} at length {EVAL_LENGTHS[0]}, {utils.measured(long, '.1%')} at length {EVAL_LENGTHS[-1]}"
)
utils.claim(
    short >= 0.95,
    f"accuracy is high on short inputs (length {EVAL_LENGTHS[0]}: {utils.measured(short, '.1%')} >= 95%)",
)
utils.claim(
    long <= short - 0.30,
    f"accuracy falls markedly with length (length {EVAL_LENGTHS[-1]}: {utils.measured(long, '.1%')}, "
    f"at least 30 points lower)",
)
drops = [
    acc[a]["token"] - acc[b]["token"] for a, b in zip(EVAL_LENGTHS, EVAL_LENGTHS[1:])
]
utils.claim(
    all(d >= -0.02 for d in drops),
    "accuracy never rises with length (beyond 2 points of noise)",
)

# %% [markdown]
# ### Where in the output do the errors fall?
#
# Reversing makes the *first* output tokens depend on the *last* inputs, which the encoder read
# just before handing over $v$, and the *last* outputs on the first inputs, read longest ago. If
# $v$ forgets, it should forget the early inputs first. Let us look at the accuracy of each
# output position on inputs of length 20.

# %%
g = torch.Generator().manual_seed(99)
long_batch = task.sample(500, g, length=20)
pred = model.generate(long_batch.src, long_batch.src_lengths, max_len=22)
# (500, 21): 20 symbols and EOS
pred = F.pad(pred, (0, 21 - pred.shape[1]), value=PAD)[:, :21]
# (20,) accuracy of output position t
by_position = (pred == long_batch.tgt).float().mean(0)[:20]

fig, ax = plt.subplots(figsize=(7, 3.4))
ax.bar(range(1, 21), 100 * by_position.numpy(), color=utils.plots.PALETTE[0])
ax.axhline(10, color="grey", linestyle=":", label="chance (1 in 10 symbols)")
ax.set_xticks(range(1, 21))
ax.set(
    xlabel="output position t (it copies input position 21 - t)",
    ylabel="token accuracy (%)",
    title="Length 20: accuracy of each output position",
    ylim=(0, 102),
)
ax.legend()
first5, middle, last5 = (
    by_position[:5].mean().item(),
    by_position[8:13].mean().item(),
    by_position[-5:].mean().item(),
)
print(
    f"output positions 1-5: {utils.measured(first5, '.1%')}, 9-13: {utils.measured(middle, '.1%')}, 16-20: {utils.measured(last5, '.1%')}"
)
utils.claim(
    first5 > middle + 0.2 and first5 > last5 + 0.2,
    "outputs that copy inputs read long ago are much worse than those that copy the last inputs",
)

# %% [markdown]
# ### Does a bigger $v$ fix it?
#
# A sequence of $n$ symbols from 10 carries $n \log_2 10 \approx 3.3\,n$ bits. A bigger hidden
# state can hold more, so let us double it, with the same training budget. (Whole sequences
# right, the "ex" column, is the most fragile number of the lesson: at the middle lengths it moves
# by over ten points from one CPU to another, while the token accuracy hardly moves.)

# %% tags=["tolerance-points=20"]
torch.manual_seed(0)
big = BottleneckSeq2Seq(len(task.vocab), emb_dim=32, hidden_dim=2 * HIDDEN)
train(
    big,
    task,
    steps=STEPS,
    batch_size=BATCH,
    lr=3e-3,
    desc=f"bottleneck LSTM, hidden {2 * HIDDEN}",
)
results[f"LSTM, v = 2 x {2 * HIDDEN}"] = accuracy_by_length(big, task, EVAL_LENGTHS)
print_accuracy_table(results)
_ = plot_accuracy_by_length(
    results, title="A bigger v moves the cliff; it does not remove it"
)

# %%
big_acc = results[f"LSTM, v = 2 x {2 * HIDDEN}"]
print(
    f"hidden {2 * HIDDEN}: {utils.measured(big_acc[EVAL_LENGTHS[0]]['token'], '.1%')} at length {EVAL_LENGTHS[0]}, "
    f"{utils.measured(big_acc[EVAL_LENGTHS[-1]]['token'], '.1%')} at length {EVAL_LENGTHS[-1]}"
)
utils.claim(
    big_acc[EVAL_LENGTHS[-1]]["token"] < big_acc[EVAL_LENGTHS[0]]["token"] - 0.10,
    "with a bigger v the longest inputs are still clearly worse than the short ones",
)

# %% [markdown]
# The first outputs, which copy the inputs read last, are the best; accuracy then falls as the
# output reaches back to inputs read longer ago. It recovers a little at the very end: the first
# few inputs went into a fresh state and are held a bit better, as people remember the start of a
# list (the *primacy* effect). The middle of the sequence, neither recent nor first, is lost most.
#
# ## 5. See it for yourself
#
# Pick an input length and an example: the output is coloured green where it is right and
# red (underlined) where it is wrong. Watch where the errors appear as you slide to longer inputs.

# %%
# NBVAL_IGNORE_OUTPUT
explorer, render = prediction_explorer(model, task, EVAL_LENGTHS)
explorer

# %% [markdown]
# The same view, without the widget, for one short and one long example:

# %%
# NBVAL_IGNORE_OUTPUT
# (which tokens a trained model writes can change with the CPU: the cell asserts what it
# shows)
from IPython.display import HTML, display

errors = {}
for length in (EVAL_LENGTHS[0], EVAL_LENGTHS[-1]):
    html, errors[length] = render(length, 0)
    display(HTML(html))
utils.claim(
    errors[EVAL_LENGTHS[0]] <= 1 and errors[EVAL_LENGTHS[-1]] >= 3,
    "the short example comes out (nearly) right, the long one with several errors",
)

# %% [markdown]
# ## 6. Why this motivates attention
#
# * The decoder sees the input **only** through $v$, a vector of fixed size. The longer the
#   input, the more $v$ must hold, and accuracy falls with length (the curve above).
# * The tokens that suffer most are those whose inputs were read long before the end: the
#   information is there in the encoder at step $t$ ($h_t$), but it is overwritten by the time
#   the encoder reaches $h_n$.
# * A bigger $v$ delays the fall at a higher cost; it does not remove the bottleneck.
#
# What if the decoder could look back at **every** encoder state $h_1, \dots, h_n$, and choose,
# at each output step, which ones matter? That is **attention**, lesson 02.
#
# ## Summary
#
# * An encoder-decoder RNN compresses the input into the context vector $v = (h_n, c_n)$.
# * Padding must not leak into $v$: pack the sequences, or gather the state at each length.
# * Training uses teacher forcing (the target shifted right); generation feeds back its own
#   guesses (greedy decoding).
# * With a fixed hidden size, accuracy falls as the input grows: the bottleneck, measured.
#
# ## Going further
#
# 1. Train on `SymbolTask("copy")` instead. Is copying easier or harder than reversing for this
#    model, and why? (Think about which input the first output token needs.)
# 2. Sutskever et al. (2014) reversed the *input* sentence to help their LSTM translator. Which
#    output positions would that help here?
# 3. Make the encoder bidirectional and concatenate both final states as $v$. Does the curve move?

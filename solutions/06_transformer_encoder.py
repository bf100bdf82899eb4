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
# # Lesson 06 · The Transformer encoder: positions, normalisation, residuals
#
# **Why this lesson:** self-attention treats its input as a *set* (lesson 03 showed it is
# permutation-equivariant), and a deep stack of attention layers is hard to train. Here you give
# attention a sense of **order** with positional encodings, make a deep stack **trainable** with
# residual connections and LayerNorm, and build the encoder block of the Transformer, equal to
# PyTorch's own.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attention-course/attention-transformers/blob/main/notebooks/06_transformer_encoder.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/attention-course/attention-transformers/main?urlpath=lab/tree/notebooks/06_transformer_encoder.ipynb)
#
# **You will be able to**
# 1. write the sinusoidal positional encoding of the paper, and explain why PE(pos + k) is a fixed
#    rotation of PE(pos);
# 2. write LayerNorm, and measure why a Transformer normalises over features, not over the batch;
# 3. build the encoder block (self-attention and feed-forward, each with a residual connection and
#    a LayerNorm) in both the paper's post-LN and the pre-LN arrangement, equal to
#    `nn.TransformerEncoderLayer`;
# 4. show with numbers that without positions an encoder cannot solve an order-dependent task, and
#    with them it can.
#
# **Exercises:** 06.1 sinusoidal positional encoding (★☆☆) · 06.2 `layer_norm` (★☆☆) ·
# 06.3 the encoder block (★★☆). Stuck? `utils.hint("06.1")`, `utils.hint("06.1", 2)`,
# `utils.solution("06.1")`. The lesson runs to the end even before you finish: later cells use
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

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from utils.attention import MultiHeadAttention, padding_mask
from utils.data import PAD, SOS, Batch, Vocab
from utils.plots import HEATMAP, PALETTE, plot_losses
from utils.training import count_parameters, train
from utils import transformer
from utils.transformer import FeedForward, copy_into_torch_encoder_layer

# %% [markdown]
# ## 1. Attention alone cannot tell the order
#
# Self-attention computes, for each position, a weighted average of all positions' values, with
# weights from query-key dot products. Nothing in it depends on *where* a token is: shuffle the
# input and the output is shuffled the same way (lesson 03). A Transformer layer adds only
# position-wise pieces (a feed-forward network, normalisation) to it, so it inherits the property.
# Let us check it on a whole encoder layer, the one we build in section 4:

# %%
torch.manual_seed(0)
# the course's block; you build it in section 4
layer = transformer.EncoderLayer(d_model=16, num_heads=4, d_ff=32)
x = torch.randn(1, 6, 16)  # (B, S, D): six tokens, no positions added
perm = torch.tensor([3, 0, 5, 1, 4, 2])
out, out_of_shuffled = layer(x), layer(x[:, perm])
gap = (out[:, perm] - out_of_shuffled).abs().max().item()
print(f"max |layer(x)[perm] - layer(x[perm])| < 1e-5: {gap < 1e-5}")
utils.claim(
    gap < 1e-5,
    "an encoder layer without positions is permutation-equivariant: shuffling the input "
    "shuffles the output the same way",
    needs_training=False,
)

# %% [markdown]
# So "a b c" and "c b a" give the same vectors, only in another order: any task in which the order
# matters (reversing, parsing, "which symbol came just before this one?") is out of reach. The fix
# of "Attention Is All You Need" is to **add** to each token's embedding a vector that depends on
# its position: a **positional encoding**. It can be predefined (a formula) or learned (a table).
#
# ## 2. Positional encodings
#
# The paper's predefined encoding gives each pair of features $(2i, 2i+1)$ a clock with its own
# frequency:
#
# $$PE_{(pos,\,2i)} = \sin\!\left(\frac{pos}{10000^{2i/d_{model}}}\right), \qquad
#   PE_{(pos,\,2i+1)} = \cos\!\left(\frac{pos}{10000^{2i/d_{model}}}\right).$$
#
# The first pair turns once every $2\pi \approx 6$ positions, the last one once every
# $10000 \cdot 2\pi$: fast clocks tell neighbours apart, slow ones tell near from far.
#
# ### Exercise 06.1 · Sinusoidal positional encoding (★☆☆, about 10 min)

# %%
def sinusoidal_positional_encoding(num_positions: int, d_model: int):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

    -> (num_positions, d_model), positions 0 .. num_positions-1. Each pair of features is a clock of
    its own frequency, from one turn per 2*pi positions (i = 0) down to one per 10000*2*pi.
    """
    ### BEGIN SOLUTION
    pos = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    # (ceil(D/2),): the even feature indices 2i
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)
    angles = pos / 10000 ** (two_i / d_model)  # (P, ceil(D/2))
    pe = torch.zeros(num_positions, d_model)
    pe[:, 0::2] = torch.sin(angles)
    # for an odd d_model the last sin has no cos partner
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe  # (P, D)
    ### END SOLUTION


# %%
utils.check("06.1", sinusoidal_positional_encoding)

# %% [markdown]
# Each row of the encoding is one position's vector; each column one feature. The dot product of
# two positions' vectors is $\sum_i \cos\big((p - q)\,\omega_i\big)$ with $\omega_i = 10000^{-2i/d_{model}}$:
# it depends only on the **distance** $p - q$, is largest at distance 0, and falls off with distance.

# %%
sinusoidal_positional_encoding = utils.use("06.1", sinusoidal_positional_encoding)


def pe_figure(position: int = 20, d_model: int = 64, num_positions: int = 64):
    """Left: the encoding as a heatmap. Right: PE(position) . PE(p) for every p.

    -> (figure, dots (num_positions,)); the widget of section 8 calls it too.
    """
    pe = sinusoidal_positional_encoding(num_positions, d_model)  # (P, D)
    dots = pe @ pe[position]  # (P,)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    image = left.imshow(pe.numpy(), cmap=HEATMAP, vmin=-1, vmax=1, aspect="auto")
    left.axhline(position, color=PALETTE[1], linewidth=1.5)
    left.set(
        xlabel="feature index (even: sin, odd: cos)",
        ylabel="position",
        title=f"Sinusoidal encoding, d_model = {d_model}",
    )
    left.grid(False)
    plt.colorbar(image, ax=left, fraction=0.046, pad=0.04, label="value")
    right.plot(range(num_positions), dots.numpy(), marker=".", color=PALETTE[0])
    right.axvline(
        position, color=PALETTE[1], linestyle=":", label=f"position {position}"
    )
    right.set(
        xlabel="position p",
        ylabel=f"PE({position}) · PE(p)",
        title="Similarity falls with distance",
    )
    right.legend()
    fig.tight_layout()
    return fig, dots


fig, dots = pe_figure(position=20, d_model=64)

# %% [markdown]
# ### PE(pos + k) is a rotation of PE(pos)
#
# The paper chose sinusoids because "for any fixed offset $k$, $PE_{pos+k}$ can be represented as a
# linear function of $PE_{pos}$". By the angle-addition formulas, with $\omega_i = 10000^{-2i/d_{model}}$:
#
# $$\begin{pmatrix} \sin((pos+k)\omega_i) \\ \cos((pos+k)\omega_i) \end{pmatrix} =
#   \begin{pmatrix} \cos k\omega_i & \sin k\omega_i \\ -\sin k\omega_i & \cos k\omega_i \end{pmatrix}
#   \begin{pmatrix} \sin(pos\,\omega_i) \\ \cos(pos\,\omega_i) \end{pmatrix}.$$
#
# One block-diagonal matrix $R_k$, the same for **every** position, moves every position $k$ steps
# on. An attention head can therefore learn "look $k$ positions back" once, with a query and key
# projection, and apply it anywhere. Let us build $R_k$ and check it numerically:

# %%
def shift_matrix(k: int, d_model: int):
    """R_k (d_model, d_model): block-diagonal rotations with PE(pos + k) = R_k @ PE(pos) for every pos (even d_model)."""
    # (D/2,) frequencies
    omega = 1.0 / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    c, s = torch.cos(k * omega), torch.sin(k * omega)
    R = torch.zeros(d_model, d_model, dtype=torch.float64)
    # new sin = cos(kw) sin + sin(kw) cos
    R[0::2, 0::2], R[0::2, 1::2] = torch.diag(c), torch.diag(s)
    # new cos = -sin(kw) sin + cos(kw) cos
    R[1::2, 0::2], R[1::2, 1::2] = torch.diag(-s), torch.diag(c)
    return R


pe = sinusoidal_positional_encoding(100, 64).double()  # (100, 64)
for k in (1, 5, 30):
    # every position at once
    err = (pe[:-k] @ shift_matrix(k, 64).T - pe[k:]).abs().max().item()
    print(
        f"k = {k:>2}: max |R_k PE(pos) - PE(pos + k)| over positions 0..{99 - k} < 1e-4: {err < 1e-4}"
    )
    utils.claim(
        err < 1e-4,
        f"PE(pos + {k}) = R_{k} PE(pos), with one matrix for every position",
        needs_training=False,
    )

# %% [markdown]
# ### Learned positions
#
# The alternative is a table: `nn.Embedding(max_len, d_model)`, one trainable vector per position,
# added to the token embedding like the sinusoids. It can learn whatever the task needs, but it has
# **no row** for a position beyond `max_len`, and each row is learned only from the examples that
# reach that position. We train both kinds in section 5.
#
# ## 3. Normalisation: LayerNorm, not BatchNorm
#
# A deep stack is easier to train when the vectors that flow through it keep a steady scale. Like
# batch norm, a **normalisation layer** rescales its input to mean 0 and variance 1 and then applies
# a learned scale $\gamma$ (`weight`) and shift $\beta$ (`bias`); unlike batch norm, **LayerNorm**
# takes the statistics over the $D$ features of *one* position:
#
# $$\mu = \frac{1}{D}\sum_{j=1}^D x_j, \qquad \sigma^2 = \frac{1}{D}\sum_{j=1}^D (x_j - \mu)^2, \qquad
#   \mathrm{LayerNorm}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta.$$
#
# ### Exercise 06.2 · LayerNorm (★☆☆, about 10 min)

# %%
def layer_norm(x, weight, bias, eps: float = 1e-5):
    """Normalise each position's feature vector to mean 0 and variance 1, then scale and shift.

    x (..., D), weight (D,), bias (D,) -> (..., D). Unlike BatchNorm, the statistics are over the
    features of one example, so it does not depend on the batch (or on padding in it).
    """
    ### BEGIN SOLUTION
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    # (..., 1): biased (divide by D), as nn.LayerNorm
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
    ### END SOLUTION


# %%
utils.check("06.2", layer_norm)

# %%
layer_norm = utils.use("06.2", layer_norm)
torch.manual_seed(0)
ln = nn.LayerNorm(32)
# non-trivial gamma and beta, so that the comparison tests them too
with torch.no_grad():
    ln.weight.uniform_(0.5, 1.5)
    ln.bias.uniform_(-1, 1)
x = 3 * torch.randn(4, 10, 32) + 2  # (B, S, D)
gap = (layer_norm(x, ln.weight, ln.bias, ln.eps) - ln(x)).abs().max().item()
print(f"max |layer_norm - nn.LayerNorm| < 1e-5: {gap < 1e-5}")
utils.claim(
    gap < 1e-5, "our layer_norm equals torch.nn.LayerNorm", needs_training=False
)

# %% [markdown]
# ### Why not BatchNorm? Padding, measured
#
# BatchNorm takes each feature's statistics over the **batch** (and, for sequences, over every
# position in it). Our batches are padded to their longest sequence, so the padding positions enter
# those statistics, and so do the other sequences. Take one sequence of 5 symbols, put it in a batch
# with 7 other sequences of 5 symbols, and add one more sequence of length $L$: for $L > 5$ every
# other row is padded to $L$. The sequence itself never changes. Does its normalised output?

# %%
torch.manual_seed(0)
D = 16
vocab = Vocab([chr(ord("a") + i) for i in range(10)])
# the padding embeds to the zero vector
embed = nn.Embedding(len(vocab), D, padding_idx=PAD)
with torch.no_grad():
    # real tokens have a non-zero mean per feature, as trained embeddings do
    embed.weight[3:] += 1.0
# training mode: it normalises with the statistics of the batch
batchnorm = nn.BatchNorm1d(D)
layernorm = nn.LayerNorm(D)
ours = torch.tensor(vocab.encode("cafeb"))  # the sequence we follow
g = torch.Generator().manual_seed(1)
companions = [torch.randint(3, len(vocab), (5,), generator=g) for _ in range(7)]


def normalise_in_batch(norm, rows):
    """Embed the padded batch `rows`, normalise it, and return our sequence's output (row 0), (5, D)."""
    src = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD)  # (B, S)
    x = embed(src)  # (B, S, D)
    # BatchNorm1d wants (B, D, S): statistics per feature over B and S
    if isinstance(norm, nn.BatchNorm1d):
        return norm(x.transpose(1, 2)).transpose(1, 2)[0, :5]
    return norm(x)[0, :5]  # LayerNorm: over D, for each position separately


with torch.no_grad():
    alone = {
        n: normalise_in_batch(norm, [ours] + companions)
        for n, norm in [("BatchNorm", batchnorm), ("LayerNorm", layernorm)]
    }
    long_lengths = list(range(5, 61, 5))
    change = {name: [] for name in alone}
    padding_share = []
    for L in long_lengths:
        rows = (
            [ours]
            + companions
            + [
                torch.randint(
                    3, len(vocab), (L,), generator=torch.Generator().manual_seed(L)
                )
            ]
        )
        # padded positions / all positions in the batch
        padding_share.append(8 * (L - 5) / (9 * L))
        for name, norm in [("BatchNorm", batchnorm), ("LayerNorm", layernorm)]:
            change[name].append(
                (normalise_in_batch(norm, rows) - alone[name]).abs().max().item()
            )
    # The batch composition alone, without any padding: other companions of the same
    # length
    others = [torch.randint(3, len(vocab), (5,), generator=g) for _ in range(7)]
    composition = {
        name: (normalise_in_batch(norm, [ours] + others) - alone[name])
        .abs()
        .max()
        .item()
        for name, norm in [("BatchNorm", batchnorm), ("LayerNorm", layernorm)]
    }

fig, ax = plt.subplots(figsize=(7, 3.6))
for (name, values), marker in zip(change.items(), "os"):
    ax.plot([100 * p for p in padding_share], values, marker=marker, label=name)
ax.set(
    xlabel="padding in the batch (% of positions)",
    ylabel="max change of our sequence's output",
    title="The same 5 symbols, normalised in different batches",
)
ax.legend()
print("max change of the same sequence's output")
print(
    f"{'':>12} {'other companions':>17} {'batch ' + str(round(100 * padding_share[-1])) + '% padding':>20}"
)
for name in alone:
    print(
        f"{name:>12} {utils.measured(composition[name], '.3f'):>18} {utils.measured(change[name][-1], '.3f'):>21}"
    )
utils.claim(
    change["BatchNorm"][-1] > 0.5 and composition["BatchNorm"] > 0.05,
    "BatchNorm's output for the same sequence changes with the padding and with the other sequences",
    needs_training=False,
)
utils.claim(
    max(change["LayerNorm"]) < 1e-6 and composition["LayerNorm"] < 1e-6,
    "LayerNorm's output for a sequence does not depend on the batch it is in",
    needs_training=False,
)

# %% [markdown]
# BatchNorm's statistics are dragged towards the padding's zero vectors: the more padding, the more
# our (unchanged) sequence is shifted and rescaled. Even with no padding at all, its output depends
# on which other sequences share the batch, and at inference it switches to running averages that
# were collected, padding included, during training. One could mask the padding out of the
# statistics; LayerNorm sidesteps the whole question, since each position is normalised on its own.
# That is why the Transformer uses it.
#
# ## 4. The encoder block: residual connections around two sublayers
#
# An encoder block has two **sublayers**:
#
# 1. multi-head self-attention (lesson 05): every position gathers information from every other;
# 2. a position-wise feed-forward network, the same small MLP applied to each position separately:
#    $\mathrm{FFN}(x) = \max(0,\, x W_1 + b_1)\, W_2 + b_2$, with a hidden width $d_{ff}$
#    (`utils.transformer.FeedForward`).
#
# Each sublayer is wrapped in a **residual connection**, $x + \mathrm{Sublayer}(x)$: the block only
# has to learn a *change* to its input, and gradients reach the lower layers through the identity
# path, however deep the stack. And there is a LayerNorm per sublayer. Where it goes is the one
# place where the course **deviates from the paper**:
#
# | | formula | used by |
# |---|---|---|
# | **post-LN** (`norm_first=False`) | $x \leftarrow \mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$ | the paper; PyTorch's default |
# | **pre-LN** (`norm_first=True`) | $x \leftarrow x + \mathrm{Sublayer}(\mathrm{LayerNorm}(x))$ | this course; GPT-2 and most models since |
#
# In pre-LN the residual path from input to output is never normalised, so a deep stack trains
# without the learning-rate warm-up the paper needed (we measure it in section 6). Its residual
# stream grows, so a pre-LN *stack* ends with one final LayerNorm.
#
# ### Exercise 06.3 · The encoder block (★★☆, about 15 min)
#
# The sublayers are created for you; write `forward` for both arrangements. `self._sa(h, mask)`
# runs self-attention with $h$ as queries, keys and values and keeps its weights for the plots.
# The mask is a boolean padding mask, `True` where a key may be attended to (the course's
# convention, lesson 03).

# %%
class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in a residual connection and a LayerNorm.

    post-LN (paper, norm_first=False): x = LN(x + Sublayer(x)); pre-LN (norm_first=True): x = x + Sublayer(LN(x)).
    forward(x (B, S, D), mask=None e.g. (B, 1, S): a key padding mask with a query axis, True at the
    real tokens (not PyTorch's True = padding)) -> (B, S, D).
    Attend through ``self._sa(h, mask)``: it keeps the last self-attention weights (B, h, S, S),
    detached, in ``last_self_weights`` for the heatmaps.
    """

    def __init__(
        self, d_model: int, num_heads: int, d_ff: int, norm_first: bool = True
    ):
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
        ### BEGIN SOLUTION
        if self.norm_first:
            # the residual path carries x itself, never normalised
            x = x + self._sa(self.norm1(x), mask)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, mask))  # post-LN: normalise the sum
        return self.norm2(x + self.ff(x))
        ### END SOLUTION


# %%
utils.check("06.3", EncoderLayer)

# %% [markdown]
# PyTorch ships this block as `nn.TransformerEncoderLayer`. Given the same weights, with
# `batch_first=True`, `dropout=0` and the same `norm_first`, it must compute the same thing. One
# more convention to convert: PyTorch's `src_key_padding_mask` is `True` at the **padding** (the
# positions to *ignore*), the opposite of ours, so we pass `~pad`.

# %%
EncoderLayer = utils.use("06.3", EncoderLayer)
torch.manual_seed(0)
x = torch.randn(3, 7, 32)  # (B, S, D)
pad = padding_mask(torch.tensor([7, 4, 2]), 7)  # (B, S), True at the real tokens
for norm_first in (False, True):
    ours = EncoderLayer(32, 4, 64, norm_first=norm_first)
    theirs = copy_into_torch_encoder_layer(
        ours,
        nn.TransformerEncoderLayer(
            32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first
        ),
    )
    diff = (
        (ours(x, pad[:, None, :]) - theirs(x, src_key_padding_mask=~pad))
        .abs()[pad]
        .max()
        .item()
    )
    print(
        f"norm_first={norm_first!s:<5}: max |ours - nn.TransformerEncoderLayer| at the real tokens < 1e-5: {diff < 1e-5}"
    )
    utils.claim(
        diff < 1e-5,
        f"our block equals nn.TransformerEncoderLayer(norm_first={norm_first}) given the same "
        "weights",
        needs_training=False,
    )

# %% [markdown]
# (Only the real tokens are compared: what a padding *query* computes is never used, and PyTorch's
# fast inference path even returns zeros there.)
#
# ### The encoder: a stack of blocks
#
# The encoder is $N$ blocks in a row (the paper uses $N = 6$), then, for pre-LN, the final
# LayerNorm. For our experiments we put it between an embedding (plus positions) and a linear layer
# that classifies every position: an encoder-only **tagger**. The token embedding is scaled by
# $\sqrt{d_{model}}$ as in the paper, and initialised small so that tokens and positions start at
# the same size.

# %%
class TransformerEncoder(nn.Module):
    """N encoder blocks, and a final LayerNorm when pre-LN. forward(x (B, S, D), mask) -> (B, S, D)"""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        norm_first: bool = True,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, norm_first)
            for _ in range(num_layers)
        )
        # post-LN blocks already end with one
        self.norm = nn.LayerNorm(d_model) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm is not None else x


class EncoderTagger(nn.Module):
    """Embed the tokens, add positions, encode, and classify every position.

    positional: None (no positions), "sinusoidal" (fixed, any length) or "learned" (a table of max_len rows).
    forward(src (B, S), src_lengths (B,), tgt=None) -> logits (B, S, V)  (tgt is unused: the training
    loop passes it to every model)
    """

    def __init__(
        self,
        vocab_size: int,
        positional=None,
        d_model: int = 32,
        num_heads: int = 4,
        d_ff: int = 64,
        num_layers: int = 2,
        max_len: int = 16,
        norm_first: bool = True,
    ):
        super().__init__()
        if positional not in (None, "sinusoidal", "learned"):
            raise ValueError(
                f"positional must be None, 'sinusoidal' or 'learned', not {positional!r}"
            )
        self.d_model, self.positional, self.max_len = d_model, positional, max_len
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        # std 1 after the sqrt(D) scale, like PE
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        if positional == "learned":
            # one trainable row per position 0..max_len-1
            self.pos_embedding = nn.Embedding(max_len, d_model)
        self.encoder = TransformerEncoder(
            d_model, num_heads, d_ff, num_layers, norm_first
        )
        self.out = nn.Linear(d_model, vocab_size)

    def embed(self, src):
        """src (B, S) -> token embedding * sqrt(D) + positional encoding, (B, S, D)."""
        S = src.shape[1]
        x = self.embedding(src) * math.sqrt(self.d_model)  # (B, S, D)
        if self.positional == "sinusoidal":
            # (S, D), computed for any S
            x = x + sinusoidal_positional_encoding(S, self.d_model).to(x.device)
        elif self.positional == "learned":
            if S > self.max_len:
                raise ValueError(
                    f"the learned position table has rows for positions 0..{self.max_len - 1} only; "
                    f"a sequence of {S} tokens has no embedding for positions {self.max_len}..{S - 1}"
                )
            x = x + self.pos_embedding(torch.arange(S, device=src.device))  # (S, D)
        return x

    def encode(self, src, src_lengths):
        """The encoder's output: one vector per token, (B, S, D)."""
        # (B, S), True at the real tokens
        mask = padding_mask(src_lengths.to(src.device), src.shape[1])
        # (B, 1, S): no query attends to padding
        return self.encoder(self.embed(src), mask[:, None, :])

    def forward(self, src, src_lengths, tgt=None):
        return self.out(self.encode(src, src_lengths))  # (B, S, V)


# %% [markdown]
# ## 5. The headline experiment: no positions, sinusoidal, learned
#
# **The task: "which symbol came just before me?"** The input is a random sequence of 4 to 16
# symbols from 10; the label of each position is the previous symbol, and `<sos>` for the first.
# It is the simplest task in which order is everything: the same multiset of symbols in another
# order has other labels.

# %%
class PreviousSymbolTask:
    """Label each position of a random symbol sequence with the symbol before it (``<sos>`` for the first).

    sample(batch_size, generator, length=None) -> Batch with src (B, S) and tgt (B, S), both padded with PAD.
    """

    def __init__(self, num_symbols: int = 10, min_len: int = 4, max_len: int = 16):
        self.num_symbols, self.min_len, self.max_len = num_symbols, min_len, max_len
        self.vocab = Vocab([chr(ord("a") + i) for i in range(num_symbols)])

    def sample(self, batch_size: int, generator=None, *, length=None) -> Batch:
        if length is None:
            lengths = torch.randint(
                self.min_len, self.max_len + 1, (batch_size,), generator=generator
            )
        else:
            lengths = torch.full((batch_size,), length)
        S = int(lengths.max())
        real = torch.arange(S) < lengths[:, None]  # (B, S)
        src = torch.randint(
            3, 3 + self.num_symbols, (batch_size, S), generator=generator
        ).masked_fill(~real, PAD)
        # shift right
        tgt = torch.cat(
            [torch.full((batch_size, 1), SOS), src[:, :-1]], dim=1
        ).masked_fill(~real, PAD)
        return Batch(src, lengths, tgt, lengths)


task = PreviousSymbolTask()
example = task.sample(2, torch.Generator().manual_seed(0))
for i in range(2):
    print("input :", " ".join(f"{t:>5}" for t in task.vocab.decode(example.src[i])))
    print(
        "labels:",
        " ".join(
            f"{task.vocab.itos[t]:>5}" for t in example.tgt[i, : example.src_lengths[i]]
        ),
    )

# %% [markdown]
# ### The best an order-blind model can do
#
# Without positions the encoder's output at a position is a function of that position's symbol $c$
# and of the **multiset** of symbols in the sequence: every position holding $c$ gets the same
# answer. All orders of a multiset are equally likely, so for a position holding $c$ in a sequence
# of $n$ symbols with counts $m_d$, the previous symbol is `<sos>` with probability $1/n$ and $d$ with
# probability $(m_d - [d = c])/n$. The best order-blind answer picks the most likely one, and is
# right with probability
#
# $$\text{ceiling}(c) = \frac{\max\big(1,\ \max_d\,(m_d - [d = c])\big)}{n}.$$
#
# Averaged over the evaluation set, that is the ceiling a model without positions cannot beat
# (except by the luck of the draw).

# %%
def order_blind_ceiling(batch: Batch) -> float:
    """The expected accuracy of the best answer that sees only each position's symbol and the multiset."""
    right, total = 0.0, 0
    for src, n in zip(batch.src, batch.src_lengths.tolist()):
        counts = torch.bincount(src[:n], minlength=src.max() + 1)  # m_d
        for c in src[:n].tolist():
            others = counts.clone()
            others[c] -= 1  # the position's own symbol cannot precede it
            right += max(1, others.max().item()) / n  # <sos> has 1 chance in n
        total += n
    return right / total


@torch.no_grad()
def tagging_accuracy(model, task, *, length=None, n: int = 300, seed: int = 1234):
    """Accuracy over the real positions of n fresh sequences -> (accuracy, per-position accuracy (S,), batch)."""
    batch = task.sample(n, torch.Generator().manual_seed(seed), length=length)
    model.eval()
    device = next(model.parameters()).device
    # (n, S)
    pred = model(batch.src.to(device), batch.src_lengths.to(device)).argmax(-1).cpu()
    real = batch.tgt != PAD
    right = (pred == batch.tgt) & real
    return (
        right.sum().item() / real.sum().item(),
        right.sum(0) / real.sum(0).clamp(min=1),
        batch,
    )


# %% [markdown]
# ### Train the same encoder three ways
#
# Two blocks, $d_{model} = 32$, 4 heads, pre-LN, the same seed, the same batches, a few hundred
# steps of Adam: only the positional encoding differs.
#
# *In the quick setting* (`COURSE_QUICK=1`, a few training steps only) a claim that needs the
# full run prints "… not checked in the quick setting", and the text after it still describes
# the full run's results: run the notebook without it to see them.

# %%
STEPS, BATCH = utils.budget(300, 20), 64
taggers, histories = {}, {}
for positional in (None, "sinusoidal", "learned"):
    name = {None: "no positions", "sinusoidal": "sinusoidal", "learned": "learned"}[
        positional
    ]
    torch.manual_seed(0)
    taggers[name] = EncoderTagger(len(task.vocab), positional, max_len=task.max_len)
    histories[name] = train(
        taggers[name], task, steps=STEPS, batch_size=BATCH, lr=3e-3, desc=name
    )
print(
    f"{count_parameters(taggers['learned']):,} parameters with the learned table, "
    f"{count_parameters(taggers['sinusoidal']):,} without"
)

# %%
results = {name: tagging_accuracy(model, task) for name, model in taggers.items()}
# the same evaluation sequences for every model (same seed)
eval_batch = results["no positions"][2]
ceiling = order_blind_ceiling(eval_batch)
print(f"{'positional encoding':<20} {'accuracy, lengths 4-16':>23}")
for name, (acc, _, _) in results.items():
    print(f"{name:<20} {utils.measured(acc, '.1%'):>24}")
print(f"{'order-blind ceiling':<20} {ceiling:>23.1%}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
plot_losses(histories, ax=axes[0], title="Training loss")
names = list(results)
bars = axes[1].bar(
    names, [100 * results[n][0] for n in names], color=PALETTE[: len(names)]
)
axes[1].bar_label(bars, fmt="%.1f%%")
axes[1].axhline(
    100 * ceiling,
    color="black",
    linestyle="--",
    label=f"order-blind ceiling ({ceiling:.1%})",
)
axes[1].set(
    ylabel="accuracy (% of positions)",
    ylim=(0, 125),
    title="Which symbol came just before?",
)
axes[1].legend(loc="upper left")
fig.tight_layout()

# %%
acc_none, acc_sin, acc_learned = (
    results[n][0] for n in ("no positions", "sinusoidal", "learned")
)
utils.claim(
    acc_none <= ceiling + 0.02,
    f"without positions the encoder cannot beat the order-blind ceiling "
    f"({utils.measured(acc_none, '.1%')} vs {ceiling:.1%})",
)
utils.claim(
    acc_none >= ceiling - 0.05,
    f"and it gets close to it: it learned the best order-blind answer "
    f"({utils.measured(acc_none, '.1%')}, within 5 points)",
)
utils.claim(
    min(acc_sin, acc_learned) >= 0.97,
    f"with sinusoidal ({utils.measured(acc_sin, '.1%')}) or learned ({utils.measured(acc_learned, '.1%')}) "
    "positions the same encoder solves the task",
)

# %% [markdown]
# ### What did the learned table learn?
#
# Compare the cosine similarity between every pair of position vectors: the sinusoids by
# construction, the learned table after training.

# %%
def cosine_similarities(table):
    """table (P, D) -> (P, P): cosine similarity between every pair of rows."""
    unit = table / table.norm(dim=-1, keepdim=True)
    return unit @ unit.T


tables = {
    "sinusoidal (a formula)": sinusoidal_positional_encoding(task.max_len, 32),
    # (16, 32) each
    "learned (after training)": taggers["learned"].pos_embedding.weight.detach().cpu(),
}
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
neighbours, distant = {}, {}
for ax, (name, table) in zip(axes, tables.items()):
    sims = cosine_similarities(table)  # (16, 16)
    neighbours[name] = sims.diagonal(1).mean().item()  # positions p and p + 1
    # 5 or more apart
    distant[name] = sims[torch.ones_like(sims, dtype=torch.bool).triu(5)].mean().item()
    image = ax.imshow(sims.numpy(), cmap=HEATMAP, vmin=-1, vmax=1)
    ax.set(
        xlabel="position",
        ylabel="position",
        title=name,
        xticks=range(0, task.max_len, 3),
        yticks=range(0, task.max_len, 3),
    )
    ax.grid(False)
fig.colorbar(image, ax=axes, fraction=0.03, pad=0.03, label="cosine similarity")
for name in tables:
    print(
        f"{name:<26} neighbours: {neighbours[name]:+.2f}, positions 5+ apart: {distant[name]:+.2f}"
    )
learned = "learned (after training)"
utils.claim(
    neighbours["sinusoidal (a formula)"] > 0.8
    and abs(neighbours[learned] - distant[learned]) < 0.15,
    "sinusoidal neighbours are alike by construction; the learned rows of neighbours are no more alike "
    "than those of distant positions",
)

# %% [markdown]
# The learned rows look like random codes: the task only needs each position to be *distinguishable*,
# and nothing tells the model that position 6 is next to position 5. That is one reason a learned
# table cannot say anything about position 16, and why the formula, which does encode distance,
# at least has a chance there.
#
# ### Beyond the trained length
#
# Every training sequence had at most 16 symbols. What happens at 24? The learned table has no row
# for positions 16 to 23, so our tagger refuses (rather than index past the table, which would be an
# obscure `IndexError`):

# %%
LONG = 24
try:
    tagging_accuracy(taggers["learned"], task, length=LONG)
except ValueError as err:
    print(f"learned positions at length {LONG}: ValueError: {err}")

# %% [markdown]
# The sinusoidal encoding is a formula, so it runs at any length. But the model has never seen the
# vectors of positions 16 to 23, nor attention over 24 keys. Here is what it scores, position by
# position:

# %%
long_results = {
    name: tagging_accuracy(taggers[name], task, length=LONG)
    for name in ("sinusoidal", "no positions")
}
sin_long, sin_by_pos, _ = long_results["sinusoidal"]
seen, unseen = (
    sin_by_pos[: task.max_len].mean().item(),
    sin_by_pos[task.max_len :].mean().item(),
)
print(
    f"sinusoidal at length {LONG}: {utils.measured(sin_long, '.1%')} overall; positions 0-{task.max_len - 1}: {utils.measured(seen, '.1%')}, "
    f"positions {task.max_len}-{LONG - 1} (never trained): {utils.measured(unseen, '.1%')}"
)
print(
    f"no positions at length {LONG}: {utils.measured(long_results['no positions'][0], '.1%')} "
    f"(ceiling {order_blind_ceiling(long_results['no positions'][2]):.1%})"
)

fig, ax = plt.subplots(figsize=(7, 3.6))
for (name, (_, by_pos, _)), marker in zip(long_results.items(), "os"):
    ax.plot(range(LONG), 100 * by_pos.numpy(), marker=marker, label=name)
ax.axvline(
    task.max_len - 0.5, color="grey", linestyle=":", label="longest training length"
)
ax.set(
    xlabel="position in a sequence of 24 symbols",
    ylabel="accuracy (%)",
    ylim=(0, 105),
    title="Sinusoidal positions beyond the trained length",
)
ax.legend()
utils.claim(
    sin_long < acc_sin - 0.05,
    f"sinusoidal positions run at length {LONG} but do not solve it: "
    f"{utils.measured(sin_long, '.1%')} against {utils.measured(acc_sin, '.1%')} within the trained lengths",
)
utils.claim(
    unseen < seen - 0.2,
    f"the positions never seen in training do much worse ({utils.measured(unseen, '.1%')}) than the "
    f"trained ones ({utils.measured(seen, '.1%')})",
)

# %% [markdown]
# Honestly, then: the formula *runs* at any length, but a model trained on at most 16 positions
# does not generalise beyond them for free. The early positions stay right; the last trained ones,
# which only the longest training sequences reached, already waver; beyond them accuracy collapses,
# with the odd position that happens to work. The encoding of position 20 is perfectly well defined:
# it is the model that never learned what to do with it. Generalising in length is an open problem,
# and relative position schemes (see "going further") were designed for it.
#
# ## 6. Pre-LN against post-LN, measured
#
# The paper trained its post-LN Transformer with a learning rate that *warms up* linearly over the
# first 4000 steps. Without warm-up a deep post-LN stack often fails: near the output, gradients are
# large at initialisation, and the first big steps wreck it. Let us train an 8-block encoder on the
# same task both ways, with the same learning rate ($10^{-2}$), the same seed and no warm-up.

# %%
DEEP, DEEP_STEPS = 8, utils.budget(150, 10)
deep_histories = {}
for norm_first in (True, False):
    name = "pre-LN" if norm_first else "post-LN (the paper's)"
    torch.manual_seed(0)
    deep = EncoderTagger(
        len(task.vocab), "sinusoidal", num_layers=DEEP, norm_first=norm_first
    )
    deep_histories[name] = train(
        deep,
        task,
        steps=DEEP_STEPS,
        batch_size=BATCH,
        lr=1e-2,
        desc=f"{DEEP} blocks, {name}",
    )
_ = plot_losses(deep_histories, title=f"{DEEP} blocks, lr = 1e-2, no warm-up")

# %%
pre_loss, post_loss = (h.final_loss for h in deep_histories.values())
print(
    f"final loss: pre-LN {utils.measured(pre_loss, '.3f')}, post-LN {utils.measured(post_loss, '.3f')} (chance: ln 11 = {math.log(11):.3f})"
)
utils.claim(
    pre_loss < 0.2 and post_loss > 1.0,
    "with the same learning rate and no warm-up, the deep pre-LN stack "
    "trains and the post-LN one does not",
)

# %% [markdown]
# Post-LN is not hopeless: with a smaller learning rate or a warm-up it trains, and when it does it
# is often slightly better. The course uses pre-LN because it trains robustly without tuning, on a
# CPU, in a few hundred steps.
#
# ## 7. What the encoder outputs
#
# The encoder turns each token into **one contextual vector**: the same symbol gets a different
# vector in a different context. Take 300 sequences that all hold a `c` at position 5. At the input
# the 300 vectors there are identical (same token, same position); let us look at the output of the
# trained sinusoidal model, coloured by the symbol *before* the `c`.

# %%
model = taggers["sinusoidal"]
batch = task.sample(300, torch.Generator().manual_seed(5), length=12)
batch.src[:, 5] = task.vocab.stoi["c"]
with torch.no_grad():
    inputs = model.embed(batch.src)[:, 5]  # (300, D)
    outputs = model.encode(batch.src, batch.src_lengths)[:, 5]  # (300, D)
before = batch.src[:, 4]  # the previous symbol, (300,)
input_spread = (inputs - inputs[0]).abs().max().item()
centred = outputs - outputs.mean(0)
_, _, V = torch.linalg.svd(centred, full_matrices=False)
xy = centred @ V[:2].T  # (300, 2): the two main directions of variation
# How much of the outputs' variance is explained by the previous symbol (between-group /
# # total)?
# (V, D) sums
group_means = torch.zeros(len(task.vocab), outputs.shape[1]).index_add_(
    0, before, outputs
)
# (V, D) means
group_means /= torch.bincount(before, minlength=len(task.vocab)).clamp(min=1)[:, None]
explained = ((group_means[before] - outputs.mean(0)) ** 2).sum() / (centred**2).sum()

fig, ax = plt.subplots(figsize=(6.4, 4.2))
cmap = plt.get_cmap(HEATMAP, task.num_symbols)
for s in before.unique().tolist():
    pts = xy[before == s]
    ax.scatter(pts[:, 0], pts[:, 1], s=14, color=cmap(s - 3), label=task.vocab.itos[s])
ax.set(
    xlabel="principal direction 1",
    ylabel="principal direction 2",
    title="Output vectors of the same 'c' at position 5",
)
ax.legend(
    title="symbol before",
    ncol=2,
    fontsize=8,
    loc="center left",
    bbox_to_anchor=(1, 0.5),
)
fig.tight_layout()
print(
    f"input vectors: max difference {input_spread:.1e}; output vectors: "
    f"{utils.measured(explained, '.1%')} of their variance is explained by the symbol before"
)
utils.claim(
    input_spread == 0, "the 300 input vectors are identical", needs_training=False
)
utils.claim(
    explained > 0.5,
    "the output vector of the same token differs with its context, mostly by what the task "
    "needs (the previous symbol)",
)

# %% [markdown]
# This is what "contextual" means: the encoder's output at a position is that token *as read in its
# sentence*. A classifier (as here) or a decoder (lesson 07) works from these vectors.
#
# ## 8. Explore the positional encoding
#
# Pick a position and a width $d_{model}$: the heatmap marks the position's vector, and the right
# panel shows its dot product with every other position. Watch the peak stay at the chosen position
# and the curve keep its shape as you move it: the similarity depends only on the distance.

# %%
# NBVAL_IGNORE_OUTPUT
def show(position, d_model):
    pe_figure(position, d_model)
    plt.show()


explorer = widgets.interactive(
    show,
    position=widgets.IntSlider(min=0, max=63, value=20, description="position"),
    d_model=widgets.Dropdown(
        options=[8, 16, 32, 64, 128], value=64, description="d_model"
    ),
)
explorer

# %% [markdown]
# The same view, without the widget, for position 10 and $d_{model} = 32$:

# %%
fig, dots = pe_figure(10, 32)
symmetric = max(abs(dots[10 - k] - dots[10 + k]).item() for k in range(1, 11))
print(
    f"peak at position {dots.argmax().item()}; max |PE(10)·PE(10-k) - PE(10)·PE(10+k)| for k = 1..10 < 1e-4: {symmetric < 1e-4}"
)
utils.claim(
    dots.argmax().item() == 10 and symmetric < 1e-4,
    "a position is most similar to itself, and the similarity depends only on the distance",
    needs_training=False,
)

# %% [markdown]
# ## Summary
#
# * Self-attention is permutation-equivariant: without positions an encoder sees a multiset. On
#   "which symbol came before?" it sat at the order-blind ceiling; with positions it solved the task.
# * The sinusoidal encoding gives each feature pair a clock; $PE(pos+k) = R_k\,PE(pos)$ with one
#   rotation for every position, and the dot product depends only on the distance. A learned table
#   works as well within its `max_len` and has nothing beyond it; the formula runs beyond it, but the
#   model does not generalise there for free.
# * LayerNorm normalises each position over its features, so a sequence's output does not depend on
#   its batch or its padding; BatchNorm's does, measurably.
# * An encoder block is self-attention and a feed-forward network, each in a residual connection with
#   a LayerNorm. Ours equals `nn.TransformerEncoderLayer` in both arrangements. The paper's post-LN
#   needs care (warm-up); the course uses pre-LN, which trained where post-LN did not.
# * The encoder outputs one contextual vector per token.
#
# Next, lesson 07: a decoder on top of this encoder, and the full Transformer generates.
#
# ## Going further
#
# 1. Initialise the learned table with the sinusoidal encoding before training. Do its rows keep
#    their neighbour structure? Does the model learn faster?
# 2. Give the post-LN stack of section 6 a linear learning-rate warm-up over its first 50 steps. Does
#    it train now?
# 3. Relative position representations (Shaw et al., 2018), rotary embeddings (RoPE, Su et al., 2021)
#    and ALiBi (Press et al., 2022) encode distance rather than absolute position. Which of them would
#    you expect to do better at length 24 here, and why?

"""The course's figures, in one consistent, colour-blind-safe style (Okabe-Ito palette).

Every figure has a title and labelled axes; heatmaps show the tokens on their axes.
"""
from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
HEATMAP = "viridis"  # perceptually uniform and colour-blind safe


def set_style() -> None:
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.8), "figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold",
        "axes.prop_cycle": mpl.cycler(color=PALETTE), "legend.frameon": False, "font.size": 10,
    })


def _as_numpy(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def plot_accuracy_by_length(results: dict, *, metric: str = "token", title: str = "Accuracy against input length",
                            ax=None, trained_max: int | None = None):
    """``{model name: accuracy_by_length(...)}`` -> one line per model, accuracy (%) against input length."""
    ax = ax or plt.subplots()[1]
    markers = "osD^v"
    for i, (name, res) in enumerate(results.items()):
        lengths = list(res)
        ax.plot(lengths, [100 * res[n][metric] for n in lengths], marker=markers[i % len(markers)], label=name)
    if trained_max is not None:
        ax.axvline(trained_max, color="grey", linestyle=":", label="longest training length")
    ax.set_xticks(sorted({n for res in results.values() for n in res}))
    label = {"token": "token accuracy (%)", "exact": "exact match (%)"}[metric]
    ax.set(xlabel="input length (symbols)", ylabel=label, title=title, ylim=(0, 102))
    ax.legend()
    return ax


def plot_losses(histories: dict, *, title: str = "Training loss", ax=None, smooth: int = 20):
    """``{name: History}`` -> loss curves (moving average over ``smooth`` steps), log scale.

    The y label says when the curves are moving averages (and over how many steps), so that a reader
    does not compare them with a single step's loss.
    """
    ax = ax or plt.subplots()[1]
    windows = set()
    for name, history in histories.items():
        losses = np.asarray(history.losses if hasattr(history, "losses") else history, dtype=float)
        k = max(1, min(smooth, len(losses)))
        windows.add(k)
        # x = the last step of each window, so that the curve is not shifted left by the averaging
        ax.plot(np.arange(k - 1, len(losses)), np.convolve(losses, np.ones(k) / k, mode="valid"), label=name)
    ylabel = "cross-entropy (nats per token)"
    if windows - {1}:
        ylabel += f"\nmoving average over {'/'.join(str(k) for k in sorted(windows))} steps"
    ax.set(xlabel="training step", ylabel=ylabel, title=title, yscale="log")
    ax.legend()
    return ax


def plot_attention(weights, src_tokens, tgt_tokens, *, title: str = "Attention weights", ax=None,
                   xlabel: str = "input (keys)", ylabel: str = "output (queries)", colorbar: bool = True,
                   vmax: float | None = None):
    """A heatmap of ``weights`` (T, S): row t = how output token t spreads its attention over the inputs.

    With its own colour bar (the default) the scale runs from 0 to the largest weight shown. Without
    one (``colorbar=False``, panels side by side) every panel shares the scale 0 to 1, the range of a
    weight, so that the same colour means the same weight in every panel; ``vmax`` overrides both.
    """
    weights = _as_numpy(weights)
    ax = ax or plt.subplots(figsize=(0.3 * len(src_tokens) + 2.5, 0.3 * len(tgt_tokens) + 1.8))[1]
    if vmax is None:
        vmax = max(1e-9, float(weights.max())) if colorbar else 1.0
    image = ax.imshow(weights, cmap=HEATMAP, vmin=0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), ["␣" if t == " " else t for t in src_tokens], fontsize=8)
    ax.set_yticks(range(len(tgt_tokens)), list(tgt_tokens), fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(False)
    if colorbar:
        plt.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax

"""One training loop and one evaluation for every model of the course.

A model keeps the contract of :mod:`utils.rnn`: ``model(src, src_lengths, tgt) -> logits
(B, T, V)`` and ``model.generate(src, src_lengths, max_len) -> ids (B, L)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.data import EOS, PAD
from utils.progress import progress
from utils.runtime import device as default_device, fmt_time, measured


@dataclass
class History:
    """What a training run recorded: the loss of every step, and its wall-clock time."""

    losses: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-20:]
        return sum(tail) / len(tail)


def sequence_loss(logits, tgt):
    """Mean cross-entropy per real target token. logits (B, T, V), tgt (B, T); ``PAD`` is ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=PAD)


def train(model: nn.Module, task, *, steps: int, batch_size: int = 64, lr: float = 3e-3,
          seed: int = 0, clip: float = 1.0, desc: str = "training", device=None,
          loss_fn=sequence_loss) -> History:
    """Train ``model`` on fresh batches of ``task`` with Adam, showing a progress bar and the loss.

    When it ends, the bar becomes one line: steps, final loss and time (:mod:`utils.progress`).

    The batches come from their own generator seeded with ``seed``: the same call gives the
    same model, whatever ran before it. Training runs on ``device`` (default :func:`utils.device`,
    the CPU unless ``COURSE_DEVICE`` says otherwise); the trained model goes back to the device it
    came from (the CPU, in every lesson), so the cells after training need no ``.to(device)``.
    """
    home = next(model.parameters()).device
    device = device or default_device()
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = History()
    start = time.perf_counter()
    bar = progress(range(steps), desc)
    for step in bar:
        batch = task.sample(batch_size, generator).to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt)  # (B, T, V)
        loss = loss_fn(logits, batch.tgt)
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}: try a smaller learning rate")
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)  # RNNs' gradients can explode
        optimizer.step()
        history.losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    history.seconds = time.perf_counter() - start
    model.to(home).eval()
    bar.finish(f"{desc}: {steps} steps, final loss {measured(history.final_loss, '.3f')} ({fmt_time(history.seconds)})")
    return history


def token_accuracy(pred, tgt):
    """Per example: the fraction of target tokens (``EOS`` included) predicted at the right position.

    pred (B, L) generated ids, tgt (B, T) -> (B,) in [0, 1]. A missing token counts as wrong.
    """
    T = tgt.shape[1]
    if pred.shape[1] < T:
        pred = F.pad(pred, (0, T - pred.shape[1]), value=PAD)
    pred = pred[:, :T]
    real = tgt != PAD
    return ((pred == tgt) & real).sum(1).float() / real.sum(1).float()


def exact_match(pred, tgt):
    """Per example: 1.0 when the whole output (up to and including ``EOS``) is right. -> (B,)"""
    return (token_accuracy(pred, tgt) == 1).float()


@torch.no_grad()
def accuracy_by_length(model, task, lengths, *, n: int = 200, seed: int = 1234, device=None) -> dict:
    """Evaluate ``model`` on ``n`` fresh examples of each input length.

    Returns ``{length: {"token": mean token accuracy, "exact": exact-match rate}}``.
    The evaluation examples come from their own seed, different from training's. It runs where the
    model is, unless ``device`` is given.
    """
    device = device or next(model.parameters()).device
    model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for length in lengths:
        batch = task.sample(n, generator, length=length).to(device)
        pred = model.generate(batch.src, batch.src_lengths, max_len=batch.tgt.shape[1] + 2)
        results[length] = {"token": token_accuracy(pred, batch.tgt).mean().item(),
                           "exact": exact_match(pred, batch.tgt).mean().item()}
    return results


def print_accuracy_table(results: dict) -> None:
    """``{model name: accuracy_by_length(...)}`` -> a small text table, one row per length."""
    names = list(results)
    lengths = list(next(iter(results.values())))
    print("length " + " ".join(f"{name:>22}" for name in names))
    for length in lengths:
        cells = [f"{measured(results[name][length]['token'], '.1%'):>11} tok {measured(results[name][length]['exact'], '.1%'):>7} ex"
                 for name in names]
        print(f"{length:>6} " + " ".join(f"{c:>22}" for c in cells))


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""What a layer costs, counted and measured (lesson 04): FLOPs, memory, time, sequential steps and
path length, for self-attention, a recurrent (LSTM) layer and a convolution.

Counting conventions, the same everywhere in the course:

* a multiply-add is **2 FLOPs**, so a matrix product (a, b) @ (b, c) costs ``2 * a * b * c``;
* only the matrix products are counted. Biases, the softmax, the scale by 1/sqrt(d) and the
  LSTM's gate nonlinearities are O(n^2) or O(n d) elementwise operations, negligible beside the
  O(n^2 d) and O(n d^2) products (:func:`elementwise_flops` says how negligible);
* memory is in bytes, 4 per float32 element.

Measurements (:func:`time_layers`, :func:`best_times`, :func:`peak_memory`) run on the CPU or the
GPU; times are the *minimum* over interleaved repeats, because other programs only ever add time to
a run, and on the CPU :func:`time_layers` measures the CPU time of the measuring thread.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from utils.progress import progress
from utils.runtime import fmt_time

BYTES_PER_FLOAT = 4


# ----------------------------------------------------------------- counts (the exercises' references)
def attention_flops(n: int, d: int) -> int:
    """FLOPs of one single-head self-attention layer (``utils.attention.SelfAttention``) on one sequence.

    n positions, model width d = d_k = d_v. Matrix products only, a multiply-add = 2 FLOPs:
    Q, K, V = X W_q, X W_k, X W_v (3 products (n, d) @ (d, d)), S = Q K^T ((n, d) @ (d, n)) and
    Y = A V ((n, n) @ (n, d)). A formula of n and d: later cells also call it with a float n.
    """
    projections = 3 * 2 * n * d * d  # O(n d^2)
    scores = 2 * n * n * d  # Q K^T: n^2 dot products of length d
    weighted_sum = 2 * n * n * d  # A V: n x d outputs, each a sum over n keys
    return projections + scores + weighted_sum


def lstm_flops(n: int, d: int) -> int:
    """FLOPs of one LSTM layer (input size d, hidden size d) over a sequence of n positions.

    At each of the n steps, each of the 4 gates (input, forget, cell, output) multiplies the input
    x_t by a (d, d) matrix and the previous state h_{t-1} by another. Matrix products only, a
    multiply-add = 2 FLOPs. A formula of n and d: later cells also call it with a float n.
    """
    per_gate = 2 * d * d + 2 * d * d  # W_i x_t + W_h h_{t-1}
    return n * 4 * per_gate  # O(n d^2), in n steps that must run one after the other


def attention_memory(n: int, d: int, batch: int = 1, bytes_per_element: int = 4) -> int:
    """Bytes that naive attention softmax(Q K^T / sqrt(d)) V holds at its peak, beyond its inputs.

    The scores S = Q K^T / sqrt(d) (batch, n, n), the weights A = softmax(S) (batch, n, n) -- the
    softmax is out of place, so S and A exist together -- and the output A V (batch, n, d).
    """
    return batch * (2 * n * n + n * d) * bytes_per_element


def conv_flops(n: int, d: int, k: int) -> int:
    """FLOPs of one 1-D convolution with kernel width k, d channels in and out, n positions ('same' padding).

    Each of the n x d outputs is a sum over k positions x d channels.
    """
    return 2 * n * d * d * k  # O(k n d^2)


def elementwise_flops(n: int, d: int) -> dict:
    """Rough FLOPs of what the counts above leave out, to show it is small.

    attention: scale (1), softmax (max, subtract, exp, sum, divide: 5) per score -> 6 n^2;
    LSTM: biases (8 d), 3 sigmoids + 2 tanh + 3 products + 1 sum (about 4 FLOPs each) per step -> ~ 44 n d.
    """
    return {"self-attention": 6 * n * n, "LSTM": 44 * n * d}


def format_count(x: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (k, M, G, T), for tables of FLOPs."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def format_bytes(x: float) -> str:
    """Bytes in binary units: 8650752 -> '8.25 MiB'."""
    for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}"
    return f"{x:.0f} B"


# ----------------------------------------------------------------- time
@contextlib.contextmanager
def single_thread():
    """Run PyTorch on one CPU thread inside the block (and restore the thread count after).

    A timing on one thread measures the algorithm; on several it also measures how the operating
    system schedules threads, which on a busy machine varies by a factor of ten.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_times(fns, repeats: int = 7, *, clock=time.perf_counter, warmup: bool = False,
               desc: str | None = None) -> list:
    """The fastest of ``repeats`` runs of each function in ``fns`` (calls without arguments), in seconds.

    Other programs can only slow a run down, never speed it up, so the minimum is the closest to a
    function's own cost. The functions take turns (each once, then each again), so that a burst of
    load elsewhere on the machine slows all of them alike rather than one: what a comparison needs.
    ``warmup=True`` runs each once first, untimed (allocations, kernel selection). ``clock`` is
    ``time.perf_counter`` (wall clock) or ``time.thread_time`` (this thread's CPU time: right
    inside :func:`single_thread`, wrong when PyTorch works on several threads). ``desc``: show a
    progress bar over the rounds (the warm-up is round 0), which becomes one line when done.
    """
    rounds = progress(range(repeats + warmup), desc) if desc else range(repeats + warmup)
    times = [[] for _ in fns]
    started = time.perf_counter()
    for r in rounds:
        if warmup and r == 0:  # the first round is a warm-up: allocations, kernel selection
            for fn in fns:
                fn()
            continue
        for fn, runs in zip(fns, times):
            start = clock()
            fn()
            runs.append(clock() - start)
    if desc:
        rounds.finish(f"{desc}: best of {repeats} runs of {len(fns)} ({fmt_time(time.perf_counter() - started)})")
    return [min(runs) for runs in times]


def best_time(fn, repeats: int = 7, **kwargs) -> float:
    """The fastest of ``repeats`` runs of ``fn()``, in seconds: :func:`best_times` for one function."""
    return best_times([fn], repeats, **kwargs)[0]


@torch.no_grad()
def time_layers(layers: dict, lengths, d: int, *, batch: int = 1, repeats: int = 7, device=None,
                desc: str = "timing") -> dict:
    """Forward time of each layer on inputs (batch, n, d) for each n in ``lengths``.

    layers: ``{name: module taking x (batch, n, d)}``. Returns ``{name: [seconds for each n]}``, the
    minimum over ``repeats`` runs. The runs are interleaved (every layer and length once, then again),
    so a burst of load elsewhere on the machine slows all of them alike rather than one length.

    On the CPU the clock is the CPU time of this thread (``time.thread_time``): time during which the
    operating system ran other programs is not counted, so a busy machine does not inflate the
    longer runs. Use it inside :func:`single_thread`, so that all the work happens on this thread.
    On a GPU it is wall-clock time, with the GPU synchronised before and after each run.
    """
    device = torch.device(device or "cpu")
    clock = time.thread_time if device.type == "cpu" else time.perf_counter
    g = torch.Generator().manual_seed(0)
    xs = {n: torch.randn(batch, n, d, generator=g).to(device) for n in lengths}  # (batch, n, d)
    keys = [(name, n) for n in lengths for name in layers]

    def run(layer, x):  # the previous run ends synchronised, so the clock starts on an idle GPU
        def fn():
            layer(x)
            _sync(device)
        return fn

    _sync(device)
    times = best_times([run(layers[name], xs[n]) for name, n in keys], repeats, clock=clock, warmup=True, desc=desc)
    best = dict(zip(keys, times))
    return {name: [best[name, n] for n in lengths] for name in layers}


def loglog_slope(xs, ys) -> float:
    """The exponent k of the least-squares fit y ~ c * x^k (a straight line on log-log axes)."""
    return float(np.polyfit(np.log(np.asarray(xs, dtype=float)), np.log(np.asarray(ys, dtype=float)), 1)[0])


def ratio_crossover(xs, a, b) -> tuple:
    """Where curve ``a`` overtakes curve ``b``, from a straight-line fit of log(a / b) against log x.

    Returns ``(p, x_star)``: a / b ~ (x / x_star)^p, so a < b before x_star and a > b after it (NaN
    when p <= 0: a never overtakes b). The fit uses every point, so one noisy timing moves the
    answer a little rather than making or breaking a crossing.
    """
    p, c = np.polyfit(np.log(np.asarray(xs, dtype=float)), np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float)), 1)
    return float(p), float(math.exp(-c / p)) if p > 0 else float("nan")


# ----------------------------------------------------------------- memory
@contextlib.contextmanager
def _quiet_native_stderr():
    """Send what native code writes to file descriptor 2 to /dev/null inside the block.

    The profiler's C++ side prints a line when it starts and stops, which would clutter a notebook.
    Python's own errors still reach the learner: they are raised, not printed, inside the block.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (some embedded interpreters)
        saved = None
    if saved is None:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory(fn, device=None) -> int:
    """Peak bytes allocated while ``fn()`` runs, beyond what was allocated before (no_grad inside).

    On a GPU, CUDA's own counters. On the CPU, the allocation events of ``torch.profiler``
    (``profile_memory=True``): every allocation and free, in order, summed to find the peak. The
    bytes of the result count while ``fn`` runs; the result is freed before this returns.
    """
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_native_stderr(), torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    events = []

    def walk(nodes):
        for node in nodes:
            fields = node.extra_fields
            if type(fields).__name__ == "_ExtraFields_Allocation" and fields.device.type == "cpu":
                events.append((node.start_time_ns, fields.alloc_size))  # negative size = a free
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    current = peak = 0
    for _, size in sorted(events, key=lambda e: e[0]):
        current += size
        peak = max(peak, current)
    return int(peak)


# ----------------------------------------------------------------- sequential steps, path length
def graph_depth(output: torch.Tensor) -> int:
    """The longest chain of operations in ``output``'s autograd graph, from an input to ``output``.

    Operations on one chain must run one after the other: this is the number of *sequential
    operations* the computation needs, however many processors there are.
    """
    depth: dict = {}

    def longest(fn):  # iterative, since an RNN's graph is deeper than Python's recursion limit
        stack = [(fn, False)]
        while stack:
            node, expanded = stack.pop()
            if node in depth:
                continue
            children = [c for c, _ in getattr(node, "next_functions", ()) if c is not None]
            if expanded or not children:
                depth[node] = 1 + max((depth[c] for c in children), default=0)
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in children if c not in depth)
        return depth[fn]

    if output.grad_fn is None:
        return 0
    return longest(output.grad_fn) - 1  # the leaf's AccumulateGrad node is not an operation


def gradient_by_distance(layer, n: int, d: int, *, batch: int = 8, seed: int = 0):
    """How much the output at the last position depends on each input position.

    layer: a module taking x (batch, n, d) and returning (batch, n, d') (or a tuple whose first item is).
    Returns a numpy array g of n values, g[j] = mean over the batch of || d y_n / d x_j ||, so that
    g[n - 1 - k] is the dependence across a distance of k positions.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, d, generator=g).requires_grad_(True)  # (batch, n, d)
    out = layer(x)
    y = out[0] if isinstance(out, tuple) else out  # (batch, n, d')
    y[:, -1].sum().backward()  # the examples are independent, so this gives each one's own gradient
    return x.grad.norm(dim=-1).mean(0).numpy()  # (n,)


@torch.no_grad()
def conv_layers_to_connect(n: int, k: int, *, dilated: bool = False, max_layers: int = 10_000) -> int:
    """How many stacked 1-D convolutions (kernel k) it takes before the last output depends on the first input.

    Measured by running the stack, not by formula: a signal (a one-hot at the first position) goes
    through causal convolutions with positive weights, layer after layer, until it reaches the last
    position. Contiguous kernels reach k - 1 positions further per layer; dilated ones (dilation
    1, k, k^2, ...) multiply their reach by k per layer.
    """
    h = torch.zeros(1, 1, n, dtype=torch.float64)  # (batch, channels, positions): Conv1d's layout
    h[..., 0] = 1.0  # x_1
    for layers in range(1, max_layers + 1):
        dilation = k ** (layers - 1) if dilated else 1
        weight = torch.ones(1, 1, k, dtype=torch.float64)  # positive: nothing cancels, nothing underflows
        pad = dilation * (k - 1)
        h = torch.nn.functional.conv1d(torch.nn.functional.pad(h, (pad, 0)), weight, dilation=dilation)
        h = h / h.max()  # keep the values in range; only where they are non-zero matters
        if h[0, 0, -1] > 0:  # y_n now depends on x_1
            return layers
    return max_layers

"""Lesson 04's checks accept the course's counts and name realistic mistakes; the measuring tools of
utils.cost measure what they claim to (exactly, where the quantity is deterministic)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils
from utils import cost
from utils.attention import SelfAttention, scaled_dot_product_attention
from check_helpers import fails_with


# ---- 04.1 the FLOPs of self-attention
def test_attention_flops_mistakes():
    fails_with("04.1", lambda n, d: 3 * n * d * d + 2 * n * n * d, "multiply-add is 2 flops")
    fails_with("04.1", lambda n, d: 6 * n * d * d + 2 * n * n * d, "not the weighted sum")
    fails_with("04.1", lambda n, d: 4 * n * n * d, "not the projections")
    fails_with("04.1", lambda n, d: 2 * n * n * d, "2*a*b*c")
    fails_with("04.1", lambda n, d: 2 * n * d * d + 4 * n * n * d, "count all three")
    fails_with("04.1", lambda n, d: 8 * n * d * d + 4 * n * n * d, "no output projection")
    fails_with("04.1", lambda n, d: 6 * n * d * d + 4 * n * d, "n x n entries")
    fails_with("04.1", lambda n, d: 6 * n * n * d + 4 * n * d * d, "swapped")
    fails_with("04.1", lambda n, d: 6 * n * d * d + 4 * n * n * d + 5 * n * n, "softmax too")
    fails_with("04.1", lambda n, d: 6 * n * d * d + 4 * n * n * d * n, "should grow like n^2")
    fails_with("04.1", lambda n, d: 6 * n * d + 4 * n * n * d, "should grow like d^2")
    fails_with("04.1", lambda n, d: 7 * n * d * d + 4 * n * n * d, "constants are off")


def test_attention_flops_accepts_floats_and_numpy_but_not_junk():
    assert utils.check("04.1", lambda n, d: float(cost.attention_flops(n, d)))
    assert utils.check("04.1", lambda n, d: np.int64(cost.attention_flops(n, d)))
    assert utils.check("04.1", lambda n, d: torch.tensor(float(cost.attention_flops(n, d))))
    fails_with("04.1", lambda n, d: None, "forget a `return`")
    fails_with("04.1", lambda n, d: (n, d), "one number")
    fails_with("04.1", lambda n, d: float("nan"), "finite")
    fails_with("04.1", 42, "itself")


# ---- 04.2 the FLOPs of an LSTM
def test_lstm_flops_mistakes():
    fails_with("04.2", lambda n, d: 8 * n * d * d, "half")
    fails_with("04.2", lambda n, d: 4 * n * d * d, "4 gates")
    fails_with("04.2", lambda n, d: 2 * n * d * d, "an eighth")
    fails_with("04.2", lambda n, d: 12 * n * d * d, "gru")
    fails_with("04.2", lambda n, d: 16 * d * d, "one step")
    fails_with("04.2", lambda n, d: 16 * n * n * d * d, "not n^2")
    fails_with("04.2", lambda n, d: 16 * n * d * d + 8 * n * d, "biases")
    fails_with("04.2", lambda n, d: 16 * n * d, "should grow like d^2")
    fails_with("04.2", lambda n, d: 17 * n * d * d, "constants are off")


# ---- 04.3 the memory of naive attention
def test_attention_memory_mistakes():
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * (2 * n * n + n * d), "elements, not bytes")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: 8 * batch * (2 * n * n + n * d) * bytes_per_element,
               "bits")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * (2 * n * n + n * d) * 4, "bytes_per_element argument")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: (2 * n * n + n * d) * bytes_per_element, "multiply by batch")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * (n * n + n * d) * bytes_per_element, "count both")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * 2 * n * n * bytes_per_element, "output")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * (2 * n * n + 4 * n * d) * bytes_per_element,
               "inputs of attention")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * 3 * n * d * bytes_per_element, "(n, n)")
    fails_with("04.3", lambda n, d, batch=1, bytes_per_element=4: batch * (2 * n * n * n + n * d) * bytes_per_element,
               "should grow like n^2")
    # a learner who renamed the keyword arguments is told about the signature, not crashed into
    result = utils.check("04.3", lambda n, d, b=1, e=4: b * (2 * n * n + n * d) * e)
    assert not result and "signature" in result.message


def test_references_pass_and_skeletons_read_not_attempted():
    for id in ("04.1", "04.2", "04.3"):
        assert utils.check(id, utils.exercises.get(id).reference)

        def skeleton(*args, **kwargs):
            # YOUR CODE HERE
            raise NotImplementedError()

        assert utils.check(id, skeleton).status == "not attempted"


# ---- the measuring tools
def test_counts_match_the_layers_they_describe():
    # attention_flops counts exactly the products that SelfAttention performs, by the profiler's FLOP counter
    from torch.utils.flop_counter import FlopCounterMode

    n, d = 12, 8
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        SelfAttention(d)(torch.randn(1, n, d))
    assert counter.get_total_flops() == cost.attention_flops(n, d)
    lstm = nn.LSTM(d, d, batch_first=True)
    assert sum(p.numel() for name, p in lstm.named_parameters() if "weight" in name) * 2 * n == cost.lstm_flops(n, d)


def test_peak_memory_of_naive_attention_is_the_count():
    for n, d in [(64, 16), (256, 32)]:
        q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
        with cost.single_thread():
            assert cost.peak_memory(lambda: scaled_dot_product_attention(q, k, v)) == cost.attention_memory(n, d)
            fused = cost.peak_memory(lambda: F.scaled_dot_product_attention(q, k, v))
        assert fused < cost.attention_memory(n, d)
    q, k, v = (torch.randn(3, 2, 32, 8) for _ in range(3))  # (batch, heads, n, d): batch x heads matrices
    assert cost.peak_memory(lambda: scaled_dot_product_attention(q, k, v)) == cost.attention_memory(32, 8, batch=6)
    assert cost.peak_memory(lambda: torch.empty(1000)) == 4000


def test_graph_depth_counts_the_longest_chain():
    x = torch.randn(3, requires_grad=True)
    assert cost.graph_depth(x) == 0
    assert cost.graph_depth(x * 2) == 1
    y = x
    for _ in range(50):
        y = y.sin()
    assert cost.graph_depth(y + x) == 51  # the longest of the two chains into the sum, plus the sum


def test_gradient_by_distance_and_conv_reach():
    n, d = 10, 4
    pointwise = nn.Linear(d, d)
    g = cost.gradient_by_distance(pointwise, n, d)
    assert g.shape == (n,) and g[-1] > 0 and np.all(g[:-1] == 0)  # a position-wise layer: y_n depends on x_n only
    for n in [2, 5, 16, 100]:
        assert cost.conv_layers_to_connect(n, 3) == math.ceil((n - 1) / 2)
        assert cost.conv_layers_to_connect(n, 2) == n - 1
        assert 3 ** (cost.conv_layers_to_connect(n, 3, dilated=True) - 1) < n <= 3 ** cost.conv_layers_to_connect(n, 3, dilated=True)


def test_slopes_and_crossover():
    ns = [10, 20, 40, 80]
    assert cost.loglog_slope(ns, [3 * n**2 for n in ns]) == pytest.approx(2)
    p, x_star = cost.ratio_crossover(ns, [n**2 for n in ns], [30 * n for n in ns])
    assert p == pytest.approx(1) and x_star == pytest.approx(30)
    assert math.isnan(cost.ratio_crossover(ns, [n**0.5 for n in ns], ns)[1])


def test_time_layers_returns_one_time_per_length_and_restores_threads():
    before = torch.get_num_threads()
    with cost.single_thread():
        t = cost.time_layers({"linear": nn.Linear(4, 4)}, [8, 16], 4, repeats=2)
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert list(t) == ["linear"] and len(t["linear"]) == 2 and all(x > 0 for x in t["linear"])


def test_best_times_takes_turns_and_keeps_each_functions_fastest_run():
    """Lessons 02, 07, 08 and 09 compare two timings: a burst of load must hit both, not one."""
    calls, now = [], [0.0]
    durations = {"a": iter([5, 1, 3]), "b": iter([2, 9, 4])}  # seconds each run takes on a fake clock

    def run(name):
        def fn():
            calls.append(name)
            now[0] += next(durations[name])
        return fn

    assert cost.best_times([run("a"), run("b")], 3, clock=lambda: now[0]) == [1, 2]
    assert calls == ["a", "b", "a", "b", "a", "b"]
    calls.clear()
    durations = {"x": iter([100, 7, 8])}
    assert cost.best_time(run("x"), 2, clock=lambda: now[0], warmup=True) == 7  # the warm-up is not timed
    assert calls == ["x", "x", "x"]


def test_formats():
    assert cost.format_count(1_234_567, "FLOP") == "1.23 MFLOP"
    assert cost.format_count(12) == "12"
    assert cost.format_bytes(8650752) == "8.25 MiB"
    assert cost.format_bytes(100) == "100 B"


# ---- issue 14: the lesson's plot calls the counts with a float n
def test_counts_must_work_for_float_sizes():
    def loop_flops(n, d):  # right at whole n, but a loop over range(n)
        return sum(6 * d * d + 4 * n * d for _ in range(n))

    fails_with("04.1", loop_flops, "a float")

    def rounded_lstm(n, d):
        return int(n) * 16 * d * d

    fails_with("04.2", rounded_lstm, "a float")

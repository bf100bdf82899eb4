"""The lesson-05 benchmark table runs and times the four implementations it names."""
import math

from benchmarks import bench_mha


def test_measure_times_every_implementation():
    times = bench_mha.measure(8, repeat=2)
    assert set(times) == {"course", "torch, weights", "torch, no weights", "fused"}
    assert all(len(t) == 2 and all(math.isfinite(x) and x > 0 for x in t) for t in times.values())


def test_table_title_and_header():
    assert bench_mha.__doc__.strip().splitlines()[0].startswith("Multi-head attention")
    assert bench_mha.LENGTHS == tuple(sorted(bench_mha.LENGTHS))

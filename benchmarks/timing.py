"""What every timing row of the benchmark records: a spread and the machine's load.

A time measured once on a shared machine says little; the benchmark reports each as min / median /
max over repeats, with the 1-minute load average when the row was measured, so that a reader can
tell a slow CPU from a busy one (`load` above the core count means other work competed).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def load() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def spread(values) -> tuple[float, float, float]:
    """(min, median, max) of a non-empty sequence."""
    v = sorted(values)
    return v[0], v[len(v) // 2], v[-1]


def times(fns: dict, repeat: int) -> dict:
    """Seconds of each ``fn()`` over ``repeat`` runs, measured in turns so that a busy machine slows
    them alike, after one warm-up run each. -> ``{name: [seconds, ...]}``."""
    for fn in fns.values():
        fn()
    out = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
    return out


def fmt_spread(seconds, scale: float = 1e3, digits: int = 2) -> str:
    """'median (min-max)' of a list of seconds, in ms by default."""
    lo, mid, hi = spread(seconds)
    return f"{mid * scale:.{digits}f} ({lo * scale:.{digits}f}-{hi * scale:.{digits}f})"


class BusyCores:
    """``with BusyCores(n):`` keeps ``n`` processes spinning on the CPU, as another program would.

    Used to measure what a learner on a shared machine (Binder, Colab, a laptop with a browser
    open) sees. The spinners are plain Python loops at normal priority, stopped on exit.
    """

    def __init__(self, n: int | None = None):
        self.n = n or os.cpu_count() or 1
        self.procs = []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(1.0)  # let the load build up
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []
        return False

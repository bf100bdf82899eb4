"""The course's benchmark: how long each lesson takes and how much memory it needs, and how the
course's own attention compares with PyTorch's. Not a test: timings are for people to read.

    python -m benchmarks.run                 # every lesson, then the attention tables
    python -m benchmarks.run 01 03           # some lessons only
    python -m benchmarks.run --no-notebooks  # only the attention tables
    python -m benchmarks.run --quick         # the exercise notebooks in the quick setting

Each notebook runs in a fresh kernel in a fresh process; the peak memory is the kernel's
maximum resident set size. Results go to benchmarks/results.md (and are printed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results.md"

# Runs in a child process: executes one notebook, then reports wall time and the kernel's peak RSS.
_RUN_ONE = r"""
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
error = ""
try:
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
except Exception as err:
    error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the kernel, once it has exited
print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024, "error": error}))
"""

BUDGETS = {"01": 90, "02": 120, "03": 90, "04": 90, "05": 90, "06": 120, "07": 150}  # seconds, from the issues


def run_notebook(path: Path, quick: bool) -> dict:
    env = dict(os.environ)
    env.pop("COURSE_QUICK", None)
    if quick:
        env["COURSE_QUICK"] = "1"
    proc = subprocess.run([sys.executable, "-c", _RUN_ONE, str(path), str(path.parent)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"seconds": float("nan"), "peak_mib": float("nan"), "error": proc.stderr.strip()[-300:]}


def notebook_table(lessons, quick: bool) -> list[str]:
    folder = ROOT / ("notebooks" if quick else "solutions")
    rows = ["| lesson | run time (s) | budget (s) | peak memory (MiB) | result |", "|---|---:|---:|---:|---|"]
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        if lessons and path.name[:2] not in lessons:
            continue
        r = run_notebook(path, quick)
        budget = BUDGETS.get(path.name[:2], 0)
        verdict = r["error"] or ("ok" if quick or r["seconds"] <= budget else "OVER BUDGET")
        rows.append(f"| {path.stem} | {r['seconds']:.1f} | {budget} | {r['peak_mib']:.0f} | {verdict} |")
        print(rows[-1], flush=True)
    return rows


def _time(fn, repeat: int = 20) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs, after two warm-up runs."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def attention_table() -> list[str]:
    """The course's scaled dot-product attention against PyTorch's fused one (forward + backward)."""
    try:
        from utils.attention import scaled_dot_product_attention
    except ImportError:
        return ["(utils.attention is not there yet)"]
    import torch.nn.functional as F

    rows = ["| sequence length | course attention (ms) | F.scaled_dot_product_attention (ms) | ratio |", "|---:|---:|---:|---:|"]
    torch.manual_seed(0)
    for n in (64, 128, 256, 512):
        q, k, v = (torch.randn(8, 4, n, 32, requires_grad=True) for _ in range(3))

        def ours():
            scaled_dot_product_attention(q, k, v)[0].sum().backward()

        def theirs():
            F.scaled_dot_product_attention(q, k, v).sum().backward()

        a, b = _time(ours), _time(theirs)
        rows.append(f"| {n} | {1e3 * a:.2f} | {1e3 * b:.2f} | {a / b:.2f} |")
        print(rows[-1], flush=True)
    return rows


def extra_tables() -> list[str]:
    """Tables that lessons add: any ``benchmarks/bench_*.py`` with a ``table() -> list[str]``."""
    import importlib

    lines = []
    for path in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        lines += ["", f"## {module.__doc__.strip().splitlines()[0]}", ""] + module.table()
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Time and measure the course's notebooks and attention.")
    parser.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 01 03 (default: all)")
    parser.add_argument("--quick", action="store_true", help="run the exercise notebooks in the quick setting")
    parser.add_argument("--no-notebooks", action="store_true", help="skip the notebooks")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    lines = ["# Benchmark", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}", ""]
    if not args.no_notebooks:
        kind = "exercise notebooks, quick setting" if args.quick else "solution notebooks, in full"
        lines += [f"## Lessons ({kind}, each in a fresh kernel)", ""] + notebook_table(args.lessons, args.quick)
    lines += ["", "## Attention: forward + backward, batch 8, 4 heads, d_k 32 (median of 20)", ""] + attention_table()
    lines += extra_tables()
    OUT.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

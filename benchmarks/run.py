"""The course's benchmark: how long each lesson takes and how much memory it needs, on an idle and on
a busy machine, and how the course's own attention compares with PyTorch's. Not a test: timings are
for people to read, and for anyone to rerun.

    python -m benchmarks.run                  # every lesson (idle), then the attention tables
    python -m benchmarks.run 01 03            # lessons 01 and 03 only: their rows are replaced, the rest kept
    python -m benchmarks.run --busy           # also with both cores kept busy by other processes
    python -m benchmarks.run --compare-threads  # also with PyTorch's default thread count (COURSE_THREADS=0)
    python -m benchmarks.run --no-notebooks   # only the tables
    python -m benchmarks.run 07 --no-tables   # only lesson 07's notebook
    python -m benchmarks.run --quick          # the exercise notebooks in the quick setting

Each notebook runs in a fresh kernel in a fresh process; the peak memory is the kernel's maximum
resident set size. Every measurement is kept in ``benchmarks/results.json`` under its own key
(lesson, setting), with the date, the machine and the load average before and after it, so that a
partial rerun updates its own rows and keeps the others; ``benchmarks/results.md`` is written from it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.timing import BusyCores, fmt_spread, load, times

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results.md"
DATA = ROOT / "benchmarks" / "results.json"

# Runs in a child process: executes one notebook, then reports wall time and the kernel's peak RSS.
_RUN_ONE = r"""
import json, resource, sys, time
import nbformat
from tools.run_notebook import PromptNotebookClient  # nbclient, without its stall on widget cells
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
error = ""
try:
    PromptNotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
except Exception as err:
    error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the kernel, once it has exited
print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024, "error": error}))
"""

BUDGET_S = 120  # seconds: every lesson within two minutes, on an idle machine at one thread (issue 25)

# (key, machine state, thread setting): the settings a lesson's run time is measured under.
SETTINGS = {
    "idle": ("idle", "course default (1 thread)"),
    "busy": ("both cores busy", "course default (1 thread)"),
    "idle, torch threads": ("idle", "PyTorch's default (COURSE_THREADS=0)"),
    "busy, torch threads": ("both cores busy", "PyTorch's default (COURSE_THREADS=0)"),
}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")


def run_notebook(path: Path, quick: bool, threads: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("COURSE_QUICK", None)
    env.pop("OMP_NUM_THREADS", None)  # the lesson's utils.setup() chooses, as for a learner
    if quick:
        env["COURSE_QUICK"] = "1"
    if threads is not None:
        env["COURSE_THREADS"] = threads
    before = load()
    proc = subprocess.run([sys.executable, "-c", _RUN_ONE, str(path), str(path.parent)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"seconds": float("nan"), "peak_mib": float("nan"), "error": proc.stderr.strip()[-300:]}
    return {**result, "load_before": before, "load_after": load(), "date": time.strftime("%Y-%m-%d"), "machine": machine()}


def measure_lessons(data: dict, lessons, settings, quick: bool, folder: Path | None = None, out=None) -> None:
    """Run each lesson's notebook under each setting; store the result in ``data`` (saved after each run)."""
    folder = folder or ROOT / ("notebooks" if quick else "solutions")
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        if lessons and path.name[:2] not in lessons:
            continue
        for setting in settings:
            threads = "0" if "torch threads" in setting else None
            if setting.startswith("busy"):
                with BusyCores():
                    r = run_notebook(path, quick, threads)
            else:
                r = run_notebook(path, quick, threads)
            data.setdefault("quick lessons" if quick else "lessons", {}).setdefault(path.stem, {})[setting] = r
            print(f"{path.stem} [{setting}]: {r['seconds']:.1f} s, {r['peak_mib']:.0f} MiB, "
                  f"load {r['load_before']:.1f} -> {r['load_after']:.1f} {r['error']}", flush=True)
            save(data, *(out or ()))


def lesson_table(runs: dict, quick: bool) -> list[str]:
    shown = [s for s in SETTINGS if any(s in r for r in runs.values())]
    head = " | ".join(f"{s} (s)" for s in shown)
    rows = [f"| lesson | {head} | budget (s) | peak memory (MiB) | load before -> after | result |",
            "|---|" + "---:|" * len(shown) + "---:|---:|---|---|"]
    for stem in sorted(runs):
        r = runs[stem]
        budget = BUDGET_S
        cells = " | ".join(f"{r[s]['seconds']:.1f}" if s in r else "-" for s in shown)
        idle = r.get("idle") or next(iter(r.values()))
        loads = "; ".join(f"{r[s]['load_before']:.1f} -> {r[s]['load_after']:.1f}" for s in shown if s in r)
        errors = [f"{s}: {r[s]['error']}" for s in shown if s in r and r[s]["error"]]
        over = not quick and "idle" in r and r["idle"]["seconds"] > budget
        verdict = "; ".join(errors) or ("OVER BUDGET (idle)" if over else "ok")
        rows.append(f"| {stem} | {cells} | {budget} | {idle['peak_mib']:.0f} | {loads} | {verdict} |")
    return rows


def attention_table(repeat: int = 20) -> dict:
    """The course's scaled dot-product attention against PyTorch's fused one (forward + backward)."""
    import torch.nn.functional as F

    from utils.attention import scaled_dot_product_attention

    rows = ["| sequence length | course attention (ms) | F.scaled_dot_product_attention (ms) | ratio of medians | load |",
            "|---:|---:|---:|---:|---:|"]
    torch.manual_seed(0)
    for n in (64, 128, 256, 512):
        q, k, v = (torch.randn(8, 4, n, 32, requires_grad=True) for _ in range(3))
        t = times({"ours": lambda: scaled_dot_product_attention(q, k, v)[0].sum().backward(),
                   "theirs": lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()}, repeat)
        ratio = sorted(t["ours"])[repeat // 2] / sorted(t["theirs"])[repeat // 2]
        rows.append(f"| {n} | {fmt_spread(t['ours'])} | {fmt_spread(t['theirs'])} | {ratio:.2f} | {load():.1f} |")
        print(rows[-1], flush=True)
    return {"title": f"Attention: forward + backward, batch 8, 4 heads, d_k 32 (median (min-max) of {repeat}, one thread)",
            "rows": rows}


def extra_tables() -> list:
    """Tables that lessons add: any ``benchmarks/bench_*.py`` with a ``table() -> list[str]``.
    -> ``[(key, make)]``; ``make()`` measures and returns ``{"title", "rows"}``."""
    def maker(module):
        return lambda: {"title": module.__doc__.strip().splitlines()[0], "rows": module.table()}

    return [(path.stem, maker(importlib.import_module(f"benchmarks.{path.stem}")))
            for path in sorted((ROOT / "benchmarks").glob("bench_*.py"))]


def save(data: dict, data_path: Path = DATA, md_path: Path = OUT) -> None:
    data_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    md_path.write_text(render(data))


def render(data: dict) -> str:
    lines = ["# Benchmark", "",
             "Written by `python -m benchmarks.run` from `benchmarks/results.json`; each row was measured on the "
             "date and machine its section names, with the 1-minute load average (2 cores: a load near 2 or "
             "more means other work competed). Rerun any part: `python -m benchmarks.run NN`.", ""]
    for key, quick in (("lessons", False), ("quick lessons", True)):
        runs = data.get(key)
        if runs:
            dates = sorted({r["date"] for lesson in runs.values() for r in lesson.values()})
            machines = sorted({r["machine"] for lesson in runs.values() for r in lesson.values()})
            kind = "exercise notebooks, quick setting" if quick else "solution notebooks, in full"
            lines += [f"## Lessons ({kind}, each in a fresh kernel)", "",
                      f"{'; '.join(machines)}; {', '.join(dates)}. *Busy*: {os.cpu_count()} other processes "
                      "spinning on the cores while the lesson runs, as on a shared machine.", ""]
            lines += lesson_table(runs, quick) + [""]
    for table in data.get("tables", {}).values():
        lines += [f"## {table['title']}", "", f"{table['machine']}; {table['date']}; load {table['load']:.1f} when it started", ""]
        lines += table["rows"] + [""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Time and measure the course's notebooks and attention.")
    parser.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 01 03 (default: all)")
    parser.add_argument("--quick", action="store_true", help="run the exercise notebooks in the quick setting")
    parser.add_argument("--busy", action="store_true", help="also run each lesson with every core kept busy")
    parser.add_argument("--compare-threads", action="store_true", help="also run with PyTorch's default thread count")
    parser.add_argument("--no-notebooks", action="store_true", help="skip the notebooks")
    parser.add_argument("--no-tables", action="store_true", help="skip the attention and training tables")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    if not args.no_notebooks:
        settings = ["idle"] + (["busy"] if args.busy else [])
        if args.compare_threads:
            settings += [s + ", torch threads" for s in settings]
        measure_lessons(data, args.lessons, settings, args.quick)
    if not args.no_tables:
        torch.set_num_threads(1)  # as the lessons run
        started = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
        for key, make in [("attention", attention_table)] + extra_tables():
            first_load = load()
            data.setdefault("tables", {})[key] = {**make(), **started, "load": first_load}
            save(data)
    save(data)
    print(f"\nwritten to {OUT.relative_to(ROOT)} and {DATA.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

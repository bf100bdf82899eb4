"""Grading throughput: how many submissions an hour a machine grades, so that an instructor can size one.

    python -m benchmarks.grading                    # 20 and 200 submissions, at --jobs 1 and at the default
    python -m benchmarks.grading --sizes 20         # only the class of 20
    python -m benchmarks.grading --jobs 1 4         # these job counts ("default": what the machine holds)
    python -m benchmarks.grading --no-sandbox       # kernels without bubblewrap (where it cannot run)

Each class is lesson 01's exercise notebook filled in by generated learners, a mix of right (40%),
wrong in known ways (30%) and unfinished (30%) answers, every notebook different. The class is graded
in this process by :func:`grading.classroom.grade`, into a fresh folder. Each row records the wall
time, the CPU time (the grader's process and every kernel's processes, from ``/proc``), their
ratio per submission, and the 1-minute load average before and after: on a shared machine the wall
time says more about the other work than about the grader, and CPU seconds per submission is the
robust figure. Rows are kept in ``benchmarks/grading.json`` under (size, jobs, sandbox), so a partial
rerun replaces its own rows; ``benchmarks/grading.md`` is written from it.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from benchmarks.timing import load
from grading import capacity
from grading.classroom import grade
from grading.notebook import Options
from grading.reading import answer_id

ROOT = Path(__file__).resolve().parent.parent
DATA, OUT = ROOT / "benchmarks" / "grading.json", ROOT / "benchmarks" / "grading.md"
LESSON = "01_lstm_bottleneck"
WRONG = {  # a realistic mistake per exercise (the check names each)
    "01.2": "def shift_right(tgt, sos=SOS):\n    return torch.roll(tgt, 1, dims=1)\n",
    "01.3": ("class Decoder(nn.Module):\n    def __init__(self, vocab_size, emb_dim, hidden_dim):\n        super().__init__()\n"
             "        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)\n"
             "        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)\n"
             "        self.out = nn.Linear(hidden_dim, vocab_size)\n\n    def forward(self, inputs, state):\n"
             "        outputs, state = self.lstm(self.embedding(inputs), state)\n"
             "        return self.out(outputs).softmax(-1), state\n"),
}


def _answers() -> dict:
    """Exercise id -> the course's answer cell, markers removed."""
    nb = nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4)
    skeleton = nbformat.read(ROOT / "notebooks" / f"{LESSON}.ipynb", as_version=4)
    ids = [answer_id(c) for c in skeleton.cells if answer_id(c)]
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    strip = lambda s: "\n".join(l for l in s.splitlines() if l.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    return dict(zip(ids, map(strip, cells)))


def make_class(folder: Path, size: int) -> None:
    """``size`` learners' notebooks of lesson 01 under ``folder``/learnerNNN/."""
    skeleton = nbformat.read(ROOT / "notebooks" / f"{LESSON}.ipynb", as_version=4)
    right = _answers()
    for k in range(size):
        kind = ("right", "right", "wrong", "unfinished", "right", "wrong", "unfinished", "right", "wrong", "unfinished")[k % 10]
        answers = {"right": right, "wrong": {**right, **WRONG}, "unfinished": {"01.1": right["01.1"]}}[kind]
        nb = copy.deepcopy(skeleton)
        for cell in nb.cells:
            if answer_id(cell) in answers:
                cell.source = answers[answer_id(cell)]
        nb.cells.append(nbformat.v4.new_markdown_cell(f"Submitted by learner {k:03d} ({kind})."))
        (folder / f"learner{k:03d}").mkdir(parents=True)
        nbformat.write(nb, folder / f"learner{k:03d}" / f"{LESSON}.ipynb")


def measure(size: int, jobs: int, sandbox: bool) -> dict:
    """Grade a generated class of ``size`` at ``jobs`` notebooks at once; wall and CPU time."""
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        folder, out = Path(tmp) / "class", Path(tmp) / "out"
        make_class(folder, size)
        before, start = load(), time.monotonic()
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        rows = grade([folder], out, Options(lesson="01", sandbox=sandbox), jobs=jobs, log=lambda *a: None)
        wall, after = time.monotonic() - start, load()
        used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    grader_cpu, reaped_cpu = (u.ru_utime + u.ru_stime - b.ru_utime - b.ru_stime for u, b in zip(used, usage))
    # The kernels' CPU from /proc (each kernel's process tree, read before it is stopped); without the
    # sandbox the kernels are this process's children, and their reaped time is a check of that figure.
    from_proc = sum(r.cpu_seconds for r in rows)
    kernels_cpu = max(from_proc, 0 if sandbox else reaped_cpu)
    return {"size": size, "jobs": jobs, "sandbox": sandbox, "graded": sum(r.status == "graded" for r in rows),
            "wall_s": round(wall, 1), "grader_cpu_s": round(grader_cpu, 1), "kernels_cpu_s": round(kernels_cpu, 1),
            "kernels_cpu_from_proc_s": round(from_proc, 1), "reaped_children_cpu_s": round(reaped_cpu, 1),
            "cpu_s_per_submission": round((grader_cpu + kernels_cpu) / size, 2),
            "submissions_per_hour": round(size / wall * 3600), "load_before": round(before, 2),
            "load_after": round(after, 2), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {capacity.cores()} cores, "
            f"{(capacity.free_memory() or 0) / 2 ** 30:.0f} GiB free, Python {platform.python_version()}")


def write_markdown(data: dict) -> None:
    rows = sorted(data.values(), key=lambda r: (not r["sandbox"], r["size"], r["jobs"]))
    lines = ["# Grading throughput", "",
             "Written by `python -m benchmarks.grading` from `benchmarks/grading.json`. A generated class of lesson 01 "
             "(right, wrong and unfinished answers) graded by `python -m grading`; CPU time is the grader's process "
             "plus every kernel's. The load is the 1-minute load average before -> after: above the core count, other "
             "work shared the machine and the wall time is longer than an idle machine's; CPU seconds per submission "
             "is the robust figure.", "",
             "| submissions | --jobs | sandbox | graded | wall (s) | CPU s / submission | submissions / hour | "
             "load before -> after | machine, date |", "|---:|---:|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        jobs = f"{r['jobs']} (default)" if r.get("jobs_asked") == "default" else str(r["jobs"])
        lines.append(f"| {r['size']} | {jobs} | {'yes' if r['sandbox'] else 'no'} | {r['graded']} | {r['wall_s']} | "
                     f"{r['cpu_s_per_submission']} | {r['submissions_per_hour']} | {r['load_before']} -> "
                     f"{r['load_after']} | {r['machine']}; {r['date']} |")
    per = [r["cpu_s_per_submission"] for r in rows]
    if per:
        cost = f"{min(per):.1f}" if f"{min(per):.1f}" == f"{max(per):.1f}" else f"{min(per):.1f}-{max(per):.1f}"
        lines += ["", f"Sizing: a submission costs about {cost} CPU seconds, so a machine grades at most about "
                  f"{round(3600 / max(per), -2):,.0f} submissions an hour per core it gives the grader (the default "
                  "--jobs: one kernel per core, as the free memory allows at --memory-mb each); the wall times above, "
                  "on a shared machine, are what was left of that."]
    checked = [r for r in rows if not r["sandbox"] and "kernels_cpu_from_proc_s" in r]
    if checked:
        r = checked[-1]
        lines += ["", f"The kernels' CPU time is read from `/proc` as each kernel stops (a sandboxed kernel is no child "
                  f"of the grader's). Without the sandbox the kernels are its children, and the time the OS gives for "
                  f"them once reaped agrees: {r['kernels_cpu_from_proc_s']} s from `/proc` against "
                  f"{r['reaped_children_cpu_s']} s for {r['size']} submissions."]
    OUT.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200], metavar="N")
    parser.add_argument("--jobs", nargs="+", default=["1", "default"], metavar="J")
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--table", action="store_true", help="only write grading.md from grading.json")
    args = parser.parse_args(argv)
    if args.table:
        write_markdown(json.loads(DATA.read_text()))
        return 0
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    for size in args.sizes:
        for j in args.jobs:
            jobs = capacity.default_jobs(4096) if j == "default" else int(j)
            row = measure(size, jobs, not args.no_sandbox)
            print(json.dumps(row), flush=True)
            data[f"{size}/{j}/{'sandbox' if row['sandbox'] else 'no sandbox'}"] = {**row, "jobs_asked": j}
            DATA.write_text(json.dumps(data, indent=1) + "\n")
            write_markdown(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

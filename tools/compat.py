"""Run every lesson on another library stack, in a throw-away environment, and record the result.

    python -m tools.compat colab                  # Colab's runtime: every lesson (solutions in full, notebooks quick)
    python -m tools.compat oldest newest          # several stacks, one after the other
    python -m tools.compat colab --lessons 03 04  # only these lessons: their rows are replaced, the rest kept
    python -m tools.compat colab --device cuda    # on a machine with a GPU: every kernel gets COURSE_DEVICE=cuda
    python -m tools.compat --list                 # the stacks and what each installs
    python -m tools.compat --render               # rewrite benchmarks/compat.md from benchmarks/compat.json
    python -m tools.compat --clean                # delete the environments (5 GB each for a CUDA build)

A *stack* is a set of library versions a learner may have (``STACKS`` below): Colab's runtime, the
oldest versions the course promises (utils/versions.py), the newest the package index serves, the
versions Binder builds, and the course's own pins. For each, the command makes a virtual
environment with pip (kept under ``$COURSE_COMPAT_DIR``, by default ``~/.cache/attention-course/compat``,
and reused while its requirements are unchanged, so a rerun starts in seconds: ``--fresh`` rebuilds it;
a CUDA build of PyTorch with its nvidia-* libraries takes 4-5 minutes and about 5 GB), then, *in that environment* (its nbclient driving a kernel of its own Python), runs
every solution notebook in full, with every claim asserted, and every exercise notebook unfilled in
the quick setting (``COURSE_QUICK=1``), as the test suite does. Lessons are found by glob, so a new
lesson is included without a change here. Each run records the date, the versions the kernel
actually imported, and per lesson pass/fail, run time and claims in ``benchmarks/compat.json``
(other stacks' results kept), from which ``benchmarks/compat.md`` is written; the executed notebooks
are kept under ``$COURSE_COMPAT_DIR/runs/STACK/``, to read what went wrong.

Nothing here is part of the test suite: installing takes minutes and gigabytes (PyPI's older PyTorch
is the CUDA build, with its nvidia-* libraries). ``tests/test_compat.py`` tests the stack
definitions, the version checks and the writer.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from utils import versions as _versions  # the supported range: its libraries are what a stack pins
from utils.runtime import CLAIM_HOLDS, NOT_CHECKED  # what utils.claim prints: counted in each run

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "compat.json"
OUT = ROOT / "benchmarks" / "compat.md"
CACHE = Path(os.environ.get("COURSE_COMPAT_DIR", Path.home() / ".cache" / "attention-course" / "compat"))
KERNEL = "course-compat"  # the kernelspec each environment gets, so that no other Python can be picked

# The libraries a lesson imports (utils/versions.py checks them) and those that run a notebook.
LIBRARIES = tuple(name for name in _versions.SUPPORTED if name != "python")
DRIVER = ("nbclient", "nbformat", "jupyter_client", "traitlets", "matplotlib-inline")

# Colab's runtime, as googlecolab/backend-info's pip-freeze.gpu.txt lists it (see SOURCES below).
COLAB_2026_06 = {"torch": "2.11.0", "numpy": "2.0.2", "matplotlib": "3.10.0", "ipywidgets": "7.7.1",
                 "ipython": "7.34.0", "ipykernel": "6.17.1", "tqdm": "4.67.3", "nbclient": "0.10.4",
                 "nbformat": "5.10.4", "jupyter_client": "7.4.9", "traitlets": "5.7.1", "matplotlib-inline": "0.2.2"}
COLAB_2026_02 = {**COLAB_2026_06, "torch": "2.10.0", "matplotlib-inline": "0.2.1"}


def requirement_pins(part: str = "learners") -> dict:
    """{name: version} of requirements.txt's learners' part (or all of it with ``part=None``)."""
    pins, section = {}, None
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        if raw.startswith("# --- learners"):
            section = "learners"
        elif raw.startswith("# --- authors"):
            section = "authors"
        line = raw.split("#")[0].strip()
        if line and (part is None or section == part):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def binder_pins(path: Path = ROOT / "binder" / "environment.yml") -> dict:
    """binder/environment.yml's conda pins as pip specifiers: ``pytorch=2.13.0=cpu_*`` -> ``torch: ==2.13.0``,
    ``ipywidgets=8.1`` (any 8.1.x) -> ``ipywidgets: ==8.1.*``. Python and pip are left out."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.-]+)\s*=\s*([0-9][0-9.]*)(?:=\S+)?\s*(?:#.*)?$", line)
        if not m or m.group(1) in ("python", "pip"):
            continue
        name, version = CONDA_TO_PIP.get(m.group(1), m.group(1)), m.group(2)
        pins[name] = f"=={version}" if version.count(".") >= 2 else f"=={version}.*"
    return pins


def _exact(pins: dict) -> dict:
    return {name: f"=={version}" for name, version in pins.items()}


def stacks() -> dict:
    """Every stack: name -> {"about": ..., "pins": {pip name: specifier ('' for the newest)}}."""
    pinned = requirement_pins()
    authors = requirement_pins(None)
    return {
        "colab": {"about": "Colab's runtime (googlecolab/backend-info, about 2026-06): torch 2.11 (PyPI's CUDA build), "
                           "IPython 7.34, ipywidgets 7.7.1, numpy 2.0.2, matplotlib 3.10.0",
                  "pins": _exact(COLAB_2026_06)},
        "oldest": {"about": "The oldest versions the course promises (utils/versions.py): Colab's runtime before its "
                            "torch 2.11 upgrade (about 2026-02), which Colab keeps as its fallback runtime for a while",
                   "pins": _exact(COLAB_2026_02)},
        "newest": {"about": "The newest release of every library the package index serves here (torch is capped at "
                            "2.14.1 by this machine's pip constraints)",
                   "pins": {name: "" for name in LIBRARIES + ("nbclient", "nbformat")}},
        "binder": {"about": "The versions binder/environment.yml pins (conda-forge), installed with pip",
                   "pins": {**binder_pins(), "nbclient": f"=={authors['nbclient']}", "nbformat": f"=={authors['nbformat']}"}},
        "scripts": {"about": "Whatever the Python that runs `python -m tools.compat --scripts` has (no Jupyter needed, "
                             "so a GPU machine with PyTorch alone will do): each lesson's text file run as a script, "
                             "in full and in the quick setting, IPython and ipywidgets replaced by stand-ins if missing",
                    "pins": None},
        "pinned": {"about": "requirements.txt: the course's own pins (torch 2.13.0, the CPU build)",
                   "pins": {**_exact({k: v for k, v in pinned.items() if k != "jupyterlab"}),
                            "nbclient": f"=={authors['nbclient']}", "nbformat": f"=={authors['nbformat']}"}},
    }


def requirements(stack: str) -> list[str]:
    """The pip requirement lines of a stack (JupyterLab is left out: nbclient runs the notebooks)."""
    pins = stacks()[stack]["pins"] or {}  # None: the stack is this Python's own packages (--scripts)
    return [f"{name}{spec}" for name, spec in pins.items() if name != "jupyterlab"]


# ---------------------------------------------------------------------------------------------------
# The environment

def environment(stack: str, fresh: bool = False, log=print) -> Path:
    """A virtual environment with the stack installed (reused while its requirements are the same)."""
    venv = CACHE / stack
    wanted = "\n".join(requirements(stack)) + "\n"
    marker = venv / "compat-requirements.txt"
    python = venv / "bin" / "python"
    if not fresh and marker.exists() and marker.read_text() == wanted:
        log(f"[{stack}] reusing {venv}")
    else:
        if venv.exists():
            shutil.rmtree(venv)
        log(f"[{stack}] creating {venv} and installing: {' '.join(requirements(stack))}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        start = time.perf_counter()
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements(stack), "ipykernel"],
                       check=True, env=env)
        log(f"[{stack}] installed in {time.perf_counter() - start:.0f} s")
    spec = venv / "share" / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({stack} stack)", "language": "python"}, indent=1))
    marker.write_text(wanted)
    return venv


# ---------------------------------------------------------------------------------------------------
# Inside the environment: run the lessons (python -m tools.compat --inside OUT.json ...)

PROBE = r"""
import json, platform, sys
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
import torch
info = {"python": platform.python_version(), "executable": sys.executable,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability()}
info["versions"] = {name: version(name) for name in %r}
print("PROBE " + json.dumps(info))
"""


def lessons(selected=()) -> list[str]:
    """Lesson numbers by glob (solutions/NN_*.ipynb), restricted to ``selected`` if given."""
    found = sorted(p.name[:2] for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    return [n for n in found if not selected or n in selected]


def summarize(nb, quick: bool) -> dict:
    """What an executed notebook says: claims asserted and reported, and a problem if it failed."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    text = "\n".join(texts)
    found = {"claims": text.count(CLAIM_HOLDS), "claims_not_asserted": text.count(NOT_CHECKED)}
    lines = text.splitlines()
    if "The course supports " in text:  # the setup cell's version check spoke (utils/versions.py)
        at = next(i for i, line in enumerate(lines) if line.startswith("The course supports "))
        found["version_check"] = " ".join(lines[at + 1:at + 3])[:300]
    errors = [o for c in nb.cells if "raises-exception" not in c.get("metadata", {}).get("tags", [])
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        first = (errors[0]["evalue"].strip().splitlines() or [""])[0]  # not utils.claim's note on learner code
        found["error"] = f"{errors[0]['ename']}: {first}"[:300]
    elif quick and "not attempted yet" not in text:
        found["error"] = "the checks did not say the skeletons are not attempted"
    elif quick and "uses the course's reference" not in text:
        found["error"] = "the lesson did not fall back to the course's reference"
    return found


def run_inside(out: Path, selected, kinds, device: str | None) -> None:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    from tools.run_notebook import PromptNotebookClient

    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                                  os.environ.get("JUPYTER_PATH", "")])
    os.environ.pop("PYTHONPATH", None)
    os.environ["OMP_NUM_THREADS"] = "1"  # as tools/build_solutions.py and the tests: one thread
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # older ipykernels' debugger warns at each start
    if device:
        os.environ["COURSE_DEVICE"] = device
    else:
        os.environ.pop("COURSE_DEVICE", None)

    def execute(nb, folder, quick):
        if quick:
            os.environ["COURSE_QUICK"] = "1"
        else:
            os.environ.pop("COURSE_QUICK", None)
        PromptNotebookClient(nb, timeout=900, kernel_name=KERNEL,
                             resources={"metadata": {"path": str(folder)}}).execute()

    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE % (LIBRARIES + DRIVER,))])
    execute(probe, ROOT, quick=False)
    line = next(t for o in probe.cells[0].outputs for t in o.get("text", "").splitlines() if t.startswith("PROBE "))
    result = {**json.loads(line[6:]), "lessons": {}, "device": device or "cpu", "load_before": os.getloadavg()[0]}
    if Path(result["executable"]).resolve().parent != Path(sys.executable).resolve().parent:
        raise SystemExit(f"the kernel ran {result['executable']}, not this environment's Python {sys.executable}")
    if device and device.startswith("cuda") and not result["cuda_available"]:
        raise SystemExit("--device cuda, but PyTorch sees no GPU in this environment")
    runs = CACHE / "runs" / Path(sys.prefix).name  # the executed notebooks, to read what went wrong
    runs.mkdir(parents=True, exist_ok=True)
    for lesson in lessons(selected):
        row = result["lessons"].setdefault(lesson, {})
        for kind, folder, quick in (("solution", ROOT / "solutions", False), ("notebook", ROOT / "notebooks", True)):
            if kind not in kinds:
                continue
            path = next(folder.glob(f"{lesson}_*.ipynb"))
            nb = nbformat.read(path, as_version=4)
            print(f"  {kind:8} {path.name} ({'quick' if quick else 'full'}) ...", flush=True)
            start = time.perf_counter()
            try:
                execute(nb, folder, quick)
                found = summarize(nb, quick)
            except CellExecutionError:
                found = summarize(nb, quick)  # the error is in the cell's outputs
            except Exception as err:  # noqa: BLE001 -- a timeout or a dead kernel: record it, go on
                found = {"claims": 0, "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
            nbformat.write(nb, runs / f"{kind}-{path.name}")
            row[kind] = {"ok": "error" not in found, "seconds": round(time.perf_counter() - start, 1), **found}
            print(f"    {'passed' if row[kind]['ok'] else 'FAILED: ' + row[kind]['error']} "
                  f"in {row[kind]['seconds']:.0f} s, {found['claims']} claims held", flush=True)
    result["load_after"] = os.getloadavg()[0]
    out.write_text(json.dumps(result, indent=1))


# ---------------------------------------------------------------------------------------------------
# Without Jupyter: each lesson's text file run as a script (python -m tools.compat --scripts --device cuda)

# Stand-ins for IPython and ipywidgets where they are not installed (a GPU machine with PyTorch alone):
# the widgets are not shown, every other cell runs, every claim is asserted.
STUBS = {
    "ipywidgets.py": "class W:\n def __init__(s, *a, **k): pass\n def __call__(s, *a, **k): return W()\n"
                     " def __getattr__(s, n): return W()\n def __getitem__(s, k): return W()\n"
                     "def __getattr__(n): return W\n",
    "IPython/__init__.py": "version_info = (9, 0, 0)\ndef get_ipython(): return None\n",
    "IPython/display.py": "def display(*a, **k): pass\nclass HTML(str): pass\nclass Markdown(str): pass\n",
}
SUMMARY = re.compile(r"^(\d\d) (full|quick) rc=(-?\d+) (\d+)s held=(\d+) notasserted=(\d+) last=(.*)$")


def parse_summary(text: str) -> dict:
    """Lines ``NN full|quick rc=R Ss held=H notasserted=N last=ERROR`` -> {NN: {"solution"|"notebook": row}}."""
    lessons = {}
    for line in text.splitlines():
        m = SUMMARY.match(line.strip())
        if not m:
            continue
        lesson, kind, rc, seconds, held, skipped, last = m.groups()
        row = {"ok": rc == "0", "seconds": float(seconds), "claims": int(held), "claims_not_asserted": int(skipped)}
        if rc != "0":
            row["error"] = (last.strip() or f"exit status {rc}") if rc != "124" else "timed out"
        lessons.setdefault(lesson, {})["solution" if kind == "full" else "notebook"] = row
    return dict(sorted(lessons.items()))


def run_scripts(selected, device: str | None, timeout: int = 900) -> dict:
    """Run each lesson's text file (solutions/NN_*.py) with this Python, in full and in the quick setting, all
    at once (one thread each), and return a run like run_inside's. Needs no Jupyter package."""
    import concurrent.futures
    import tempfile
    from importlib.util import find_spec

    stubs = Path(tempfile.mkdtemp(prefix="course-stubs-"))
    for name, text in STUBS.items():
        if find_spec(name.split("/")[0].removesuffix(".py")) is None:
            (stubs / name).parent.mkdir(parents=True, exist_ok=True)
            (stubs / name).write_text(text)
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(stubs)}
    if device:
        env["COURSE_DEVICE"] = device

    def one(path: Path, quick: bool) -> str:
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, path.name], cwd=path.parent, capture_output=True, text=True,
                                  timeout=timeout, env={**env, "COURSE_QUICK": "1" if quick else "0"})
            out, rc = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as err:
            out, rc = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or ""), 124
        last = [line for line in out.splitlines() if re.search(r"Error|claims:", line)][-1:] if rc else []
        return (f"{path.name[:2]} {'quick' if quick else 'full'} rc={rc} {time.perf_counter() - start:.0f}s "
                f"held={out.count(CLAIM_HOLDS)} notasserted={out.count(NOT_CHECKED)} last={''.join(last)[:300]}")

    paths = [next((ROOT / "solutions").glob(f"{n}_*.py")) for n in lessons(selected)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        lines = list(pool.map(lambda job: one(*job), [(p, q) for p in paths for q in (False, True)]))
    import torch

    versions = {name: _installed(name) for name in LIBRARIES + DRIVER}
    return {"python": platform.python_version(), "torch_cuda": torch.version.cuda, "device": device or "cpu",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "versions": versions,
            "load_before": None, "load_after": None, "lessons": parse_summary("\n".join(lines)), "summary": lines}


def _installed(name: str):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------
# The record

def record_key(stack: str, device: str) -> str:
    return stack if device == "cpu" else f"{stack} ({device})"


def merge(data: dict, stack: str, run: dict, when: str, command: str) -> dict:
    """Put one run into the record. Lessons of an earlier run are kept only if it had the same versions
    on the same device (a partial rerun); the other stacks' records are never touched."""
    key = record_key(stack, run["device"])
    old = data.setdefault("stacks", {}).get(key)
    same = old and old["versions"] == run["versions"] and old["python"] == run["python"]
    lessons = dict(old["lessons"]) if same else {}
    for lesson, row in run["lessons"].items():
        lessons[lesson] = {**lessons.get(lesson, {}), **row, "date": when}
    data["stacks"][key] = {"stack": stack, "date": when, "command": command, "python": run["python"],
                           "versions": run["versions"], "torch_cuda": run["torch_cuda"], "device": run["device"],
                           "cpu_capability": run["cpu_capability"], "machine": run.get("machine", ""),
                           "load": [run.get("load_before"), run.get("load_after")], "lessons": dict(sorted(lessons.items()))}
    if run.get("note"):
        data["stacks"][key]["note"] = run["note"]
    return data


def load() -> dict:
    return json.loads(DATA.read_text()) if DATA.exists() else {"stacks": {}}


SOURCES = """\
## Where the stacks come from

* **colab**: the newest copy of `pip-freeze.gpu.txt` in
  [googlecolab/backend-info](https://github.com/googlecolab/backend-info) that we could read (commit
  `03a89033`, dated by its own package versions to about June 2026: `astropy-iers-data==0.2026.6.1...`,
  `certifi==2026.5.20`): Python 3.12 (its wheels are `cp312`), `torch==2.11.0+cu128`, `numpy==2.0.2`,
  `matplotlib==3.10.0`, `ipywidgets==7.7.1`, `ipython==7.34.0`, `ipykernel==6.17.1`, `tqdm==4.67.3`,
  `jupyter_client==7.4.9`, `nbformat==5.10.4`, `nbclient==0.10.4`, `traitlets==5.7.1`,
  `matplotlib-inline==0.2.2`. Colab's upgrade to torch 2.12 was still open
  ([googlecolab/colabtools#5982](https://github.com/googlecolab/colabtools/issues/5982): PyTorch no longer
  builds for CUDA 12.8, which Colab uses). PyPI's `torch==2.11.0` is the CUDA 13.0 build (Colab's `+cu128`
  build is on download.pytorch.org, which this machine cannot reach): the same code with other CUDA
  libraries; without a GPU both run PyTorch's CPU kernels.
* **oldest**: the copy before it (commit `4647a1df`, about 2026-02-23 by `astropy-iers-data==0.2026.2.23...`):
  the same but `torch==2.10.0+cu128` and `matplotlib-inline==0.2.1`. Colab offers the runtime before an
  upgrade as its "fallback runtime" for some weeks, so the course promises it too. Each library's oldest
  version in utils/versions.py is this stack's.
* **Python**: this machine has Python 3.11 only (Debian 12 has no other), so every stack runs on 3.11; Colab
  runs 3.12, which no run here has covered yet.
* **newest**: `pip install` of each library with no version; this machine's pip is capped at `torch<=2.14.1`
  (`/etc/xdg/pip`), while PyPI already serves torch 2.15.0, which no run has covered yet.
* **binder**: `binder/environment.yml`'s pins, installed with pip from PyPI (the CPU wheel of torch 2.13.0;
  conda-forge's is built by conda-forge with its own BLAS), which cannot reach conda-forge from here. How we
  know the pins exist on conda-forge, without reaching it:
  * `pytorch=2.13.0=cpu_*`: conda-forge started its pytorch 2.13 migration on 2026-07-27
    ([conda-forge-pinning-feedstock#8780](https://github.com/conda-forge/conda-forge-pinning-feedstock/pull/8780),
    `recipe/migrations/pytorch213.yaml`; a migration rebuilds other packages against a PyTorch that is
    already on the channel) and closed the 2.12 one on 2026-08-07 (#8825); conda solves recorded in
    public repositories resolve `pytorch-2.13.0-cpu_mkl_py314_h0071e89_104` on linux-64 and
    `pytorch-2.13.0-cpu_generic_py313_h77e59b0_2` on linux-aarch64 from conda-forge.
  * `numpy=2.4.6`, `matplotlib=3.11.2`, `tqdm=4.70.1`: conda solves in public repositories list
    `conda-forge/linux-64::numpy-2.4.6-py311h2e04523_0`, `matplotlib-base-3.11.2` (`py314h9124352_0`) and
    `conda-forge/noarch::tqdm-4.70.1-pyhfa0c392_0`.
  * `ipywidgets`, `jupyterlab`, `ipykernel`: we found no record of the exact newest releases (8.1.9, 4.6.6,
    7.4.0) on conda-forge, so Binder pins their release series (`ipywidgets=8.1`, `jupyterlab=4.6`,
    `ipykernel=7.4`: the newest of each that conda-forge has), which the Jupyter projects' own maintainers
    publish there; the `binder` stack installs the newest of each series from PyPI.
* **pinned**: `requirements.txt`'s learners' part (JupyterLab left out: nbclient runs the notebooks).
"""

CUDA = """\
## CUDA

{status}

The lessons run on the CPU by default, even where a GPU exists (`utils.device()`; the setup cell's
output says when a GPU is there but unused), because every claim was calibrated and is tested on the CPU.
`COURSE_DEVICE=cuda` opts in. To record a CUDA run on a machine with a GPU and the Jupyter packages:
`python -m tools.compat colab --device cuda` (every kernel gets `COURSE_DEVICE=cuda`; it stops at once if
PyTorch sees no GPU). On one with PyTorch alone: `python -m tools.compat --scripts cuda.json --device cuda`
there (each lesson's text file as a script, in full and quick, IPython and ipywidgets replaced by stand-ins
if missing), then `python -m tools.compat --import cuda.json` here. A claim that fails on CUDA but holds on
the CPU must then be stated as CPU-specific in its lesson and skipped on CUDA with a note. The timing
experiments of lessons 04, 05 and 09 measure on the CPU whatever the device.
"""


def render(data: dict) -> str:
    """benchmarks/compat.md, from the record."""
    import runpy

    versions = runpy.run_path(str(ROOT / "utils" / "versions.py"))
    order = list(stacks())
    records = sorted(data.get("stacks", {}).items(),
                     key=lambda kv: (order.index(kv[1]["stack"]) if kv[1]["stack"] in order else 99, kv[0]))
    lines = ["# The lessons on other library versions", "",
             "Written by `python -m tools.compat` from `benchmarks/compat.json` (do not edit by hand). Each stack's",
             "lessons ran in a throw-away virtual environment: the solution notebooks in full, with every claim",
             "asserted, and the exercise notebooks unfilled in the quick setting (`COURSE_QUICK=1`). Times are wall",
             "clock on a shared 2-core machine (the load average is given): compare them with care.", "",
             "## The supported range (utils/versions.py)", "",
             "| library | oldest | newest tested series |", "|---|---|---|"]
    for name, (oldest, newest, _) in versions["SUPPORTED"].items():
        lines.append(f"| {name} | {oldest} | {newest + '.x' if newest else 'no upper limit checked'} |")
    for name, (version, why) in versions["UNTESTED"].items():
        lines += ["", f"Not run yet inside the range: {name} {version} ({why})."]
    lines += ["", "## Results", ""]
    if not records:
        lines.append("No stack has been run yet.")
    else:
        names = [key for key, _ in records]
        lines += ["Each cell: the solution notebook in full / the exercise notebook in the quick setting "
                  "(✅ passed, ❌ failed, · not run), with their run times.", "",
                  "| lesson | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        every = sorted({lesson for _, rec in records for lesson in rec["lessons"]})
        for lesson in every:
            cells = []
            for _, rec in records:
                row = rec["lessons"].get(lesson, {})
                cells.append(" / ".join(_mark(row.get(kind)) for kind in ("solution", "notebook")))
            lines.append(f"| {lesson} | " + " | ".join(cells) + " |")
        for key, rec in records:
            lines += ["", f"### {key}", "", f"{stacks().get(rec['stack'], {}).get('about', '')}.", "",
                      f"* last run: {rec['date']}, `{rec['command']}`",
                      f"* Python {rec['python']}; torch's CUDA build: {rec['torch_cuda'] or 'none (CPU build)'}; "
                      f"ran on: {rec['device'].upper()}; CPU kernels: {rec['cpu_capability']}"
                      + (f"; load average {rec['load'][0]:.1f} before, {rec['load'][1]:.1f} after" if None not in rec["load"] else ""),
                      *([f"* {rec['note']}"] if rec.get("note") else []),
                      "* versions the kernel imported: " + ", ".join(
                          f"{n} {rec['versions'][n]}" for n in sorted(rec["versions"], key=_order) if rec["versions"][n]),
                      "", "| lesson | solution (full) | claims held | exercise notebook (quick) | problem |",
                      "|---|---|---|---|---|"]
            for lesson, row in rec["lessons"].items():
                sol, ex = row.get("solution"), row.get("notebook")
                problem = "; ".join([f"{kind}: {r['error']}" for kind, r in (("solution", sol), ("notebook", ex))
                                     if r and r.get("error")]
                                    + ([f"the setup cell said: {sol['version_check']}"] if sol and sol.get("version_check") else []))
                problem = " ".join(problem.split()).replace("|", "\\|")  # one line of a table
                lines.append(f"| {lesson} | {_mark(sol)} | {sol.get('claims', '') if sol else ''} | {_mark(ex)} | {problem} |")
    cuda = [key for key, rec in records if rec["device"] != "cpu"]
    status = (f"CUDA runs recorded: {', '.join(cuda)} (above)." if cuda else
              "**No lesson has been run on CUDA yet**: no GPU machine was available to the sessions that built "
              "this tool.")
    for key in cuda:
        rec = data["stacks"][key]
        passed = [n for n, row in rec["lessons"].items() if all(row[k]["ok"] for k in ("solution", "notebook") if k in row)]
        failed = [n for n in rec["lessons"] if n not in passed]
        status += (f" In `{key}`, lessons {', '.join(passed) or 'none'} passed on {rec['device'].upper()} with every claim"
                   + (f"; {', '.join(failed)} failed (see the table above)" if failed else "") + ".")
        if rec.get("note"):
            status += " " + rec["note"]
    lines += ["", SOURCES.rstrip(), "", CUDA.format(status=status).rstrip(), ""]
    return "\n".join(lines)


def _order(name: str):
    known = (*LIBRARIES, *DRIVER)
    return (known.index(name) if name in known else len(known), name)


def _mark(row) -> str:
    if not row:
        return "·"
    return f"{'✅' if row['ok'] else '❌'} {row['seconds']:.0f} s"


def write(data: dict) -> None:
    DATA.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    OUT.write_text(render(data))


# ---------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="*", help=f"stacks to run: {', '.join(stacks())}")
    parser.add_argument("--lessons", nargs="+", default=(), metavar="NN", help="only these lessons (default: all)")
    parser.add_argument("--only", choices=("solution", "notebook"), help="only the solution notebooks, or only the exercise notebooks")
    parser.add_argument("--device", help="run the lessons on this device (COURSE_DEVICE), e.g. cuda")
    parser.add_argument("--fresh", action="store_true", help="rebuild the environments even if their requirements are unchanged")
    parser.add_argument("--list", action="store_true", help="list the stacks and their requirements")
    parser.add_argument("--render", action="store_true", help="only rewrite benchmarks/compat.md from benchmarks/compat.json")
    parser.add_argument("--clean", action="store_true", help=f"delete {CACHE} (the environments and the executed notebooks)")
    parser.add_argument("--scripts", metavar="REPORT", type=Path,
                        help="run each lesson's text file with this Python (no Jupyter needed, e.g. on a GPU machine) "
                             "and write the run to REPORT, for --import")
    parser.add_argument("--import", dest="import_", metavar="REPORT", type=Path,
                        help="record a --scripts run (made here or elsewhere) in benchmarks/compat.json as stack 'scripts'")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # run in the environment, write a JSON report
    args = parser.parse_args(argv)
    kinds = (args.only,) if args.only else ("solution", "notebook")
    if args.inside:
        run_inside(args.inside, args.lessons, kinds, args.device)
        return 0
    if args.scripts:
        run = run_scripts(args.lessons, args.device)
        args.scripts.write_text(json.dumps(run, indent=1))
        print("\n".join(run["summary"]))
        return 0
    if args.import_:
        run = json.loads(args.import_.read_text())
        write(merge(load(), "scripts", run, run.get("date", datetime.date.today().isoformat()),
                    run.get("command", f"python -m tools.compat --scripts REPORT --device {run['device']}")))
        print(f"recorded: {record_key('scripts', run['device'])}")
        return 0
    if args.list:
        for name, stack in stacks().items():
            print(f"{name}: {stack['about']}\n    {' '.join(requirements(name)) or '(this Python, as it is)'}")
        return 0
    if args.clean:
        shutil.rmtree(CACHE, ignore_errors=True)
        print(f"deleted {CACHE}")
        return 0
    if args.render:
        write(load())
        return 0
    runnable = [name for name, stack in stacks().items() if stack["pins"] is not None]
    unknown = [s for s in args.stacks if s not in runnable]
    if unknown or not args.stacks:
        parser.error(f"name one or more stacks of: {', '.join(runnable)}" + (f" (not {', '.join(unknown)})" if unknown else "")
                     + " (the 'scripts' record is made with --scripts and --import)")
    missing = [n for n in args.lessons if n not in lessons()]
    if missing:
        parser.error(f"no lesson {', '.join(missing)}: the lessons are {', '.join(lessons())}")
    failed = 0
    for stack in args.stacks:
        venv = environment(stack, fresh=args.fresh)
        report = CACHE / f"{stack}-report.json"
        report.unlink(missing_ok=True)
        cmd = [str(venv / "bin" / "python"), "-m", "tools.compat", "--inside", str(report),
               *(["--lessons", *args.lessons] if args.lessons else []), *(["--only", args.only] if args.only else []),
               *(["--device", args.device] if args.device else [])]
        print(f"[{stack}] running the lessons in {venv}", flush=True)
        done = subprocess.run(cmd, cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        if done.returncode or not report.exists():
            print(f"[{stack}] the run stopped before its report (exit {done.returncode})")
            failed += 1
            continue
        run = json.loads(report.read_text())
        run["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
        command = "python -m tools.compat " + " ".join([stack, *(["--lessons", *args.lessons] if args.lessons else []),
                                                         *(["--only", args.only] if args.only else []),
                                                         *(["--device", args.device] if args.device else [])])
        data = merge(load(), stack, run, datetime.date.today().isoformat(), command)
        write(data)
        bad = [f"{n} {k}" for n, row in run["lessons"].items() for k, r in row.items() if not r["ok"]]
        failed += bool(bad)
        print(f"[{stack}] {'every lesson passed' if not bad else 'FAILED: ' + ', '.join(bad)}; "
              f"{OUT.relative_to(ROOT)} updated")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

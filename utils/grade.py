"""Grade a class's submissions outside the notebook, with the course's own checks.

    python -m utils.grade PATH... --out DIR [--lesson NN] [--timeout S] [--cell-timeout S] [--jobs N]

PATH is a learner's notebook or a folder of them (searched recursively; any lesson, mixed).
In nbgrader's words: the *assignment* is a lesson's exercise notebook, a *submission* is a
learner's copy of it, and the *feedback* is what the learner reads back. The command writes

* ``DIR/gradebook.csv``: one row per learner and notebook; the columns ``learner``,
  ``notebook``, ``lesson``, ``status`` (``graded`` or ``not graded``), one column per exercise
  id (``pass`` / ``fail`` / ``not attempted``), ``score`` (exercises passed / exercises) and
  ``problem`` (why a notebook was not graded, or what went wrong in it);
* ``DIR/gradebook.json``: the same, with every diagnosis in full;
* ``DIR/feedback/<learner>.md``: each learner's feedback, with the same diagnoses that
  ``utils.check`` gives in the notebook.

It exits with 1 when a notebook could not be graded, and says why (2 for a usage error).

How a submission is graded
--------------------------
Learner code is untrusted, so it never runs in this process: each notebook gets a fresh
Jupyter kernel, started in an empty temporary folder (so nothing is written next to the
learners' files), with the course's ``utils`` from this repository imported first (a copy of
``utils`` in the learner's folder is never used). The grader then runs, in notebook order:

1. the notebook's *definitions*: from every code cell, its top-level imports, ``def`` and
   ``class`` statements and assignments that call nothing (``PAD = 0``, ``f = g``); every other
   statement (training, plots, prints, ``utils.use``, shell and magic commands) is replaced by
   an empty comment line, so line numbers, and so the diagnoses, are those of the notebook. This is
   what makes grading fast: no model is trained;
2. at each exercise's check cell ``utils.check("NN.k", candidate)``, the course's own
   ``utils.check`` on the candidate that cell names, in the kernel, at that point of the
   notebook; its verdict and message are sent back. The exercise's check cell is the one that
   names the candidate the course's exercise notebook names (the last such cell, if the learner
   checks twice; a lesson may also check a deliberately wrong variant to show a diagnosis, and
   that check is not the learner's grade), else the first check of that id. The grade is therefore the verdict the learner sees in the notebook
   for the same code. An exercise whose check cell was deleted is checked at the end, with the
   candidate the course's exercise notebook names.

Each cell has a time limit (``--cell-timeout``) and the notebook one in all (``--timeout``). A
check that does not finish (an endless loop) or that kills the kernel (``os._exit``, a crash) is
a ``fail`` with that reason; the grader restarts a kernel and goes on with the other exercises.
A notebook that is not valid JSON, that belongs to another lesson than ``--lesson``, or to
another version of the course (its exercise ids differ from the course's) is ``not graded``,
with the reason, and the rest of the class is graded.

The learner's name is, in this order: the folder under ``submitted/`` in nbgrader's layout
(``submitted/<learner>/<assignment>/<notebook>.ipynb``); else the first folder under the PATH
given (one folder per learner: ``class/alice/01_lstm_bottleneck.ipynb``); else the file name
without the lesson's name (``class/alice_01_lstm_bottleneck.ipynb`` and ``class/alice.ipynb``
are both ``alice``).

Limits: the kernel runs with the grader's user rights. It keeps a learner's mistakes and
crashes away from the grader and from the other learners, but it is not a sandbox against
deliberate harm: grade as a user who cannot write the submissions, or in a container.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIME = "application/vnd.course.check+json"  # how the kernel sends a verdict back
STATUSES = ("pass", "fail", "not attempted")
MAX_BYTES = 50_000_000  # a notebook larger than this is not read

_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']""")
_ANSWER_ID = re.compile(r"^ex(\d\d)_(\d+)(?:_\d+)?$")


# =============================================================== kernel side
def _kernel_check(id: str, thunk) -> None:
    """Run in the learner's kernel: check ``thunk()`` for exercise ``id`` and send the verdict back."""
    from IPython.display import display

    from utils.exercises import check

    try:
        candidate = thunk()
    except NameError as err:
        verdict = {"id": id, "undefined": getattr(err, "name", None) or str(err)}
    except BaseException as err:  # noqa: BLE001 -- the candidate expression itself failed
        verdict = {"id": id, "status": "fail", "message": f"Evaluating the checked expression raised {type(err).__name__}: {err}"}
    else:
        result = check(id, candidate)
        verdict = {"id": id, "status": result.status, "message": result.message, "title": result.title}
    display({MIME: verdict}, raw=True)


# =============================================================== reading a notebook
def _is_cheap(node) -> bool:
    """A constant, a name, a lambda, or constants combined: ``1e-9``, ``(4, 8)``, ``-1``, ``nn.Module``, ``f``."""
    if isinstance(node, (ast.Lambda, ast.Constant, ast.Name, ast.Attribute)):
        return isinstance(node, ast.Lambda) or all(isinstance(n, (ast.Name, ast.Attribute, ast.Constant, ast.expr_context))
                                                   for n in ast.walk(node))
    if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        return all(_is_cheap(child) for child in ast.iter_child_nodes(node) if not isinstance(child, ast.expr_context))
    if isinstance(node, (ast.UnaryOp, ast.BinOp)):  # -1, 2 ** 10, but not test.tgt != PAD
        return all(isinstance(n, (ast.Constant, ast.operator, ast.unaryop)) or n is node for n in ast.walk(node))
    return False


def _is_definition(stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(stmt, ast.Assign):
        return _is_cheap(stmt.value) and all(isinstance(t, ast.Name) or (isinstance(t, ast.Tuple) and all(
            isinstance(e, ast.Name) for e in t.elts)) for t in stmt.targets)
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and (stmt.value is None or _is_cheap(stmt.value))
    return False


def _python(source: str) -> str:
    """IPython's magics and shell escapes turned into Python, line for line."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001
        return source


def definitions(source: str) -> str:
    """``source`` with every top-level statement that is not a definition commented out (as ``#``).

    Line numbers are kept, so that a diagnosis names the learner's own line. A cell that is not
    valid Python is returned whole: running it reports the learner's SyntaxError.
    """
    if source.lstrip().startswith("%%"):  # a cell magic (%%time, %%capture): grade the Python under it
        first, _, rest = source.lstrip("\n").partition("\n")
        source = "#\n" + rest
    code = _python(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    drop = [False] * len(lines)
    for stmt in tree.body:
        if not _is_definition(stmt):
            for i in range(stmt.lineno - 1, stmt.end_lineno):
                drop[i] = True
    # A dropped line becomes "#", not "": IPython strips a cell's leading blank lines, which would shift the rest.
    kept = "\n".join("#" if drop[i] else line for i, line in enumerate(lines)).rstrip()
    try:
        ast.parse(kept)
    except SyntaxError:  # a definition shared a line with a statement (`x = f(); import y`)
        return ""
    return kept


@dataclass
class CheckCall:
    id: str
    expr: str | None  # the candidate expression, e.g. "Encoder"


def check_calls(source: str) -> list[CheckCall]:
    """The ``utils.check("NN.k", candidate)`` calls of a cell, in order."""
    if not _CHECK_CALL.search(source):
        return []
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return [CheckCall(id, None) for id in _CHECK_CALL.findall(source)]
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "check"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and re.fullmatch(r"\d\d\.\d+", node.args[0].value)):
            expr = ast.unparse(node.args[1]) if len(node.args) > 1 else None
            calls.append((node.lineno, node.col_offset, CheckCall(node.args[0].value, expr)))
    return [call for *_, call in sorted(calls, key=lambda c: c[:2])]


def answer_id(cell) -> str | None:
    """The exercise id of an answer cell, from the nbgrader metadata the generator writes."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    m = _ANSWER_ID.match(str(meta.get("grade_id", ""))) if meta.get("solution") else None
    return f"{m.group(1)}.{m.group(2)}" if m else None


def course_assignments() -> dict[str, tuple[str, list[CheckCall]]]:
    """Lesson -> (notebook name, its check calls in order), from the course's exercise notebooks."""
    import nbformat

    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 -- a lesson being rewritten must not stop the grading of the others
            continue
        calls = [c for cell in nb.cells if cell.cell_type == "code" for c in check_calls(cell.source)]
        out[path.name[:2]] = (path.stem, calls)
    return out


def course_ids(lesson: str) -> list[str]:
    """The exercise ids of ``lesson`` in this version of the course (only that lesson's checks are loaded)."""
    import importlib

    from utils import exercises

    try:
        importlib.import_module(f"utils.exercises.lesson{lesson}")
    except ModuleNotFoundError:
        return []
    return sorted((i for i in exercises._REGISTRY if i.startswith(lesson + ".")), key=_id_key)


def _title(id: str) -> str:
    from utils.exercises import get

    try:
        return get(id).title
    except Exception:  # noqa: BLE001
        return ""


def _id_key(id: str):
    lesson, k = id.split(".")
    return int(lesson), int(k)


# =============================================================== the kernel
@dataclass
class Outcome:
    state: str  # "ok", "error", "timeout", "died"
    error: str = ""
    verdicts: list = field(default_factory=list)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Kernel:
    """A fresh IPython kernel in an empty folder; ``run`` executes code with a time limit."""

    def __init__(self, startup_timeout: float):
        from jupyter_client import KernelManager

        self.folder = tempfile.mkdtemp(prefix="course-grade-")
        env = dict(os.environ, COURSE_QUICK="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=str(ROOT), PYDEVD_DISABLE_FILE_VALIDATION="1")
        self.devnull = open(os.devnull, "w")  # the kernel's own stdout and stderr
        try:
            self.km = KernelManager(kernel_name="python3")
            self.km.start_kernel(cwd=self.folder, env=env, stdout=self.devnull, stderr=self.devnull)
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=startup_timeout)
        except BaseException:
            self.close()
            raise

    def run(self, code: str, timeout: float) -> Outcome:
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + max(timeout, 0.1)
        outcome = Outcome("ok")
        last_alive_check = time.monotonic()
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                now = time.monotonic()
                if now - last_alive_check > 0.5:
                    last_alive_check = now
                    if not self.km.is_alive():
                        return Outcome("died", verdicts=outcome.verdicts)
                if now > deadline:
                    return Outcome("timeout", verdicts=outcome.verdicts)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "error":
                outcome.state = "error"
                outcome.error = f"{content.get('ename', 'Error')}: {_ANSI.sub('', content.get('evalue', ''))}".strip()
            elif kind == "display_data" and MIME in content.get("data", {}):
                outcome.verdicts.append(content["data"][MIME])
            elif kind == "status" and content.get("execution_state") == "idle":
                return outcome

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        except Exception:  # noqa: BLE001
            pass
        try:
            self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001
            pass
        self.devnull.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# =============================================================== grading one notebook
@dataclass
class Row:
    learner: str
    notebook: str
    lesson: str = ""
    status: str = "not graded"
    results: dict = field(default_factory=dict)  # id -> {"status", "message", "title"}
    problem: str = ""
    seconds: float = 0.0

    @property
    def score(self) -> str:
        if self.status != "graded":
            return ""
        return f"{sum(r['status'] == 'pass' for r in self.results.values())}/{len(self.results)}"


@dataclass
class Step:
    cell: int  # index among the notebook's cells
    code: str = ""  # definitions to run
    check: CheckCall | None = None
    answer_of: str | None = None  # the exercise this cell answers, if marked


@dataclass
class Options:
    timeout: float = 300.0
    cell_timeout: float = 60.0
    startup_timeout: float = 120.0
    lesson: str | None = None


def _read(path: Path):
    """The notebook, or raise ValueError with a reason a person understands."""
    import nbformat

    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"the file is {size / 1e6:.0f} MB, larger than a notebook of this course can be")
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not a valid notebook: the file is not valid JSON ({err.msg} at line {err.lineno}, "
                         f"column {err.colno}); was it saved completely?") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"not a valid notebook: {str(err).splitlines()[0][:200]}") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError("not a valid notebook: it has no cells")
    return nb


def plan(nb, assignment_calls: list[CheckCall], ids: list[str]) -> list[Step]:
    """What to run in the kernel, in order, for a notebook whose lesson has exercises ``ids``."""
    steps = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        code = definitions(source)
        if any(line.strip() and not line.lstrip().startswith("#") for line in code.splitlines()):
            steps.append(Step(i, code=code, answer_of=answer_id(cell)))
        steps += [Step(i, check=call) for call in check_calls(source) if call.id in ids]
    # The exercise's own check is the one that names what the assignment's check cell names (a lesson
    # may also check a deliberately wrong variant, to show a diagnosis); if the learner checks it
    # twice, the last one grades their final answer. Failing that, the first check of the id.
    by_id = {}
    for call in assignment_calls:
        by_id.setdefault(call.id, call)
    chosen = {}
    for k, step in enumerate(steps):
        if step.check:
            id = step.check.id
            wanted = by_id.get(id)
            if wanted and step.check.expr == wanted.expr:
                chosen[id] = k  # the last that names the assignment's candidate
            elif id not in chosen and not any(s.check and s.check.id == id and s.check.expr == getattr(wanted, "expr", None)
                                              for s in steps):
                chosen[id] = k  # no check names it: the first check of the id
    steps = [step for k, step in enumerate(steps) if not step.check or chosen.get(step.check.id) == k]
    seen = set(chosen)
    for id in ids:  # a check cell the learner deleted: check at the end, as the assignment names it
        if id not in seen:
            steps.append(Step(len(nb.cells), check=by_id.get(id, CheckCall(id, None))))
    for step in steps:
        if step.check and step.check.expr is None and step.check.id in by_id:
            step.check = by_id[step.check.id]
    return steps


def _lesson_of(nb, path: Path) -> tuple[str | None, list[str]]:
    """(lesson, the exercise ids its check cells name) of a learner's notebook."""
    ids = []
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            ids += [c for c in _CHECK_CALL.findall(source) if c not in ids]
            if answer_id(cell) and answer_id(cell) not in ids:
                ids.append(answer_id(cell))
    lessons = sorted({i[:2] for i in ids})
    if len(lessons) == 1:
        return lessons[0], ids
    if not lessons and re.match(r"\d\d_", path.name):
        return path.name[:2], ids
    return (max(lessons, key=lambda l: sum(i.startswith(l) for i in ids)) if lessons else None), ids


def grade_notebook(path: Path, learner: str, shown: str, options: Options, assignments: dict) -> Row:
    row = Row(learner, shown)
    start = time.monotonic()
    try:
        nb = _read(path)
    except (OSError, ValueError) as err:
        row.problem = str(err)
        return row
    lesson, found = _lesson_of(nb, path)
    if lesson is None:
        row.problem = "not a notebook of this course: it has no `utils.check(\"NN.k\", ...)` cell"
        return row
    row.lesson = lesson
    if options.lesson and lesson != options.lesson:
        row.problem = (f"this is a notebook of lesson {lesson}, not of the assignment (lesson {options.lesson}): "
                       "was the wrong file submitted?")
        return row
    ids = course_ids(lesson)
    if not ids:
        row.problem = f"lesson {lesson} has no exercises in this version of the course"
        return row
    unknown = [i for i in found if i not in ids]
    if unknown:
        row.problem = (f"from another version of the course: it has exercise(s) {', '.join(unknown)}, but lesson {lesson} "
                       f"of this version has {', '.join(ids)}. Ask the learner to copy their answers into the current "
                       "notebook.")
        return row
    steps = plan(nb, assignments.get(lesson, ("", []))[1], ids)
    deadline = start + options.timeout
    failed_cells: dict[int, str] = {}  # cell index -> why it did not run
    skip: set[int] = set()  # steps not to run again in a fresh kernel
    lost_cells: set[int] = set()  # cells that looped or killed the kernel

    def undefined_message(step_index: int, name: str, id: str) -> tuple[str, str]:
        earlier = [steps[j] for j in range(step_index) if steps[j].cell in failed_cells]
        mine = [s for s in earlier if s.answer_of == id] or [s for s in earlier if name and re.search(
            rf"\b(def|class)\s+{re.escape(name)}\b|\b{re.escape(name)}\s*=", s.code)]
        if mine:
            return "fail", f"`{name}` is not defined, because the cell that defines it did not run: {failed_cells[mine[-1].cell]}"
        return "not attempted", f"`{name}` is not defined in this notebook: write it (or run its cell) before checking it."

    while True:  # one pass per kernel; a kernel lost to a learner's code is replaced
        if time.monotonic() > deadline:
            break
        try:
            kernel = Kernel(options.startup_timeout)
        except Exception as err:  # noqa: BLE001
            row.problem = f"the grader could not start a Python kernel: {type(err).__name__}: {err}"
            row.seconds = time.monotonic() - start
            return row
        try:
            boot = kernel.run(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport utils, utils.exercises\n"
                              f"from utils.grade import _kernel_check as __course_check__\n"
                              f"utils.seed_everything(0)\nfor _id in {ids!r}: utils.exercises.get(_id)\n",
                              max(5.0, min(options.startup_timeout, deadline - time.monotonic())))
            if boot.state != "ok":
                row.problem = f"the course's code did not load in the kernel ({boot.state}: {boot.error})"
                row.seconds = time.monotonic() - start
                return row
            lost = False
            for k, step in enumerate(steps):
                if k in skip or (step.check and step.check.id in row.results):
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                limit = min(options.cell_timeout, remaining)
                if step.check:
                    id, expr = step.check.id, step.check.expr
                    if expr is None:
                        row.results[id] = {"status": "not attempted", "message": "There is no check cell for this exercise, "
                                           "and the grader does not know what to check.", "title": _title(id)}
                        continue
                    out = kernel.run(f"__course_check__({id!r}, lambda: ({expr}))", limit)
                    verdict = out.verdicts[-1] if out.verdicts else None
                    if out.state in ("timeout", "died") or verdict is None:
                        why = {"timeout": f"checking your code did not finish within {limit:.0f} s: is there an endless loop?",
                               "died": "checking your code stopped the Python process (os._exit, or a crash): "
                                       "nothing after it could run."}.get(out.state, f"the check could not run: {out.error}")
                        row.results[id] = {"status": "fail", "message": why[0].upper() + why[1:], "title": _title(id)}
                        skip.add(k)
                        if out.state in ("timeout", "died"):
                            lost = True
                            break
                        continue
                    if "undefined" in verdict:
                        status, message = undefined_message(k, verdict["undefined"], id)
                        verdict = {"status": status, "message": message, "title": _title(id)}
                    row.results[id] = {key: verdict.get(key, "") for key in ("status", "message", "title")}
                else:
                    out = kernel.run(step.code, limit)
                    if out.state == "ok":
                        failed_cells.pop(step.cell, None)
                        continue
                    failed_cells[step.cell] = {
                        "timeout": f"it did not finish within {limit:.0f} s (an endless loop?)",
                        "died": "it stopped the Python process (os._exit, or a crash)",
                    }.get(out.state, out.error)
                    if out.state in ("timeout", "died"):
                        skip.add(k)
                        lost_cells.add(step.cell)
                        lost = True
                        break
        finally:
            kernel.close()
        if not lost:
            break
    row.seconds = time.monotonic() - start
    missing = [i for i in ids if i not in row.results]
    if missing:
        row.problem = (f"the notebook's time limit ({options.timeout:.0f} s) ran out before exercise(s) "
                       f"{', '.join(missing)} could be checked")
        return row
    row.status = "graded"
    # Worth the instructor's attention: an answer cell that failed, or any cell that looped or crashed
    # (a definition that merely needs a skipped computation fails harmlessly).
    answers = {step.cell for step in steps if step.answer_of}
    troubles = [f"cell {c + 1}: {why}" for c, why in sorted(failed_cells.items())
                if c in answers or c in lost_cells]
    row.problem = "; ".join(troubles)[:500]
    return row


# =============================================================== a class
def find_notebooks(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(notebook, the PATH it was found under), sorted, without Jupyter's checkpoints."""
    found = []
    for given in paths:
        if given.is_dir():
            for nb in sorted(given.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in nb.parts and nb.is_file():
                    found.append((nb, given))
        else:
            found.append((given, given.parent))
    return found


def learner_name(path: Path, given: Path, lesson_names: list[str]) -> str:
    """See the module's docstring: nbgrader's ``submitted/<learner>/``, the learner's folder, or the file name."""
    parts = path.resolve().parts
    if "submitted" in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index("submitted")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    try:
        rel = path.resolve().relative_to(given.resolve())
    except ValueError:
        rel = Path(path.name)
    if len(rel.parts) > 1:
        return rel.parts[0]
    stem = path.stem
    for name in sorted(lesson_names, key=len, reverse=True):
        if name in stem and stem != name:
            stem = stem.replace(name, "")
            break
    return stem.strip(" _-.") or path.stem


def feedback(learner: str, rows: list[Row]) -> str:
    """A learner's feedback, in Markdown: each notebook, each exercise, the diagnosis."""
    from utils.exercises import CheckResult

    lines = [f"# Feedback for {learner}", ""]
    for row in rows:
        lesson = f"assignment: lesson {row.lesson}" if row.lesson else "assignment unknown"
        lines += [f"## Submission `{row.notebook}` ({lesson})", ""]
        if row.status != "graded":
            lines += [f"**Not graded:** {row.problem}", ""]
            continue
        lines += [f"**Score: {row.score}** exercises passed.", ""]
        for id in sorted(row.results, key=_id_key):
            r = row.results[id]
            text = repr(CheckResult(id, r["status"], r["message"], r.get("title", "")))
            heading, _, message = text.partition("\n")
            lines += [f"### {heading}", "", *(f"    {line}" if line else "" for line in message.splitlines()), ""]
        if row.problem:
            lines += [f"_Note: {row.problem}_", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(rows: list[Row], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted({i for row in rows for i in row.results} | {i for row in rows if row.status == "graded"
                                                               for i in course_ids(row.lesson)}, key=_id_key)
    with open(out / "gradebook.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", "notebook", "lesson", "status", *ids, "score", "problem"])
        for row in rows:
            writer.writerow([row.learner, row.notebook, row.lesson, row.status,
                             *(row.results.get(i, {}).get("status", "") for i in ids), row.score, row.problem])
    (out / "gradebook.json").write_text(json.dumps(
        [{"learner": r.learner, "notebook": r.notebook, "lesson": r.lesson, "status": r.status, "score": r.score,
          "problem": r.problem, "seconds": round(r.seconds, 1), "exercises": r.results} for r in rows],
        indent=1, ensure_ascii=False) + "\n")
    folder = out / "feedback"
    folder.mkdir(exist_ok=True)
    by_learner: dict[str, list[Row]] = {}
    for row in rows:
        by_learner.setdefault(row.learner, []).append(row)
    for learner, learner_rows in by_learner.items():
        safe = re.sub(r"[^\w.-]+", "_", learner).strip("._") or "learner"
        (folder / f"{safe}.md").write_text(feedback(learner, learner_rows))


def grade(paths: list[Path], out: Path, options: Options, jobs: int = 2, log=print) -> list[Row]:
    """Grade every notebook under ``paths`` and write the gradebook and feedback to ``out``."""
    assignments = course_assignments()
    names = [name for name, _ in assignments.values()]
    found = find_notebooks(paths)
    out_resolved = out.resolve()
    found = [(nb, given) for nb, given in found if out_resolved not in nb.resolve().parents]
    rows_in = []
    for nb, given in found:
        shown = str(nb)
        for base in (Path.cwd(), given.parent if given.is_dir() else given.parent.parent):
            try:
                shown = str(nb.resolve().relative_to(base.resolve()))
                break
            except ValueError:
                pass
        rows_in.append((nb, learner_name(nb, given, names), shown))

    def one(item):
        nb, learner, shown = item
        try:
            row = grade_notebook(nb, learner, shown, options, assignments)
        except Exception as err:  # noqa: BLE001 -- one notebook must never stop the class
            row = Row(learner, shown, problem=f"the grader failed on this notebook: {type(err).__name__}: {err}")
        cells = " ".join(f"{i} {r['status']}" for i, r in sorted(row.results.items(), key=lambda kv: _id_key(kv[0])))
        log(f"{row.status:>10}  {learner:<16} {shown}  ({row.seconds:.0f} s)  {cells or row.problem}")
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, rows_in))
    write_outputs(rows, out)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description=__doc__.splitlines()[0],
                                     epilog="See the module's docstring (and the README, 'Grading a class') for the details.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a learner's notebook, or a folder of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write gradebook.csv and feedback/")
    parser.add_argument("--lesson", metavar="NN", help="the assignment's lesson (e.g. 01): notebooks of another lesson are not graded")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S", help="time limit per notebook, seconds (300)")
    parser.add_argument("--cell-timeout", type=float, default=60.0, metavar="S", help="time limit per cell, seconds (60)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                        help="notebooks graded at once (default: the CPU count, at most 4)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    if args.lesson is not None and not re.fullmatch(r"\d\d", args.lesson):
        parser.error(f"--lesson takes a lesson number such as 01, not {args.lesson!r}")
    options = Options(timeout=args.timeout, cell_timeout=args.cell_timeout, lesson=args.lesson)
    t0 = time.monotonic()
    rows = grade(args.paths, args.out, options, jobs=args.jobs)
    if not rows:
        print(f"no notebooks (*.ipynb) found under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    bad = [r for r in rows if r.status != "graded"]
    print(f"graded {len(rows) - len(bad)} of {len(rows)} notebooks in {time.monotonic() - t0:.0f} s: "
          f"{args.out / 'gradebook.csv'}, feedback in {args.out / 'feedback'}")
    if bad:
        print(f"{len(bad)} notebook(s) could not be graded:", file=sys.stderr)
        for r in bad:
            print(f"  {r.notebook} ({r.learner}): {r.problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Grade a class's submissions outside the notebook, with the course's own checks.

    python -m utils.grade PATH... --out DIR [--lesson NN] [--timeout S] [--cell-timeout S] [--jobs N]
                          [--memory-mb MB] [--no-sandbox]

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
Jupyter kernel (sandboxed, see below; nothing is written next to the learners' files), with the course's ``utils`` from this repository imported first (a copy of
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

Safety (see :mod:`utils.sandbox`): on Linux each kernel runs in a bubblewrap sandbox: the course's
code and the Python environment read-only, its own notebook read-only, a private /tmp, nothing else,
no network, its own process namespace (nothing it starts outlives it), memory and CPU-time limits, an
environment of its own. The gradebook and feedback are written by this process only, once every
kernel is gone. Without bubblewrap the command stops and says so; ``--no-sandbox`` grades anyway,
with the kernels running as the grader's user.

Honest scores: a candidate that is the course's reference (imported, subclassed) or calls it while
being checked fails ("This is the course's reference"); a notebook that alters the checking machinery
(``utils.exercises.check``, a checker, the course's modules, torch's, the builtins) is "not graded":
after each check the grader checks a known-wrong answer in the same kernel (and, after the last, the
references of the exercises passed) and compares the machinery with a fingerprint taken before any
learner code ran. A check cell naming what the notebook never defines grades the learner's function
or class with the same signature (a renamed candidate). Points (``points``) are nbgrader's: an
exercise's difficulty.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import queue
import re
import secrets
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
# These functions run in the learner's kernel. `_kernel_boot` runs first, before any learner code,
# and keeps what grading needs (the course's `check`, each exercise's checker and reference, a
# fingerprint of the checking machinery), so that a notebook that later replaces `utils.check`,
# an exercise's checker, or a function of torch the checks use cannot change its grade unnoticed.
def _frame_kind(filename: str, course_dir: str, library: tuple) -> str:
    """'course', 'library' (Python, site-packages) or 'learner' (a notebook cell, ``exec``'d text)."""
    if filename.startswith(course_dir):
        return "course"
    if filename.startswith("<frozen") or filename.startswith(library) or "site-packages" in filename:
        return "library"
    return "learner"


def _reference_codes(reference) -> set:
    """The code objects of an exercise's reference: its functions, its classes' methods, nested code."""
    import inspect
    import types

    refs = reference if isinstance(reference, tuple) else (reference,)
    codes, todo = set(), []
    for ref in refs:
        if inspect.isclass(ref):
            for klass in ref.__mro__:
                if klass.__module__.split(".")[0] == "utils":
                    todo += [getattr(v, "__func__", v) for v in vars(klass).values()]
        else:
            todo.append(ref)
    course_dir = os.path.dirname(os.path.abspath(__file__))
    for obj in todo:
        if isinstance(obj, property):
            todo += [obj.fget, obj.fset]
        for _ in range(10):  # a decorated function (@torch.no_grad()): its own code is inside
            if getattr(obj, "__wrapped__", None) is None:
                break
            obj = obj.__wrapped__
        code = getattr(obj, "__code__", None)
        # Only the course's own code: a decorator's wrapper (torch's) is shared by every decorated function.
        stack = [code] if isinstance(code, types.CodeType) and code.co_filename.startswith(course_dir) else []
        while stack:
            c = stack.pop()
            codes.add(c)
            stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    return codes


def _is_reference(candidate, reference, codes: set) -> bool:
    """The candidate *is* the course's reference: the same object, a subclass of it, or its code."""
    import functools
    import inspect

    refs = reference if isinstance(reference, tuple) else (reference,)
    cands = candidate if isinstance(candidate, tuple) else (candidate,)
    for cand in cands:
        for _ in range(10):  # through decorators and functools.partial
            if any(cand is ref for ref in refs):
                return True
            if not (isinstance(cand, functools.partial) or hasattr(cand, "__wrapped__")):
                break
            cand = cand.func if isinstance(cand, functools.partial) else cand.__wrapped__
        if inspect.isclass(cand):
            if any(inspect.isclass(ref) and issubclass(cand, ref) for ref in refs):
                return True
            for klass in cand.__mro__:
                for value in vars(klass).values():
                    if getattr(getattr(value, "__func__", value), "__code__", None) in codes:
                        return True
        elif getattr(getattr(cand, "__func__", cand), "__code__", None) in codes:
            return True
    return False


def _wrong_variant(reference):
    """A known-wrong answer: the reference with every number it returns changed (tensors + 1)."""
    import inspect

    import torch

    def spoil(value):
        if isinstance(value, torch.Tensor):
            return ~value if value.dtype == torch.bool else value + 1
        if isinstance(value, (tuple, list)):
            return type(value)(spoil(v) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value + 1
        return value

    if isinstance(reference, tuple):
        return tuple(_wrong_variant(r) for r in reference)
    if inspect.isclass(reference):
        forward = reference.forward
        return type(reference.__name__, (reference,), {"forward": lambda self, *a, **k: spoil(forward(self, *a, **k))})

    def wrong(*args, **kwargs):
        return spoil(reference(*args, **kwargs))

    wrong.__name__ = getattr(reference, "__name__", "wrong")
    return wrong


def _machinery() -> list:
    """The namespaces whose contents the checks rely on: the course's modules, torch's, Python's builtins."""
    import builtins

    import torch

    spaces = [(name, module) for name, module in sorted(sys.modules.items())
              if module is not None and (name == "utils" or name.startswith("utils."))]
    spaces += [("builtins", builtins), ("torch", torch), ("torch.nn.functional", torch.nn.functional),
               ("torch.testing", torch.testing), ("torch.Tensor", torch.Tensor), ("torch.nn.Module", torch.nn.Module)]
    return spaces


def _fingerprint(spaces) -> dict:
    """(namespace, name) -> the identity of what it holds; for the course's functions, also of their code."""
    out = {}
    for name, space in spaces:
        for key, value in list(vars(space).items()):
            if name == "builtins" and key in ("_", "__", "___", "input", "raw_input"):
                continue  # the last results, and the kernel's own input(), replaced at each execution
            out[(name, key)] = id(value)
            code = getattr(value, "__code__", None)
            if name.startswith("utils") and code is not None:
                out[(name, key + ".__code__")] = (id(code), id(getattr(value, "__defaults__", None)))
    return out


def _kernel_boot(ids: list, nonce: str):
    """Run in the kernel before any learner code; returns the function that grades a check cell."""
    import inspect

    from IPython.display import display

    import utils
    from utils import exercises

    check = exercises.check
    kept = {id: exercises.get(id) for id in ids}
    saved = {id: (ex.checker, ex.reference) for id, ex in kept.items()}
    codes = {id: _reference_codes(ex.reference) for id, ex in kept.items()}
    wrong = {id: _wrong_variant(ex.reference) for id, ex in kept.items()}
    spaces = _machinery()
    fingerprint = _fingerprint(spaces)
    course_dir = os.path.dirname(os.path.abspath(utils.__file__))
    library = tuple(dict.fromkeys([sys.prefix, sys.base_prefix, sys.exec_prefix]))
    passed = []  # the exercises this kernel passed: their reference is checked again at the end

    def altered(id, final: bool) -> str:
        """What of the checking machinery the notebook changed ("" when nothing)."""
        changed = [f"{name}.{key}" for (name, key), value in fingerprint.items()
                   if id_of(name, key) != value]
        if changed:
            return f"it replaces {', '.join(changed[:3])}"
        for i, ex in kept.items():
            if (ex.checker, ex.reference) != saved[i] or exercises._REGISTRY.get(i) is not ex:
                return f"it replaces the checker of exercise {i}"
        # The same check, in the same kernel, on a known-wrong answer (each time) and on the course's
        # reference (after the last exercise): a check that passes anything, or nothing, was tampered with.
        spoiled = check(id, wrong[id])
        if spoiled.status != "fail":
            return f"after it, the check of {id} gives '{spoiled.status}' to a known-wrong answer"
        for i in passed if final else ():
            right = check(i, kept[i].reference)
            if right.status != "pass":
                return f"after it, the check of {i} gives '{right.status}' to the course's own answer"
        return ""

    by_name = dict(spaces)
    id_ = id  # `id` is an exercise id below

    def id_of(name, key):
        code = key.endswith(".__code__")
        value = vars(by_name[name]).get(key[:-9] if code else key, id_of)  # id_of itself: a missing key
        if value is id_of:
            return None
        return (id(getattr(value, "__code__", None)), id(getattr(value, "__defaults__", None))) if code else id(value)

    def delegates(id, candidate) -> bool:
        """Checking ``candidate`` again, does learner code call the reference of ``id``?

        For that check only, every name that holds the reference (in the course's modules, in the
        notebook's namespace, in the exercise) holds a tripwire instead: the reference itself, after
        noting who called it. The checker's own calls come from the course's code and are not counted.
        """
        import functools

        ex = kept[id]
        refs = ex.reference if isinstance(ex.reference, tuple) else (ex.reference,)
        calls = []

        def note():
            frame = sys._getframe(2)
            while frame is not None and _frame_kind(frame.f_code.co_filename, course_dir, library) == "library":
                frame = frame.f_back
            if frame is not None and _frame_kind(frame.f_code.co_filename, course_dir, library) == "learner":
                calls.append(frame.f_code.co_name)

        def tripwire(ref):
            if inspect.isclass(ref):
                def __init__(self, *args, **kwargs):
                    note()
                    ref.__init__(self, *args, **kwargs)
                return type(ref.__name__, (ref,), {"__init__": __init__, "__module__": ref.__module__,
                                                    "__qualname__": ref.__qualname__})

            @functools.wraps(ref)
            def wrapper(*args, **kwargs):
                note()
                return ref(*args, **kwargs)
            return wrapper

        wires = {id_(ref): tripwire(ref) for ref in refs}
        spaces_now = [vars(m) for name, m in list(sys.modules.items())
                      if m is not None and (name == "utils" or name.startswith("utils."))]
        try:
            spaces_now.append(get_ipython().user_ns)  # noqa: F821 -- the kernel's
        except NameError:
            pass
        undo = []
        for space in spaces_now:
            for key, value in list(space.items()):
                if id_(value) in wires and value is not candidate:
                    undo.append((space, key, value))
                    space[key] = wires[id_(value)]
        ex.reference = tuple(wires[id_(r)] for r in refs) if isinstance(ex.reference, tuple) else wires[id_(refs[0])]
        try:
            check(id, candidate)
        except BaseException:  # noqa: BLE001 -- only the calls matter here
            pass
        finally:
            ex.reference = saved[id][1]
            for space, key, value in undo:
                space[key] = value
        return bool(calls)

    def course_check(id: str, thunk, renamed: str = "", final: bool = False) -> None:
        try:
            candidate = thunk()
        except NameError as err:
            verdict = {"undefined": getattr(err, "name", None) or str(err)}
        except BaseException as err:  # noqa: BLE001 -- the candidate expression itself failed
            verdict = {"status": "fail", "message": f"Evaluating the checked expression raised {type(err).__name__}: {err}"}
        else:
            result = check(id, candidate)
            verdict = {"status": result.status, "message": result.message, "title": result.title}
            ex = kept[id]
            if result.status == "pass":
                passed.append(id)
            if result.status == "pass" and (_is_reference(candidate, ex.reference, codes[id]) or delegates(id, candidate)):
                verdict = {"status": "fail", "title": result.title, "message":
                           "This is the course's reference, not your code (it is imported from, or calls, "
                           "the course's own solution): write the exercise yourself."}
            if renamed and verdict["status"] != "not attempted":
                verdict["message"] = renamed + "\n" + verdict["message"]
        problem = altered(id, final)
        if problem:
            verdict = {"altered": problem}
        verdict.update(id=id, nonce=nonce)
        display({MIME: verdict}, raw=True)

    return course_check


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


def course_assignments() -> dict[str, tuple[str, list[CheckCall], dict]]:
    """Lesson -> (notebook name, its check calls in order, its top-level names -> signatures), from the
    course's exercise notebooks."""
    import nbformat

    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 -- a lesson being rewritten must not stop the grading of the others
            continue
        calls = [c for cell in nb.cells if cell.cell_type == "code" for c in check_calls(cell.source)]
        names = {}
        for cell in nb.cells:
            if cell.cell_type == "code":
                names.update(signatures(cell.source))
                names.update({name: None for name in bound_names(cell.source) if name not in names})
        out[path.name[:2]] = (path.stem, calls, names)
    return out


def _tree(source: str):
    try:
        return ast.parse(definitions(source) or "")
    except SyntaxError:
        return ast.parse("")


def _params(fn) -> tuple:
    a = fn.args
    return tuple(arg.arg for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs))


def signatures(source: str) -> dict:
    """The top-level functions and classes of a cell: name -> signature, e.g. ``("def", ("tgt", "sos"))``;
    a class's is its ``__init__``'s and ``forward``'s parameters."""
    out = {}
    for stmt in _tree(source).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[stmt.name] = ("def", _params(stmt))
        elif isinstance(stmt, ast.ClassDef):
            out[stmt.name] = ("class", tuple((m.name, _params(m)[1:]) for m in stmt.body
                                             if isinstance(m, ast.FunctionDef) and m.name in ("__init__", "forward")))
    return out


def bound_names(source: str) -> set:
    """The names a cell binds at its top level, in what the grader runs of it (``definitions``)."""
    names = set()
    for stmt in _tree(source).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        else:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


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
    """A fresh IPython kernel, sandboxed unless ``sandbox`` is False; ``run`` executes code with a time limit.

    Sandboxed (Linux, see :mod:`utils.sandbox`), it sees the course's code and the Python environment
    read-only, ``submission`` read-only, a private ``/tmp``; it talks to the grader over Unix sockets
    in its own folder. Without the sandbox it runs as the grader's user, in an empty temporary folder;
    in both cases its environment is :func:`utils.sandbox.kernel_env`, not the grader's.
    """

    def __init__(self, startup_timeout: float, sandbox: bool = True, submission: Path | None = None,
                 memory_mb: int = 4096, cpu_seconds: int = 600):
        from jupyter_client import KernelManager

        from utils import sandbox as box

        self.folder = tempfile.mkdtemp(prefix="course-grade-")
        own = os.path.join(self.folder, "kernel")  # the kernel's connection file and sockets: all it sees of the grader's
        os.mkdir(own)
        connection = os.path.join(own, "kernel.json")
        python_args = ["-m", "ipykernel_launcher", "-f", connection]
        if sandbox:
            env = box.kernel_env("/tmp")
            argv = box.command(box.limited(python_args, memory_mb, cpu_seconds), own=own,
                               submission=submission, env=env, args_file=os.path.join(self.folder, "bwrap.args"))
            manager = dict(transport="ipc", ip=os.path.join(own, "k"))
            cwd, env = self.folder, {"PATH": env["PATH"]}  # bwrap's own; it clears it for the kernel
        else:
            cwd = os.path.join(self.folder, "work")
            os.makedirs(cwd)
            env = box.kernel_env(cwd)
            argv = box.limited(python_args, memory_mb, cpu_seconds) if sys.platform.startswith("linux") \
                else [sys.executable, *python_args]
            manager = {}

        class Launcher(KernelManager):
            def format_kernel_cmd(self, extra_arguments=None):  # this Python, with or without the sandbox
                return list(argv)

        self.devnull = open(os.devnull, "w")  # the kernel's own stdout and stderr
        try:
            self.km = Launcher(kernel_name="python3", **manager)
            self.km.connection_file = connection
            self.km.start_kernel(cwd=cwd, env=env, stdout=self.devnull, stderr=self.devnull)
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
            elif kind == "display_data" and isinstance(content.get("data", {}).get(MIME), dict):
                outcome.verdicts.append(content["data"][MIME])
            elif kind == "status" and content.get("execution_state") == "idle":
                return outcome

    def close(self) -> None:
        """Stop the kernel and everything it started (in the sandbox, its whole process namespace)."""
        for stop in (lambda: self.kc.stop_channels(), lambda: self.km.shutdown_kernel(now=True)):
            try:
                stop()
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
    renamed: str = ""  # the check's candidate was found by its signature: what to tell the learner


@dataclass
class Options:
    timeout: float = 300.0
    cell_timeout: float = 60.0
    startup_timeout: float = 120.0
    lesson: str | None = None
    sandbox: bool = True  # see utils.sandbox; False only with --no-sandbox
    memory_mb: int = 4096  # address space of a kernel's process
    cpu_seconds: int | None = None  # CPU time of a kernel's process (default: the notebook's time limit + 60 s)


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


def plan(nb, assignment_calls: list[CheckCall], ids: list[str], course_names: dict | None = None) -> list[Step]:
    """What to run in the kernel, in order, for a notebook whose lesson has exercises ``ids``.

    course_names: the assignment's top-level names and their signatures (see ``course_assignments``),
    to find a candidate the learner renamed.
    """
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
    if course_names:
        _find_renamed(nb, steps, course_names)
    return steps


def _find_renamed(nb, steps: list[Step], course_names: dict) -> None:
    """A check that names what the notebook never defines grades the learner's function or class with
    the same signature instead (a learner renamed ``shift_right`` and left the check cell as it was):
    the one in that exercise's answer cell if there is one, else the last one defined before the check."""
    bound, defined = set(), []  # defined: (cell, name, signature, answer_of)
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code":
            source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            bound |= bound_names(source)
            defined += [(i, name, sig, answer_id(cell)) for name, sig in signatures(source).items()]
    for step in steps:
        if not step.check or not step.check.expr:
            continue
        try:
            expr = ast.parse(step.check.expr, mode="eval").body
        except SyntaxError:
            continue
        names = [expr] if isinstance(expr, ast.Name) else list(expr.elts) if isinstance(expr, ast.Tuple) else []
        if not names or not all(isinstance(n, ast.Name) for n in names):
            continue
        notes = []
        for node in names:
            wanted = course_names.get(node.id)
            if node.id in bound or not wanted:
                continue
            found = [d for d in defined if d[2] == wanted and d[1] not in course_names and d[0] <= step.cell]
            found = [d for d in found if d[3] == step.check.id] or found
            if found:
                notes.append(f"`{found[-1][1]}` (it has the signature of `{node.id}`)")
                node.id = found[-1][1]
        if notes:
            step.check = CheckCall(step.check.id, ast.unparse(expr))
            step.renamed = (f"Graded {', '.join(notes)}: the check cell names what this notebook does not define.")


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
    assignment = assignments.get(lesson, ("", [], {}))
    steps = plan(nb, assignment[1], ids, assignment[2] if len(assignment) > 2 else None)
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
            kernel = Kernel(options.startup_timeout, sandbox=options.sandbox, submission=path,
                            memory_mb=options.memory_mb, cpu_seconds=options.cpu_seconds or int(options.timeout) + 60)
        except Exception as err:  # noqa: BLE001
            row.problem = f"the grader could not start a Python kernel: {type(err).__name__}: {err}"
            row.seconds = time.monotonic() - start
            return row
        try:
            nonce = secrets.token_hex(16)  # a verdict the learner's code displays itself is not the grader's
            boot = kernel.run(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport utils, utils.exercises\n"
                              f"utils.seed_everything(0)\nfrom utils.grade import _kernel_boot\n"
                              f"__course_check__ = _kernel_boot({ids!r}, {nonce!r})\ndel _kernel_boot\n",
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
                    final = not any(s.check for s in steps[k + 1:])
                    out = kernel.run(f"__course_check__({id!r}, lambda: ({expr}), {step.renamed!r}, {final})", limit)
                    verdicts = [v for v in out.verdicts if v.get("nonce") == nonce and v.get("id") == id]
                    verdict = verdicts[-1] if verdicts else None
                    if verdict is None and out.state == "error" and "__course_check__" in out.error:
                        verdict = {"altered": "it deletes or replaces the grader's own check function"}
                    if verdict is not None and "altered" in verdict:
                        row.problem = f"the notebook alters the course's checks ({verdict['altered']}): not graded"
                        row.results = {}
                        row.seconds = time.monotonic() - start
                        return row
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
        if name in stem:
            stem = stem.replace(name, "")
            break
    # A file named as the lesson itself (`ada/01_lstm_bottleneck.ipynb`, given as a file): its folder names the learner.
    return stem.strip(" _-.") or path.resolve().parent.name or path.stem


def feedback_name(learner: str) -> str:
    """The learner's feedback file name; two different learner names never get the same one.

    A plain lowercase name is kept (``alice`` -> ``alice.md``); any other gets a short hash of the
    exact name (``jo smith`` -> ``jo_smith-<hash>.md``, ``Jo`` -> ``jo-<hash>.md``), so that neither
    sanitising nor a case-insensitive file system (macOS, Windows) can make two names collide.
    """
    import hashlib

    if re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,80}", learner) and not re.search(r"-[0-9a-f]{10}$", learner):
        return f"{learner}.md"
    safe = re.sub(r"[^a-z0-9._-]+", "_", learner.lower()).strip("._-")[:60] or "learner"
    return f"{safe}-{hashlib.sha256(learner.encode()).hexdigest()[:10]}.md"


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


def points(row: Row) -> str:
    """Points as nbgrader gives them (an exercise's difficulty, 1 to 3, when it passes): ``"5/7"``."""
    if row.status != "graded":
        return ""
    from utils.exercises import get

    worth = {id: get(id).difficulty for id in row.results}
    return f"{sum(w for id, w in worth.items() if row.results[id]['status'] == 'pass')}/{sum(worth.values())}"


def write_outputs(rows: list[Row], out: Path) -> None:
    """The gradebook and the feedback; called by the grader's process only, once every kernel is gone."""
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted({i for row in rows for i in row.results} | {i for row in rows if row.status == "graded"
                                                               for i in course_ids(row.lesson)}, key=_id_key)
    files = {row.learner: f"feedback/{feedback_name(row.learner)}" for row in rows}
    assert len(set(files.values())) == len(files), "two learners would share a feedback file"
    with open(out / "gradebook.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", "notebook", "lesson", "status", *ids, "score", "points", "problem", "feedback"])
        for row in rows:
            writer.writerow([row.learner, row.notebook, row.lesson, row.status,
                             *(row.results.get(i, {}).get("status", "") for i in ids), row.score, points(row),
                             row.problem, files[row.learner]])
    (out / "gradebook.json").write_text(json.dumps(
        [{"learner": r.learner, "notebook": r.notebook, "lesson": r.lesson, "status": r.status, "score": r.score,
          "points": points(r), "problem": r.problem, "feedback": files[r.learner], "seconds": round(r.seconds, 1),
          "exercises": r.results} for r in rows], indent=1, ensure_ascii=False) + "\n")
    folder = out / "feedback"
    folder.mkdir(exist_ok=True)
    by_learner: dict[str, list[Row]] = {}
    for row in rows:
        by_learner.setdefault(row.learner, []).append(row)
    for learner, learner_rows in by_learner.items():
        (out / files[learner]).write_text(feedback(learner, learner_rows))


def grade(paths: list[Path], out: Path, options: Options, jobs: int = 2, log=print) -> list[Row]:
    """Grade every notebook under ``paths`` and write the gradebook and feedback to ``out``.

    Raises RuntimeError when ``options.sandbox`` is set and the sandbox cannot run here.
    """
    if options.sandbox:
        from utils import sandbox

        if sandbox.problem():
            raise RuntimeError(f"no sandbox: {sandbox.problem()} (Options(sandbox=False) grades without it)")
    assignments = course_assignments()
    names = [a[0] for a in assignments.values()]
    found = find_notebooks(paths)
    out_resolved = out.resolve()
    found = [(nb, given) for nb, given in found if out_resolved not in nb.resolve().parents]
    rows_in = []
    direct = {p.resolve() for p in paths if p.is_file()}  # given as files: shown by their whole path
    for nb, given in found:
        shown = str(nb.resolve())
        for base in (Path.cwd(),) if nb.resolve() in direct else (Path.cwd(), given.parent):
            try:
                shown = str(nb.resolve().relative_to(base.resolve()))
                break
            except ValueError:
                pass
        rows_in.append((nb, learner_name(nb, given, names), shown))
    # One learner, two notebooks of the same name (two copies, or files given as paths from folders
    # of the same name): they are not the same learner's one submission, so each gets its own id.
    count: dict = {}
    for nb, learner, _ in rows_in:
        count[(learner, nb.name)] = count.get((learner, nb.name), 0) + 1
    rows_in = [(nb, f"{learner} ({shown})" if count[(learner, nb.name)] > 1 else learner, shown)
               for nb, learner, shown in rows_in]

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


NO_SANDBOX = """
*** NOT GRADING: the sandbox is not available here. ***
{problem}.
Each learner's notebook runs in a sandbox so that it cannot read or change the course, the other
submissions or the gradebook, reach the network, or leave processes behind. Install bubblewrap and
grade again, or, knowing that learner code will then run with your rights, pass --no-sandbox
(on macOS, better grade in a Linux container or VM).
"""


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
    parser.add_argument("--memory-mb", type=int, default=4096, metavar="MB",
                        help="address space of each kernel process, MB (4096)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run the kernels without the sandbox (where bubblewrap is missing: macOS); "
                             "learner code then runs with your rights")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    if args.lesson is not None and not re.fullmatch(r"\d\d", args.lesson):
        parser.error(f"--lesson takes a lesson number such as 01, not {args.lesson!r}")
    options = Options(timeout=args.timeout, cell_timeout=args.cell_timeout, lesson=args.lesson,
                      sandbox=not args.no_sandbox, memory_mb=args.memory_mb)
    if options.sandbox:
        from utils import sandbox

        if sandbox.problem():
            print(NO_SANDBOX.format(problem=sandbox.problem()), file=sys.stderr)
            return 2
    else:
        print("WARNING: --no-sandbox: each learner's code runs with your user's rights; it can read and change "
              "your files, the other submissions and the output, and start processes that outlive grading.",
              file=sys.stderr)
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

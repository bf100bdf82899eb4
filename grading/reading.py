"""Reading a learner's notebook without running it: what the grader runs of each cell (its
definitions), the check calls, the answer cells, the names and signatures a cell defines."""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

from grading.ids import CHECK_CALL, EXERCISE_ID, checked_ids, exercise_of_answer

MAX_BYTES = 50_000_000  # a notebook larger than this is not read


def read_notebook(path: Path):
    """The notebook, or raise ValueError with a reason a person understands."""
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


def source_of(cell) -> str:
    """A cell's source as one string (a notebook may store it as a list of lines)."""
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def code_cells(nb):
    """(index, source) of each code cell of ``nb``."""
    return [(i, source_of(cell)) for i, cell in enumerate(nb.cells) if cell.get("cell_type") == "code"]


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


def _is_check_call(node) -> bool:
    return (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "check"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            and EXERCISE_ID.fullmatch(node.args[0].value) is not None)


def check_calls(source: str) -> list[CheckCall]:
    """The ``utils.check("NN.k", candidate)`` calls of a cell, in order."""
    if not CHECK_CALL.search(source):
        return []
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return [CheckCall(id, None) for id in checked_ids(source)]
    calls = []
    for node in ast.walk(tree):
        if _is_check_call(node):
            expr = ast.unparse(node.args[1]) if len(node.args) > 1 else None
            calls.append((node.lineno, node.col_offset, CheckCall(node.args[0].value, expr)))
    return [call for *_, call in sorted(calls, key=lambda c: c[:2])]


def answer_id(cell) -> str | None:
    """The exercise id of an answer cell, from the nbgrader metadata the generator writes."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return exercise_of_answer(meta.get("grade_id", "")) if meta.get("solution") else None


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


def lesson_of(nb, path: Path) -> tuple[str | None, list[str]]:
    """(lesson, the exercise ids its check cells and answer cells name) of a learner's notebook."""
    ids = []
    for i, source in code_cells(nb):
        ids += [c for c in checked_ids(source) if c not in ids]
        answer = answer_id(nb.cells[i])
        if answer and answer not in ids:
            ids.append(answer)
    lessons = sorted({i[:2] for i in ids})
    if len(lessons) == 1:
        return lessons[0], ids
    if not lessons and re.match(r"\d\d_", path.name):
        return path.name[:2], ids
    return (max(lessons, key=lambda l: sum(i.startswith(l) for i in ids)) if lessons else None), ids

"""What to run of a learner's notebook, in order: its definitions, and each exercise's check.

The course's side comes from this repository: the exercise notebooks in ``notebooks/`` (which
candidate each check cell names, and the signatures of what the lesson defines) and the exercise
registry of ``utils.exercises``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grading.reading import CheckCall, answer_id, bound_names, check_calls, code_cells, definitions, signatures
from utils.exercises import registry

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    cell: int  # index among the notebook's cells
    code: str = ""  # definitions to run
    check: CheckCall | None = None
    answer_of: str | None = None  # the exercise this cell answers, if marked
    renamed: str = ""  # the check's candidate was found by its signature: what to tell the learner


def _names(nb) -> dict:
    """The top-level names of a notebook -> their signature (None for a name that is not a def or class)."""
    names = {}
    for _, source in code_cells(nb):
        names.update(signatures(source))
        names.update({name: None for name in bound_names(source) if name not in names})
    return names


def course_assignments() -> dict[str, tuple[str, list[CheckCall], dict]]:
    """Lesson -> (notebook name, its check calls in order, its top-level names -> signatures), from the
    course's exercise notebooks."""
    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 -- a lesson being rewritten must not stop the grading of the others
            continue
        calls = [c for _, source in code_cells(nb) for c in check_calls(source)]
        out[path.name[:2]] = (path.stem, calls, _names(nb))
    return out


def course_ids(lesson: str) -> list[str]:
    """The exercise ids of ``lesson`` in this version of the course (only that lesson's checks are loaded).

    Raises :class:`utils.exercises.LessonError` when the lesson's checks module does not import.
    """
    return registry.lesson_ids(lesson)


def title(id: str) -> str:
    """Exercise ``id``'s title ("" when unknown)."""
    try:
        ex = registry.find(id)
    except registry.LessonError:
        return ""
    return ex.title if ex else ""


def _steps(nb, ids: list[str]) -> list[Step]:
    """Every cell's definitions and every check of an exercise of ``ids``, in notebook order."""
    steps = []
    for i, source in code_cells(nb):
        code = definitions(source)
        if any(line.strip() and not line.lstrip().startswith("#") for line in code.splitlines()):
            steps.append(Step(i, code=code, answer_of=answer_id(nb.cells[i])))
        steps += [Step(i, check=call) for call in check_calls(source) if call.id in ids]
    return steps


def _chosen_checks(steps: list[Step], by_id: dict) -> dict:
    """Exercise id -> the index of the step that grades it.

    The exercise's own check is the one that names what the assignment's check cell names (a lesson
    may also check a deliberately wrong variant, to show a diagnosis); if the learner checks it
    twice, the last one grades their final answer. Failing that, the first check of the id.
    """
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
    return chosen


def plan(nb, assignment_calls: list[CheckCall], ids: list[str], course_names: dict | None = None) -> list[Step]:
    """What to run in the kernel, in order, for a notebook whose lesson has exercises ``ids``.

    course_names: the assignment's top-level names and their signatures (see ``course_assignments``),
    to find a candidate the learner renamed.
    """
    steps = _steps(nb, ids)
    by_id = {}
    for call in assignment_calls:
        by_id.setdefault(call.id, call)
    chosen = _chosen_checks(steps, by_id)
    steps = [step for k, step in enumerate(steps) if not step.check or chosen.get(step.check.id) == k]
    for id in ids:  # a check cell the learner deleted: check at the end, as the assignment names it
        if id not in chosen:
            steps.append(Step(len(nb.cells), check=by_id.get(id, CheckCall(id, None))))
    for step in steps:
        if step.check and step.check.expr is None and step.check.id in by_id:
            step.check = by_id[step.check.id]
    if course_names:
        _find_renamed(nb, steps, course_names)
    return steps


def _defined(nb) -> tuple[set, list]:
    """(every name the notebook binds, [(cell, name, signature, the exercise the cell answers)])."""
    bound, defined = set(), []
    for i, source in code_cells(nb):
        bound |= bound_names(source)
        defined += [(i, name, sig, answer_id(nb.cells[i])) for name, sig in signatures(source).items()]
    return bound, defined


def _find_renamed(nb, steps: list[Step], course_names: dict) -> None:
    """A check that names what the notebook never defines grades the learner's function or class with
    the same signature instead (a learner renamed ``shift_right`` and left the check cell as it was):
    the one in that exercise's answer cell if there is one, else the last one defined before the check."""
    bound, defined = _defined(nb)
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

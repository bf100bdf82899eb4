"""Generate the exercise notebooks (notebooks/) from the solution notebooks (solutions/): one source.

In a solution notebook, the code a learner must write sits between two marker lines, as in
nbgrader::

    ### BEGIN SOLUTION
    ...the reference code...
    ### END SOLUTION

Each such region becomes ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the same
indentation, and every output is cleared. Usage, from the repository root::

    python -m tools.make_exercises           # regenerate notebooks/
    python -m tools.make_exercises --check   # exit 1 if notebooks/ is out of date
    python -m tools.make_exercises --nbgrader-source DIR   # solution notebooks with nbgrader metadata

The generated cells also carry nbgrader's cell metadata, so that the exercise cells of a learner's
notebook can be found by a grader (``python -m utils.grade``) and by nbgrader itself: a cell with a
solution region is an "autograded answer" cell whose ``grade_id`` is ``exNN_k``, named after the
exercise ``NN.k`` of the first ``utils.check("NN.k", ...)`` call after it, and a check cell is a
read-only cell ``checkNN_k``; an exercise's first check cell is an "autograded test" cell worth
the exercise's difficulty (1 to 3) in points (``utils.check`` raises there under nbgrader when the
exercise does not pass). The solution notebooks themselves carry no such metadata (their
text files stay clean); ``--nbgrader-source`` writes copies of them with it, for nbgrader's
``generate_assignment``.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_REGION = re.compile(r"^([ \t]*)" + re.escape(BEGIN) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*$", re.S | re.M)


def strip_solutions(source: str) -> str:
    """Replace every marked solution region of a cell's source with the skeleton."""
    def skeleton(match):
        indent = match.group(1)
        return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()"

    out = _REGION.sub(skeleton, source)
    if BEGIN in out or END in out:
        raise ValueError(f"unbalanced solution markers in a cell starting {source[:60]!r}")
    return out


def has_solution(source: str) -> bool:
    return BEGIN in source


CHECK_CALL = re.compile(r"""\butils\.check\(\s*["'](\d\d\.\d+)["']""")


def add_nbgrader_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Mark solution cells and check cells with nbgrader's cell metadata (schema 3), in place.

    A solution cell takes the id of the first check call after it (``ex01_1`` for ``"01.1"``;
    nbgrader's ids allow letters, digits, ``_`` and ``-`` only); a second solution cell of the same
    exercise gets ``ex01_1_2``. Ids are unique within the notebook, as nbgrader requires.
    """
    code = [c for c in nb.cells if c.cell_type == "code"]
    used: set = set()
    checked: set = set()  # exercises whose check cell is marked already

    def unique(base):
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        return name

    for i, cell in enumerate(code):
        checks = CHECK_CALL.findall(cell.source)
        if has_solution(cell.source):
            following = next((CHECK_CALL.findall(c.source)[0] for c in code[i + 1:] if CHECK_CALL.search(c.source)), None)
            grade_id = unique("ex" + following.replace(".", "_") if following else f"answer_{i}")
            cell.metadata["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": False,
                                         "schema_version": 3, "solution": True, "task": False}
        elif checks:
            # The exercise's own check cell (its first) is an autograded test cell worth the exercise's
            # difficulty in points: utils.check raises there when nbgrader runs it and it does not pass.
            graded = checks[0] not in checked
            checked.add(checks[0])
            meta = {"grade": graded, "grade_id": unique("check" + checks[0].replace(".", "_")),
                    "locked": True, "schema_version": 3, "solution": False, "task": False}
            if graded:
                meta["points"] = _points(checks[0])
            cell.metadata["nbgrader"] = dict(sorted(meta.items()))
    return nb


def _points(id: str) -> int:
    """An exercise's points under nbgrader: its difficulty (1 to 3 stars)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from utils.exercises import get

    return get(id).difficulty


def stable_cell_ids(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give every cell an id derived from its type and source, in place, so that a rebuild keeps them.

    nbformat (and jupytext, reading a text file) draw a random id for each new cell, so each build
    rewrote every id: a two-line change reviewed as hundreds of changed lines. The id is the first
    8 hex digits of the SHA-1 of the cell's type and source; a repeated cell gets ``-2``, ``-3``...
    An edited cell gets a new id, as it would in a review anyway.
    """
    seen: dict = {}
    for cell in nb.cells:
        base = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[base] = seen.get(base, 0) + 1
        cell["id"] = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return nb


def fold_titled_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Fold every code cell whose first line is a Colab title (``# @title ...``), in place.

    A folded cell shows only that line: JupyterLab shows the first line of a cell whose
    ``jupyter.source_hidden`` is set, and Colab shows the title of a ``cellView: "form"`` cell. So a
    learner's first screen is the lesson, not the 40-odd lines of the setup cell. (The text files
    keep only tags, by solutions/jupytext.toml: the builders add this metadata to both notebooks.)
    """
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("# @title "):
            cell.metadata["cellView"] = "form"
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    return nb


def exercise_notebook(solution_nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook: skeletons instead of solutions, no outputs.

    Its cells keep the ids of the solution's cells (derived from the solution's sources), and the
    widget state the solution run saved is dropped: the exercise notebook has no outputs to show it.
    """
    nb = fold_titled_cells(add_nbgrader_metadata(stable_cell_ids(copy.deepcopy(solution_nb))))
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    return nb


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether notebooks/ is up to date")
    parser.add_argument("--nbgrader-source", metavar="DIR", type=Path,
                        help="write the solution notebooks, with nbgrader metadata, to DIR/NN_name/NN_name.ipynb")
    args = parser.parse_args(argv)
    if args.nbgrader_source:
        for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
            nb = add_nbgrader_metadata(nbformat.read(path, as_version=4))
            target = args.nbgrader_source / path.stem / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render(nb))
            print(f"wrote {target}")
        return 0
    stale = []
    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        target = ROOT / "notebooks" / path.name
        text = render(exercise_notebook(nbformat.read(path, as_version=4)))
        if not target.exists() or target.read_text() != text:
            stale.append(target.relative_to(ROOT))
            if not args.check:
                target.write_text(text)
    if args.check and stale:
        print("out of date (run `python -m tools.make_exercises`):", *stale, sep="\n  ")
        return 1
    print(f"{'checked' if args.check else 'wrote'}: notebooks/ {'is up to date' if not stale else f'({len(stale)} updated)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
"""
from __future__ import annotations

import argparse
import copy
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


def exercise_notebook(solution_nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook: skeletons instead of solutions, no outputs."""
    nb = copy.deepcopy(solution_nb)
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
    args = parser.parse_args(argv)
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

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
    python -m tools.make_exercises --force   # also where a learner worked in notebooks/ (saved beside first)
    python -m tools.make_exercises --nbgrader-source DIR   # solution notebooks with nbgrader metadata

It never destroys a learner's work: an exercise notebook in which someone filled in an answer cell,
or edited or added a cell, is not overwritten; the command names it and exits with 1. ``--force``
first saves that notebook beside it as ``notebooks/mine-NN_name.ipynb`` (``mine-NN_name-2.ipynb``...),
then writes the new one. A generated answer cell carries the SHA-256 of its skeleton in its metadata
(``course.skeleton``), and every other cell's id is derived from its source (see ``stable_cell_ids``),
which is how an edit is told from an older version of the lesson.

The generated cells also carry nbgrader's cell metadata, so that the exercise cells of a learner's
notebook can be found by a grader (``python -m grading``) and by nbgrader itself: a cell with a
solution region is an "autograded answer" cell whose ``grade_id`` is ``exNN_k`` (:mod:`grading.ids`),
named after the exercise ``NN.k`` of the first ``utils.check("NN.k", ...)`` call after it, and a check
cell is a read-only cell ``checkNN_k``; an exercise's first check cell is an "autograded test" cell worth
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

from grading.ids import answer_grade_id, check_grade_id, checked_ids, exercise_of_answer

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
        checks = checked_ids(cell.source)
        if has_solution(cell.source):
            following = next((checked_ids(c.source)[0] for c in code[i + 1:] if checked_ids(c.source)), None)
            grade_id = unique(answer_grade_id(following) if following else f"answer_{i}")
            cell.metadata["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": False,
                                         "schema_version": 3, "solution": True, "task": False}
        elif checks:
            # The exercise's own check cell (its first) is an autograded test cell worth the exercise's
            # difficulty in points: utils.check raises there when nbgrader runs it and it does not pass.
            graded = checks[0] not in checked
            checked.add(checks[0])
            meta = {"grade": graded, "grade_id": unique(check_grade_id(checks[0])),
                    "locked": True, "schema_version": 3, "solution": False, "task": False}
            if graded:
                meta["points"] = _points(checks[0])
            cell.metadata["nbgrader"] = dict(sorted(meta.items()))
    return nb


def _points(id: str) -> int:
    """An exercise's points under nbgrader: its difficulty (1 to 3 stars)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from utils.exercises import get  # noqa: PLC0415 -- here: the website's build imports this module without PyTorch

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


def skeleton_hash(source: str) -> str:
    """What a generated answer cell records of its skeleton (``metadata.course.skeleton``)."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def exercise_notebook(solution_nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook: skeletons instead of solutions, no outputs.

    Its cells keep the ids of the solution's cells (derived from the solution's sources), and the
    widget state the solution run saved is dropped: the exercise notebook has no outputs to show it.
    Each answer cell records the hash of its skeleton, so that a learner's edit can be recognised.
    """
    nb = fold_titled_cells(add_nbgrader_metadata(stable_cell_ids(copy.deepcopy(solution_nb))))
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
            if cell.metadata.get("nbgrader", {}).get("solution"):
                cell.metadata["course"] = {"skeleton": skeleton_hash(cell.source)}
        cell.metadata.pop("execution", None)
    return nb


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


_UNFILLED = re.compile(r"^([ \t]*)# YOUR CODE HERE\n\1raise NotImplementedError\(\)[ \t]*$", re.M)


def _answer_untouched(cell, new_sources: dict) -> bool:
    """An answer cell as the generator wrote it: this version's skeleton, or an older one (its recorded hash)."""
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    if cell.source == new_sources.get(grade_id):
        return True
    recorded = cell.metadata.get("course", {}).get("skeleton")
    if recorded:
        return recorded == skeleton_hash(cell.source)
    # Written before skeletons were recorded: untouched if every "YOUR CODE HERE" still raises.
    return bool(_UNFILLED.search(cell.source)) and cell.source.count("# YOUR CODE HERE") == len(_UNFILLED.findall(cell.source))


def learner_work(existing: nbformat.NotebookNode, new: nbformat.NotebookNode) -> list[str]:
    """What of ``existing`` a rewrite would lose: answer cells filled in, other cells edited or added.

    A cell is the generator's when it is an answer cell still holding a skeleton, when its id is the
    hash of its source (as ``stable_cell_ids`` made it), or when the new version has it unchanged.
    """
    new_sources = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in new.cells}
    unchanged = {(c.cell_type, c.source) for c in new.cells}
    lost = []
    for number, cell in enumerate(existing.cells, 1):
        if cell.metadata.get("nbgrader", {}).get("solution"):
            if not _answer_untouched(cell, new_sources):
                grade_id = cell.metadata["nbgrader"].get("grade_id", "")
                lost.append(f"exercise {exercise_of_answer(grade_id)}" if exercise_of_answer(grade_id) else f"cell {number}")
            continue
        base = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        if str(cell.get("id", "")).split("-")[0] != base and (cell.cell_type, cell.source) not in unchanged:
            lost.append(f"cell {number}")
    return lost


def _spare_name(target: Path) -> Path:
    """Where a learner's notebook is saved before ``--force`` overwrites it: beside it, under a free name."""
    for n in range(1, 1000):
        spare = target.with_name(f"mine-{target.stem}{'' if n == 1 else f'-{n}'}{target.suffix}")
        if not spare.exists():
            return spare
    raise FileExistsError(f"no free name for a copy of {target}")


def write_exercise(target: Path, text: str, force: bool) -> str:
    """Write one exercise notebook unless it holds a learner's work; what happened, in words."""
    if not target.exists():
        target.write_text(text)
        return "written"
    old = target.read_text()
    if old == text:
        return "up to date"
    try:
        work = learner_work(nbformat.reads(old, as_version=4), nbformat.reads(text, as_version=4))
    except Exception:  # noqa: BLE001 -- not a notebook any more: someone's file all the same
        work = ["the file is not a valid notebook"]
    if work and not force:
        return "refused: " + ", ".join(work)
    if work:
        spare = _spare_name(target)
        spare.write_text(old)
        target.write_text(text)
        return f"written; the learner's copy ({', '.join(work)}) saved as {spare.name}"
    target.write_text(text)
    return "written"


def write_exercises(solutions: Path, notebooks: Path, force: bool = False, check: bool = False) -> int:
    """Regenerate (or, ``check``, compare) every exercise notebook; 1 when one is stale or holds a learner's work."""
    stale, refused = [], []
    for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        target = notebooks / path.name
        text = render(exercise_notebook(nbformat.read(path, as_version=4)))
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.relative_to(notebooks.parent))
        if not check:
            what = write_exercise(target, text, force)
            print(f"  {stale[-1]}: {what}")
            if what.startswith("refused"):
                refused.append(target)
    if check and stale:
        print("out of date (run `python -m tools.make_exercises`):", *stale, sep="\n  ")
        return 1
    if refused:
        print(f"NOT OVERWRITTEN: {len(refused)} exercise notebook(s) hold someone's work (named above). To get the "
              "new version, rerun with --force: each is first saved beside it as mine-<name>.ipynb.", file=sys.stderr)
        return 1
    print(f"{'checked' if check else 'wrote'}: {notebooks.name}/ "
          f"{'is up to date' if not stale else f'({len(stale)} updated)'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether notebooks/ is up to date")
    parser.add_argument("--force", action="store_true",
                        help="also rewrite an exercise notebook that holds a learner's work, saved beside it first")
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
    return write_exercises(ROOT / "solutions", ROOT / "notebooks", force=args.force, check=args.check)


if __name__ == "__main__":
    sys.exit(main())

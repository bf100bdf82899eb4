"""Format the lessons' code cells with ruff (``pyproject.toml``: black's style, 88 characters).

Usage, from the repository root::

    python -m tools.format_lessons            # every lesson
    python -m tools.format_lessons 03 04      # these lessons
    python -m tools.format_lessons --check    # only list the lessons whose code is not formatted (exit 1)

88 characters is the width of the website's code column at 1366 px (``tests/test_site.py``
measures it), so formatted code is read there without scrolling sideways.

Each code cell is formatted on its own, as ``ruff format`` formats the cells of a notebook: the
text file's ``# %%`` cells and the blank lines between them stay as jupytext writes them. The
formatted code goes to ``solutions/NN_name.py`` and into the code cells of the stored
``solutions/NN_name.ipynb``, whose outputs are kept (formatting changes no output: the code does
the same); then the exercise notebooks are regenerated (``tools.make_exercises``). Rebuilding the
lesson (``python -m tools.build_solutions NN``) afterwards is not needed, only harmless.

Ruff does not break strings, comments or docstrings: a line of prose longer than 88 characters
stays so (the website wraps it) and is counted in the report.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat

from tools.make_exercises import ROOT, main as make_exercises, stable_cell_ids

LINE_LENGTH = 88  # as pyproject.toml's [tool.ruff] line-length (a test checks they agree)


def lesson_sources(root: Path = ROOT, lessons=()) -> list[Path]:
    paths = sorted((root / "solutions").glob("[0-9][0-9]_*.py"))
    return [p for p in paths if not lessons or p.name[:2] in lessons]


def _ruff(args: list[str], root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, "--config", str(root / "pyproject.toml")],
                          capture_output=True, text=True, cwd=root)


def formatted(paths: list[Path], root: Path = ROOT) -> dict[Path, list[str]]:
    """{lesson text file: its code cells' sources, formatted by ruff}, one ruff run for all of them."""
    with tempfile.TemporaryDirectory() as tmp:
        copies = {}
        for path in paths:
            nb = jupytext.read(path)
            nb.cells = [c for c in nb.cells if c.cell_type == "code"]
            copies[path] = Path(tmp) / f"{path.stem}.ipynb"
            nbformat.write(nb, copies[path])
        done = _ruff(["format", "--quiet", *map(str, copies.values())], root)
        if done.returncode:
            raise RuntimeError(f"ruff format failed:\n{done.stdout}{done.stderr}")
        return {path: [c.source for c in nbformat.read(copy, 4).cells] for path, copy in copies.items()}


def long_lines(sources: list[str], limit: int = LINE_LENGTH) -> list[str]:
    """The lines longer than ``limit`` characters."""
    return [line for source in sources for line in source.splitlines() if len(line) > limit]


def _replace_code(nb, sources: list[str]) -> bool:
    code = [c for c in nb.cells if c.cell_type == "code"]
    if len(code) != len(sources):
        raise ValueError(f"{len(code)} code cells, {len(sources)} formatted sources: rebuild the lesson first")
    changed = False
    for cell, source in zip(code, sources):
        changed |= cell.source != source
        cell.source = source
    return changed


def format_lessons(lessons=(), root: Path = ROOT, check: bool = False) -> tuple[list[Path], list[str]]:
    """Format the lessons' code (with ``check``, only look): (the lessons that changed, the lines still too long)."""
    changed, too_long = [], []
    for path, sources in formatted(lesson_sources(root, lessons), root).items():
        too_long += long_lines(sources)
        nb = jupytext.read(path)
        if not _replace_code(nb, sources):
            continue
        changed.append(path)
        if check:
            continue
        jupytext.write(nb, path, fmt="py:percent")
        stored = path.with_suffix(".ipynb")
        if stored.exists():
            solution = nbformat.read(stored, 4)
            _replace_code(solution, sources)
            nbformat.write(stable_cell_ids(solution), stored)
    return changed, too_long


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="two-digit lesson numbers (default: every lesson)")
    parser.add_argument("--check", action="store_true", help="only list the lessons whose code is not formatted")
    args = parser.parse_args(argv)
    changed, too_long = format_lessons(args.lessons, check=args.check)
    names = "\n  ".join(str(p.relative_to(ROOT)) for p in changed)
    if args.check:
        print(f"not formatted (run `python -m tools.format_lessons`):\n  {names}" if changed else "formatted")
        return 1 if changed else 0
    print(f"formatted:\n  {names}" if changed else "already formatted")
    if changed:
        make_exercises([])
    print(f"{len(too_long)} lines are longer than {LINE_LENGTH} characters: strings, comments and docstrings, "
          "which ruff does not break (the website wraps them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

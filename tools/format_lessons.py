"""Format the lessons' code cells with ruff (``pyproject.toml``: black's style, 88 characters).

Usage, from the repository root::

    python -m tools.format_lessons            # every lesson
    python -m tools.format_lessons 03 04      # these lessons
    python -m tools.format_lessons --check    # only list the lessons whose code is not formatted (exit 1)

88 characters is the width of the website's code column at 1366 px (``tests/test_site.py``
measures it), so formatted code is read there without scrolling sideways.

Each code cell is formatted on its own, as ``ruff format`` formats the cells of a notebook: the
text file's ``# %%`` cells and the blank lines between them stay as jupytext writes them. Before
ruff, a trailing comment that makes its line too long moves onto its own line above it, and a
comment line too long is wrapped (:func:`comments_on_their_own_lines`). The setup cell is left
as it is (its text is ``tools.retarget.setup_cell()``). The
formatted code goes to ``solutions/NN_name.py`` and into the code cells of the stored
``solutions/NN_name.ipynb``, whose outputs are kept (formatting changes no output: the code does
the same); then the exercise notebooks are regenerated (``tools.make_exercises``). Rebuilding the
lesson (``python -m tools.build_solutions NN``) afterwards is not needed, only harmless.

Ruff does not break strings or docstrings: a line of prose longer than 88 characters stays so
(the website wraps it) and is counted in the report.
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import textwrap
import tokenize
import tomllib
from pathlib import Path

import jupytext
import nbformat

from tools.make_exercises import ROOT, main as make_exercises, stable_cell_ids

LINE_LENGTH = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"]
# Comments that tools read as a whole line (nbval's markers, nbgrader's solution delimiters): a
# marker followed by more words is no marker to nbval, so such a line is never joined to the next.
MARKER = re.compile(r"(NBVAL|PYTEST_VALIDATE)_[A-Z_]+|(BEGIN|END) [A-Z ]+")
SETUP_CELL = "def fetch_course"  # the setup cell every lesson opens with (tools.retarget.setup_cell)


def lesson_sources(root: Path = ROOT, lessons=()) -> list[Path]:
    paths = sorted((root / "solutions").glob("[0-9][0-9]_*.py"))
    return [p for p in paths if not lessons or p.name[:2] in lessons]


def _ruff(args: list[str], root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, "--config", str(root / "pyproject.toml")],
                          capture_output=True, text=True, cwd=root)


def comments_on_their_own_lines(source: str, limit: int = LINE_LENGTH) -> str:
    """Lines too long: a trailing comment goes on its own line above, a long comment line is wrapped.

    The course writes shapes and reasons as trailing comments (``x = f(y)  # (B, h, L, d_k)``).
    Left there, a line too long is split by the formatter around its brackets, with the comment
    after the closing one; above the line, the comment reads first and the code often fits
    whole. Only comments move or wrap: the code is unchanged (its tokens, so its meaning).
    """
    lines = source.split("\n")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source  # not Python (a cell ruff will report): leave it to ruff
    comments = {t.start[0] - 1: t for t in tokens if t.type == tokenize.COMMENT}

    def own_line(i):  # (indent, prefix, text) of a comment alone on line i, else None
        c = comments.get(i)
        if c is None or lines[i][:c.start[1]].strip():
            return None
        prefix = re.match(r"#+ ?", c.string).group(0)
        return lines[i][:c.start[1]], prefix, c.string[len(prefix):].strip()

    def prose(i):  # a comment alone on line i that may join a paragraph (a marker never does)
        alone = own_line(i)
        return alone if alone and alone[2] and not MARKER.fullmatch(alone[2]) else None

    out, i = [], 0
    while i < len(lines):
        line, comment = lines[i], comments.get(i)
        if comment is None:
            out.append(line)
            i += 1
            continue
        alone = prose(i)
        if own_line(i) and not alone:  # an empty comment, or a marker: its line as it is
            out.append(line)
            i += 1
            continue
        if alone:  # a paragraph: this comment line and those after it with the same indent and prefix
            j = i + 1
            while j < len(lines) and prose(j) and prose(j)[:2] == alone[:2]:
                j += 1
            if max(len(x) for x in lines[i:j]) > limit:
                indent, prefix = alone[:2]
                text = " ".join(own_line(k)[2] for k in range(i, j))
                width = max(limit - len(indent) - len(prefix), 30)
                out += [indent + prefix + part for part in textwrap.wrap(text, width, break_on_hyphens=False)]
            else:
                out += lines[i:j]
            i = j
            continue
        if len(line) > limit:  # a trailing comment: on its own line(s) above the code
            indent = re.match(r"[ \t]*", line).group(0)
            width = max(limit - len(indent) - 2, 30)
            text = comment.string.lstrip("#").strip()
            out += [indent + "# " + part for part in textwrap.wrap(text, width, break_on_hyphens=False)]
            out.append(line[:comment.start[1]].rstrip())
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


def formatted(paths: list[Path], root: Path = ROOT) -> dict[Path, list[str]]:
    """{lesson text file: its code cells' sources, formatted}, one ruff run for all of them.

    The setup cell is left as it is: its text is ``tools.retarget.setup_cell()``, the same in every
    lesson (``tests/test_colab_setup.py``), and the website folds it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        copies, setup = {}, {}
        for path in paths:
            nb = jupytext.read(path)
            nb.cells = [c for c in nb.cells if c.cell_type == "code"]
            setup[path] = {i: c.source for i, c in enumerate(nb.cells) if SETUP_CELL in c.source}
            for cell in nb.cells:
                cell.source = comments_on_their_own_lines(cell.source)
            copies[path] = Path(tmp) / f"{path.stem}.ipynb"
            nbformat.write(nb, copies[path])
        done = _ruff(["format", "--quiet", *map(str, copies.values())], root)
        if done.returncode:
            raise RuntimeError(f"ruff format failed:\n{done.stdout}{done.stderr}")
        result = {}
        for path, copy in copies.items():
            sources = [c.source for c in nbformat.read(copy, 4).cells]
            result[path] = [setup[path].get(i, source) for i, source in enumerate(sources)]
        return result


def long_code_lines(sources: list[str], limit: int = LINE_LENGTH) -> list[str]:
    """The lines longer than ``limit`` characters, outside the setup cell."""
    return long_lines([s for s in sources if SETUP_CELL not in s], limit)


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
        too_long += long_code_lines(sources)
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
            try:
                _replace_code(solution, sources)
            except ValueError as err:  # the stored notebook is older than its text file: the build rewrites it
                print(f"{stored.relative_to(root)} not updated ({err})")
                continue
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

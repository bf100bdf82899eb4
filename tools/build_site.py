"""Build the course's website: every lesson as a chapter, from the solution notebooks' stored outputs.

Usage, from the repository root::

    python -m tools.build_site                 # writes _build/site/html (open index.html)
    python -m tools.build_site --out DIR       # ... to DIR instead

Nothing is executed: Sphinx with MyST-NB (``nb_execution_mode = "off"``) renders the outputs that
``tools.build_solutions`` stored, so the site shows exactly the numbers, figures and tables the
tests compare. The Sphinx configuration, the landing page and the stylesheet are in ``site/``;
this tool lays out a source folder (``_build/site/src``) from them and from ``solutions/``, and
on the way, per lesson:

* the Colab and Binder badges keep their links (to the exercise notebook, in ``notebooks/``) and
  get local images, so that the site needs no network;
* readers see the lesson, not its machinery: the authoring markers (``### BEGIN SOLUTION``,
  ``### END SOLUTION``, ``# NBVAL_...``) are taken out of the code, and the setup cell (found by
  its ``def fetch_course``) is folded;
* each exercise (a cell with a ``### BEGIN SOLUTION`` region) is announced by a box that names
  it (its ``utils.check`` id) and has three buttons: download the exercise notebook, open it in
  Colab, open it on Binder;
* a widget, which needs a kernel, is shown as it was when the notebook was built (the output of
  an interactive view) with a note on where to move its controls; a hidden widget is not shown,
  as in JupyterLab.

The landing page's course map is generated from the lessons found in ``solutions/`` (a new
lesson appears when its notebook lands), each with its question and what you build from the
README's lesson table (else the lesson's "Why this lesson" line). MathJax comes from the
``sphinx-mathjax-offline`` package, so maths renders offline too.
"""
from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from grading.ids import CHECK_CALL
from tools.make_exercises import has_solution
from tools.retarget import REF, REPO, binder_url, colab_url

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
DEFAULT_OUT = ROOT / "_build" / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Lines only the authoring tools need: nbgrader's solution markers and nbval's cell markers.
MARKER_LINE = re.compile(r"^[ \t]*(?:### (?:BEGIN|END) SOLUTION|# NBVAL_[A-Z_]+)\b[^\n]*(?:\n|$)", re.M)
SETUP_CELL = "def fetch_course"  # the setup cell that every lesson opens with (tools.retarget.setup_cell)
# A row of the README's lesson table: | 01 | [`01_name`](notebooks/01_name.ipynb) | question | you build |
README_ROW = re.compile(r"^\|\s*\d\d\s*\|\s*\[`(\d\d_\w+)`\]\([^)]*\)\s*\|\s*(.+?)\s*\|\s*(.+?)\s*\|\s*$", re.M)
BADGES = {"https://colab.research.google.com/assets/colab-badge.svg": "colab-badge.svg",
          "https://mybinder.org/badge_logo.svg": "binder-badge.svg"}


def lessons(root: Path = ROOT) -> list[Path]:
    return sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb"))


def lesson_info(nb) -> dict:
    """Title and the "Why this lesson" sentence, from a lesson's first markdown cell."""
    first = next(c.source for c in nb.cells if c.cell_type == "markdown")
    title = re.search(r"^#\s+(.+)$", first, re.M).group(1).strip()
    why = re.search(r"\*\*Why this lesson:\*\*\s*(.+?)(?:\n\n|$)", first, re.S)
    sentence = re.split(r"(?<=[.!?])\s", " ".join(why.group(1).split()))[0] if why else ""
    return {"title": title, "short": re.sub(r"^Lesson \d+\s*·\s*", "", title), "why": sentence}


def readme_lessons(root: Path = ROOT) -> dict:
    """{stem: {"question": ..., "build": ...}} from the README's lesson table (the course's one list of them)."""
    readme = root / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    return {m.group(1): {"question": m.group(2), "build": m.group(3)} for m in README_ROW.finditer(text)}


def strip_markers(source: str) -> str:
    """A code cell's source without the lines only the authoring tools read (see :data:`MARKER_LINE`)."""
    return MARKER_LINE.sub("", source)


# --------------------------------------------------------------------------------------------
# Widgets: a static view from the state stored with the notebook
# --------------------------------------------------------------------------------------------


def _model(state: dict, ref: str) -> dict:
    return state.get(ref.removeprefix("IPY_MODEL_"), {})


def static_widget(model_id: str, state: dict, lesson: str) -> list:
    """Outputs that show a widget as it was stored: an interactive view's outputs (no progress bar is stored:
    utils.progress leaves a line, and tests/test_site.py fails on a stored bar)."""
    model = state.get(model_id)
    if model is None:
        return [_note("It is shown here when the notebook runs.", lesson)]
    layout = _model(state, model.get("state", {}).get("layout", ""))
    if layout.get("state", {}).get("visibility") == "hidden" or layout.get("state", {}).get("display") == "none":
        return []  # hidden: JupyterLab shows nothing either
    outputs, controls = [], []

    def walk(m):
        s = m.get("state", {})
        if m.get("model_name") == "OutputModel":
            outputs.extend(copy.deepcopy(s.get("outputs", [])))
        elif s.get("description"):
            controls.append(s["description"])
        for c in s.get("children", []):
            walk(_model(state, c))

    walk(model)
    named = ", ".join(f"<em>{html.escape(c)}</em>" for c in controls)
    note = _note(f"An interactive view{' (' + named + ')' if named else ''}: below is what it showed when "
                 "the notebook was built. Run the notebook to move its controls.", lesson)
    return [note] + [nbformat.from_dict(o) for o in outputs]


def _note(text: str, lesson: str) -> dict:
    links = (f'<a href="{colab_url(f"notebooks/{lesson}.ipynb")}">Colab</a> · '
             f'<a href="{binder_url(f"notebooks/{lesson}.ipynb")}">Binder</a>')
    return nbformat.v4.new_output("display_data", data={
        "text/html": f'<div class="course-widget-note"><strong>Widget.</strong> {text} ({links})</div>'})


# --------------------------------------------------------------------------------------------
# One lesson: the solution notebook, made a page
# --------------------------------------------------------------------------------------------


def exercise_box(exercise: str, lesson: str) -> nbformat.NotebookNode:
    ipynb = f"notebooks/{lesson}.ipynb"
    return nbformat.v4.new_markdown_cell(
        f":::{{admonition}} Exercise {exercise}: your turn, in the exercise notebook\n:class: course-exercise\n"
        f"The next cell is the reference solution. In the exercise notebook it is a skeleton for you to "
        f"fill in, checked by `utils.check(\"{exercise}\", ...)`.\n\n"
        f"[Download the notebook](path:../{ipynb}){{.course-button}} "
        f"[Open in Colab]({colab_url(ipynb)}){{.course-button}} "
        f"[Open on Binder]({binder_url(ipynb)}){{.course-button}}\n:::")


def site_notebook(nb, lesson: str) -> nbformat.NotebookNode:
    """The page version of a solution notebook (see the module docstring)."""
    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    nb.metadata.pop("jupytext", None)
    code = [c for c in nb.cells if c.cell_type == "code"]
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for remote, local in BADGES.items():
                cell.source = cell.source.replace(remote, f"../badges/{local}")
        elif cell.cell_type == "code":
            if SETUP_CELL in cell.source:
                cell.metadata["tags"] = [*cell.metadata.get("tags", []), "hide-cell"]  # folded: machinery
            if has_solution(cell.source):
                later = code[code.index(cell) + 1:]
                exercise = next((CHECK_CALL.findall(c.source)[0] for c in later if CHECK_CALL.search(c.source)), None)
                if exercise:
                    cells.append(exercise_box(exercise, lesson))
            outputs = []
            for out in cell.outputs:
                view = out.get("data", {}).get(WIDGET_VIEW)
                outputs.extend(static_widget(view["model_id"], state, lesson) if view else [out])
            cell.outputs = outputs
            cell.source = strip_markers(cell.source)
        cells.append(cell)
    nb.cells = cells
    return nb


def course_map(infos: list[dict]) -> str:
    """The landing page's course map (MyST markdown): a card per lesson, its question, what you build, links."""
    cards = ["::::{container} course-map"]
    for info in infos:
        stem, ipynb = info["stem"], f"notebooks/{info['stem']}.ipynb"
        exercises = f"{info['exercises']} exercise{'s' * (info['exercises'] != 1)}"
        cards += [":::{container} course-card",
                  f"**[{stem[:2]} · {info['short']}](lessons/{stem}.ipynb)**\n",
                  f"*{info['question']}*\n",
                  *([f"**You build:** {info['build']}\n"] if info["build"] else []),
                  f"{exercises} · [Colab]({colab_url(ipynb)}) · [Binder]({binder_url(ipynb)})",
                  ":::"]
    return "\n".join(cards + ["::::"]) + "\n"


def start_button(infos: list[dict]) -> str:
    """The landing page's one call to action: the first lesson (MyST markdown)."""
    first = infos[0]["stem"]
    return f"[Start with lesson {first[:2]} →](lessons/{first}.ipynb){{.course-start}}\n"


def how_to_run(infos: list[dict]) -> str:
    """Colab, Binder, your machine: where the exercise notebooks run (MyST markdown)."""
    first = f"notebooks/{infos[0]['stem']}.ipynb"
    return (f"* **Colab**, nothing to install: open a lesson from its card above, or "
            f"[lesson {infos[0]['stem'][:2]} in Colab]({colab_url(first)}). Its first cell fetches the course's "
            f"code and uses Colab's own PyTorch.\n"
            f"* **Binder**, nothing to install: [the exercise notebooks in JupyterLab]({binder_url('notebooks')}), "
            f"with the course's environment (the first start takes a few minutes).\n"
            f"* **Your machine**, Python 3.11: `git clone https://github.com/{REPO}`, then, in its folder, "
            f"`pip install -r requirements.txt && jupyter lab notebooks/`. Nothing is downloaded while a "
            f"lesson runs: all data is generated from a seed.\n")


def layout(src: Path, root: Path = ROOT) -> list[dict]:
    """Write the Sphinx source folder ``src``: the landing page, the lessons, the exercise notebooks."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(SITE, src, ignore=shutil.ignore_patterns("conf.py", "_static", "__pycache__"))
    (src / "lessons").mkdir()
    (src / "notebooks").mkdir()
    infos, table = [], readme_lessons(root)
    for path in lessons(root):
        nb = nbformat.read(path, as_version=4)
        nbformat.write(site_notebook(nb, path.stem), src / "lessons" / path.name)
        shutil.copy2(root / "notebooks" / path.name, src / "notebooks" / path.name)
        exercises = sorted(set(CHECK_CALL.findall("\n".join(c.source for c in nb.cells if c.cell_type == "code"))))
        info = {"stem": path.stem, **lesson_info(nb), "exercises": len(exercises)}
        row = table.get(path.stem, {})
        infos.append({**info, "question": row.get("question", info["why"]), "build": row.get("build", "")})
    (src / "course_map.md").write_text(course_map(infos))
    (src / "start.md").write_text(start_button(infos))
    (src / "how_to_run.md").write_text(how_to_run(infos))
    return infos


def build(out: Path = DEFAULT_OUT, root: Path = ROOT, quiet: bool = True) -> Path:
    """Lay out the sources and run Sphinx; returns the folder of the HTML site. Raises on a warning."""
    src, html_dir = out / "src", out / "html"
    layout(src, root)
    if html_dir.exists():
        shutil.rmtree(html_dir)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(SITE), "-W", "--keep-going", "-E",
           "-d", str(out / "doctrees"), *(["-q"] if quiet else []), str(src), str(html_dir)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the site build failed (sphinx exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return html_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default _build/site)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    html_dir = build(args.out.resolve())
    print(f"site of {REPO}@{REF} built in {time.perf_counter() - start:.1f} s: {html_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

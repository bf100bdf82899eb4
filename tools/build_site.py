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
* each exercise (a cell with a ``### BEGIN SOLUTION`` region) is announced by a box that names
  it (its ``utils.check`` id) and links to the exercise notebook (a download from the site, and
  Colab);
* a widget, which needs a kernel, is shown as it was when the notebook was built (its
  progress bar, or the output of an interactive view) with a note on where to move its controls.

The landing page's course map is generated from the lessons' titles and "Why this lesson" lines.
MathJax comes from the ``sphinx-mathjax-offline`` package, so maths renders offline too.
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

from tools.make_exercises import CHECK_CALL, has_solution
from tools.retarget import REF, REPO, binder_url, colab_url

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
DEFAULT_OUT = ROOT / "_build" / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
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


# --------------------------------------------------------------------------------------------
# Widgets: a static view from the state stored with the notebook
# --------------------------------------------------------------------------------------------


def _model(state: dict, ref: str) -> dict:
    return state.get(ref.removeprefix("IPY_MODEL_"), {})


def _widget_text(state: dict, model: dict) -> str:
    return html.unescape(model.get("state", {}).get("value", "")).replace("\u2007", " ")


def static_widget(model_id: str, state: dict, lesson: str) -> list:
    """Outputs that show a widget as it was stored: a progress bar, or an interactive view's outputs."""
    model = state.get(model_id)
    if model is None:
        return [_note("It is shown here when the notebook runs.", lesson)]
    name, children = model.get("model_name", ""), model.get("state", {}).get("children", [])
    kids = [_model(state, c) for c in children]
    names = [k.get("model_name", "") for k in kids]
    if name == "HBoxModel" and "FloatProgressModel" in names:  # a tqdm progress bar
        bar = kids[names.index("FloatProgressModel")]["state"]
        texts = [_widget_text(state, k) for k in kids if k.get("model_name") == "HTMLModel"]
        left, right = (texts + ["", ""])[:2]
        return [nbformat.v4.new_output("display_data", data={"text/html": (
            f'<div class="course-progress"><span>{html.escape(left)}</span> '
            f'<progress max="{bar.get("max", 1)}" value="{bar.get("value", 0)}"></progress> '
            f'<span>{html.escape(right)}</span></div>')})]
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
        f"fill in, checked by `utils.check(\"{exercise}\", ...)`: "
        f"{{download}}`download the exercise notebook <../{ipynb}>` or "
        f"[open it in Colab]({colab_url(ipynb)}).\n:::")


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
        cells.append(cell)
    nb.cells = cells
    return nb


def course_map(infos: list[dict]) -> str:
    """The landing page's table of lessons (MyST markdown)."""
    rows = ["| | lesson | why | exercises | open |", "|---|---|---|---|---|"]
    for info in infos:
        stem = info["stem"]
        ipynb = f"notebooks/{stem}.ipynb"
        rows.append(f"| {stem[:2]} | [{info['short']}](lessons/{stem}.ipynb) | {info['why']} | "
                    f"{info['exercises']} | [Colab]({colab_url(ipynb)}) · [Binder]({binder_url(ipynb)}) |")
    return "\n".join(rows) + "\n"


def layout(src: Path, root: Path = ROOT) -> list[dict]:
    """Write the Sphinx source folder ``src``: the landing page, the lessons, the exercise notebooks."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(SITE, src, ignore=shutil.ignore_patterns("conf.py", "_static", "__pycache__"))
    (src / "lessons").mkdir()
    (src / "notebooks").mkdir()
    infos = []
    for path in lessons(root):
        nb = nbformat.read(path, as_version=4)
        nbformat.write(site_notebook(nb, path.stem), src / "lessons" / path.name)
        shutil.copy2(root / "notebooks" / path.name, src / "notebooks" / path.name)
        exercises = sorted(set(CHECK_CALL.findall("\n".join(c.source for c in nb.cells if c.cell_type == "code"))))
        infos.append({"stem": path.stem, **lesson_info(nb), "exercises": len(exercises)})
    (src / "course_map.md").write_text(course_map(infos))
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

"""Sphinx configuration of the course's website; built by ``python -m tools.build_site``.

Why Sphinx with MyST-NB: it is the engine of Jupyter Book 1 (Executable Books, part of the
Jupyter ecosystem), pure Python (no Node.js toolchain, unlike Jupyter Book 2), renders a
notebook's *stored* outputs with execution off, and builds a static site with a table of contents
and search that any static host serves. MathJax is the local copy from sphinx-mathjax-offline, so
the site needs no network, neither to build nor to read.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.retarget import REF, REPO  # noqa: E402  (the one place for the course's address)

project = "Attention and Transformers"
author = "the course's authors"
copyright = "the course's authors; text CC BY 4.0, code MIT"
language = "en"

extensions = ["myst_nb", "sphinx.ext.mathjax", "sphinx-mathjax-offline"]
nb_execution_mode = "off"  # render the outputs stored by tools.build_solutions; never execute
nb_merge_streams = True
nb_render_markdown_format = "myst"  # markdown outputs (lesson 04's Table 1) with tables and maths, as in JupyterLab
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "attrs_inline"]  # attrs: {.course-button}
myst_heading_anchors = 3
# the landing page's generated parts (tools/build_site.py) are included in it, not pages of their own
exclude_patterns = ["notebooks/**", "course_map.md", "start.md", "how_to_run.md", "_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "Attention and Transformers"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = False
html_context = {"default_mode": "light"}  # else the theme logs "invalid theme mode" as an error
html_theme_options = {
    "repository_url": f"https://github.com/{REPO}",
    "repository_branch": REF,
    "use_repository_button": True,
    "use_download_button": False,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

"""One source of versions: requirements.txt (pip, CI). environment.yml (conda) pins the same packages at
the same versions; binder/environment.yml (what Binder builds for learners) pins exactly the
"learners" part of requirements.txt, without the test and build tools."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name
LEARNERS = "# --- learners"
AUTHORS = "# --- authors"
TOOLS = {"pytest", "pytest-xdist", "nbval", "playwright", "jupytext", "nbclient", "sphinx", "myst-nb",
         "sphinx-book-theme", "sphinx-mathjax-offline", "nbgrader"}


def _requirements(part=None):
    """{name: version} of requirements.txt; ``part="learners"`` only the lines of its learners' part."""
    pins, section = {}, None
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        if raw.startswith(LEARNERS):
            section = "learners"
        elif raw.startswith(AUTHORS):
            section = "authors"
        line = raw.split("#")[0].strip()
        if line and (part is None or section == part):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _environment(path="environment.yml"):
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.-]+)\s*(==?)\s*([0-9][^=\s]*)", line)
        if m and m.group(1) != "python":
            pins[CONDA_NAMES.get(m.group(1), m.group(1)).lower()] = m.group(3)
    return pins


def test_environment_and_requirements_agree():
    req, env = _requirements(), _environment()
    assert req == env, f"only in requirements.txt: {set(req.items()) - set(env.items())}; only in environment.yml: {set(env.items()) - set(req.items())}"


def test_binder_installs_what_learners_need_at_the_same_versions():
    learners, binder = _requirements("learners"), _environment("binder/environment.yml")
    assert learners and {"torch", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "ipykernel", "tqdm"} <= set(learners)
    assert binder == learners, (f"binder/environment.yml should pin requirements.txt's learners' part: only there "
                                f"{set(binder.items()) - set(learners.items())}, missing {set(learners.items()) - set(binder.items())}")
    assert not TOOLS & set(binder), f"test or build tools in the learners' environment: {TOOLS & set(binder)}"
    assert not TOOLS & set(learners), f"move {TOOLS & set(learners)} to the authors' part of requirements.txt"


def test_binder_reads_its_own_folder():
    # repo2docker uses binder/ when it exists and then ignores the files at the root.
    assert (ROOT / "binder" / "environment.yml").is_file()
    assert not [p.name for p in (ROOT / "binder").iterdir() if p.name in ("requirements.txt", "setup.py")]


def test_torch_is_pinned_to_the_cpu_build():
    assert _requirements()["torch"] == "2.13.0"
    for path in ("environment.yml", "binder/environment.yml"):
        assert "pytorch=2.13.0=cpu_*" in (ROOT / path).read_text(), path

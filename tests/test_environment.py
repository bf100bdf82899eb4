"""One source of versions each: requirements.txt (pip, CI) for the course's own pins, which
environment.yml (conda) repeats; utils/versions.py for the range the lessons support, which the README
states and every pin lies in; binder/environment.yml (what Binder builds for learners) for the
learners' packages at versions shown to exist on conda-forge (benchmarks/compat.md)."""
import re
import runpy
from pathlib import Path

from tools.compat import requirement_pins

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = runpy.run_path(str(ROOT / "utils" / "versions.py"))
SUPPORTED = VERSIONS["SUPPORTED"]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name
TOOLS = {"pytest", "pytest-xdist", "nbval", "playwright", "jupytext", "nbclient", "sphinx", "myst-nb",
         "sphinx-book-theme", "sphinx-mathjax-offline", "nbgrader"}


def _requirements(part=None):
    """{name: version} of requirements.txt; ``part="learners"`` only the lines of its learners' part."""
    return requirement_pins(part)


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


def test_binder_installs_what_learners_need_inside_the_range():
    learners, binder = _requirements("learners"), _environment("binder/environment.yml")
    assert learners and {"torch", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "ipykernel", "tqdm"} <= set(learners)
    assert set(binder) == set(learners), f"binder/environment.yml installs {sorted(binder)}, the learners need {sorted(learners)}"
    for name, version in binder.items():
        # an exact pin, or a release series (=8.1: conda's newest 8.1.x) that requirements.txt's version belongs to
        assert learners[name] == version or learners[name].startswith(version + "."), (name, version, learners[name])
        if name in SUPPORTED:
            assert VERSIONS["status"](name, version) == "ok", f"Binder's {name} {version} is outside utils/versions.py"
    assert not TOOLS & set(binder), f"test or build tools in the learners' environment: {TOOLS & set(binder)}"
    assert not TOOLS & set(learners), f"move {TOOLS & set(learners)} to the authors' part of requirements.txt"
    assert "  - python=3.11\n" in (ROOT / "binder" / "environment.yml").read_text(), "Binder's Python is the course's (3.11)"


def test_requirements_lie_in_the_supported_range():
    pins = _requirements()
    for name in SUPPORTED:
        if name in pins:
            assert VERSIONS["status"](name, pins[name]) == "ok", f"requirements.txt pins {name} {pins[name]}, outside utils/versions.py"


def test_the_readme_states_the_supported_range():
    """The README's table is utils/versions.py's range, word for word, and names the command that tests it."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Start")
    section = readme[start:readme.index("\n## ", start + 1)]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", section, re.M))
    stated = {re.sub(r".*\(`(.+)`\)", r"\1", k).lower(): v for k, v in rows.items() if k not in ("library", "---")}
    for name, (oldest, newest, _) in SUPPORTED.items():
        want = f"{oldest} to {newest}.x" if newest else f"{oldest} or newer"
        assert stated.get(name) == want, f"README says {name}: {stated.get(name)!r}; utils/versions.py: {want!r}"
    assert len(stated) == len(SUPPORTED), f"the README's table names libraries utils/versions.py does not: {set(stated) - set(SUPPORTED)}"
    for needed in ("python -m tools.compat STACK", "benchmarks/compat.md", "COURSE_DEVICE=cuda", "Python 3.12"):
        assert needed in section, f"the README's Start section does not mention {needed}"


def test_binder_reads_its_own_folder():
    # repo2docker uses binder/ when it exists and then ignores the files at the root.
    assert (ROOT / "binder" / "environment.yml").is_file()
    assert not [p.name for p in (ROOT / "binder").iterdir() if p.name in ("requirements.txt", "setup.py")]


def test_torch_is_pinned_to_the_cpu_build():
    assert _requirements()["torch"] == "2.13.0"
    for path in ("environment.yml", "binder/environment.yml"):
        assert "pytorch=2.13.0=cpu_*" in (ROOT / path).read_text(), path

"""The lessons' setup cell on Colab, simulated: a fake ``google.colab`` module, and GitHub replaced by a
local repository (git's ``url.<base>.insteadOf``), so the cell's real ``git clone`` runs offline.

It must fetch the course at the notebook's branch or tag (else the default branch, with a warning),
use the clone's ``utils``, install nothing (``pip`` is a trap on the PATH), reuse an earlier clone,
and fail with a message that says what to do, never later with ``ModuleNotFoundError: utils``. On a
Colab whose libraries lie outside utils/versions.py's range (faked by package metadata put first on
``sys.path``), it must say what will not work and what to do, before anything fails. In both stored
notebooks it opens folded under its one-line title.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools.retarget import REF, REPO, setup_cell

ROOT = Path(__file__).resolve().parent.parent
LESSON_SOURCES = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))

# Runs in a fresh interpreter in /content: Colab's marker module, then the cell, then a report.
RUNNER = textwrap.dedent("""
    import json, os, sys, types
    if os.environ.get("FAKE_SITE"):  # an older Colab: its package metadata (and maybe a torch that fails) first
        sys.path.insert(0, os.environ["FAKE_SITE"])
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
    cell = open(sys.argv[1]).read()
    for _ in range(int(sys.argv[2])):
        exec(compile(cell, "setup cell", "exec"), {"__name__": "__main__"})
    import utils
    print("REPORT", json.dumps({"utils": utils.__file__, "torch_threads": __import__("torch").get_num_threads()}))
""")


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"})


@pytest.fixture(scope="module")
def github(tmp_path_factory):
    """A stand-in for github.com: OWNER/NAME is a repository with the course's utils/, tag v1 and branch main."""
    base = tmp_path_factory.mktemp("github")
    repo = base / REPO
    shutil.copytree(ROOT / "utils", repo / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    _git("init", "-q", "-b", "main", cwd=repo)
    (repo / "VERSION").write_text("v1\n")
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "v1", cwd=repo)
    _git("tag", "v1", cwd=repo)
    (repo / "VERSION").write_text("main\n")
    _git("commit", "-q", "-am", "later", cwd=repo)
    return base


def fake_site(tmp_path, versions: dict, broken_torch=False):
    """A folder that, put first on sys.path, makes importlib.metadata report ``versions``; with
    ``broken_torch``, ``import torch`` fails there too, as a torch too old for the course might."""
    site = tmp_path / "fake-site"
    for name, version in versions.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if broken_torch:
        (site / "torch").mkdir(parents=True)
        (site / "torch" / "__init__.py").write_text("raise ImportError('this torch cannot run the course (simulated)')\n")
    return site


def run_cell(tmp_path, github, repo=REPO, ref=REF, runs=1, network=True, site=None):
    content = tmp_path / "content"
    content.mkdir(exist_ok=True)
    cell = tmp_path / "cell.py"
    cell.write_text(setup_cell(repo, ref))
    trap = tmp_path / "bin"
    trap.mkdir(exist_ok=True)
    for name in ("pip", "pip3", "conda", "uv"):  # installing anything is a failure
        (trap / name).write_text(f"#!/bin/sh\necho \"$0 $*\" >> {tmp_path / 'installs.log'}\nexit 1\n")
        (trap / name).chmod(0o755)
    target = f"file://{github}/" if network else f"file://{tmp_path}/no-network/"
    env = {**os.environ, "PATH": f"{trap}:{os.environ['PATH']}", "PYTHONPATH": "",
           "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{target}.insteadOf",
           "GIT_CONFIG_VALUE_0": "https://github.com/", "GIT_TERMINAL_PROMPT": "0", "FAKE_SITE": str(site or "")}
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    done = subprocess.run([sys.executable, str(runner), str(cell), str(runs)], cwd=content, env=env,
                          capture_output=True, text=True, timeout=120)
    report = next((json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("REPORT ")), None)
    installs = (tmp_path / "installs.log").read_text() if (tmp_path / "installs.log").exists() else ""
    return done, report, content, installs


def test_every_lesson_has_the_same_setup_cell():
    for path in LESSON_SOURCES:
        text = path.read_text()
        assert setup_cell() in text, f"{path.name}: its setup cell is not tools.retarget.setup_cell() (copy lesson 01's)"


def test_colab_clones_the_notebooks_version_and_uses_it(tmp_path, github):
    done, report, content, installs = run_cell(tmp_path, github, ref="v1", runs=2)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = content / REPO.split("/")[1]
    assert (folder / "VERSION").read_text() == "v1\n", "the clone is not the notebook's version (tag v1)"
    assert report["utils"] == str(folder / "utils" / "__init__.py"), "utils was not imported from the clone"
    assert report["torch_threads"] == 1, "utils.setup() did not run"
    assert not installs, f"the setup cell installed something: {installs}"
    assert "⚠️" not in done.stdout


def test_the_default_branch_when_the_notebooks_version_is_gone(tmp_path, github):
    done, report, content, _ = run_cell(tmp_path, github, ref="v9")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"has no 'v9': using its default branch" in done.stdout
    assert (content / REPO.split("/")[1] / "VERSION").read_text() == "main\n"


@pytest.mark.parametrize("case", ["no network", "a fork or a private repository"])
def test_a_failed_clone_says_what_to_do(tmp_path, github, case):
    repo = REPO if case == "no network" else "someone-else/private-course"
    done, report, content, installs = run_cell(tmp_path, github, repo=repo, network=case != "no network")
    assert done.returncode != 0 and report is None
    assert "ModuleNotFoundError" not in done.stderr, "the failure surfaced later, as a missing utils"
    err = done.stderr
    assert "RuntimeError: Could not fetch the course's code from https://github.com/" + repo in err, err[-2000:]
    for advice in ("No network?", f"A fork? This notebook fetches {repo}", "set COURSE_REPO", "A private repository?"):
        assert advice in err, f"the message lacks {advice!r}:\n{err[-2000:]}"
    assert not installs
    assert not (content / repo.split("/")[1]).exists(), "a failed clone left a folder behind"


def test_a_broken_earlier_folder_is_named(tmp_path, github):
    (tmp_path / "content" / REPO.split("/")[1]).mkdir(parents=True)
    done, _, _, _ = run_cell(tmp_path, github)
    assert done.returncode != 0 and "exists but holds no course code: delete it" in done.stderr, done.stderr[-1500:]


# Colab as it was before 2026 (torch 2.4 era), and one whose libraries are newer than the course has run with.
OLD_COLAB = {"torch": "2.4.1", "numpy": "1.26.4", "ipywidgets": "7.7.1", "ipython": "7.34.0"}


def test_an_old_colab_is_told_what_will_not_work_before_anything_fails(tmp_path, github):
    done, report, _, installs = run_cell(tmp_path, github, site=fake_site(tmp_path, OLD_COLAB))
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]  # a warning, not a failure: the lesson may still run
    assert out.startswith("The course supports python 3.11 to 3.12.x; torch 2.10 to 2.14.x"), out[:500]
    assert "⚠️ torch 2.4.1 is older than 2.10, the oldest the lessons have run with: a cell that uses a newer " \
           "PyTorch API stops with an AttributeError or TypeError." in out
    assert '!pip install "torch>=2.10" then Runtime > Restart session and run this cell again' in out
    assert "⚠️ numpy 1.26.4 is older than 2.0" in out
    assert "ipywidgets" not in out.split("\n", 1)[1] and "ipython" not in out.split("\n", 1)[1], "in-range libraries are not named"
    assert out.index("⚠️ torch") < out.index("Running on CPU"), "the warning must come before the lesson starts"
    assert not installs, "the check must only advise, never install"


def test_the_warning_comes_before_a_failure_it_explains(tmp_path, github):
    site = fake_site(tmp_path, {"torch": "2.4.1"}, broken_torch=True)
    done, report, _, installs = run_cell(tmp_path, github, site=site)
    assert done.returncode != 0 and report is None
    assert "ImportError: this torch cannot run the course (simulated)" in done.stderr, done.stderr[-1500:]
    assert "⚠️ torch 2.4.1 is older than 2.10" in done.stdout and "Restart session" in done.stdout
    assert not installs


def test_a_newer_colab_gets_a_note_not_a_warning(tmp_path, github):
    done, _, _, _ = run_cell(tmp_path, github, site=fake_site(tmp_path, {"torch": "2.16.0", "ipywidgets": "9.0.0"}))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ℹ️ torch 2.16.0 is newer than the newest the lessons have run with (2.14.x): they should work" in done.stdout
    assert '!pip install "ipywidgets<9"' in done.stdout and "⚠️" not in done.stdout


def test_the_setup_cell_is_folded_under_its_title_in_both_notebooks():
    import nbformat

    for folder in ("solutions", "notebooks"):
        for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
            cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
            setup = cells[0]
            assert setup.source.startswith("# @title Setup: "), f"{folder}/{path.name}: the first code cell has no Colab title"
            assert setup.metadata.get("cellView") == "form", f"{folder}/{path.name}: not folded on Colab (cellView)"
            assert setup.metadata.get("jupyter", {}).get("source_hidden") is True, f"{folder}/{path.name}: not folded in JupyterLab"
            assert not [c for c in cells[1:] if c.metadata.get("jupyter", {}).get("source_hidden")], "only the setup cell is folded"

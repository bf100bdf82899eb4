"""The course's address, in one place, and the command that moves every copy of it to a fork.

The Colab and Binder badges of each lesson, the setup cell that fetches the course code on Colab,
the README and the site (``site/conf.py``) all name the GitHub repository the course is published
from, and the branch or tag its notebooks belong to. ``REPO`` and ``REF`` below are the one
setting; the copies in the notebooks are written from it, because a notebook opened on Colab must
know where to fetch the code from before it has any of it. Usage, from the repository root::

    python -m tools.retarget OWNER/REPO             # a fork: rewrite every copy (and REPO below)
    python -m tools.retarget OWNER/REPO --ref v1.0  # ... and point the notebooks at a tag
    python -m tools.retarget --check                # exit 1 if any copy disagrees with REPO/REF

``tests/test_retarget.py`` runs ``--check`` on the repository and a retarget on a copy of it.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = "attention-course/attention-transformers"  # OWNER/NAME on GitHub
REF = "main"  # the branch (or tag) the badges open and the Colab setup cell clones

ROOT = Path(__file__).resolve().parent.parent
NAME = r"[A-Za-z0-9_.-]+"
# Every form a copy of the address takes. Each pattern's groups: (prefix, owner/name, [middle, ref]).
PATTERNS = {
    "colab": re.compile(rf"(colab\.research\.google\.com/github/)({NAME}/{NAME})(/blob/)({NAME})"),
    "binder": re.compile(rf"(mybinder\.org/v2/gh/)({NAME}/{NAME})(/)({NAME})"),
    "setting": re.compile(rf"""(\bCOURSE_REPO = \\?["'])({NAME}/{NAME})()()"""),
    "ref": re.compile(rf"""(\bCOURSE_REF = \\?["'])()()({NAME})"""),
    "github": re.compile(rf"(github\.com/)({NAME}/{NAME})()()"),
}
SUFFIXES = {".md", ".py", ".ipynb", ".yml", ".yaml", ".txt", ".cfg", ".toml", ".html", ".rst"}


# The first code cell of every lesson (tests/test_colab_setup.py runs it with Colab simulated). Its first line is
# the one-line title a learner sees: JupyterLab shows the first line of a folded cell, Colab a `# @title`.
SETUP_CELL = """# @title Setup: the course's code and a check of your library versions (click to show)
# Runs unchanged locally, on Binder and on Colab. Folded by its cell metadata (tools/make_exercises.py).
import importlib.util
import os
import runpy
import subprocess
import sys

COURSE_REPO = "{repo}"  # where the course is published (a fork: python -m tools.retarget OWNER/NAME)
COURSE_REF = "{ref}"  # the branch or tag this notebook belongs to


def fetch_course(repo=COURSE_REPO, ref=COURSE_REF):
    \"\"\"On Colab: clone the course's code (not PyTorch: Colab's own is kept) and return its folder.\"\"\"
    folder = repo.split("/")[-1]
    if os.path.isfile(os.path.join(folder, "utils", "__init__.py")):
        return folder  # fetched by an earlier run of this cell
    if os.path.exists(folder):
        raise RuntimeError(f"./{{folder}} exists but holds no course code: delete it (!rm -rf {{folder}}) and run this cell again.")
    url = f"https://github.com/{{repo}}"
    clone = ["git", "clone", "--quiet", "--depth", "1", url, folder]
    done = subprocess.run([*clone[:-2], "--branch", ref, *clone[-2:]], capture_output=True, text=True)
    if done.returncode and "not found in upstream" in done.stderr:  # no such branch or tag (any more)
        print(f"⚠️ {{repo}} has no {{ref!r}}: using its default branch, which may not match this notebook.")
        done = subprocess.run(clone, capture_output=True, text=True)
    if done.returncode or not os.path.isfile(os.path.join(folder, "utils", "__init__.py")):
        raise RuntimeError(
            f"Could not fetch the course's code from {{url}}: {{done.stderr.strip()[-300:] or 'the clone has no utils/'}}\\n"
            "* No network? Colab needs the internet to fetch it: check the connection, then run this cell again.\\n"
            f"* A fork? This notebook fetches {{repo}}: set COURSE_REPO above to OWNER/NAME (in the fork, "
            "`python -m tools.retarget OWNER/NAME` does it in every lesson).\\n"
            "* A private repository? Colab cannot clone it without your credentials: make it public, or upload "
            f"the course's folder as ./{{folder}} (Files pane) and run this cell again.")
    return folder


if "google.colab" in sys.modules:  # Colab: fetch the course's code; install nothing
    sys.path.insert(0, fetch_course())
else:
    sys.path.insert(0, os.path.abspath(".."))  # the repository root, for `import utils`
course = importlib.util.find_spec("utils")  # where `import utils` will look (finding it imports nothing)
if course:  # before anything can fail: say if a library is outside the versions the course supports
    runpy.run_path(os.path.join(os.path.dirname(course.origin), "versions.py"))["check_versions"]()

import utils

utils.setup(seed=0)
"""


def setup_cell(repo: str = REPO, ref: str = REF) -> str:
    """The text of every lesson's setup cell, for the course at ``repo`` and ``ref``."""
    return SETUP_CELL.format(repo=repo, ref=ref)


def colab_url(path: str, repo: str = REPO, ref: str = REF) -> str:
    """Open ``path`` (a notebook, relative to the repository root) in Colab."""
    return f"https://colab.research.google.com/github/{repo}/blob/{ref}/{path}"


def binder_url(path: str, repo: str = REPO, ref: str = REF) -> str:
    """Open ``path`` in JupyterLab on Binder."""
    return f"https://mybinder.org/v2/gh/{repo}/{ref}?urlpath=lab/tree/{path}"


def github_url(path: str = "", repo: str = REPO, ref: str = REF) -> str:
    return f"https://github.com/{repo}" + (f"/blob/{ref}/{path}" if path else "")


def course_files(root: Path = ROOT) -> list[Path]:
    """The text files git knows (tracked or new, not ignored) that may hold a copy of the address."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        files = [root / name for name in listed]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file
        files = [p for p in root.rglob("*") if ".git" not in p.parts]
    return sorted(p for p in files if p.suffix in SUFFIXES and p.is_file() and p.resolve() != Path(__file__).resolve())


def _ours(kind: str, repo: str, current: str) -> bool:
    """Whether a ``github.com/OWNER/NAME`` link is the course's (another project's is left alone)."""
    if kind != "github":
        return True
    owner, name = repo.split("/")
    cur_owner, cur_name = current.split("/")
    return name == cur_name or owner == cur_owner


def copies(text: str, repo: str = REPO):
    """Every copy of the address in ``text``: (kind, owner/name or '', ref or '', offset)."""
    found = []
    for kind, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if m.group(2) and not _ours(kind, m.group(2), repo):
                continue
            found.append((kind, m.group(2), m.group(4), m.start()))
    return found


def disagreements(root: Path = ROOT, repo: str = REPO, ref: str = REF) -> list[str]:
    """Every copy of the address under ``root`` that is not ``repo`` (at ``ref``), as 'file:line: ...'."""
    problems = []
    for path in course_files(root):
        text = path.read_text(errors="replace")
        for kind, found_repo, found_ref, offset in copies(text, repo):
            wrong = (found_repo and found_repo != repo) or (found_ref and found_ref != ref)
            if wrong:
                line = text.count("\n", 0, offset) + 1
                problems.append(f"{path.relative_to(root)}:{line}: {kind} link names "
                                f"{found_repo or repo}{'@' + found_ref if found_ref else ''}, the setting is {repo}@{ref}")
    return problems


def retarget(root: Path, new_repo: str, new_ref: str, old_repo: str = REPO, old_ref: str = REF) -> list[Path]:
    """Rewrite every copy of the address under ``root`` to ``new_repo`` at ``new_ref``; the files changed."""
    changed = []

    def rewrite(text):
        for kind, pattern in PATTERNS.items():
            def sub(m):
                if m.group(2) and (m.group(2) != old_repo and not _ours(kind, m.group(2), old_repo)):
                    return m.group(0)
                repo = new_repo if m.group(2) else ""
                ref = new_ref if m.group(4) else ""
                return m.group(1) + repo + m.group(3) + ref
            text = pattern.sub(sub, text)
        return text

    for path in course_files(root):
        text = path.read_text()
        new = rewrite(text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    module = root / "tools" / "retarget.py"  # the setting itself
    if module.exists():
        text = module.read_text()
        new = re.sub(r'^REPO = "[^"]*"', f'REPO = "{new_repo}"', text, count=1, flags=re.M)
        new = re.sub(r'^REF = "[^"]*"', f'REF = "{new_ref}"', new, count=1, flags=re.M)
        if new != text:
            module.write_text(new)
            changed.append(module)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", help="OWNER/NAME of the GitHub repository the course is published from")
    parser.add_argument("--ref", default=None, help=f"branch or tag the notebooks belong to (now {REF!r})")
    parser.add_argument("--check", action="store_true", help="only report copies that disagree with the setting")
    args = parser.parse_args(argv)
    if args.check or not args.repo:
        problems = disagreements()
        for p in problems:
            print(p)
        print(f"{len(problems)} cop{'y' if len(problems) == 1 else 'ies'} disagree with {REPO}@{REF}"
              if problems else f"every copy of the address is {REPO}@{REF}")
        return 1 if problems else 0
    if not re.fullmatch(f"{NAME}/{NAME}", args.repo):
        parser.error(f"expected OWNER/NAME, e.g. ada/attention-transformers, not {args.repo!r}")
    ref = args.ref or REF
    if not re.fullmatch(NAME, ref):
        parser.error(f"not a branch or tag name: {ref!r}")
    changed = retarget(ROOT, args.repo, ref)
    print(f"{REPO}@{REF} -> {args.repo}@{ref}: {len(changed)} files rewritten")
    for path in changed:
        print(f"  {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

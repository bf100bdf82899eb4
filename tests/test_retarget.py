"""One place for the course's address (tools/retarget.py), one command to move a fork's copies of it."""
import shutil
import subprocess
import sys
from pathlib import Path

from tools import retarget

ROOT = Path(__file__).resolve().parent.parent


def test_every_copy_of_the_address_agrees_with_the_setting():
    problems = retarget.disagreements()
    assert not problems, "copies that disagree with tools/retarget.py (run `python -m tools.retarget OWNER/NAME`):\n" + "\n".join(problems)


def test_the_lessons_and_the_readme_do_name_it():
    """The check above would pass on files with no address at all: the badges and setup cells must be there."""
    for path in [ROOT / "README.md", *sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))]:
        kinds = {kind for kind, *_ in retarget.copies(path.read_text())}
        assert {"colab", "binder"} <= kinds, f"{path.name} has no Colab and Binder links"
        if path.suffix == ".py":
            assert {"setting", "ref"} <= kinds, f"{path.name}'s setup cell does not name COURSE_REPO and COURSE_REF"


def _copy_of_the_course(dest: Path) -> Path:
    dest.mkdir()
    for name in ("README.md", "tools", "solutions", "notebooks"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    other = "https://github.com/" + "karpathy/nanoGPT"  # another project's link must stay as it is
    (dest / "NOTES.md").write_text(f"See {other} and {retarget.github_url()}.\n")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def test_retarget_moves_every_copy_to_a_fork(tmp_path):
    course = _copy_of_the_course(tmp_path / "fork")
    done = subprocess.run([sys.executable, "-m", "tools.retarget", "ada/attention-fork", "--ref", "v2"], cwd=course,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert retarget.disagreements(course, "ada/attention-fork", "v2") == []
    assert retarget.disagreements(course), "nothing was rewritten"
    check = subprocess.run([sys.executable, "-m", "tools.retarget", "--check"], cwd=course, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout  # the fork's own setting was rewritten too
    assert 'REPO = "ada/attention-fork"' in (course / "tools" / "retarget.py").read_text()
    readme = (course / "README.md").read_text()
    assert retarget.colab_url("notebooks/01_lstm_bottleneck.ipynb", "ada/attention-fork", "v2") in readme
    assert retarget.github_url(repo="ada/attention-fork") in (course / "NOTES.md").read_text()
    assert "https://github.com/" + "karpathy/nanoGPT" in (course / "NOTES.md").read_text()
    for path in sorted((course / "solutions").glob("[0-9][0-9]_*.py")):
        assert retarget.setup_cell("ada/attention-fork", "v2") in path.read_text(), path.name
    for path in sorted((course / "notebooks").glob("*.ipynb")) + sorted((course / "solutions").glob("*.ipynb")):
        assert "attention-course/" not in path.read_text(), path.name


def test_a_copy_that_disagrees_is_found(tmp_path):
    course = _copy_of_the_course(tmp_path / "course")
    lesson = sorted((course / "solutions").glob("[0-9][0-9]_*.py"))[0]
    text = lesson.read_text()
    stale = retarget.binder_url("notebooks/x.ipynb", "old-owner/" + retarget.REPO.split("/")[1])
    lesson.write_text(text + f"\n# [binder]({stale})\n" + text.replace(f'COURSE_REF = "{retarget.REF}"', "COURSE_REF = " + '"v0"'))
    problems = retarget.disagreements(course)
    assert any(lesson.name in p and "binder link names old-owner/" in p for p in problems), problems
    assert any(lesson.name in p and "ref link" in p and "@v0" in p for p in problems), problems
    done = subprocess.run([sys.executable, "-m", "tools.retarget", "--check"], cwd=course, capture_output=True, text=True)
    assert done.returncode == 1 and "disagree" in done.stdout

"""Who submitted what: the notebooks under the paths given, and each one's learner.

The learner's name is, in this order: the folder under ``submitted/`` in nbgrader's layout
(``submitted/<learner>/<assignment>/<notebook>.ipynb``); else the first folder under the PATH given
(one folder per learner: ``class/alice/01_lstm_bottleneck.ipynb``); else the file name without the
lesson's name (``class/alice_01_lstm_bottleneck.ipynb`` and ``class/alice.ipynb`` are both
``alice``); else, for a file named as the lesson and given as a path, its folder. Two notebooks of
one name under one learner name are two learners, ``ada (<path>)``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Submission:
    path: Path  # the notebook
    learner: str
    shown: str  # how the gradebook names the notebook: relative to where it was found


def find_notebooks(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(notebook, the PATH it was found under), sorted, without Jupyter's checkpoints."""
    found = []
    for given in paths:
        if given.is_dir():
            for nb in sorted(given.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in nb.parts and nb.is_file():
                    found.append((nb, given))
        else:
            found.append((given, given.parent))
    return found


def learner_name(path: Path, given: Path, lesson_names: list[str]) -> str:
    """See the module's docstring: nbgrader's ``submitted/<learner>/``, the learner's folder, or the file name."""
    parts = path.resolve().parts
    if "submitted" in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index("submitted")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    try:
        rel = path.resolve().relative_to(given.resolve())
    except ValueError:
        rel = Path(path.name)
    if len(rel.parts) > 1:
        return rel.parts[0]
    stem = path.stem
    for name in sorted(lesson_names, key=len, reverse=True):
        if name in stem:
            stem = stem.replace(name, "")
            break
    # A file named as the lesson itself (`ada/01_lstm_bottleneck.ipynb`, given as a file): its folder names the learner.
    return stem.strip(" _-.") or path.resolve().parent.name or path.stem


def feedback_name(learner: str) -> str:
    """The learner's feedback file name; two different learner names never get the same one.

    A plain lowercase name is kept (``alice`` -> ``alice.md``); any other gets a short hash of the
    exact name (``jo smith`` -> ``jo_smith-<hash>.md``, ``Jo`` -> ``jo-<hash>.md``), so that neither
    sanitising nor a case-insensitive file system (macOS, Windows) can make two names collide.
    """
    if re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,80}", learner) and not re.search(r"-[0-9a-f]{10}$", learner):
        return f"{learner}.md"
    safe = re.sub(r"[^a-z0-9._-]+", "_", learner.lower()).strip("._-")[:60] or "learner"
    return f"{safe}-{hashlib.sha256(learner.encode()).hexdigest()[:10]}.md"


def _shown(nb: Path, given: Path, direct: set) -> str:
    """The notebook's path as the gradebook shows it: given as a file, whole; else from the folder above PATH."""
    for base in (Path.cwd(),) if nb.resolve() in direct else (Path.cwd(), given.parent):
        try:
            return str(nb.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(nb.resolve())


def submissions(paths: list[Path], out: Path, lesson_names: list[str]) -> list[Submission]:
    """Every notebook under ``paths`` (none under ``out``), with its learner, in a stable order."""
    out_resolved = out.resolve()
    found = [(nb, given) for nb, given in find_notebooks(paths) if out_resolved not in nb.resolve().parents]
    direct = {p.resolve() for p in paths if p.is_file()}  # given as files: shown by their whole path
    entries = [(nb, learner_name(nb, given, lesson_names), _shown(nb, given, direct)) for nb, given in found]
    # One learner, two notebooks of the same name (two copies, or files given as paths from folders
    # of the same name): they are not the same learner's one submission, so each gets its own id.
    count: dict = {}
    for nb, learner, _ in entries:
        count[(learner, nb.name)] = count.get((learner, nb.name), 0) + 1
    return [Submission(nb, f"{learner} ({shown})" if count[(learner, nb.name)] > 1 else learner, shown)
            for nb, learner, shown in entries]

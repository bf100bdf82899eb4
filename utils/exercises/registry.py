"""The exercises and where they come from: one module ``utils/exercises/lessonNN.py`` per lesson.

A lesson's module registers its exercises with :func:`exercise` when it is imported. Lessons are found
from those files (a new lesson needs no list edited), and a lesson is imported only when one of its
exercises is first asked for. A lesson module that fails to import raises :class:`LessonError`, which
names the file and the error, instead of looking like an exercise that does not exist.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

FOLDERS = [Path(__file__).resolve().parent]  # where lessonNN.py files are found: the package's own folder
_REGISTRY: dict[str, "Exercise"] = {}
_LOADED: set[str] = set()  # lessons whose module imported without error


@dataclass
class Exercise:
    id: str
    title: str
    reference: object  # a function, a class, or a tuple of them
    checker: Callable  # checker(candidate) -> None, raising Mistake("what is likely wrong")
    hints: list
    difficulty: int  # 1 (warm-up) to 3 (challenging)
    minutes: int  # expected time for a learner
    on_timeout: str = ""  # the likely cause when a candidate runs past the time limit
    parts: tuple = ("__init__", "forward")  # a class's methods the learner writes (see diagnosis.unfilled)

    @property
    def badge(self) -> str:
        return f"{'★' * self.difficulty}{'☆' * (3 - self.difficulty)}, about {self.minutes} min"


class LessonError(ImportError):
    """A lesson's checks module exists but could not be imported (a typo, a missing name)."""


def exercise(id: str, title: str, *, reference, hints, difficulty: int, minutes: int, on_timeout: str = "",
             parts: tuple = ("__init__", "forward")):
    """Decorator that registers a checker function as exercise ``id``.

    on_timeout: the likely cause, added to the message when a candidate runs past the time limit
    (e.g. "a decoding loop that ignores max_len"); parts: for a class, the methods the learner
    writes (the others are given in the skeleton).
    """

    def register(checker):
        _REGISTRY[id] = Exercise(id, title, reference, checker, list(hints), difficulty, minutes, on_timeout,
                                 tuple(parts))
        return checker

    return register


def lessons() -> tuple[str, ...]:
    """Every lesson that has a checks module, in order: ``("01", "02", ...)``."""
    found = (re.fullmatch(r"lesson(\d\d)\.py", path.name) for folder in FOLDERS for path in folder.glob("lesson[0-9][0-9].py"))
    return tuple(sorted({m.group(1) for m in found if m}))


def load_lesson(lesson: str) -> bool:
    """Import lesson ``lesson``'s checks (once). False when it has none; LessonError when they do not import."""
    if lesson in _LOADED:
        return True
    if not re.fullmatch(r"\d\d", str(lesson)) or lesson not in lessons():
        return False
    try:
        importlib.import_module(f"utils.exercises.lesson{lesson}")
    except Exception as err:
        for id in [i for i in _REGISTRY if i.startswith(f"{lesson}.")]:
            del _REGISTRY[id]  # registered before the error: half a lesson is not a lesson
        raise LessonError(f"{_shown_path(lesson)} does not import: {type(err).__name__}: {err}") from err
    _LOADED.add(lesson)
    return True


def _shown_path(lesson: str) -> str:
    """The lesson's checks module, as a path from the repository's root (``utils/exercises/lesson01.py``)."""
    path = next((f / f"lesson{lesson}.py" for f in FOLDERS if (f / f"lesson{lesson}.py").is_file()), None)
    root = FOLDERS[0].parent.parent
    return str(path.relative_to(root)) if path is not None and root in path.parents else str(path)


def find(id: str) -> Exercise | None:
    """Exercise ``id``, importing its lesson's checks if needed; None when there is no such exercise.

    Raises LessonError when the lesson's checks module does not import.
    """
    if id not in _REGISTRY and isinstance(id, str):
        load_lesson(id[:2])
    return _REGISTRY.get(id)


def registered(id: str) -> Exercise | None:
    """Exercise ``id`` as registered now, without importing anything."""
    return _REGISTRY.get(id)


def get(id: str) -> Exercise:
    """The registered exercise ``id``; raises KeyError with the known ids otherwise."""
    ex = find(id)
    if ex is None:
        raise KeyError(f"no exercise {id!r}; known: {', '.join(all_ids())}")
    return ex


def lesson_ids(lesson: str) -> list[str]:
    """The exercise ids of one lesson, in order (``[]`` when it has none); LessonError as :func:`find`."""
    load_lesson(lesson)
    return sorted((i for i in _REGISTRY if i.startswith(f"{lesson}.")), key=id_key)


def all_ids() -> list[str]:
    """Every exercise id of every lesson, in order. A lesson whose checks do not import is left out."""
    for lesson in lessons():
        try:
            load_lesson(lesson)
        except LessonError:
            pass
    return sorted(_REGISTRY, key=id_key)


def id_key(id: str) -> tuple:
    """Sort key of an id: ``"01.10"`` after ``"01.9"``."""
    lesson, _, k = str(id).partition(".")
    return (lesson, int(k)) if k.isdigit() else (lesson, 0, k)

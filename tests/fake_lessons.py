"""Lessons that exist only while a test runs: a ``lessonNN.py`` written to a temporary folder that the
exercise registry searches too, as if a new lesson had been added to ``utils/exercises/``."""
import contextlib
import sys
from pathlib import Path

import utils.exercises
from utils.exercises import registry


@contextlib.contextmanager
def fake_lessons(folder: Path, lessons: dict):
    """``lessons``: {"98": source of utils/exercises/lesson98.py}; removed again afterwards."""
    for lesson, source in lessons.items():
        (folder / f"lesson{lesson}.py").write_text(source)
    saved_path, saved_folders = list(utils.exercises.__path__), list(registry.FOLDERS)
    utils.exercises.__path__.append(str(folder))
    registry.FOLDERS.append(folder)
    try:
        yield
    finally:
        utils.exercises.__path__[:] = saved_path
        registry.FOLDERS[:] = saved_folders
        for lesson in lessons:
            sys.modules.pop(f"utils.exercises.lesson{lesson}", None)
            registry._LOADED.discard(lesson)
            for id in [i for i in registry._REGISTRY if i.startswith(f"{lesson}.")]:
                del registry._REGISTRY[id]


NEW_LESSON = '''
from utils.exercises import exercise
from utils.exercises.checking import expect


def double(x):
    return 2 * x


@exercise("98.1", "double it", reference=double, hints=["times two"], difficulty=1, minutes=1)
def _check(candidate):
    expect(candidate(3) == 6, "Not twice the input.")
'''
BROKEN_LESSON = '''
from utils.exercises import exercise
import torchh  # a typo
'''
HALF_LESSON = '''
from utils.exercises import exercise


@exercise("96.1", "first", reference=abs, hints=["h"], difficulty=1, minutes=1)
def _check(candidate):
    pass


raise NameError("name 'oops' is not defined")
'''

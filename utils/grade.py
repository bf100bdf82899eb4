"""Moved: the grader is the instructors' own package ``grading/`` at the repository's root.

    python -m grading PATH... --out DIR [--lesson NN] ...

``python -m utils.grade`` still works for one release: it says where the grader went and runs it.
"""
import sys

from grading.cli import main

MOVED = "utils.grade has moved: run `python -m grading` (the package grading/ at the repository's root)."


def __getattr__(name):  # an instructor's script that used another name of the old module learns where it went
    raise AttributeError(f"{MOVED} ({name!r} is in one of its modules: see the docstring of `grading`)")


if __name__ == "__main__":
    print(MOVED, file=sys.stderr)
    sys.exit(main(prog="python -m utils.grade"))

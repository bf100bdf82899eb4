"""How a notebook names an exercise: the ``utils.check("NN.k", ...)`` call, and nbgrader's grade ids.

The one definition, used by the grader, by the notebook builder (``tools.make_exercises``) and by the
tests: an exercise ``NN.k``'s answer cell has the grade id ``exNN_k`` (``exNN_k_2`` for its second
answer cell) and its check cell ``checkNN_k`` (nbgrader's ids allow letters, digits, ``_`` and ``-``).
Imports nothing of the course (the website's build uses it without PyTorch).
"""
from __future__ import annotations

import re

EXERCISE_ID = re.compile(r"\d\d\.\d+")  # "01.1": lesson 01, exercise 1
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']""")  # utils.check("01.1", ...): group 1 is the id
_ANSWER_ID = re.compile(r"^ex(\d\d)_(\d+)(?:_\d+)?$")


def answer_grade_id(id: str) -> str:
    """The grade id of exercise ``id``'s answer cell: ``"01.1"`` -> ``"ex01_1"``."""
    return "ex" + id.replace(".", "_")


def check_grade_id(id: str) -> str:
    """The grade id of exercise ``id``'s check cell: ``"01.1"`` -> ``"check01_1"``."""
    return "check" + id.replace(".", "_")


def exercise_of_answer(grade_id: str) -> str | None:
    """The exercise an answer cell's grade id names: ``"ex01_1"`` and ``"ex01_1_2"`` -> ``"01.1"``."""
    m = _ANSWER_ID.match(str(grade_id))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def checked_ids(source: str) -> list[str]:
    """The exercise ids a cell's source checks, in order (with repeats)."""
    return CHECK_CALL.findall(source)

"""The exercise system: ``check``, ``hint``, ``solution`` and ``use``.

Every exercise has a stable id ``"NN.k"`` (lesson NN, exercise k), registered by the module
``utils/exercises/lessonNN.py`` with its reference solution, its hints (in levels) and a checker.

* ``check(id, candidate)`` runs the checker on the learner's function or class and returns a
  :class:`CheckResult`: true when it passes, with a ``.message`` naming the likely mistake
  otherwise. It never raises: an unfilled skeleton reads "not attempted yet", an exception in
  the learner's code is reported with the learner's own failing line.
* ``hint(id, level)`` and ``solution(id)`` show a hint and the reference solution.
* ``use(id, candidate)`` returns the candidate once it passes, else the reference (and says
  so), so that a learner who is stuck can still run the rest of the lesson.

One module per job:

* :mod:`~utils.exercises.registry`  -- the exercises, found from the ``lessonNN.py`` files
* :mod:`~utils.exercises.running`   -- ``check``: the checker under a time limit and a memory guard
* :mod:`~utils.exercises.diagnosis` -- the learner's own line, and "not attempted" (the skeleton still raises)
* :mod:`~utils.exercises.rendering` -- the verdict (:class:`CheckResult`), hints and solutions as shown
* :mod:`~utils.exercises.fallback`  -- ``use``: the learner's code once it passes, else the reference
* :mod:`~utils.exercises.checking`  -- the helpers a lesson's checker uses to name a mistake, and the guard that
  keeps a candidate's inputs unchanged (``inputs_kept``)
* :mod:`~utils.exercises.decoding`  -- the greedy-decoding mistakes lessons 01 and 07 share

"Not attempted" means the learner's own skeleton still raises ``NotImplementedError``: every
part of the exercise (``parts``) still has the skeleton's body. A half-done answer, or a
NotImplementedError from somewhere else, is a "fail" that says where it came from.
"""
from __future__ import annotations

from utils.exercises import checking
from utils.exercises.checking import CheckMemory, CheckTimeout, Guard, Mistake
from utils.exercises.fallback import learner_note, use
from utils.exercises.registry import Exercise, LessonError, all_ids, exercise, get, lesson_ids, lessons
from utils.exercises.rendering import CheckResult, hint, reference_source, solution
from utils.exercises.running import check

__all__ = ["check", "hint", "solution", "use", "CheckResult", "Exercise", "exercise", "get", "all_ids"]

"""The instructors' grader: a class's notebooks graded outside Jupyter, with the course's own checks.

    python -m grading PATH... --out DIR [--lesson NN] [--jobs N] [--regrade] [--timeout S]
                      [--cell-timeout S] [--memory-mb MB] [--no-sandbox]

In nbgrader's words: the *assignment* is a lesson's exercise notebook, a *submission* is a learner's
copy of it, and the *feedback* is what the learner reads back. One module per job:

* :mod:`grading.cli`        -- the command line
* :mod:`grading.roster`     -- the notebooks under the paths given, and each one's learner
* :mod:`grading.reading`    -- a notebook read without running it: definitions, check calls, answer cells
* :mod:`grading.planning`   -- what to run of a notebook, in order, against the course's assignment
* :mod:`grading.sandbox`    -- the bubblewrap sandbox of a learner's kernel
* :mod:`grading.kernel`     -- a fresh Jupyter kernel per submission, with time limits
* :mod:`grading.notebook`   -- grading one notebook
* :mod:`grading.gradebook`  -- the gradebook and feedback, written atomically as each notebook finishes
* :mod:`grading.classroom`  -- a whole class: every core, a progress bar, a rerun that resumes
* :mod:`grading.capacity`   -- how many notebooks this machine grades at once
* :mod:`grading.ids`        -- the check call and nbgrader's grade ids (shared with the notebook builder)

Inside the learner's kernel runs only :mod:`utils.integrity` (the course's ``utils/``, which the
sandbox shows the kernel; it sees nothing of this package).

How a submission is graded: learner code never runs in the grader's process. Each notebook gets a fresh
kernel, with this repository's ``utils`` imported first (a copy of ``utils`` in the learner's folder is
never used), which runs, in notebook order:

1. the notebook's *definitions*: from every code cell, its top-level imports, ``def`` and ``class``
   statements and assignments that call nothing (``PAD = 0``, ``f = g``); every other statement
   (training, plots, prints, ``utils.use``, magics) becomes an empty comment line, so line numbers, and
   so the diagnoses, are the notebook's. No model is trained;
2. at each exercise's check cell, ``utils.check("NN.k", candidate)`` on the candidate that cell names:
   the grade is the verdict the learner sees in the notebook for the same code. The exercise's check
   cell is the one naming what the course's exercise notebook names (the last, if checked twice; a
   lesson's check of a deliberately wrong variant is not graded), else the first of that id; a deleted
   check cell is checked at the end, and a check naming what the notebook never defines grades the
   learner's function or class with the same signature (a renamed candidate).

Each cell has a time limit (``--cell-timeout``) and the notebook one in all (``--timeout``). A check that
does not finish or kills the kernel is a ``fail`` with that reason, and the grader goes on in a new kernel.
A notebook that is not valid JSON, of another lesson than ``--lesson``, or of another version of the
course (its exercise ids differ) is ``not graded``, with the reason; the command then exits with 1.

Honest scores (:mod:`utils.integrity`): a candidate that is the course's reference (imported,
subclassed) or calls it while being checked fails; a notebook that alters the checking machinery is
"not graded". Points (``points``) are nbgrader's: an exercise's difficulty.
"""

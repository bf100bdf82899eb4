"""Settings for every test run from this repository, the solution notebooks' nbval run included.

* Every kernel the tests start inherits one PyTorch thread (``OMP_NUM_THREADS=1``, as
  ``utils.setup()`` does in the lessons) unless the caller chose otherwise, so that two test
  workers (``pytest -n 2``) share two cores without oversubscription.
* Solutions are tested in full: a ``COURSE_QUICK`` from the caller's shell is dropped (tests that
  want the quick setting set it themselves).
* ``tests/measured_outputs.py`` teaches nbval the difference between exact and measured outputs.
* The longest files run first (:func:`pytest_collection_modifyitems`), so that the two workers
  finish together.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("COURSE_QUICK", None)

pytest_plugins = ["tests.measured_outputs"]


# The files that take longest, in the order the workers should start them (pytest.ini has
# --dist loadfile and --no-loadscope-reorder, so the workers take whole files in the order of the
# collected items). Longest first: with the browser test (about a third of the suite's worker
# time) collected in the middle, one worker started it halfway through and the other then waited
# for it, about two minutes of the README's 20 on the 2-core machine.
LONGEST_FIRST = ("tests/test_browser.py", "solutions/", "tests/test_grade_nbgrader.py", "tests/test_grade.py")


def pytest_collection_modifyitems(session, config, items):
    """Sort the items by file group (LONGEST_FIRST, then the rest); stable, so each file keeps its order."""
    def group(item):
        path = item.nodeid.split("::")[0]
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=group)

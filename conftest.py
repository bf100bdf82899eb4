"""Settings for every test run from this repository, the solution notebooks' nbval run included.

* Every kernel the tests start inherits one PyTorch thread (``OMP_NUM_THREADS=1``, as
  ``utils.setup()`` does in the lessons) unless the caller chose otherwise, so that two test
  workers (``pytest -n 2``) share two cores without oversubscription.
* Solutions are tested in full: a ``COURSE_QUICK`` from the caller's shell is dropped (tests that
  want the quick setting set it themselves).
* ``tests/measured_outputs.py`` teaches nbval the difference between exact and measured outputs;
  ``tests/nbval_displays.py`` to update an output in place, as Jupyter does (progress bars).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("COURSE_QUICK", None)

pytest_plugins = ["tests.measured_outputs", "tests.nbval_displays"]

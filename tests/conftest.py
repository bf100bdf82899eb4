import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Reproducibility: the solution notebooks are built with one PyTorch thread
# (tools/build_solutions.py), because a different thread count can change the last bits of a
# training run, and so the numbers nbval compares. Every kernel the tests start inherits this.
# One thread per kernel also lets two test workers (pytest -n 2) share two cores without
# oversubscription.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.pop("COURSE_QUICK", None)  # solutions are tested in full; tests that want quick set it

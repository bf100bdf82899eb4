"""The exact/measured rule (tests/measured_outputs.py): nbval passes a measured number within its
tolerance, fails it beyond, and still compares everything else exactly."""
import subprocess
import sys
from xml.etree import ElementTree
from pathlib import Path

import nbformat
import pytest

from tests.measured_outputs import FACTOR, MEASURED, PERCENT_POINTS, agree, disagreements, measured_numbers
from utils.runtime import measured

ROOT = Path(__file__).resolve().parent.parent


def test_measured_prints_the_mark_the_tests_recognise():
    assert measured(0.97123, ".1%") == "≈97.1%"
    assert measured(3.6e-07, ".1e") == "≈3.6e-07"
    assert measured_numbers([{"text": f"acc {measured(0.5, '.1%')}, loss {measured(0.25, '.3f')}"}]) == [
        ("50.0", True), ("0.250", False)]
    assert MEASURED.sub("≈<measured>", "slope ≈1.88, ratio ≈-0.4") == "slope ≈<measured>, ratio ≈<measured>"


@pytest.mark.parametrize("stored, fresh, percent, ok", [
    ("97.1", "98.7", True, True),          # lesson 07's example from issue 13
    ("97.1", str(97.1 - PERCENT_POINTS - 0.1), True, False),
    ("3.6e-07", "4.8e-07", False, True),  # float noise of lesson 06
    ("0.050", str(0.05 * FACTOR * 1.1), False, False),
    ("0.0", "0.3", False, True),          # ten units of the last printed digit
    ("1.5", "-1.5", False, False),        # a sign flip is not noise
    ("nan", "nan", False, True),
    ("1.0", "nan", False, False),
])
def test_tolerance(stored, fresh, percent, ok):
    assert agree(stored, fresh, percent) is ok


def test_a_cell_tag_widens_its_own_tolerance():
    stored, fresh = [{"text": "attention RNN ≈90.4%, loss ≈0.050"}], [{"text": "attention RNN ≈79.8%, loss ≈0.140"}]
    assert len(disagreements(stored, fresh)) == 2
    assert disagreements(stored, fresh, ["tolerance-points=15"]) == [
        "measured ≈0.050 stored, ≈0.140 now: further apart than a factor of 2"]
    assert not disagreements(stored, fresh, ["tolerance-points=15", "tolerance-factor=3"])


def test_count_of_measured_numbers_must_match():
    assert disagreements([{"text": "≈1.0 and ≈2.0"}], [{"text": "≈1.0"}])
    assert not disagreements([{"data": {"text/html": "<b>≈40%</b>"}}], [{"data": {"text/html": "<b>≈42%</b>"}}])


def test_nbval_applies_the_rule(tmp_path):
    """One notebook, one cell per case: stored 'accuracy ≈97.1% at length 24', freshly printed:"""
    cases = [("accuracy ≈96.0% at length 24", True),    # within 10 points of the stored 97.1%
             ("accuracy ≈80.0% at length 24", False),   # drifted: the stored notebook no longer says what the code does
             ("accuracy ≈97.1% at length 20", False)]   # the exact text around the number is still compared
    nb = nbformat.v4.new_notebook()
    for i, (printed, _) in enumerate(cases):
        cell = nbformat.v4.new_code_cell(f"print({printed!r})", execution_count=i + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="accuracy ≈97.1% at length 24\n")]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    report = tmp_path / "report.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-p", "tests.measured_outputs",
                          "--nbval", "--nbval-current-env", "-o", "addopts=", f"--junitxml={report}", "--rootdir", str(ROOT),
                          "-c", str(ROOT / "pytest.ini"), str(path)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    results = [case.find("failure") is None for case in ElementTree.parse(report).iter("testcase")]
    assert results == [passes for _, passes in cases], run.stdout[-3000:]
    assert "drifted beyond their tolerance" in run.stdout and "≈97.1% stored, ≈80.0% now" in run.stdout

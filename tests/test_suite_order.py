"""The README's command runs the longest files first (conftest.py), so that its two workers finish together."""
import configparser
import importlib.util
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")  # not tests/conftest.py
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)


def test_the_longest_files_come_first_and_each_file_keeps_its_order():
    ids = ["tests/test_data.py::a", "solutions/01_x.ipynb::Cell 0", "tests/test_browser.py::b",
           "tests/test_grade.py::c", "solutions/01_x.ipynb::Cell 1", "tests/test_grade_nbgrader.py::d",
           "tests/test_data.py::e", "solutions/02_y.ipynb::Cell 0"]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    conftest.pytest_collection_modifyitems(None, None, items)
    assert [i.nodeid for i in items] == [
        "tests/test_browser.py::b", "solutions/01_x.ipynb::Cell 0", "solutions/01_x.ipynb::Cell 1",
        "solutions/02_y.ipynb::Cell 0", "tests/test_grade_nbgrader.py::d", "tests/test_grade.py::c",
        "tests/test_data.py::a", "tests/test_data.py::e"]


def test_the_workers_keep_that_order():
    """pytest-xdist sorts whole files by their number of tests unless told not to."""
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    addopts = ini["pytest"]["addopts"].split()
    assert "--dist" in addopts and addopts[addopts.index("--dist") + 1] == "loadfile"
    assert "--no-loadscope-reorder" in addopts

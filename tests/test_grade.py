"""`python -m utils.grade` grades a generated class of lesson 01 submissions: correct, wrong in known
ways, unfinished and hostile ones; the gradebook is asserted cell by cell, and the grader's verdict
is the one `utils.check` gives in the notebook for the same code."""
import copy
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import utils
from utils import grade

ROOT = Path(__file__).resolve().parent.parent
EXERCISE_NB = ROOT / "notebooks" / "01_lstm_bottleneck.ipynb"
SOLUTION_NB = ROOT / "solutions" / "01_lstm_bottleneck.ipynb"
IDS = ["01.1", "01.2", "01.3", "01.4"]
CELL_TIMEOUT = 12  # seconds: short, for the endless loops below; a real check of lesson 01 takes well under 1 s

# ------------------------------------------------------------------ answers, as a learner would write them
ENCODER_NO_PACKING = '''class Encoder(nn.Module):
    def __init__(self, vocab_size, emb_dim, hidden_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)

    def forward(self, src, src_lengths):
        return self.lstm(self.embedding(src))
'''
SHIFT_ROLL = '''def shift_right(tgt, sos=SOS):
    return torch.roll(tgt, 1, dims=1)
'''
SHIFT_RAISES = '''print("trying my shift")  # top-level code: not run by the grader, but it keeps its line
def shift_right(tgt, sos=SOS):
    out = tgt.shift(1)
    return out
'''
SHIFT_EXITS = '''def shift_right(tgt, sos=SOS):
    sys.exit(1)
'''
DECODER_SOFTMAX = '''class Decoder(nn.Module):
    def __init__(self, vocab_size, emb_dim, hidden_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, inputs, state):
        outputs, state = self.lstm(self.embedding(inputs), state)
        return self.out(outputs).softmax(-1), state
'''
DECODER_KILLS = '''import os
class Decoder(nn.Module):
    def __init__(self, vocab_size, emb_dim, hidden_dim):
        super().__init__()
        os._exit(3)
'''
DECODER_LOOPS_WHEN_DEFINED = '''class Decoder(nn.Module):
    while True:
        pass
'''
GREEDY_LOOPS = '''def greedy_decode(model, src, src_lengths, max_len):
    while True:
        pass
'''
TAMPERING = '''import os
import utils
utils.check = lambda *args: True  # not run: top-level statements other than definitions are not graded
os._exit(1)
'''


def solutions() -> dict:
    """Exercise id -> the course's solution cell, markers removed."""
    nb = nbformat.read(SOLUTION_NB, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    strip = lambda s: "\n".join(l for l in s.splitlines() if "### BEGIN SOLUTION" not in l and "### END SOLUTION" not in l)
    return dict(zip(IDS, map(strip, cells)))


def submission(answers: dict, drop_checks=(), extra_checks=()) -> nbformat.NotebookNode:
    """The exercise notebook of lesson 01 with ``answers`` (id -> source) in its answer cells."""
    nb = copy.deepcopy(nbformat.read(EXERCISE_NB, as_version=4))
    cells = []
    for cell in nb.cells:
        id = grade.answer_id(cell)
        if id in answers:
            cell.source = answers[id]
        if any(f'utils.check("{i}"' in cell.source for i in drop_checks):
            continue
        cells.append(cell)
    for source in extra_checks:
        cells.append(nbformat.v4.new_code_cell(source))
    nb.cells = cells
    return nb


def make_class(folder: Path) -> dict:
    """Write a class of submissions under ``folder``; return learner -> notebook path."""
    sol = solutions()
    subs = {
        "alice": submission(sol),  # everything right
        "bob": submission({"01.1": ENCODER_NO_PACKING, "01.2": SHIFT_ROLL, "01.3": DECODER_SOFTMAX}),  # wrong, 01.4 left
        "carol": submission({}),  # the notebook as it was handed out
        "dave": submission({"01.1": sol["01.1"] + "\n" + TAMPERING, "01.2": SHIFT_EXITS, "01.3": DECODER_KILLS,
                            "01.4": GREEDY_LOOPS}),  # hostile
        "gina": submission({"01.3": DECODER_LOOPS_WHEN_DEFINED}),  # loops while its class is being defined
        "ivy": submission(sol, drop_checks=["01.3"]),  # deleted a check cell: still graded
        "gus": submission(sol, extra_checks=['utils.check("01.7", beam_search)']),  # an older version of the course
    }
    paths = {}
    for learner, nb in subs.items():
        path = folder / learner / "01_lstm_bottleneck.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        paths[learner] = path
    # A fake `utils` next to carol's notebook that would pass everything: the grader must not use it.
    fake = folder / "carol" / "utils"
    (fake / "exercises").mkdir(parents=True)
    (fake / "__init__.py").write_text("def check(*a, **k):\n    return True\n")
    (fake / "exercises" / "__init__.py").write_text("def check(*a, **k):\n    return True\n")
    # Not valid JSON (a half-saved file).
    paths["eve"] = folder / "eve" / "01_lstm_bottleneck.ipynb"
    paths["eve"].parent.mkdir()
    paths["eve"].write_text(nbformat.writes(submission(sol))[:5000])
    # A notebook of another lesson.
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import utils"),
                                            nbformat.v4.new_code_cell('utils.check("02.1", AdditiveAttention)')])
    paths["frank"] = folder / "frank" / "02_additive_attention.ipynb"
    paths["frank"].parent.mkdir()
    nbformat.write(other, paths["frank"])
    # A flat file: the learner is named by the file, without the lesson's name.
    paths["hank"] = folder / "hank_01_lstm_bottleneck.ipynb"
    nbformat.write(submission({"01.1": sol["01.1"], "01.2": SHIFT_RAISES}), paths["hank"])
    return paths


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    out = tmp_path_factory.mktemp("grades")
    paths = make_class(folder)
    before = snapshot(folder)
    run = subprocess.run([sys.executable, "-m", "utils.grade", str(folder), "--out", str(out), "--lesson", "01",
                          "--cell-timeout", str(CELL_TIMEOUT), "--timeout", "240", "--jobs", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert (out / "gradebook.csv").exists(), f"the grader wrote no gradebook:\n{run.stdout}\n{run.stderr}"
    rows = {r["learner"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
    details = {r["learner"]: r for r in json.loads((out / "gradebook.json").read_text())}
    return dict(run=run, rows=rows, details=details, out=out, folder=folder, paths=paths,
                before=before, after=snapshot(folder))


EXPECTED = {  # learner: (status, 01.1, 01.2, 01.3, 01.4)
    "alice": ("graded", "pass", "pass", "pass", "pass"),
    "bob": ("graded", "fail", "fail", "fail", "not attempted"),
    "carol": ("graded", "not attempted", "not attempted", "not attempted", "not attempted"),
    "dave": ("graded", "pass", "fail", "fail", "fail"),
    "gina": ("graded", "not attempted", "not attempted", "fail", "not attempted"),
    "ivy": ("graded", "pass", "pass", "pass", "pass"),
    "hank": ("graded", "pass", "fail", "not attempted", "not attempted"),
    "gus": ("not graded", "", "", "", ""),
    "eve": ("not graded", "", "", "", ""),
    "frank": ("not graded", "", "", "", ""),
}


def test_gradebook_cell_by_cell(graded):
    rows = graded["rows"]
    assert sorted(rows) == sorted(EXPECTED), graded["run"].stdout + graded["run"].stderr
    header = list(next(csv.reader(open(graded["out"] / "gradebook.csv"))))
    assert header == ["learner", "notebook", "lesson", "status", *IDS, "score", "problem"]
    for learner, (status, *verdicts) in EXPECTED.items():
        row = rows[learner]
        got = (row["status"], *(row[i] for i in IDS))
        assert got == (status, *verdicts), f"{learner}: {got} ({row['problem']})"
    assert rows["alice"]["score"] == "4/4" and rows["bob"]["score"] == "0/4" and rows["dave"]["score"] == "1/4"
    assert rows["frank"]["lesson"] == "02" and rows["alice"]["lesson"] == "01"
    assert rows["hank"]["notebook"].endswith("hank_01_lstm_bottleneck.ipynb")
    assert rows["alice"]["notebook"].endswith("alice/01_lstm_bottleneck.ipynb")


def test_each_problem_is_explained(graded):
    rows, details = graded["rows"], graded["details"]
    assert "not valid JSON" in rows["eve"]["problem"]
    assert "lesson 02" in rows["frank"]["problem"] and "assignment (lesson 01)" in rows["frank"]["problem"]
    assert "another version of the course" in rows["gus"]["problem"] and "01.7" in rows["gus"]["problem"]
    ex = {learner: d["exercises"] for learner, d in details.items()}
    assert "after the padding" in ex["bob"]["01.1"]["message"]
    assert "torch.roll" in ex["bob"]["01.2"]["message"]
    assert "not probabilities" in ex["bob"]["01.3"]["message"]
    assert "SystemExit" in ex["dave"]["01.2"]["message"]
    assert "stopped the Python process" in ex["dave"]["01.3"]["message"]
    assert f"did not finish within {CELL_TIMEOUT} s" in ex["dave"]["01.4"]["message"]
    assert "did not run" in ex["gina"]["01.3"]["message"] and "did not finish" in ex["gina"]["01.3"]["message"]
    assert "line 3 of your cell (in `shift_right`)" in ex["hank"]["01.2"]["message"]
    assert "tgt.shift(1)" in ex["hank"]["01.2"]["message"]


def test_exit_status_names_the_notebooks_not_graded(graded):
    run = graded["run"]
    assert run.returncode == 1, run.stdout + run.stderr
    for learner in ("eve", "frank", "gus"):
        assert str(graded["paths"][learner].name) in run.stderr and f"({learner})" in run.stderr


def test_nothing_is_written_into_the_learners_files(graded):
    assert graded["after"] == graded["before"]


def test_feedback_gives_the_diagnoses(graded):
    feedback = (graded["out"] / "feedback" / "bob.md").read_text()
    assert "Submission" in feedback and "Score: 0/4" in feedback
    assert "❌ Exercise 01.1 (the encoder and its final state): not yet" in feedback
    assert "after the padding" in feedback
    assert "Not graded:" in (graded["out"] / "feedback" / "eve.md").read_text()
    hostile = (graded["out"] / "feedback" / "dave.md").read_text()
    assert "❌ Exercise 01.4 (greedy decoding): not yet" in hostile and "endless loop" in hostile


@pytest.mark.parametrize("learner,id,source", [
    ("alice", "01.1", None), ("alice", "01.4", None), ("bob", "01.1", ENCODER_NO_PACKING), ("bob", "01.2", SHIFT_ROLL),
    ("bob", "01.3", DECODER_SOFTMAX), ("hank", "01.2", SHIFT_RAISES), ("dave", "01.2", SHIFT_EXITS),
])
def test_grade_equals_the_in_notebook_verdict(graded, tmp_path, learner, id, source):
    """The same code, checked in this process by `utils.check`, gets the same verdict and message."""
    source = source or solutions()[id]
    cell = tmp_path / "cell.py"  # a real file, so the diagnosis can quote the learner's line, as in a notebook
    cell.write_text(grade.definitions(source))
    namespace = {}
    exec("import os, sys\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
         "from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence\n"
         "from utils.data import EOS, PAD, SOS\n", namespace)
    exec(compile(cell.read_text(), str(cell), "exec"), namespace)
    name = {"01.1": "Encoder", "01.2": "shift_right", "01.3": "Decoder", "01.4": "greedy_decode"}[id]
    in_notebook = utils.check(id, namespace[name])
    graded_verdict = graded["details"][learner]["exercises"][id]
    assert (graded_verdict["status"], graded_verdict["message"]) == (in_notebook.status, in_notebook.message)


# ------------------------------------------------------------------ the rules, without a kernel
def test_definitions_keep_definitions_and_line_numbers():
    source = ("import torch\nx = 3\nmodel = train(big)\n%time y = 1\n\n@torch.no_grad()\ndef f(a):\n    return a\n"
              "print(f(1))\nclass C:\n    pass\nF = f\n")
    kept = grade.definitions(source).splitlines()
    assert kept[:5] == ["import torch", "x = 3", "#", "#", ""]
    assert kept[5:9] == ["@torch.no_grad()", "def f(a):", "    return a", "#"]
    assert kept[9:12] == ["class C:", "    pass", "F = f"]
    assert grade.definitions("def broken(:\n") == "def broken(:\n"  # a SyntaxError is left for the kernel to report
    assert grade.definitions("%%time\nclass A:\n    pass\nA()\n") == "#\nclass A:\n    pass\n#"  # under a cell magic


def test_plan_runs_definitions_and_grades_each_exercise_at_its_own_last_check():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('utils.check("01.2", shift_right)'),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell('def shift_right(t):\n    return t\nutils.check("01.2", shift_right)'),
        nbformat.v4.new_code_cell('utils.check("01.2", rolled_shift)  # a lesson showing a wrong variant\'s diagnosis'),
        nbformat.v4.new_code_cell("history = train(model)")])
    steps = grade.plan(nb, [grade.CheckCall("01.1", "Encoder"), grade.CheckCall("01.2", "shift_right")], ["01.1", "01.2"])
    assert [(s.cell, s.code, s.check and (s.check.id, s.check.expr)) for s in steps] == [
        (2, "def shift_right(t):\n    return t\n#", None),
        (2, "", ("01.2", "shift_right")),
        (5, "", ("01.1", "Encoder")),  # its check cell was deleted: checked at the end, as the assignment names it
    ]


def test_check_calls_and_answer_ids():
    assert [(c.id, c.expr) for c in grade.check_calls('utils.check("01.1", Encoder)')] == [("01.1", "Encoder")]
    assert [(c.id, c.expr) for c in grade.check_calls('r = utils.check("05.1", (split_heads, merge_heads))')] == [
        ("05.1", "(split_heads, merge_heads)")]
    assert grade.check_calls("print('no check here')") == []
    nb = nbformat.read(EXERCISE_NB, as_version=4)
    assert [grade.answer_id(c) for c in nb.cells if grade.answer_id(c)] == IDS


def test_nbgrader_source_marks_answer_and_check_cells(tmp_path):
    from tools import make_exercises

    assert make_exercises.main(["--nbgrader-source", str(tmp_path)]) == 0
    nb = nbformat.read(tmp_path / "01_lstm_bottleneck" / "01_lstm_bottleneck.ipynb", as_version=4)
    marked = [c for c in nb.cells if "nbgrader" in c.metadata]
    ids = [c.metadata.nbgrader["grade_id"] for c in marked]
    assert ids == ["ex01_1", "check01_1", "ex01_2", "check01_2", "ex01_3", "check01_3", "ex01_4", "check01_4"]
    assert all(("### BEGIN SOLUTION" in c.source) == c.metadata.nbgrader["solution"] for c in marked)
    assert all(c.metadata.nbgrader["locked"] == ("utils.check(" in c.source) for c in marked)


def test_learner_names(tmp_path):
    names = ["01_lstm_bottleneck"]
    klass = tmp_path / "class"
    assert grade.learner_name(klass / "alice" / "01_lstm_bottleneck.ipynb", klass, names) == "alice"
    assert grade.learner_name(klass / "bob_01_lstm_bottleneck.ipynb", klass, names) == "bob"
    assert grade.learner_name(klass / "carol.ipynb", klass, names) == "carol"
    nbgrader = tmp_path / "course" / "submitted" / "dave" / "01_lstm_bottleneck" / "01_lstm_bottleneck.ipynb"
    assert grade.learner_name(nbgrader, tmp_path / "course", names) == "dave"


def test_usage_errors_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        grade.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert exit.value.code == 2 and "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert grade.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "no notebooks" in capsys.readouterr().err


_ICON_STATUS = {"✅": "pass", "❌": "fail", "⏳": "not attempted"}


def test_every_solution_notebook_grades_as_its_stored_verdicts(tmp_path):
    """For every lesson, the grade equals the verdict its solution notebook shows under each check cell."""
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assignments = grade.course_assignments()
    shown = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        lesson = path.name[:2]
        for step in grade.plan(nb, assignments.get(lesson, ("", []))[1], grade.course_ids(lesson)):
            if step.check and step.cell < len(nb.cells):
                text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                               for o in nb.cells[step.cell].outputs)
                icons = [_ICON_STATUS[ch] for ch in text if ch in _ICON_STATUS]
                assert icons, f"{path.name}: the check cell of {step.check.id} shows no verdict"
                shown[(path.name, step.check.id)] = icons[-1]
    rows = grade.grade(paths, tmp_path / "out", grade.Options(timeout=240, cell_timeout=60), jobs=2, log=lambda *a: None)
    graded = {(Path(r.notebook).name, id): v["status"] for r in rows for id, v in r.results.items()}
    assert all(r.status == "graded" for r in rows), [(r.notebook, r.problem) for r in rows if r.status != "graded"]
    assert graded == shown

"""`python -m grading` grades a generated class of lesson 01 submissions: correct, wrong in known
ways, unfinished and hostile ones; the gradebook is asserted cell by cell, and the grader's verdict
is the one `utils.check` gives in the notebook for the same code.

The hostile part of the class (mallory, imogen, dora, tom) tries what a learner could do to other
learners and to the course: rewrite the course's checks on disk, write into another submission and
into the output folder, leave a process running after grading, read another learner's notebook,
the machine's files and the grader's environment into its own feedback, submit the course's own
reference (imported, subclassed, or called), and replace `utils.exercises.check`. The tests prove
that none of it works (in the sandbox, on by default) and that the honest learners' grades are
exactly as they were.
"""
import ast
import copy
import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import utils
from grading import classroom, cli, ids, planning, reading, roster
from grading.notebook import Options

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


# ------------------------------------------------------------------ hostile answers
SECRET = "ALICE-PRIVATE-NOTE-5b1e"  # in alice's notebook only: no other feedback may contain it
ENV_SECRET = "GRADER-TOKEN-93c7d1"  # in the grader's environment only
MARKER = "course-grade-test-survivor-41d9"  # the command line of a process a submission leaves behind
SNOOP = '''def shift_right(tgt, sos=SOS):
    import glob, os, socket
    found = []
    for path in [{alice!r}, "/etc/hostname", f"/proc/{{os.getppid()}}/cmdline", {readme!r}]:
        try:
            found.append(open(path).read()[:3000])
        except Exception as err:
            found.append(type(err).__name__)
    found += [socket.gethostname(), repr(dict(os.environ)), repr(glob.glob({klass!r} + "/*"))]
    raise RuntimeError(" | ".join(found))
'''
DISK = '''class Attack:  # a class body runs when it is defined, and the grader runs definitions
    import os
    import utils.exercises.lesson01 as target
    try:  # make 01.3 pass anything, in every later kernel
        with open(target.__file__, "a") as f:
            f.write("\\nexercise('01.3', 'x', reference=rnn.Decoder, hints=[], difficulty=2, minutes=1)(lambda c: None)\\n")
    except OSError:
        pass
    for path in [os.path.join(os.path.dirname(target.__file__), "evil.py"), {alice!r}]:
        try:
            with open(path, "a") as f:
                f.write("# written by mallory\\n")
        except OSError:
            pass
    try:  # the output folder, from the grader's command line
        cmd = open(f"/proc/{{os.getppid()}}/cmdline").read().split("\\0")
        with open(os.path.join(cmd[cmd.index("--out") + 1], "gradebook.csv"), "a") as f:
            f.write("mallory,hacked\\n")
    except Exception:
        pass
''' + DECODER_SOFTMAX
DETACH = '''class Spawn:  # a detached process that would outlive grading and rewrite the gradebook later
    import subprocess, sys
    subprocess.Popen([sys.executable, "-c", "import time\\nwhile True:\\n    time.sleep(0.2)", {marker!r}],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@torch.no_grad()
def greedy_decode(model, src, src_lengths, max_len: int):
    raise NotImplementedError()
'''
SUBCLASS = "import utils.rnn\n\nclass Encoder(utils.rnn.Encoder):\n    pass\n"
DELEGATE_SHIFT = "import utils.rnn\n\ndef shift_right(tgt, sos=SOS):\n    return utils.rnn.shift_right(tgt, sos)\n"
DELEGATE_GREEDY = ("@torch.no_grad()\ndef greedy_decode(model, src, src_lengths, max_len: int):\n"
                   "    return utils.exercises.get(\"01.4\").reference(model, src, src_lengths, max_len)\n")
REPLACE_CHECK = '''class Patch:
    import utils.exercises
    utils.exercises.check = lambda id, candidate=None: utils.exercises.CheckResult(id, "pass", "Well done", "")
'''


def solutions() -> dict:
    """Exercise id -> the course's solution cell, markers removed."""
    nb = nbformat.read(SOLUTION_NB, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    strip = lambda s: "\n".join(l for l in s.splitlines() if "### BEGIN SOLUTION" not in l and "### END SOLUTION" not in l)
    return dict(zip(IDS, map(strip, cells)))


def submission(answers: dict, drop_checks=(), extra_checks=(), extra_markdown="") -> nbformat.NotebookNode:
    """The exercise notebook of lesson 01 with ``answers`` (id -> source) in its answer cells."""
    nb = copy.deepcopy(nbformat.read(EXERCISE_NB, as_version=4))
    cells = []
    for cell in nb.cells:
        id = reading.answer_id(cell)
        if id in answers:
            cell.source = answers[id]
        if any(f'utils.check("{i}"' in cell.source for i in drop_checks):
            continue
        cells.append(cell)
    for source in extra_checks:
        cells.append(nbformat.v4.new_code_cell(source))
    if extra_markdown:
        cells.append(nbformat.v4.new_markdown_cell(extra_markdown))
    nb.cells = cells
    return nb


def make_class(folder: Path) -> dict:
    """Write a class of submissions under ``folder``; return learner -> notebook path."""
    sol = solutions()
    alice_path = str(folder / "alice" / "01_lstm_bottleneck.ipynb")
    renamed = sol["01.2"].replace("def shift_right(", "def my_shift(")
    assert renamed != sol["01.2"]
    subs = {
        "mallory": submission({"01.1": sol["01.1"], "01.3": DISK.format(alice=alice_path),
                               "01.2": SNOOP.format(alice=alice_path, readme=str(ROOT / "README.md"), klass=str(folder)),
                               "01.4": DETACH.format(marker=MARKER)}),
        "imogen": submission({"01.1": "from utils.rnn import Encoder", "01.2": "from utils.rnn import shift_right",
                              "01.3": "from utils.rnn import Decoder", "01.4": "from utils.rnn import greedy_decode"}),
        "dora": submission({"01.1": SUBCLASS, "01.2": DELEGATE_SHIFT, "01.4": DELEGATE_GREEDY}),
        "tom": submission({"01.1": REPLACE_CHECK}),  # skeletons, and a class body that replaces the check
        "jo smith": submission({"01.2": sol["01.2"]}),
        "jo_smith": submission({}),
        "rita": submission({**sol, "01.2": renamed}),  # renamed shift_right; the check cell still names it
        "alice": submission(sol, extra_markdown=SECRET),  # everything right
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
    # Two notebooks given as file paths, from two folders named alike: two learners, not one.
    for k in (1, 2):
        paths[f"ada{k}"] = folder.parent / f"{folder.name}-elsewhere{k}" / "ada" / "01_lstm_bottleneck.ipynb"
        paths[f"ada{k}"].parent.mkdir(parents=True)
        nbformat.write(submission({"01.2": sol["01.2"]} if k == 1 else {}), paths[f"ada{k}"])
    return paths


def snapshot(folder: Path, pattern: str = "*") -> dict:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob(pattern)) if p.is_file() and "__pycache__" not in p.parts}


def processes_with(marker: str) -> list[str]:
    """The command lines of this machine's processes that contain ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and proc.name != str(os.getpid()):
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    out = tmp_path_factory.mktemp("grades")
    paths = make_class(folder)
    folders = [folder, paths["ada1"].parent.parent, paths["ada2"].parent.parent]  # every submission
    before = {str(f): snapshot(f) for f in folders}
    env = dict(os.environ, COURSE_TEST_SECRET=ENV_SECRET)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "grading", str(folder), str(paths["ada1"]), str(paths["ada2"]),
                          "--out", str(out), "--lesson", "01",
                          "--cell-timeout", str(CELL_TIMEOUT), "--timeout", "240", "--jobs", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    seconds = time.monotonic() - start
    survivors = processes_with(MARKER)  # at once: the grader has exited
    out_files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    csv_text = (out / "gradebook.csv").read_text() if (out / "gradebook.csv").exists() else ""
    time.sleep(2)  # anything left behind would act now
    assert (out / "gradebook.csv").exists(), f"the grader wrote no gradebook:\n{run.stdout}\n{run.stderr}"
    rows = {r["learner"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
    details = {r["learner"]: r for r in json.loads((out / "gradebook.json").read_text())}
    return dict(run=run, rows=rows, details=details, out=out, folder=folder, paths=paths, seconds=seconds,
                before=before, after={str(f): snapshot(f) for f in folders},
                survivors=survivors + processes_with(MARKER),
                out_files=out_files, csv_text=csv_text)


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
    "mallory": ("graded", "pass", "fail", "fail", "not attempted"),
    "imogen": ("graded", "fail", "fail", "fail", "fail"),
    "dora": ("graded", "fail", "fail", "not attempted", "fail"),
    "tom": ("not graded", "", "", "", ""),
    "jo smith": ("graded", "not attempted", "pass", "not attempted", "not attempted"),
    "jo_smith": ("graded", "not attempted", "not attempted", "not attempted", "not attempted"),
    "rita": ("graded", "pass", "pass", "pass", "pass"),
}
ADA = ("graded", "not attempted", "pass", "not attempted", "not attempted"), \
      ("graded", "not attempted", "not attempted", "not attempted", "not attempted")


def test_gradebook_cell_by_cell(graded):
    rows = graded["rows"]
    adas = sorted(learner for learner in rows if learner.startswith("ada"))
    assert sorted(set(rows) - set(adas)) == sorted(EXPECTED), graded["run"].stdout + graded["run"].stderr
    header = list(next(csv.reader(open(graded["out"] / "gradebook.csv"))))
    assert header == ["learner", "notebook", "lesson", "status", *IDS, "score", "points", "problem", "feedback"]
    for learner, (status, *verdicts) in EXPECTED.items():
        row = rows[learner]
        got = (row["status"], *(row[i] for i in IDS))
        assert got == (status, *verdicts), f"{learner}: {got} ({row['problem']})"
    assert rows["alice"]["score"] == "4/4" and rows["bob"]["score"] == "0/4" and rows["dave"]["score"] == "1/4"
    assert rows["alice"]["points"] == "7/7" and rows["dave"]["points"] == "2/7"  # points: each exercise's difficulty
    # Two notebooks given as paths, from folders both named `ada`: two learners, each row naming its file.
    assert len(adas) == 2 and all(learner.startswith("ada (") for learner in adas), adas
    for k, expected in zip((1, 2), ADA):
        row = next(rows[a] for a in adas if rows[a]["notebook"].endswith(f"elsewhere{k}/ada/01_lstm_bottleneck.ipynb"))
        assert (row["status"], *(row[i] for i in IDS)) == expected
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


def test_no_submission_changes_the_course_the_class_or_the_output(graded):
    """mallory appended a check to utils/exercises/lesson01.py, wrote utils/exercises/evil.py, wrote into alice's
    notebook and into the gradebook (found from the grader's command line): none of it happened."""
    # By what mallory writes (other people may be editing the course's files while this test runs).
    for path in (ROOT / "utils").rglob("*.py"):
        text = path.read_text()
        assert "written by mallory" not in text and "exercise('01.3', 'x'" not in text, path
    assert not (ROOT / "utils" / "exercises" / "evil.py").exists()
    assert graded["after"] == graded["before"]  # every submission of the class, byte for byte
    learners = set(graded["details"])
    assert graded["out_files"] == sorted(["gradebook.csv", "gradebook.json", "feedback",
                                          *(f"feedback/{roster.feedback_name(l)}" for l in learners)])
    assert "hacked" not in graded["csv_text"] and graded["csv_text"] == (graded["out"] / "gradebook.csv").read_text()


def test_no_process_of_a_submission_outlives_grading(graded):
    """mallory's class body started a detached process (its own session) that loops for ever."""
    assert graded["survivors"] == []


def test_feedback_holds_nothing_from_outside_the_submission(graded):
    """mallory's shift_right raises an exception carrying what it could read: another learner's notebook,
    the course's README, /etc/hostname, the parent's command line, the environment, the class folder."""
    texts = {p.name: p.read_text() for p in (graded["out"] / "feedback").glob("*.md")}
    mallory = texts[roster.feedback_name("mallory")]
    assert "RuntimeError" in mallory  # the exception did reach the feedback, with what it found
    readme_line = next(l for l in (ROOT / "README.md").read_text().splitlines() if len(l) > 30)
    host = socket.gethostname()
    for name, text in texts.items():
        if name != roster.feedback_name("alice"):
            assert SECRET not in text, name
        assert ENV_SECRET not in text and str(graded["out"]) not in text and readme_line not in text, name
        assert len(host) < 6 or host not in text, name
        assert "alice" not in text or name == roster.feedback_name("alice"), name  # no other learner's folder listed


def test_the_course_s_own_reference_is_not_a_learner_s_answer(graded):
    ex = {learner: d["exercises"] for learner, d in graded["details"].items()}
    for learner, ids in (("imogen", IDS), ("dora", ["01.1", "01.2", "01.4"])):  # imported, subclassed, called
        for id in ids:
            assert ex[learner][id]["status"] == "fail" and "course's reference" in ex[learner][id]["message"], (learner, id)


def test_a_notebook_that_alters_the_checks_is_not_graded(graded):
    row = graded["rows"]["tom"]
    assert row["status"] == "not graded" and "alters the course's checks" in row["problem"], row
    assert "utils.exercises.check" in row["problem"]


def test_a_renamed_answer_is_found_by_its_signature(graded):
    verdict = graded["details"]["rita"]["exercises"]["01.2"]
    assert verdict["status"] == "pass" and "`my_shift`" in verdict["message"] and "`shift_right`" in verdict["message"]


def test_learners_never_share_a_feedback_file(graded):
    out = graded["out"] / "feedback"
    a, b = out / roster.feedback_name("jo smith"), out / roster.feedback_name("jo_smith")
    assert a != b and "Score: 1/4" in a.read_text() and "Score: 0/4" in b.read_text()
    assert graded["rows"]["jo smith"]["feedback"] == f"feedback/{a.name}"
    names = ["jo smith", "jo_smith", "Jo_Smith", "jo-smith", "jo.smith", "jo_smith-" + "0" * 10, "ada", "Ada", "日本"]
    files = [roster.feedback_name(n).lower() for n in names]  # lower: a case-insensitive file system
    assert len(set(files)) == len(names), files
    assert roster.feedback_name("alice") == "alice.md"


def test_exit_status_names_the_notebooks_not_graded(graded):
    run = graded["run"]
    assert run.returncode == 1, run.stdout + run.stderr
    for learner in ("eve", "frank", "gus", "tom"):
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
    cell.write_text(reading.definitions(source))
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
    kept = reading.definitions(source).splitlines()
    assert kept[:5] == ["import torch", "x = 3", "#", "#", ""]
    assert kept[5:9] == ["@torch.no_grad()", "def f(a):", "    return a", "#"]
    assert kept[9:12] == ["class C:", "    pass", "F = f"]
    assert reading.definitions("def broken(:\n") == "def broken(:\n"  # a SyntaxError is left for the kernel to report
    assert reading.definitions("%%time\nclass A:\n    pass\nA()\n") == "#\nclass A:\n    pass\n#"  # under a cell magic


def test_plan_runs_definitions_and_grades_each_exercise_at_its_own_last_check():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('utils.check("01.2", shift_right)'),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell('def shift_right(t):\n    return t\nutils.check("01.2", shift_right)'),
        nbformat.v4.new_code_cell('utils.check("01.2", rolled_shift)  # a lesson showing a wrong variant\'s diagnosis'),
        nbformat.v4.new_code_cell("history = train(model)")])
    steps = planning.plan(nb, [reading.CheckCall("01.1", "Encoder"), reading.CheckCall("01.2", "shift_right")], ["01.1", "01.2"])
    assert [(s.cell, s.code, s.check and (s.check.id, s.check.expr)) for s in steps] == [
        (2, "def shift_right(t):\n    return t\n#", None),
        (2, "", ("01.2", "shift_right")),
        (5, "", ("01.1", "Encoder")),  # its check cell was deleted: checked at the end, as the assignment names it
    ]


def test_check_calls_and_answer_ids():
    assert [(c.id, c.expr) for c in reading.check_calls('utils.check("01.1", Encoder)')] == [("01.1", "Encoder")]
    assert [(c.id, c.expr) for c in reading.check_calls('r = utils.check("05.1", (split_heads, merge_heads))')] == [
        ("05.1", "(split_heads, merge_heads)")]
    assert reading.check_calls("print('no check here')") == []
    nb = nbformat.read(EXERCISE_NB, as_version=4)
    assert [reading.answer_id(c) for c in nb.cells if reading.answer_id(c)] == IDS


def test_nbgrader_source_marks_answer_and_check_cells(tmp_path):
    from tools import make_exercises

    assert make_exercises.main(["--nbgrader-source", str(tmp_path)]) == 0
    nb = nbformat.read(tmp_path / "01_lstm_bottleneck" / "01_lstm_bottleneck.ipynb", as_version=4)
    marked = [c for c in nb.cells if "nbgrader" in c.metadata]
    grade_ids = [c.metadata.nbgrader["grade_id"] for c in marked]
    # nbgrader's notebooks in the wild carry these ids: the format is pinned here, literally.
    assert grade_ids == ["ex01_1", "check01_1", "ex01_2", "check01_2", "ex01_3", "check01_3", "ex01_4", "check01_4"]
    assert grade_ids == [f(i) for i in IDS for f in (ids.answer_grade_id, ids.check_grade_id)]
    assert [ids.exercise_of_answer(g) for g in ("ex01_1", "ex01_1_2", "ex10_12", "check01_1", "answer_3")] == [
        "01.1", "01.1", "10.12", None, None]
    assert all(("### BEGIN SOLUTION" in c.source) == c.metadata.nbgrader["solution"] for c in marked)
    assert all(c.metadata.nbgrader["locked"] == ("utils.check(" in c.source) for c in marked)
    # Each exercise's check cell is an autograded test cell worth the exercise's difficulty in points.
    tests = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader.get("points") for c in marked if c.metadata.nbgrader["grade"]}
    assert tests == {ids.check_grade_id(i): utils.exercises.get(i).difficulty for i in IDS}


def test_a_check_cell_raises_only_under_nbgrader(monkeypatch):
    """Under NBGRADER_EXECUTION a check cell whose exercise does not pass raises (nbgrader: 0 points);
    a lesson's check of a deliberately wrong variant, and utils.use, never raise."""
    namespace = {"utils": utils}
    exec("def shift_right(tgt, sos=1):\n    raise NotImplementedError()\n"
         "def rolled(tgt, sos=1):\n    return tgt.roll(1, 1)\n", namespace)
    cell = 'result = utils.check("01.2", shift_right)'
    exec(cell, dict(namespace))  # the learner's own run: no exception
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(AssertionError, match="01.2"):
        exec(cell, dict(namespace))
    exec('utils.check("01.2", rolled)', dict(namespace))  # a variant shown for its diagnosis
    exec('utils.check("01.2", utils.rnn.shift_right)', dict(namespace))  # passes
    assert utils.use("01.2", namespace["shift_right"]) is utils.rnn.shift_right


def test_learner_names(tmp_path):
    names = ["01_lstm_bottleneck"]
    klass = tmp_path / "class"
    assert roster.learner_name(klass / "alice" / "01_lstm_bottleneck.ipynb", klass, names) == "alice"
    assert roster.learner_name(klass / "bob_01_lstm_bottleneck.ipynb", klass, names) == "bob"
    assert roster.learner_name(klass / "carol.ipynb", klass, names) == "carol"
    given = tmp_path / "a" / "ada" / "01_lstm_bottleneck.ipynb"  # a file named as the lesson, given as a path
    assert roster.learner_name(given, given.parent, names) == "ada"
    nbgrader = tmp_path / "course" / "submitted" / "dave" / "01_lstm_bottleneck" / "01_lstm_bottleneck.ipynb"
    assert roster.learner_name(nbgrader, tmp_path / "course", names) == "dave"


def test_usage_errors_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert exit.value.code == 2 and "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "no notebooks" in capsys.readouterr().err


_ICON_STATUS = {"✅": "pass", "❌": "fail", "⏳": "not attempted"}


def test_every_solution_notebook_grades_as_its_stored_verdicts(tmp_path):
    """For every lesson, the grade equals the verdict its solution notebook shows under each check cell."""
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assignments = planning.course_assignments()
    shown = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        lesson = path.name[:2]
        for step in planning.plan(nb, assignments.get(lesson, ("", []))[1], planning.course_ids(lesson)):
            if step.check and step.cell < len(nb.cells):
                text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                               for o in nb.cells[step.cell].outputs)
                icons = [_ICON_STATUS[ch] for ch in text if ch in _ICON_STATUS]
                assert icons, f"{path.name}: the check cell of {step.check.id} shows no verdict"
                shown[(path.name, step.check.id)] = icons[-1]
    rows = classroom.grade(paths, tmp_path / "out", Options(timeout=240, cell_timeout=60), jobs=2, log=lambda *a: None)
    graded = {(Path(r.notebook).name, id): v["status"] for r in rows for id, v in r.results.items()}
    assert all(r.status == "graded" for r in rows), [(r.notebook, r.problem) for r in rows if r.status != "graded"]
    assert graded == shown


def test_without_bubblewrap_the_grader_stops_and_says_so(monkeypatch, tmp_path, capsys):
    from grading import sandbox

    monkeypatch.setattr(sandbox, "problem", lambda: "bubblewrap (`bwrap`) is not installed: `sudo apt-get install bubblewrap`")
    nbformat.write(submission({}), tmp_path / "carol.ipynb")
    assert cli.main([str(tmp_path / "carol.ipynb"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "NOT GRADING" in err and "apt-get install bubblewrap" in err and "--no-sandbox" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError, match="no sandbox"):
        classroom.grade([tmp_path], tmp_path / "out", Options())


def test_no_sandbox_grades_the_same(tmp_path):
    """--no-sandbox, where bubblewrap is missing: the same verdicts, in a kernel with a reduced environment."""
    path = tmp_path / "bob" / "01_lstm_bottleneck.ipynb"
    path.parent.mkdir()
    nbformat.write(submission({"01.1": ENCODER_NO_PACKING, "01.2": SHIFT_ROLL, "01.3": DECODER_SOFTMAX}), path)
    rows = classroom.grade([tmp_path], tmp_path / "out", Options(sandbox=False, cell_timeout=CELL_TIMEOUT),
                       log=lambda *a: None)
    assert [rows[0].results[i]["status"] for i in IDS] == list(EXPECTED["bob"][1:])


def test_utils_holds_no_grader_code_and_utils_grade_forwards(tmp_path):
    """Only utils/integrity.py (run in the learner's kernel) and the forwarding utils/grade.py are the grader's in utils/;
    `python -m utils.grade` still runs the grader, and says where it went."""
    importing = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "utils").rglob("*.py")
                       if "grading" in {n.split(".")[0] for n in _imported_modules(p)})
    assert importing == ["utils/grade.py"]
    run = subprocess.run([sys.executable, "-m", "utils.grade", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "python -m grading" in run.stderr and "no such file or folder" in run.stderr


def _imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names

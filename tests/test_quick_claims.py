"""Issue 24, item 5: the quick setting never says that a claim that needs the full budget holds.

``utils.claim`` prints "… not checked in the quick setting (40 of 500 steps)" for such a claim, and a full
run asserts every claim. The test runs lessons 08 and 09 (filled in with right answers in other styles) in the quick setting and
reads every claim line: a "holds" line must come from a claim that needs no training (``needs_training=False``
in the source), every other claim must say it was not checked and with how much of its budget. The stored
solution notebooks, full runs, must show every claim of the source holding.
"""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from utils import runtime
from tools.run_notebook import PromptNotebookClient
from other_styles import ANSWERS, filled

ROOT = Path(__file__).resolve().parent.parent
# Every lesson from 08 on says what budget its training claims need; lessons 01-07 predate the rule (their
# claims print "a shorter run than the full one" in the quick setting). A new lesson is covered by default.
BEFORE_THE_RULE = {f"{n:02d}" for n in range(1, 8)}
LESSONS = [p.stem for p in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py")) if p.name[:2] not in BEFORE_THE_RULE]
RUN = [lesson for lesson in LESSONS if lesson in ANSWERS]  # run in the quick setting, filled with other-style answers
HOLDS = f"{runtime.CLAIM_HOLDS}: "
NOT_CHECKED = re.compile(re.escape(runtime.NOT_CHECKED) + r" \((\d+) of (\d+) ([a-z ]+)\): (.*)")


# ---- the function
def test_quick_setting_reports_and_never_holds(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "QUICK", True)
    steps = runtime.budget(500, 40)
    assert steps == 40 and isinstance(steps, int) and steps.full == 500 and list(range(steps))[-1] == 39
    runtime.claim(True, "a trained model does well", budget=steps)  # true, yet only 40 of 500 steps: not checked
    runtime.claim(False, "a trained model does well")  # false: not checked either, and no AssertionError
    runtime.claim(True, "a timing", budget=runtime.budget(7, 2, unit="timed runs"))
    runtime.claim(True, "an exact equality", needs_training=False)
    out = capsys.readouterr().out.splitlines()
    assert out == ["… not checked in the quick setting (40 of 500 steps): a trained model does well",
                   "… not checked in the quick setting (a shorter run than the full one): a trained model does well",
                   "… not checked in the quick setting (2 of 7 timed runs): a timing",
                   "✔ claim holds: an exact equality"]
    with pytest.raises(AssertionError):
        runtime.claim(False, "an exact equality", needs_training=False)


def test_full_setting_asserts_every_claim(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "QUICK", False)
    steps = runtime.budget(500, 40)
    assert steps == 500 and steps.full == 500
    runtime.claim(True, "a trained model does well", budget=steps)
    assert capsys.readouterr().out == "✔ claim holds: a trained model does well\n"
    for kw in ({}, {"needs_training": False}, {"budget": steps}):
        with pytest.raises(AssertionError, match="The lesson claims"):
            runtime.claim(False, "a trained model does well", **kw)
    assert runtime.budget([1, 2], [1]) == [1, 2] and runtime.budget(0.5, 0.1) == 0.5  # only whole numbers are wrapped


# ---- the lessons
def _pattern(node) -> str:
    """A regular expression for the strings an expression of the source can make (f-strings, +, if-else)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_pattern(v) if isinstance(v, ast.Constant) else ".*?" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pattern(node.left) + _pattern(node.right)
    if isinstance(node, ast.IfExp):
        return f"(?:{_pattern(node.body)}|{_pattern(node.orelse)})"
    return ".*?"


def _claims(lesson: str) -> list[dict]:
    """Every utils.claim call of the lesson's source: its statement as a pattern, and what it declares."""
    tree = ast.parse((ROOT / "solutions" / f"{lesson}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "utils.claim":
            kw = {k.arg: k.value for k in node.keywords}
            exact = "needs_training" in kw and isinstance(kw["needs_training"], ast.Constant) and not kw["needs_training"].value
            found.append({"line": node.lineno, "pattern": re.compile(_pattern(node.args[1]), re.S), "exact": exact,
                          "budget": "budget" in kw})
    return found


def _lines(nb) -> list[str]:
    return [line for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "stream"
            for line in out.get("text", "").splitlines()]


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_training_claim_says_what_budget_it_needs(lesson):
    claims = _claims(lesson)
    assert claims
    missing = [c["line"] for c in claims if not c["exact"] and not c["budget"]]
    assert not missing, f"claims that need training but give no budget, at lines {missing} of {lesson}.py"


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_full_run_asserts_every_claim(lesson):
    """The stored solution notebook is a full run: every claim of the source printed that it holds."""
    lines = _lines(nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4))
    held = [line[len(HOLDS):] for line in lines if line.startswith(HOLDS)]
    assert not any(NOT_CHECKED.match(line) for line in lines)
    for claim in _claims(lesson):
        assert any(claim["pattern"].fullmatch(s) for s in held), f"the claim at line {claim['line']} never held"


@pytest.mark.parametrize("lesson", RUN)
def test_no_training_dependent_claim_holds_in_the_quick_setting(lesson, monkeypatch):
    """The lesson run in the quick setting with right answers written in other styles (tests/other_styles.py):
    every answer passes and the lesson runs on it to the end (issue 24, item 2), and no claim that needs
    training says it holds (item 5)."""
    monkeypatch.setenv("COURSE_QUICK", "1")
    nb = filled(lesson)
    PromptNotebookClient(nb, timeout=600, kernel_name="python3",
                         resources={"metadata": {"path": str(ROOT / "solutions")}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0]["ename"] + ": " + errors[0]["evalue"]
    lines = _lines(nb)
    used = [line for line in lines if line.startswith("✔ Using your")]
    assert len(used) == len(ANSWERS[lesson]), "\n".join(line for line in lines if "Exercise" in line or "Using" in line)
    claims = _claims(lesson)
    held = [line[len(HOLDS):] for line in lines if line.startswith(HOLDS)]
    unchecked = [NOT_CHECKED.match(line) for line in lines if line.startswith("… not checked")]
    assert held and unchecked, "the quick run printed no claims"
    for statement in held:
        sources = [c for c in claims if c["pattern"].fullmatch(statement)]
        assert sources, f"no claim of the source prints {statement!r}"
        assert all(c["exact"] for c in sources), f"a claim that needs training printed that it holds: {statement!r}"
    for match in unchecked:
        assert match, "a claim not checked in the quick setting must say how much of its budget it had"
        quick, full, _, statement = match.groups()
        assert int(quick) < int(full), statement
        sources = [c for c in claims if c["pattern"].fullmatch(statement)]
        assert sources and not any(c["exact"] for c in sources), statement
    # every claim of the source printed something: the quick run reaches all of them
    for claim in claims:
        assert any(claim["pattern"].fullmatch(s) for s in held + [m.group(4) for m in unchecked]), claim["line"]

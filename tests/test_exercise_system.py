"""The exercise contract of COURSE.md: check never raises, names mistakes, and use() falls back."""
import pytest
import torch

import utils
from utils import exercises


def test_every_lesson_exercise_has_hints_and_a_passing_reference():
    ids = exercises.all_ids()
    assert "01.1" in ids
    for id in ids:
        ex = exercises.get(id)
        assert ex.hints and 1 <= ex.difficulty <= 3 and ex.minutes > 0
        result = utils.check(id, ex.reference)
        assert result, f"the reference of {id} fails its own check: {result.message}"
        assert exercises.reference_source(id)


def test_unfilled_skeleton_reads_not_attempted():
    def shift_right(tgt, sos=1):
        # YOUR CODE HERE
        raise NotImplementedError()

    result = utils.check("01.2", shift_right)
    assert not result and result.status == "not attempted"


def test_learner_exception_shows_the_learners_line():
    def shift_right(tgt, sos=1):
        return tgt[:, 99]

    result = utils.check("01.2", shift_right)
    assert result.status == "fail"
    assert "IndexError" in result.message and "return tgt[:, 99]" in result.message


@pytest.mark.parametrize("candidate", [None, 42, "text", lambda *a: None, lambda *a: float("nan"), SystemExit])
def test_check_never_raises(candidate):
    for id in ("01.1", "01.2", "01.3", "01.4"):
        result = utils.check(id, candidate)
        assert not result and result.message


def test_sys_exit_in_learner_code_does_not_escape():
    def shift_right(tgt, sos=1):
        raise SystemExit(3)

    assert utils.check("01.2", shift_right).status == "fail"


def test_nan_is_named():
    def shift_right(tgt, sos=1):
        return torch.full(tgt.shape, float("nan"))

    result = utils.check("01.2", shift_right)
    assert not result


def test_unknown_id_is_a_clear_answer(capsys):
    result = utils.check("99.9", lambda: 0)
    assert result.status == "unknown" and "01.1" in result.message
    utils.hint("99.9")
    assert "no exercise" in capsys.readouterr().out


def test_hint_levels_and_solution(capsys):
    utils.hint("01.1")
    first = capsys.readouterr().out
    utils.hint("01.1", 2)
    second = capsys.readouterr().out
    assert "Hint 1/3" in first and "Hint 2/3" in second and first != second
    utils.hint("01.1", 99)  # clamps to the last hint
    assert "Hint 3/3" in capsys.readouterr().out
    utils.solution("01.2")
    assert "torch.cat" in capsys.readouterr().out


def test_use_falls_back_to_the_reference_and_says_so(capsys):
    def shift_right(tgt, sos=1):
        raise NotImplementedError()

    chosen = utils.use("01.2", shift_right)
    assert chosen is exercises.get("01.2").reference
    assert "not attempted yet" in capsys.readouterr().out
    good = exercises.get("01.2").reference
    assert utils.use("01.2", good) is good


def test_checking_does_not_disturb_the_lessons_random_stream():
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    utils.check("01.1", exercises.get("01.1").reference)
    b = torch.rand(3)
    assert torch.equal(a, b)


def test_result_is_usable_from_scripts():
    result = utils.check("01.2", exercises.get("01.2").reference)
    assert bool(result) and result.passed and "passed" in repr(result) and "<div" in result._repr_html_()

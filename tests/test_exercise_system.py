"""The exercise contract of COURSE.md: check never raises, names mistakes, and use() falls back."""
import pytest
import torch

import utils
from fake_lessons import BROKEN_LESSON, HALF_LESSON, NEW_LESSON, fake_lessons
from utils import exercises
from utils.exercises import registry, running


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


# ---- issue 14: time limit, memory guard, "not attempted", wrong kinds, the learner's code named
def test_a_check_that_loops_times_out_with_a_message_and_the_process_goes_on(monkeypatch):
    import signal
    import time

    monkeypatch.setattr(running, "TIME_LIMIT_S", 1.0)

    def shift_right(tgt, sos=1):
        while True:
            pass

    start = time.monotonic()
    result = utils.check("01.2", shift_right)
    assert result.status == "fail" and "did not finish within 1 s" in result.message
    assert time.monotonic() - start < 5
    # nothing is left behind: no timer, the default handler back, and the next check is unaffected
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None) or callable(signal.getsignal(signal.SIGALRM))
    time.sleep(1.2)
    assert utils.check("01.2", exercises.get("01.2").reference)


def test_the_time_limit_also_works_outside_the_main_thread(monkeypatch):
    """No SIGALRM there (e.g. a grader's thread): the watchdog raises in the checking thread instead."""
    import threading

    monkeypatch.setattr(running, "TIME_LIMIT_S", 1.0)

    def shift_right(tgt, sos=1):
        while True:
            pass

    out = {}
    thread = threading.Thread(target=lambda: out.update(result=utils.check("01.2", shift_right)))
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and out["result"].status == "fail" and "did not finish" in out["result"].message


def test_the_timeout_message_names_the_exercises_likely_cause(monkeypatch):
    monkeypatch.setattr(running, "TIME_LIMIT_S", 1.0)

    def greedy_decode(model, src, src_lengths, max_len):
        while True:  # "decoding" that never ends, without calling the decoder
            pass

    result = utils.check("01.4", greedy_decode)
    assert result.status == "fail" and "ignores max_len" in result.message


def test_the_memory_guard_stops_a_growing_candidate_and_torch_still_works(monkeypatch):
    monkeypatch.setattr(running, "MEMORY_LIMIT_MB", 200.0)

    def shift_right(tgt, sos=1):
        grow = []
        while True:
            grow.append(torch.ones(5_000_000))  # 20 MB a step

    result = utils.check("01.2", shift_right)
    assert result.status == "fail" and "more than 200 MB" in result.message
    big = torch.ones(30_000_000)  # 120 MB: PyTorch still allocates (no rlimit was set)
    assert big.sum().item() == 30_000_000
    assert utils.check("01.2", exercises.get("01.2").reference)


def test_the_guard_does_not_leave_a_pending_exception():
    from utils.exercises.checking import Guard

    with Guard(0.2, 10_000):
        pass
    import time

    time.sleep(0.5)  # a late watchdog must not fire into the code after the block
    assert torch.ones(2).sum() == 2


def test_not_attempted_means_the_learners_own_skeleton():
    # half done: the dot case written, the general case still raising -> fail, and it says so
    def luong_score(query, keys, W=None):
        if W is None:
            return torch.bmm(keys, query[:, :, None]).squeeze(-1)
        raise NotImplementedError()

    result = utils.check("02.3", luong_score)
    assert result.status == "fail" and "still raises NotImplementedError" in result.message

    # a NotImplementedError from PyTorch (a module called without a forward) is not "not attempted"
    def shift_right(tgt, sos=1):
        torch.nn.Module()(tgt)

    result = utils.check("01.2", shift_right)
    assert result.status == "fail" and "comes from PyTorch or the course" in result.message

    # a class whose __init__ and forward are both still the skeleton: not attempted
    class Encoder(torch.nn.Module):
        def __init__(self, vocab_size, emb_dim, hidden_dim):
            super().__init__()
            # YOUR CODE HERE
            raise NotImplementedError()

        def forward(self, src, src_lengths):
            # YOUR CODE HERE
            raise NotImplementedError()

    assert utils.check("01.1", Encoder).status == "not attempted"


def test_passing_the_wrong_kind_names_what_the_exercise_expects():
    def shift_right(tgt, sos=1):
        return tgt

    result = utils.check("01.1", shift_right)
    assert result.status == "fail" and "expects your class `Encoder`" in result.message
    assert "the function `shift_right`" in result.message
    result = utils.check("01.2", exercises.get("01.1").reference)
    assert result.status == "fail" and "expects your function `shift_right`" in result.message


def test_a_failing_claim_names_the_learners_code_in_use(capsys):
    good = exercises.get("01.2").reference
    assert utils.use("01.2", good) is good
    with pytest.raises(AssertionError) as err:
        utils.claim(False, "something the lesson says", needs_training=False)
    assert "uses your code for exercise 01.2" in str(err.value) and "not the lesson" in str(err.value)
    # back to the reference: the claim's message blames nothing of the learner's
    utils.use("01.2", None)
    with pytest.raises(AssertionError) as err:
        utils.claim(False, "something the lesson says", needs_training=False)
    assert "your code" not in str(err.value)


def test_checks_are_fast():
    """Every reference check takes well under a few seconds (a check test suite runs hundreds of them)."""
    import time

    for id in exercises.all_ids():
        if id[:2] > "07":
            continue
        start = time.monotonic()
        assert utils.check(id, exercises.get(id).reference)
        assert time.monotonic() - start < 8, id


# ---- issue 27: lessons found from their files; a lesson that does not import says so
def test_every_lesson_module_is_found_and_imports():
    """Every utils/exercises/lessonNN.py is a lesson (no list to edit), and each imports."""
    files = sorted(p.name[6:8] for p in registry.FOLDERS[0].glob("lesson[0-9][0-9].py"))
    assert registry.lessons() == tuple(files) and "01" in files
    for lesson in files:
        assert registry.load_lesson(lesson) and registry.lesson_ids(lesson), lesson


def test_a_new_lesson_file_is_a_lesson(tmp_path):
    with fake_lessons(tmp_path, {"98": NEW_LESSON}):
        assert "98" in registry.lessons() and "98.1" in exercises.all_ids()
        assert utils.check("98.1", lambda x: 2 * x) and not utils.check("98.1", lambda x: x)
    assert "98.1" not in exercises.all_ids()


def test_a_lesson_that_does_not_import_is_named_not_unknown(tmp_path, capsys):
    with fake_lessons(tmp_path, {"97": BROKEN_LESSON, "96": HALF_LESSON}):
        result = utils.check("97.1", lambda x: x)
        assert result.status == "unknown" and "There is no exercise" not in result.message
        assert "could not be loaded" in result.message and "lesson97.py does not import" in result.message
        assert "ModuleNotFoundError" in result.message and "torchh" in result.message
        utils.hint("97.1")
        assert "lesson97.py does not import" in capsys.readouterr().out
        # Half a lesson (an error after its first exercise registered) is not a lesson.
        result = utils.check("96.1", abs)
        assert "lesson96.py does not import" in result.message and "NameError" in result.message
        assert "96.1" not in exercises.all_ids() and "01.1" in exercises.all_ids()
        with pytest.raises(registry.LessonError, match="lesson97.py"):
            registry.lesson_ids("97")

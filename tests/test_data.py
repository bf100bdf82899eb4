"""Unit tests of utils.data, utils.training and utils.runtime."""
import datetime as dt

import pytest
import torch

from utils import runtime
from utils.data import EOS, PAD, SOS, DATE_FORMATS, DateTask, SymbolTask, Vocab, make_batch
from utils.rnn import BottleneckSeq2Seq
from utils.training import accuracy_by_length, exact_match, sequence_loss, token_accuracy, train


@pytest.mark.parametrize("kind", SymbolTask.KINDS)
def test_symbol_task_targets(kind):
    task = SymbolTask(kind, min_len=1, max_len=9)
    batch = task.sample(50, torch.Generator().manual_seed(0))
    for i in range(len(batch)):
        n = int(batch.src_lengths[i])
        src = batch.src[i, :n].tolist()
        assert (batch.src[i, n:] == PAD).all()
        want = {"copy": src, "reverse": src[::-1], "sort": sorted(src)}[kind]
        assert batch.tgt[i, :n].tolist() == want
        assert batch.tgt[i, n] == EOS and (batch.tgt[i, n + 1:] == PAD).all()
        assert batch.tgt_lengths[i] == n + 1


def test_symbol_task_is_seeded_and_lengths_cover_range():
    task = SymbolTask("reverse", min_len=3, max_len=7)
    a = task.sample(400, torch.Generator().manual_seed(5))
    b = task.sample(400, torch.Generator().manual_seed(5))
    assert torch.equal(a.src, b.src)
    assert set(a.src_lengths.tolist()) == set(range(3, 8))
    fixed = task.sample(4, torch.Generator().manual_seed(1), length=6)
    assert (fixed.src_lengths == 6).all() and fixed.src.shape == (4, 6)


def test_vocab_round_trip_and_specials():
    v = Vocab(list("abc"))
    assert v.itos[:3] == ["<pad>", "<sos>", "<eos>"] and (PAD, SOS, EOS) == (0, 1, 2)
    assert v.decode(v.encode("cab") + [EOS, 4]) == list("cab")
    with pytest.raises(ValueError, match="not in this task's vocabulary"):
        v.encode("z")


def test_date_task_pairs_are_correct_iso_dates():
    task = DateTask()
    pairs = task.random_dates(300, torch.Generator().manual_seed(0))
    for text, iso in pairs:
        date = dt.date.fromisoformat(iso)
        assert dt.date(1950, 1, 1) <= date <= dt.date(2049, 12, 31)
        assert text in {f(date) for f in DATE_FORMATS.values()}
    assert {f(dt.date(1987, 3, 3)) for f in DATE_FORMATS.values()} >= {"3rd of March 1987", "Tue 03/03/87"}
    batch = task.make_batch(pairs[:5])
    assert task.show(batch.tgt[0]) == pairs[0][1]
    assert task.show(batch.src[1]) == pairs[1][0]


def test_token_accuracy_and_exact_match():
    tgt = torch.tensor([[3, 4, EOS], [5, EOS, PAD]])
    pred = torch.tensor([[3, 9, EOS], [5, EOS, PAD]])
    assert token_accuracy(pred, tgt).tolist() == pytest.approx([2 / 3, 1.0])
    assert exact_match(pred, tgt).tolist() == [0.0, 1.0]
    short = torch.tensor([[3], [5]])  # a too-short output counts the missing tokens as wrong
    assert token_accuracy(short, tgt).tolist() == pytest.approx([1 / 3, 1 / 2])


def test_sequence_loss_ignores_padding():
    logits = torch.randn(2, 3, 7)
    tgt = torch.tensor([[3, 4, EOS], [5, EOS, PAD]])
    changed = logits.clone()
    changed[1, 2] += 100  # the score at a padded position must not matter
    assert torch.allclose(sequence_loss(logits, tgt), sequence_loss(changed, tgt))


def test_training_is_deterministic_and_learns():
    task = SymbolTask("copy", min_len=2, max_len=4)

    def run():
        torch.manual_seed(0)
        model = BottleneckSeq2Seq(len(task.vocab), 16, 32)
        history = train(model, task, steps=150, batch_size=32, lr=1e-2, desc="test")
        return model, history

    m1, h1 = run()
    _, h2 = run()
    assert h1.losses == h2.losses
    assert h1.final_loss < 0.5 * h1.losses[0]
    acc = accuracy_by_length(m1, task, [2, 3], n=50)
    assert acc[2]["token"] > 0.5


def test_claim_asserts_and_quick_setting(monkeypatch, capsys):
    runtime.claim(True, "fine")
    assert "claim holds" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="The lesson claims"):
        runtime.claim(False, "broken")
    monkeypatch.setattr(runtime, "QUICK", True)
    runtime.claim(False, "needs a trained model")  # not checked in the quick setting
    assert "not checked in the quick setting" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        runtime.claim(False, "an exact equality", needs_training=False)
    assert runtime.budget(100, 10) == 10


def test_fmt_time_is_what_the_sanitiser_expects():
    import re
    pattern = re.compile(r"\b\d+(\.\d+)? (s|ms|µs)\b")
    for seconds in (12.345, 0.0123, 3e-6):
        assert pattern.fullmatch(runtime.fmt_time(seconds))

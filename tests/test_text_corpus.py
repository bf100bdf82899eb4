"""utils.data's text corpus for lesson 08: a small corpus of modules the test writes itself, the
deterministic split by file, the vocabulary with <unk>, batches, and a clear error for a missing module."""
import sys

import pytest
import torch

from utils.data import STDLIB_MODULES, UNK, TextCorpus, module_source


@pytest.fixture
def tiny_modules(tmp_path, monkeypatch):
    names = [f"tiny_mod_{i}" for i in range(5)]
    for i, name in enumerate(names):
        (tmp_path / f"{name}.py").write_text(f"def f{i}(x):\n    return x + {i}  # é{i}\n" * (i + 2), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield names
    for name in names:
        sys.modules.pop(name, None)


def test_reads_sources_and_splits_by_file(tiny_modules):
    corpus = TextCorpus.from_modules(tiny_modules, validation_every=3)
    assert corpus.val_names == ["tiny_mod_2"]  # every 3rd name in sorted order
    assert corpus.train_names == ["tiny_mod_0", "tiny_mod_1", "tiny_mod_3", "tiny_mod_4"]
    texts = {n: module_source(n) for n in tiny_modules}
    assert corpus.decode(corpus.val) == texts["tiny_mod_2"].replace("2", "\ufffd")  # '2' is only in that file
    want_train = "\n\n".join(texts[n] for n in corpus.train_names)
    assert corpus.decode(corpus.train) == want_train
    assert corpus.itos[0] == UNK and corpus.itos[1:] == sorted(set(want_train))
    assert "é" in corpus.itos  # non-ASCII characters of the training split are in the vocabulary
    # deterministic: the same corpus every time, whatever the order of the list
    again = TextCorpus.from_modules(tiny_modules[::-1], validation_every=3)
    assert torch.equal(again.train, corpus.train) and torch.equal(again.val, corpus.val)


def test_encode_decode_and_unknown_characters(tiny_modules):
    corpus = TextCorpus.from_modules(tiny_modules)
    ids = corpus.encode("def f(x)")
    assert ids.dtype == torch.long and corpus.decode(ids) == "def f(x)"
    assert corpus.encode("∑").tolist() == [0] and corpus.decode([0]) == "\ufffd"
    assert corpus.encode("").shape == (0,)


def test_batches_are_windows_of_the_split(tiny_modules):
    corpus = TextCorpus.from_modules(tiny_modules)
    g = torch.Generator().manual_seed(0)
    batch = corpus.batch("train", 6, 10, g)
    assert batch.shape == (6, 10)
    text = corpus.decode(corpus.train)
    assert all(corpus.decode(row) in text for row in batch)
    assert torch.equal(batch, corpus.batch("train", 6, 10, torch.Generator().manual_seed(0)))  # seeded
    windows = corpus.windows("val", 8)
    assert windows.shape == (len(corpus.val) // 8, 8) and torch.equal(windows.flatten(), corpus.val[: windows.numel()])
    with pytest.raises(ValueError, match="do not fit"):
        corpus.batch("val", 1, len(corpus.val) + 1)
    with pytest.raises(ValueError, match="split"):
        corpus.batch("test", 1, 2)


def test_missing_module_says_which_and_why(tiny_modules):
    with pytest.raises(FileNotFoundError, match="no_such_module_xyz"):
        TextCorpus.from_modules([*tiny_modules, "no_such_module_xyz"])
    with pytest.raises(FileNotFoundError, match="'sys'"):  # built in: no source file
        module_source("sys")
    with pytest.raises(ValueError, match="two files"):
        TextCorpus({"a": "x"})


def test_the_standard_library_corpus_is_complete_on_this_interpreter():
    corpus = TextCorpus.from_modules()
    assert len(corpus.train_names) + len(corpus.val_names) == len(STDLIB_MODULES) == len(set(STDLIB_MODULES))
    assert len(corpus.train) > 1_000_000 and len(corpus.val) > 100_000
    assert 90 <= len(corpus) <= 130
    assert module_source("os").startswith('r"""OS routines')  # a frozen module: its source file is still read

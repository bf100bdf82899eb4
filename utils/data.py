"""The course's data: generated from a seed, never downloaded.

Two task families serve every lesson, so that models can be compared on the same work:

* :class:`SymbolTask` -- reverse, copy or sort a sequence of symbols ``a b c ...`` of a
  chosen length: the long-sequence stress test.
* :class:`DateTask` -- normalise a date written in one of many formats
  ("3rd of March 1987", "Tue 03/03/87", ...) to ISO ``1987-03-03``: a small translation
  task whose alignments a person can read.

Both return a :class:`Batch` of padded token ids (batch first). Token ids 0, 1, 2 are
``<pad>``, ``<sos>`` (start of sequence) and ``<eos>`` (end of sequence) in every vocabulary.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

PAD, SOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<sos>", "<eos>")


class Vocab:
    """A small vocabulary: tokens <-> ids, with the three special tokens first."""

    def __init__(self, tokens: Sequence[str]):
        self.itos = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Tokens (e.g. the characters of a string) -> ids. Raises on an unknown token."""
        try:
            return [self.stoi[t] for t in tokens]
        except KeyError as err:
            raise ValueError(f"{err.args[0]!r} is not in this task's vocabulary") from None

    def decode(self, ids, *, stop_at_eos: bool = True) -> list[str]:
        """Ids -> tokens, without ``<pad>``/``<sos>``, stopping at the first ``<eos>``."""
        out = []
        for i in (ids.tolist() if torch.is_tensor(ids) else ids):
            if i == EOS and stop_at_eos:
                break
            if i not in (PAD, SOS):
                out.append(self.itos[i])
        return out

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {' '.join(self.itos)})"


@dataclass
class Batch:
    """A padded batch, batch first.

    src:          (B, S) input ids, padded with ``PAD``
    src_lengths:  (B,)   true input lengths
    tgt:          (B, T) target ids followed by ``EOS``, padded with ``PAD``
    tgt_lengths:  (B,)   true target lengths, ``EOS`` included
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    tgt_lengths: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.src, self.src_lengths, self.tgt, self.tgt_lengths)))

    def __len__(self) -> int:
        return self.src.shape[0]


def pad_batch(sequences: Sequence[Sequence[int]], *, append_eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> ``(ids (B, L) padded with PAD, lengths (B,))``."""
    seqs = [list(s) + ([EOS] if append_eos else []) for s in sequences]
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> Batch:
    """Source and target id lists -> a :class:`Batch` (``EOS`` appended to each target)."""
    src, src_lengths = pad_batch(sources)
    tgt, tgt_lengths = pad_batch(targets, append_eos=True)
    return Batch(src, src_lengths, tgt, tgt_lengths)


class SymbolTask:
    """Transform a sequence of ``num_symbols`` symbols: ``"reverse"``, ``"copy"`` or ``"sort"``.

    >>> task = SymbolTask("reverse", min_len=2, max_len=8)
    >>> batch = task.sample(4, torch.Generator().manual_seed(0))
    >>> task.show(batch.src[0]), task.show(batch.tgt[0])
    """

    KINDS = ("reverse", "copy", "sort")

    def __init__(self, kind: str = "reverse", *, num_symbols: int = 10, min_len: int = 2, max_len: int = 20):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, not {kind!r}")
        if not 1 <= min_len <= max_len:
            raise ValueError("need 1 <= min_len <= max_len")
        self.kind, self.num_symbols, self.min_len, self.max_len = kind, num_symbols, min_len, max_len
        self.vocab = Vocab([chr(ord("a") + i) for i in range(num_symbols)])

    def transform(self, src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The target of each padded source row, padded the same way. (B, S) -> (B, S)."""
        B, S = src.shape
        pos = torch.arange(S).expand(B, S)
        valid = pos < lengths[:, None]
        if self.kind == "copy":
            return src.clone()
        if self.kind == "reverse":
            index = (lengths[:, None] - 1 - pos).clamp(min=0)  # position L-1-t for t < L
            return torch.where(valid, src.gather(1, index), PAD)
        big = torch.where(valid, src, torch.iinfo(torch.long).max)  # sort: padding goes last
        return torch.where(valid, big.sort(dim=1).values, PAD)

    def sample(self, batch_size: int, generator: torch.Generator | None = None, *, length: int | None = None) -> Batch:
        """A random batch; lengths uniform in ``[min_len, max_len]`` unless ``length`` is given."""
        if length is None:
            lengths = torch.randint(self.min_len, self.max_len + 1, (batch_size,), generator=generator)
        else:
            lengths = torch.full((batch_size,), length)
        S = int(lengths.max())
        src = torch.randint(3, 3 + self.num_symbols, (batch_size, S), generator=generator)
        src = torch.where(torch.arange(S) < lengths[:, None], src, PAD)
        tgt = self.transform(src, lengths)
        tgt = torch.cat([tgt, torch.full((batch_size, 1), PAD)], dim=1)
        tgt[torch.arange(batch_size), lengths] = EOS
        return Batch(src, lengths, tgt, lengths + 1)

    def show(self, ids) -> str:
        """Ids -> a readable string of symbols."""
        return " ".join(self.vocab.decode(ids))

    def __repr__(self) -> str:
        return f"SymbolTask({self.kind!r}, {self.num_symbols} symbols, lengths {self.min_len}-{self.max_len})"


_MONTHS = ["January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Each format turns a date into a string; day-first, as in most of the world.
DATE_FORMATS = {
    "ordinal": lambda d: f"{_ordinal(d.day)} of {_MONTHS[d.month - 1]} {d.year}",     # 3rd of March 1987
    "weekday_slash": lambda d: f"{_DAYS[d.weekday()][:3]} {d:%d/%m/%y}",              # Tue 03/03/87
    "dotted": lambda d: f"{d:%d.%m.%Y}",                                              # 03.03.1987
    "us_long": lambda d: f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",                # March 3, 1987
    "short": lambda d: f"{d.day} {_MONTHS[d.month - 1][:3]} {d:%y}",                  # 3 Mar 87
    "weekday_long": lambda d: f"{_DAYS[d.weekday()]}, {d.day} {_MONTHS[d.month - 1]} {d.year}",  # Tuesday, 3 March 1987
    "dashed": lambda d: f"{d:%d}-{_MONTHS[d.month - 1][:3]}-{d.year}",               # 03-Mar-1987
}
_FIRST_DAY, _LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)  # two-digit years are unambiguous


class DateTask:
    """Normalise dates written in :data:`DATE_FORMATS` to ISO ``YYYY-MM-DD``, character by character.

    Dates run from 1950-01-01 to 2049-12-31, so a two-digit year has one reading.
    """

    def __init__(self, formats: Sequence[str] | None = None):
        self.formats = list(formats or DATE_FORMATS)
        chars = set("0123456789-,./ ") | set("".join(_MONTHS + _DAYS)) | set("stndrdth of")
        self.vocab = Vocab(sorted(chars))
        self.max_len = max(len(DATE_FORMATS[f](dt.date(2000, 9, 27))) for f in DATE_FORMATS) + 4

    @staticmethod
    def iso(date: dt.date) -> str:
        return date.isoformat()

    def random_dates(self, n: int, generator: torch.Generator | None = None) -> list[tuple[str, str]]:
        """``n`` random ``(text, iso)`` pairs."""
        span = (_LAST_DAY - _FIRST_DAY).days + 1
        days = torch.randint(0, span, (n,), generator=generator).tolist()
        fmts = torch.randint(0, len(self.formats), (n,), generator=generator).tolist()
        pairs = []
        for d, f in zip(days, fmts):
            date = _FIRST_DAY + dt.timedelta(days=d)
            pairs.append((DATE_FORMATS[self.formats[f]](date), self.iso(date)))
        return pairs

    def encode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Date strings -> ``(src (B, S), src_lengths (B,))``. Raises on an unknown character."""
        return pad_batch([self.vocab.encode(t) for t in texts])

    def make_batch(self, pairs: Sequence[tuple[str, str]]) -> Batch:
        return make_batch([self.vocab.encode(a) for a, _ in pairs], [self.vocab.encode(b) for _, b in pairs])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        return self.make_batch(self.random_dates(batch_size, generator))

    def show(self, ids) -> str:
        return "".join(self.vocab.decode(ids))

    def __repr__(self) -> str:
        return f"DateTask({len(self.formats)} formats, {len(self.vocab)} characters)"


# ----------------------------------------------------------------- lesson 08: real text
# Pure-Python modules of the standard library that exist, as source files, on Python 3.10 to 3.13
# (none of them was removed by PEP 594 or turned into a package in those versions). Their source
# is read from the running interpreter: nothing is downloaded, and every learner has one.
STDLIB_MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "cmd", "code", "collections",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "difflib", "doctest", "enum",
    "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "heapq",
    "hmac", "html.parser", "http.client", "inspect", "ipaddress", "json.decoder", "json.encoder",
    "locale", "logging", "mailbox", "mimetypes", "numbers", "operator", "optparse", "pickle",
    "pprint", "queue", "random", "reprlib", "sched", "selectors", "shutil", "smtplib",
    "socketserver", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "typing", "unittest.case", "urllib.parse",
    "uuid", "warnings", "weakref",
)
UNK = "<unk>"


def module_source(name: str) -> str:
    """The source text of module ``name`` as the running interpreter has it (found by importlib, not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    if origin == "frozen":  # a module frozen into the interpreter (e.g. os) may still have its source file
        origin = getattr(getattr(spec, "loader_state", None), "filename", None)
    if spec is None or not origin or not origin.endswith(".py"):
        raise FileNotFoundError(
            f"the module {name!r} has no Python source file in this interpreter ({origin or 'not found'}); "
            "the corpus needs the standard library's .py files (some minimal installations ship only "
            "compiled files): pass another list of modules, or install the full standard library")
    with open(origin, encoding="utf-8") as f:
        return f.read()


class TextCorpus:
    """Character-level text for language modelling, split into training and validation *by file*.

    ``texts``: ``{name: text}``; every ``validation_every``-th name in sorted order goes to
    validation (a deterministic split, so no file is in both). The vocabulary is the characters of
    the training split, sorted, after ``<unk>`` (id 0), which stands for any character the training
    split does not contain.

    * ``train``, ``val``: the two splits encoded, 1-D int64 tensors (files joined by a blank line);
    * ``encode(text) -> (L,) ids`` and ``decode(ids) -> str`` (``<unk>`` shows as U+FFFD);
    * ``batch(split, batch_size, length, generator) -> (B, length)`` windows at random offsets.
    """

    def __init__(self, texts: dict, *, validation_every: int = 8):
        if len(texts) < 2:
            raise ValueError("need at least two files: one for training, one for validation")
        if validation_every < 2:
            raise ValueError("validation_every must be at least 2")
        names = sorted(texts)
        self.val_names = [n for i, n in enumerate(names) if i % validation_every == validation_every - 1]
        self.train_names = [n for n in names if n not in self.val_names]
        if not self.val_names:
            self.val_names, self.train_names = names[-1:], names[:-1]
        train_text = "\n\n".join(texts[n] for n in self.train_names)
        val_text = "\n\n".join(texts[n] for n in self.val_names)
        self.itos = [UNK] + sorted(set(train_text))
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self._codes = np.array([ord(c) for c in self.itos[1:]], dtype=np.int64)  # sorted code points of ids 1..V-1
        self.train, self.val = self.encode(train_text), self.encode(val_text)

    @classmethod
    def from_modules(cls, modules=STDLIB_MODULES, **kwargs) -> "TextCorpus":
        """The source files of ``modules`` (default :data:`STDLIB_MODULES`), read from this interpreter."""
        return cls({name: module_source(name) for name in modules}, **kwargs)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """A string -> (L,) int64 ids; a character outside the vocabulary becomes ``<unk>`` (0)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # one code point each
        where = np.searchsorted(self._codes, codes).clip(max=len(self._codes) - 1)  # its place in the vocabulary
        ids = np.where(self._codes[where] == codes, where + 1, 0)  # 0 = <unk> where the character is not there
        return torch.from_numpy(ids)

    def decode(self, ids) -> str:
        """Ids -> a string; ``<unk>`` is shown as the replacement character U+FFFD."""
        ids = ids.tolist() if torch.is_tensor(ids) else ids
        return "".join("\ufffd" if i == 0 else self.itos[i] for i in ids)

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', not {name!r}")
        return self.train if name == "train" else self.val

    def batch(self, split: str, batch_size: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch_size`` windows of ``length`` consecutive characters of ``split``, at random offsets: (B, length)."""
        data = self.split(split)
        if length > len(data):
            raise ValueError(f"windows of {length} characters do not fit in the {split} split ({len(data)} characters)")
        starts = torch.randint(0, len(data) - length + 1, (batch_size,), generator=generator)
        return data[starts[:, None] + torch.arange(length)]  # (B, length)

    def windows(self, split: str, length: int, max_windows: int | None = None) -> torch.Tensor:
        """The split cut into consecutive, non-overlapping windows of ``length``: (N, length), in order."""
        data = self.split(split)
        n = len(data) // length if max_windows is None else min(len(data) // length, max_windows)
        return data[: n * length].view(n, length)

    def __repr__(self) -> str:
        return (f"TextCorpus({len(self.train_names)} training files, {len(self.train):,} characters; "
                f"{len(self.val_names)} validation files, {len(self.val):,} characters; {len(self)} symbols)")

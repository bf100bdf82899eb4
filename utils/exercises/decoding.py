"""The greedy-decoding mistakes that lessons 01 (an LSTM decoder, 01.4) and 07 (a Transformer decoder, 07.3)
share: one loop that writes greedy decoding with one realistic slip, and one diagnosis that compares the
learner's ids with it. Each lesson gives its own ``step`` (how its model turns the token so far into the next
logits); the slips of the loop itself (the start token, PAD after EOS, EOS overwritten, SOS kept, a row's
"finished" forgotten, stopping too early or too late) are named the same way in both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.data import EOS, PAD, SOS
from utils.exercises.checking import Mistake

EOS_OVERWRITTEN = ("Each row's `<eos>` itself was replaced by PAD: mark a row finished *after* writing its token "
                   "(`out.append(torch.where(finished, PAD, token))`, then `finished |= token == EOS`), so that the "
                   "EOS stays and only what comes after it is PAD.")
START = "The first input must be `<sos>` (SOS), the token the decoder was trained to start from."
PAD_AFTER = "After a row has produced `<eos>` it is finished: fill the rest of its row with PAD."
KEEP_SOS = "Do not include the starting `<sos>` in the output: return only the generated tokens."
FORGETS = ("A row that finished comes back to life: `finished = token == EOS` forgets the rows that produced `<eos>` "
           "at an earlier step. Accumulate it: `finished |= token == EOS` (or `finished = finished | (token == EOS)`).")
STOPPED_EARLY = ("Your loop stopped when the first row produced `<eos>`, but the other rows were not finished: "
                 "stop only when *every* row has (`if finished.all(): break`), or run to max_len.")


def recursion(encode: str, decode: str) -> str:
    """The message for a greedy_decode that calls model.generate, which calls greedy_decode."""
    return (f"Your greedy_decode calls `model.generate`, but in this lesson `model.generate` calls greedy_decode: "
            f"that recursion never ends. Write the loop with `{encode}` and `{decode}`.")


def too_many_steps(max_len: int) -> str:
    return (f"Your loop ran the decoder more than max_len = {max_len} times: it must stop after max_len steps even when "
            "a row never produces `<eos>` (an untrained model often never does). Loop `for _ in range(max_len)`.")


def greedy_mutant(step, state, batch: int, max_len: int, *, start=SOS, pad_after_eos=True, eos_overwritten=False,
                  keep_sos=False, forgets_finished=False):
    """Greedy decoding written with one slip of the loop (defaults: right, never stopping early) -> ids (B, L).

    step(token (B,) long, state) -> (logits (B, V), state): the lesson's model, from the token just generated (the
    start token first) and whatever it carries (an LSTM's state, a Transformer's prefix).
    """
    token = torch.full((batch,), start, dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool)
    out = [token] if keep_sos else []
    for _ in range(max_len - int(keep_sos)):
        logits, state = step(token, state)
        token = logits.argmax(-1)  # (B,)
        if eos_overwritten:
            finished |= token == EOS
        out.append(torch.where(finished, PAD, token) if pad_after_eos else token)
        finished = (token == EOS) if forgets_finished else finished | (token == EOS)
    return torch.stack(out, dim=1)


def loop_mistakes(step, state, batch: int, max_len: int) -> dict:
    """{message: ids} of the slips of the loop, for the lesson's ``step`` and initial ``state``."""
    run = lambda **kw: greedy_mutant(step, state, batch, max_len, **kw)  # noqa: E731
    return {START: run(start=PAD), PAD_AFTER: run(pad_after_eos=False), KEEP_SOS: run(keep_sos=True),
            EOS_OVERWRITTEN: run(eos_overwritten=True), FORGETS: run(forgets_finished=True)}


def diagnose(got, want, max_len: int, mistakes, otherwise: str, *, stop_when_done: bool) -> None:
    """Return when ``got`` is greedy decoding's ``want`` (PAD after the end does not count); else raise the Mistake
    that names the likely slip. got, want: ids (B, L) and (B, W); mistakes: {message: ids (B, max_len)}, or a function
    returning it (run only when needed); stop_when_done: the docstring asks to stop as soon as every row has finished."""
    L, W = got.shape[1], want.shape[1]
    if 0 < L < W and torch.equal(got, want[:, :L]):
        if bool((got[:, -1] == EOS).any()) and not bool((got[:, :-1] == EOS).any()):
            raise Mistake(STOPPED_EARLY)  # it stopped at the step of the first EOS
        raise Mistake(f"Your loop stops after {L} steps, before max_len = {max_len}, although some rows have not "
                      "produced `<eos>`" + (" (one step short: `range(max_len)` runs max_len steps)" if L == max_len - 1
                                            else "") + ": break early only when every row has finished.")
    full = F.pad(got, (0, max_len - L), value=PAD)
    want_full = F.pad(want, (0, max_len - W), value=PAD)
    if torch.equal(full, want_full):
        if L > W and stop_when_done:
            raise Mistake(f"Your loop went on after every row had produced `<eos>` (your output has {L} steps, all rows "
                          f"were finished after {W}): stop as soon as every row has, as the docstring says "
                          "(`if finished.all(): break`): each extra step reruns the decoder for nothing.")
        return
    for message, ids in (mistakes() if callable(mistakes) else mistakes).items():
        ids = F.pad(ids, (0, max_len - ids.shape[1]), value=PAD)[:, :max_len]  # the mutants never stop early
        if torch.equal(full, ids) or torch.equal(got, ids[:, :L]):
            raise Mistake(message)
    raise Mistake(otherwise)

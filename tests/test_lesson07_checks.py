"""Lesson 07's checks accept the references and name realistic mistakes."""
import pytest
import torch
import torch.nn as nn

import utils
from utils.attention import MultiHeadAttention
from utils.data import EOS, PAD, SOS
from utils.exercises import lesson07
from utils.transformer import DecoderLayer, FeedForward, Transformer
from check_helpers import fails_with


def test_references_pass():
    for id in ("07.1", "07.2", "07.3"):
        result = utils.check(id, utils.exercises.get(id).reference)
        assert result, result.message


# ---- 07.1 the decoder block
class _Block(nn.Module):
    """The skeleton's layers; subclasses write a wrong forward."""

    def __init__(self, d_model, num_heads, d_ff, norm_first=True):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.norm_first = norm_first
        self.last_self_weights = self.last_cross_weights = None

    _sa = DecoderLayer._sa
    _ca = DecoderLayer._ca

    def sublayers(self, x, memory, tgt_mask, memory_mask):
        return (lambda h: self._sa(h, tgt_mask), lambda h: self._ca(h, memory, memory_mask), self.ff)

    def run(self, x, subs, norms, pre_ln):
        for sub, norm in zip(subs, norms):
            x = x + sub(norm(x)) if pre_ln else norm(x + sub(x))
        return x


class NoCausalMask(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return self.run(x, self.sublayers(x, memory, None, memory_mask), (self.norm1, self.norm2, self.norm3), self.norm_first)


class CrossAttendsToItself(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, _, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        return self.run(x, (sa, lambda h: self._ca(h, h, tgt_mask), ff), (self.norm1, self.norm2, self.norm3), self.norm_first)


class QueriesFromMemory(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        x = x + self._sa(self.norm1(x), tgt_mask)
        return self.cross_attn(memory, x, x)[0]


class IgnoresMemoryMask(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return self.run(x, self.sublayers(x, memory, tgt_mask, None), (self.norm1, self.norm2, self.norm3), self.norm_first)


class NoResidual(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        for sub, norm in zip(self.sublayers(x, memory, tgt_mask, memory_mask), (self.norm1, self.norm2, self.norm3)):
            x = sub(norm(x)) if self.norm_first else norm(sub(x))
        return x


class AlwaysPostLN(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return self.run(x, self.sublayers(x, memory, tgt_mask, memory_mask), (self.norm1, self.norm2, self.norm3), False)


class FeedForwardSecond(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, ca, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        return self.run(x, (sa, ff, ca), (self.norm1, self.norm3, self.norm2), self.norm_first)


class NormsMixedUp(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return self.run(x, self.sublayers(x, memory, tgt_mask, memory_mask), (self.norm1, self.norm3, self.norm2), self.norm_first)


class NormalisesMemory(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, _, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        ca = lambda h: self._ca(h, self.norm2(memory), memory_mask)  # noqa: E731
        return self.run(x, (sa, ca, ff), (self.norm1, self.norm2, self.norm3), self.norm_first)


class CallsCrossAttnDirectly(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, _, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        ca = lambda h: self.cross_attn(h, memory, memory, memory_mask)[0]  # noqa: E731
        return self.run(x, (sa, ca, ff), (self.norm1, self.norm2, self.norm3), self.norm_first)


class OtherNames(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=True):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.src_attn = MultiHeadAttention(d_model, num_heads)

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return x


def test_decoder_block_mistakes():
    fails_with("07.1", NoCausalMask, "ignores `tgt_mask`")
    fails_with("07.1", CrossAttendsToItself, "from `memory`")
    fails_with("07.1", QueriesFromMemory, "queries come from the decoder")
    fails_with("07.1", IgnoresMemoryMask, "ignores `memory_mask`")
    fails_with("07.1", NoResidual, "residual")
    fails_with("07.1", AlwaysPostLN, "post-LN")
    fails_with("07.1", FeedForwardSecond, "feed-forward comes last")
    fails_with("07.1", NormsMixedUp, "LayerNorms are mixed up")
    fails_with("07.1", NormalisesMemory, "do not normalise `memory`")
    fails_with("07.1", CallsCrossAttnDirectly, "last_cross_weights")
    fails_with("07.1", OtherNames, "same names")
    fails_with("07.1", DecoderLayer(8, 2, 16), "class itself")


class CrossOnResidual(_Block):
    """Cross-attention over the residual stream x (not memory), with the target's mask."""

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, _, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        x = x + sa(self.norm1(x)) if self.norm_first else self.norm1(x + sa(x))
        x = x + self._ca(self.norm2(x), x, memory_mask) if self.norm_first else self.norm2(x + self._ca(x, x, memory_mask))
        return x + ff(self.norm3(x)) if self.norm_first else self.norm3(x + ff(x))


class SharedNorms(_Block):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm3 = self.norm2


class SelfAttentionOnMemory(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        _, ca, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        return self.run(x, (lambda h: self._sa_on(h, memory, memory_mask), ca, ff), (self.norm1, self.norm2, self.norm3),
                        self.norm_first)

    def _sa_on(self, h, memory, mask):
        out, w = self.self_attn(h, memory, memory, mask)
        self.last_self_weights = w.detach()
        return out


class DetachedFeedForward(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, ca, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        return self.run(x, (sa, ca, lambda h: ff(h).detach()), (self.norm1, self.norm2, self.norm3), self.norm_first)


class CallsSelfAttnDirectly(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        _, ca, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        sa = lambda h: self.self_attn(h, h, h, tgt_mask)[0]  # noqa: E731
        return self.run(x, (sa, ca, ff), (self.norm1, self.norm2, self.norm3), self.norm_first)


class HalfDone(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()


def test_decoder_block_reliances_and_structural_mistakes():
    fails_with("07.1", CrossOnResidual, "from `memory`")
    fails_with("07.1", SharedNorms, "same module object")
    fails_with("07.1", SelfAttentionOnMemory, "self-attention must attend over the target")
    fails_with("07.1", DetachedFeedForward, "gradient")
    fails_with("07.1", CallsSelfAttnDirectly, "last_self_weights")
    # __init__ written, forward still the skeleton: half done, a fail that says so (not "not attempted")
    fails_with("07.1", HalfDone, "still raises NotImplementedError")


# ---- 07.2 the shift and the loss
def _loss(shift="right", start=SOS, reduce="tokens", log=True, sign=1, dim=-1, detach=False):
    def loss(model, src, src_lengths, tgt):
        memory, src_mask = model.encode(src, src_lengths)
        if shift == "right":
            tgt_in = torch.cat([torch.full_like(tgt[:, :1], start), tgt[:, :-1]], dim=1)
        elif shift == "left":
            tgt_in = torch.cat([tgt[:, 1:], torch.full_like(tgt[:, :1], PAD)], dim=1)
        else:
            tgt_in = tgt
        logits = model.decode(tgt_in, memory, src_mask)
        p = logits.log_softmax(dim) if log else logits.softmax(dim)
        nll = -sign * p.gather(-1, tgt[..., None]).squeeze(-1)
        real = (tgt != PAD).float()
        out = {"tokens": lambda: (nll * real).sum() / real.sum(), "all": lambda: nll.mean(),
               "sum": lambda: (nll * real).sum(), "rows": lambda: ((nll * real).sum(1) / real.sum(1)).mean(),
               "none": lambda: nll * real}[reduce]()
        return out.detach() if detach else out
    return loss


def test_loss_mistakes():
    fails_with("07.2", _loss(shift="none"), "not shifted")
    fails_with("07.2", _loss(start=PAD), "must be SOS")
    fails_with("07.2", _loss(shift="left"), "wrong way")
    fails_with("07.2", _loss(reduce="all"), "padding is counted")
    fails_with("07.2", _loss(reduce="sum"), "sum of the NLL")
    fails_with("07.2", _loss(reduce="rows"), "per sequence")
    fails_with("07.2", _loss(reduce="none"), "single number")
    fails_with("07.2", _loss(sign=-1), "sign is wrong")
    fails_with("07.2", _loss(log=False), "take the log")
    fails_with("07.2", _loss(dim=1), "over the vocabulary")
    fails_with("07.2", _loss(detach=True), "no gradient")

    def in_place(model, src, src_lengths, tgt):
        tgt[:, 0] = SOS
        return lesson07.teacher_forcing_loss(model, src, src_lengths, tgt)

    fails_with("07.2", in_place, "in place")
    # F.cross_entropy on the shifted decoder input is an equally right answer
    def with_library(model, src, src_lengths, tgt):
        memory, src_mask = model.encode(src, src_lengths)
        logits = model.decode(torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], 1), memory, src_mask)
        return nn.functional.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD)

    assert utils.check("07.2", with_library)


# ---- 07.3 greedy decoding
def _decode(start=SOS, last=True, pad_after=True, keep_sos=False, extra=0, stop=True):
    @torch.no_grad()
    def decode(model, src, src_lengths, max_len):
        memory, src_mask = model.encode(src, src_lengths)
        ys = torch.full((src.shape[0], 1), start, dtype=torch.long)
        finished = torch.zeros(src.shape[0], dtype=torch.bool)
        out = [ys[:, 0]] if keep_sos else []
        for _ in range(max_len - int(keep_sos) + extra):
            logits = model.decode(ys, memory, src_mask)
            token = (logits[:, -1] if last else logits[:, 0]).argmax(-1)
            out.append(torch.where(finished, PAD, token) if pad_after else token)
            finished |= token == EOS
            if stop and finished.all():
                break
            ys = torch.cat([ys, token[:, None]], dim=1)
        return torch.stack(out, 1)
    return decode


def test_greedy_decode_mistakes():
    fails_with("07.3", _decode(start=PAD), "<sos>")
    fails_with("07.3", _decode(last=False), "last* position")
    fails_with("07.3", _decode(pad_after=False), "fill the rest of its row with pad")
    fails_with("07.3", _decode(keep_sos=True), "do not include")
    fails_with("07.3", _decode(extra=3, stop=False), "more than max_len")
    fails_with("07.3", lambda m, s, l, n: torch.zeros(s.shape[0], n), "token ids")
    # the docstring: "Stops as soon as every row has produced EOS"
    fails_with("07.3", _decode(stop=False), "went on after every row")


def _decode_loop(stop="all", eos_first=False, max_steps=True, prefix=True, dtype=torch.long):
    @torch.no_grad()
    def decode(model, src, src_lengths, max_len):
        memory, src_mask = model.encode(src, src_lengths)
        ys = torch.full((src.shape[0], 1), SOS, dtype=torch.long)
        finished = torch.zeros(src.shape[0], dtype=torch.bool)
        out, step = [], 0
        while (step < max_len) if max_steps else not finished.all():
            step += 1
            token = model.decode(ys if prefix else ys[:, -1:], memory, src_mask)[:, -1].argmax(-1)
            if eos_first:
                finished |= token == EOS
            out.append(torch.where(finished, PAD, token))
            finished |= token == EOS
            if (finished.any() if stop == "any" else finished.all()):
                break
            ys = torch.cat([ys, token[:, None]], dim=1)
        return torch.stack(out, 1).to(dtype)
    return decode


def test_greedy_decode_structural_mistakes_are_named():
    assert utils.check("07.3", _decode_loop())
    fails_with("07.3", _decode_loop(stop="any"), "every* row")
    fails_with("07.3", _decode_loop(eos_first=True), "`<eos>` itself was replaced by pad")
    fails_with("07.3", _decode_loop(prefix=False), "whole prefix")
    fails_with("07.3", _decode_loop(dtype=torch.int32), "torch.long")


def test_greedy_decode_terminates_and_does_not_recurse():
    # a loop that ignores max_len: one check case never produces EOS, the counted decoder stops it at once
    result = fails_with("07.3", _decode_loop(max_steps=False), "more than max_len")
    fails_with("07.3", lambda model, src, src_lengths, max_len: model.generate(src, src_lengths, max_len),
               "recursion never ends")

    def changes_src(model, src, src_lengths, max_len):
        src_lengths.clamp_(max=2)
        return lesson07.greedy_decode(model, src, src_lengths, max_len)

    fails_with("07.3", changes_src, "in place")
    assert result.status == "fail"


@pytest.mark.parametrize("id", ["07.1", "07.2", "07.3"])
def test_unfilled_and_junk_candidates_get_a_clear_answer(id):
    def skeleton(*args, **kwargs):
        raise NotImplementedError()

    assert utils.check(id, skeleton).status in ("not attempted", "fail")
    for junk in (None, 3, "x", lambda *a, **k: None):
        result = utils.check(id, junk)
        assert not result and result.message


def test_reference_decoding_matches_the_models_generate():
    torch.manual_seed(0)
    model = Transformer(9, d_model=16, num_heads=2, num_layers=1, d_ff=32).eval()
    src = torch.randint(3, 9, (4, 5))
    lengths = torch.tensor([5, 3, 2, 5])
    assert torch.equal(lesson07.greedy_decode(model, src, lengths, 7), model.generate(src, lengths, 7))


def test_decoding_checks_have_rows_finishing_at_different_steps():
    """Otherwise "PAD after EOS" and "stop when all are finished" would go untested."""
    early = 0
    for V, B, S, max_len, seed, eos in lesson07._DECODE_CASES[:-1]:  # the last case never produces EOS
        model = lesson07._decoding_model(V, seed, eos)
        src, src_lengths, _ = lesson07._pairs(V, B, S, 2, seed)
        ids = lesson07.greedy_decode(model, src, src_lengths, max_len)
        early += ids.shape[1] < max_len
        assert (ids == PAD).any(), "some row should finish before another"
    assert early, "some batch should finish before max_len"


def test_loss_through_the_models_forward_is_accepted_and_not_misreported():
    """model(src, src_lengths, tgt) gives the teacher-forced logits in the lesson: it is a right answer."""
    def via_forward(model, src, src_lengths, tgt):
        logits = model(src, src_lengths, tgt)
        return nn.functional.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD)

    assert utils.check("07.2", via_forward)

    def half_done(model, src, src_lengths, tgt):
        memory, src_mask = model.encode(src, src_lengths)
        raise NotImplementedError()

    fails_with("07.2", half_done, "still raises NotImplementedError")


# ---- issue 24: the decoder block's remaining mistakes named, right answers written other ways accepted
class CrossAttentionFirst(_Block):
    """Cross-attention first, the norms numbered by position (norm1 for the first sublayer run)."""

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, ca, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        return self.run(x, (ca, sa, ff), (self.norm1, self.norm2, self.norm3), self.norm_first)


class FeedForwardWithoutResidual(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, ca, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        x = self.run(x, (sa, ca), (self.norm1, self.norm2), self.norm_first)
        return ff(self.norm3(x)) if self.norm_first else self.norm3(ff(x))


class QueriesFromMemoryKeysFromX(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        sa, _, ff = self.sublayers(x, memory, tgt_mask, memory_mask)
        ca = lambda h: self._ca(memory, h, None)  # noqa: E731 -- queries from memory, keys and values from x
        return self.run(x, (sa, ca, ff), (self.norm1, self.norm2, self.norm3), self.norm_first)


class CrossQueryNotNormalised(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        if not self.norm_first:
            return DecoderLayer.forward(self, x, memory, tgt_mask, memory_mask)
        x = x + self._sa(self.norm1(x), tgt_mask)
        x = x + self._ca(x, memory, memory_mask)
        return x + self.ff(self.norm3(x))


class OneNormForAll(_Block):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return self.run(x, self.sublayers(x, memory, tgt_mask, memory_mask), (self.norm1,) * 3, self.norm_first)


class BlockWithBuffer(_Block):
    """A buffer of the learner's own, and attention called with keywords: right."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        return DecoderLayer.forward(self, x * self.scale, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)


def test_decoder_block_mistakes_of_issue_24():
    fails_with("07.1", CrossAttentionFirst, "sublayers are in the wrong order: yours runs cross-attention")
    fails_with("07.1", FeedForwardWithoutResidual, "residual connection around the feed-forward is missing")
    fails_with("07.1", QueriesFromMemoryKeysFromX, "queries from memory and its keys and values from x")
    fails_with("07.1", CrossQueryNotNormalised, "cross-attention reads `self.norm2(x)`, not x")
    fails_with("07.1", OneNormForAll, "`self.norm1` for more than one sublayer")
    assert utils.check("07.1", BlockWithBuffer)


def _loss_with(kind):
    def teacher_forcing_loss(model, src, src_lengths, tgt):
        memory, src_mask = model.encode(src, src_lengths)
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], SOS), tgt[:, :-1]], 1)
        logp = model.decode(tgt_in, memory, src_mask).log_softmax(-1)
        real = tgt != PAD
        if kind == "shifted twice":
            nll, real = -logp[:, :-1].gather(-1, tgt[:, 1:, None]).squeeze(-1), real[:, 1:]
        elif kind == "no eos":
            nll, real = -logp.gather(-1, tgt[..., None]).squeeze(-1), real & (tgt != EOS)
        elif kind == "raw logits":
            nll = -model.decode(tgt_in, memory, src_mask).gather(-1, tgt[..., None]).squeeze(-1)
        elif kind == "mask of the input":
            nll, real = -logp.gather(-1, tgt[..., None]).squeeze(-1), tgt_in != PAD
        elif kind == "input scored":
            nll, real = -logp.gather(-1, tgt_in[..., None]).squeeze(-1), tgt_in != PAD
        else:
            nll = -logp.gather(-1, tgt[..., None]).squeeze(-1)
        total = (nll * real).sum()
        return total / tgt.numel() if kind == "by all" else total / real.sum()
    return teacher_forcing_loss


@pytest.mark.parametrize("kind, phrase", [
    ("shifted twice", "shifted twice"),
    ("no eos", "`<eos>` is left out"),
    ("raw logits", "raw score"),
    ("by all", "divided by b * t"),
    ("mask of the input", "belongs to the target scored"),
    ("input scored", "scored the decoder's input"),
])
def test_loss_mistakes_of_issue_24(kind, phrase):
    fails_with("07.2", _loss_with(kind), phrase)


def test_greedy_decode_mistakes_of_issue_24():
    def forgets(model, src, src_lengths, max_len):
        memory, src_mask = model.encode(src, src_lengths)
        ys, finished, out = torch.full((src.shape[0], 1), SOS), torch.zeros(src.shape[0], dtype=torch.bool), []
        for _ in range(max_len):
            token = model.decode(ys, memory, src_mask)[:, -1].argmax(-1)
            out.append(torch.where(finished, PAD, token))
            finished = token == EOS  # forgets the rows that finished before
            ys = torch.cat([ys, token[:, None]], dim=1)
        return torch.stack(out, 1)

    fails_with("07.3", forgets, "comes back to life")
    fails_with("07.3", lambda m, s, l, n: _decode()(m, s, l, n - 1), "one step short")

"""Issue 24, item 1: no check accepts a candidate that changes the tensors it was given.

One mechanism (utils.exercises.checking.inputs_kept, hooked into check()) watches every call of a learner's
function, and the forward of a learner's nn.Module class, and names the in-place operation, the input and the
learner's line. These tests drive it through real exercises and through the mechanism itself.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils
from utils import gpt, modern
from utils.exercises import checking
from utils.transformer import EncoderLayer
from check_helpers import fails_with


# ---- the examples, through their exercises
def test_temperature_divided_in_place_is_named_with_the_line_and_the_fix():
    def sample_next(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        logits /= temperature
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)

    result = fails_with("08.2", sample_next, "changed `logits` in place")
    assert "`logits /= temperature`" in result.message  # the learner's own line
    assert "Write `logits = logits / temperature`" in result.message  # and the out-of-place way to write it


def test_top_k_masked_fill_in_place_is_named():
    def sample_next(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        if top_k is not None:
            logits.masked_fill_(logits < logits.topk(top_k, -1).values[..., -1:], float("-inf"))
        return torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(-1)

    result = fails_with("08.2", sample_next, "`.masked_fill_(...)`")
    assert "logits = logits.masked_fill(" in result.message


def test_query_scaled_in_place_in_grouped_query_attention_is_named():
    def grouped_query_attention(q, k, v, mask=None):
        q /= math.sqrt(q.shape[-1])
        return modern.grouped_query_attention(q * math.sqrt(q.shape[-1]), k, v, mask)

    fails_with("09.3", grouped_query_attention, "changed `q` in place")


# ---- every way of writing into a tensor one was given
def _loss_with(change):
    def next_token_loss(logits, tokens):
        change(logits, tokens)
        return gpt.next_token_loss(logits.detach().clone().requires_grad_(), tokens)
    return next_token_loss


@pytest.mark.parametrize("change, phrase", [
    (lambda logits, tokens: tokens.__setitem__((slice(None), 0), 0), "`tokens = tokens.clone()`"),  # tokens[:, 0] = 0
    (lambda logits, tokens: torch.add(tokens, 0, out=tokens), "`out="),
    (lambda logits, tokens: tokens.clamp_(0, 3), "`.clamp_(...)`"),
    (lambda logits, tokens: tokens.view(-1).add_(0), "changed `tokens` in place"),  # through a view
    (lambda logits, tokens: tokens.data.mul_(1), "changed `tokens` in place"),  # through .data
    (lambda logits, tokens: F.relu(logits.detach(), inplace=True), "`inplace=True`"),
])
def test_every_in_place_write_is_caught(change, phrase):
    fails_with("08.1", _loss_with(change), phrase)


def test_a_view_named_in_the_line_is_explained():
    def apply_rope(x, positions, base=10000.0):
        half = x.shape[-1] // 2
        x2 = x[..., half:]
        x2 *= 1.0  # writes into x
        return modern.apply_rope(x, positions, base)

    result = fails_with("09.2", apply_rope, "changed `x` in place")
    assert "`x2` (a view of `x`" in result.message


def test_a_modules_forward_inputs_are_watched():
    class InPlaceEncoderLayer(EncoderLayer):
        def forward(self, x, mask=None):
            if self.norm_first:
                x += self._sa(self.norm1(x), mask)
                return x + self.ff(self.norm2(x))
            return super().forward(x, mask)

    result = fails_with("06.3", InPlaceEncoderLayer, "forward changed `x` in place")
    assert "`x = x + self._sa(self.norm1(x), mask)`" in result.message


def test_in_place_work_on_ones_own_tensors_is_fine():
    def next_token_loss(logits, tokens):
        logp = logits[:, :-1].log_softmax(-1)  # a new tensor
        nll = -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
        total = torch.zeros(())
        total += nll.sum()  # in place, on a tensor of its own
        return total / nll.numel()

    assert utils.check("08.1", next_token_loss)

    def sample_next(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        z = logits.clone()
        z /= temperature  # in place on a copy
        if top_k is not None:
            z.masked_fill_(z < z.topk(top_k, -1).values[..., -1:], float("-inf"))
        return torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(-1)

    assert utils.check("08.2", sample_next)


def test_the_learner_gets_back_their_own_object():
    """The watch exists only during the check: use() returns the learner's function or class itself."""
    def next_token_loss(logits, tokens):
        return gpt.next_token_loss(logits, tokens)

    assert utils.use("08.1", next_token_loss) is next_token_loss
    assert utils.use("06.3", EncoderLayer) is EncoderLayer
    utils.use("08.1", None), utils.use("06.3", None)


def test_the_watch_itself():
    x = torch.ones(3)

    def f(t):
        t.mul_(2)
        return t

    with pytest.raises(checking.InputChanged, match="changed `t` in place"):
        checking.watch_inputs(f)(x)
    assert torch.equal(x, torch.ones(3)), "the watch stops before the operation runs"
    # nested arguments are named by position, and a watched class keeps its name and its methods
    with pytest.raises(checking.InputChanged, match=r"`state\[1\]`"):
        checking.watch_inputs(lambda state: state[1].zero_())((torch.ones(2), torch.ones(2)))
    Watched = checking.watch_inputs(nn.Linear)
    assert Watched.__name__ == "Linear" and issubclass(Watched, nn.Linear)
    assert Watched(2, 2)(torch.ones(1, 2)).shape == (1, 2)
    # a write the watch does not see (here: with torch functions disabled) still bumps the tensor's version:
    # it is reported after the call
    def hidden(t):
        with torch._C.DisableTorchFunction():
            t.mul_(2)
        return t

    with pytest.raises(checking.InputChanged, match="after the call the `t` it was given is not what it was"):
        checking.watch_inputs(hidden)(torch.ones(3))

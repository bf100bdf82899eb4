"""Lesson 10's checks accept the references (and other right answers) and name realistic mistakes; the
modern model with every piece off is lesson 08's GPT, RMSNorm is torch's, GQA divides the cache by h/g
inside the model, and the rolling cache gives the tokens of uncached generation with constant memory."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils
from utils import gpt, modern_gpt
from utils.exercises.lesson10 import rms_variant
from utils.modern_gpt import (CausalSelfAttention, ModernBlock, ModernConfig, ModernGPT, RMSNorm, SwiGLU, cache_bytes,
                              generate, kv_bytes_per_token, make_feed_forward, make_norm, rolling_cache, rms_norm)
from utils.transformer import FeedForward
from check_helpers import fails_with

IDS = ("10.1", "10.2", "10.3")
FULL = dict(rmsnorm=True, swiglu=True, rope=True, num_kv_heads=2, window=4)


def small(**pieces):
    return ModernConfig(17, d_model=16, num_heads=4, num_layers=2, d_ff=32, block_size=12, **pieces)


def test_references_pass():
    for id in IDS:
        result = utils.check(id, utils.exercises.get(id).reference)
        assert result, result.message


@pytest.mark.parametrize("id", IDS)
def test_unfilled_and_junk_candidates_get_a_clear_answer(id):
    def skeleton(*args, **kwargs):
        raise NotImplementedError()

    class Skeleton(nn.Module):
        def __init__(self, config):
            super().__init__()
            raise NotImplementedError()

    assert utils.check(id, Skeleton if id == "10.3" else skeleton).status == "not attempted"
    for junk in (None, 3, "x", lambda *a, **k: None):
        result = utils.check(id, junk)
        assert not result and result.message


# ---- 10.1 RMSNorm
@pytest.mark.parametrize("kind, phrase", [
    ("axis", "wrong axis"), ("all", "whole tensor"), ("keepdim", "keepdim=true"), ("eps_outside", "outside the square root"),
    ("abs", "mean of |x|"), ("abs_no_sqrt", "mean of |x|"), ("sum", "summed"), ("no_sqrt", "square root is missing"),
    ("multiply", "multiplied by the root mean square"), ("layernorm", "that is layernorm"), ("std", "standard deviation"),
    ("no_weight", "weight is missing"), ("add_weight", "like a bias"),
])
def test_rms_norm_mistakes(kind, phrase):
    fails_with("10.1", lambda x, weight, eps=1e-6: rms_variant(x, weight, eps, kind=kind), phrase)


def test_rms_norm_other_mistakes():
    fails_with("10.1", lambda x, weight, eps=1e-5: rms_variant(x, weight, eps), "default eps is 1e-05")
    # keepdim forgotten, where the shapes do not broadcast: the error is named, not just shown
    fails_with("10.1", lambda x, weight, eps=1e-6: x * torch.rsqrt(x.pow(2).mean(-1) + eps)[..., None, :] * weight
               if x.dim() == 2 else x * torch.rsqrt(x.pow(2).mean(-1) + eps) * weight, "keepdim")

    def in_place(x, weight, eps=1e-6):
        return x.mul_(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).mul_(weight)

    fails_with("10.1", in_place, "in place")
    fails_with("10.1", lambda x, weight, eps=1e-6: rms_norm(x, weight, eps).detach(), "no gradient")


def test_rms_norm_right_answers_written_differently_pass():
    def by_hand(x, weight, eps=1e-6):
        rms = torch.sqrt(torch.mean(x * x, dim=x.dim() - 1, keepdim=True) + eps)
        return weight * (x / rms)

    def with_torch(x, weight, eps=1e-6):
        return F.rms_norm(x, (x.shape[-1],), weight, eps)

    assert utils.check("10.1", by_hand)
    assert utils.check("10.1", with_torch)


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="torch.nn.RMSNorm needs PyTorch 2.4")
def test_rms_norm_equals_torch():
    torch.manual_seed(0)
    for shape, eps in (((3, 7, 16), 1e-6), ((5, 8), 1e-3), ((2, 2, 3, 12), 0.5)):
        x = torch.randn(shape) * 2 + 0.5
        theirs = nn.RMSNorm(shape[-1], eps=eps)
        with torch.no_grad():
            theirs.weight.normal_()
        assert torch.allclose(rms_norm(x, theirs.weight, eps), theirs(x), atol=1e-6)
        ours = RMSNorm(shape[-1], eps=eps)
        ours.load_state_dict(theirs.state_dict())  # the same state: one weight
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)


# ---- 10.2 the rolling cache
def _roll(kind):
    def roll(cache, new, window):
        full = new if cache is None else torch.cat([cache, new], dim=2)
        if kind == "oldest":
            return full[:, :, :window]
        if kind == "one short":
            return full[:, :, -(window - 1):] if full.shape[2] >= window else full
        if kind == "one over":
            return full[:, :, -(window + 1):]
        if kind == "no trim":
            return full
        if kind == "trim first":  # the cache trimmed, then the new positions appended
            return new[:, :, -window:] if cache is None else torch.cat([cache[:, :, -window:], new], dim=2)
        if kind == "wrong dim":
            return (new if cache is None else torch.cat([cache, new], dim=-1))[:, :, -window:]
        if kind == "newest first":
            return (new if cache is None else torch.cat([new, cache], dim=2))[:, :, -window:]
        if kind == "reversed":
            return full[:, :, -window:].flip(2)
        if kind == "in place":
            if cache is not None:
                cache.mul_(1.0)  # harmless values, but it writes into the input
                cache[..., 0, 0] += 1
            return full[:, :, -window:]
        raise ValueError(kind)
    return roll


@pytest.mark.parametrize("kind, phrase", [
    ("oldest", "oldest"), ("one short", "one too few"), ("one over", "one too many"), ("no trim", "kept all"),
    ("trim first", "trimmed the cache"), ("wrong dim", "dim 2"), ("newest first", "in front of the cache"),
    ("reversed", "reversed"), ("in place", "in place"),
])
def test_rolling_cache_mistakes(kind, phrase):
    fails_with("10.2", _roll(kind), phrase)


def test_rolling_cache_forgetting_the_first_call_is_shown_with_the_learners_line():
    result = utils.check("10.2", lambda cache, new, window: torch.cat([cache, new], dim=2)[:, :, -window:])
    assert result.status == "fail" and "TypeError" in result.message


def test_rolling_cache_right_answers_written_differently_pass():
    def narrow(cache, new, window):
        full = new if cache is None else torch.cat((cache, new), 2)
        keep = min(window, full.shape[2])
        return full.narrow(2, full.shape[2] - keep, keep).clone()

    def empty_start(cache, new, window):
        if cache is None:
            cache = new[:, :, :0]
        out = torch.cat([cache, new], dim=-2)
        return out[:, :, max(0, out.shape[-2] - window):]

    assert utils.check("10.2", narrow)
    assert utils.check("10.2", empty_start)


# ---- 10.3 the block
class _Variant(ModernBlock):
    kind = None

    def forward(self, x, positions, cache=None):
        from utils.exercises.lesson10 import _block_variant
        return _block_variant(self, x, positions, cache, self.kind)


def _variant(kind):
    return type(f"Block_{kind}", (_Variant,), {"kind": kind})


@pytest.mark.parametrize("kind, phrase", [
    ("no_residuals", "residual connections are missing"), ("no_residual_attn", "attention's residual"),
    ("no_residual_ff", "feed-forward's residual"), ("post_norm", "post-ln"), ("norm_stream", "residual stream itself"),
    ("parallel", "parallel"), ("shared_norm", "norm1 serves both"), ("positions", "positions 0, 1"),
    ("no_cache", "cache is not passed on"),
])
def test_block_mistakes(kind, phrase):
    fails_with("10.3", _variant(kind), phrase)


class OnlyX(ModernBlock):
    def forward(self, x, positions, cache=None):
        return super().forward(x, positions, cache)[0]


class InPlace(ModernBlock):
    def forward(self, x, positions, cache=None):
        out, kv = self.self_attn(self.norm1(x), positions, cache)
        x += out
        return x + self.ff(self.norm2(x)), kv


class AlwaysLayerNorm(ModernBlock):
    def __init__(self, config):
        super().__init__(config)
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)


class AlwaysReLU(ModernBlock):
    def __init__(self, config):
        super().__init__(config)
        self.ff = FeedForward(config.d_model, config.d_ff)


class Detached(ModernBlock):
    def forward(self, x, positions, cache=None):
        out, kv = self.self_attn(self.norm1(x), positions, cache)
        x = x + out.detach()
        return x + self.ff(self.norm2(x)), kv


class NoNorm2(ModernBlock):
    def __init__(self, config):
        super().__init__(config)
        del self.norm2


def test_other_block_mistakes():
    fails_with("10.3", OnlyX, "pair (x, kv)")
    fails_with("10.3", InPlace, "in place")
    fails_with("10.3", AlwaysLayerNorm, "make_norm(config)")
    fails_with("10.3", AlwaysReLU, "make_feed_forward(config)")
    fails_with("10.3", Detached, "gradient")
    fails_with("10.3", NoNorm2, "no `norm2`")
    fails_with("10.3", ModernBlock(small()), "class itself")


def test_block_right_answers_written_differently_pass():
    class Keywords(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.norm1, self.norm2 = make_norm(config), make_norm(config)
            self.self_attn, self.ff = CausalSelfAttention(config), make_feed_forward(config)
            self.calls = 0  # an attribute of its own: allowed

        def forward(self, x, positions, cache=None):
            self.calls += 1
            attended, new_kv = self.self_attn(x=self.norm1(x), positions=positions, cache=cache)
            h = attended + x
            return h + self.ff(self.norm2(h)), list(new_kv)  # a list of (k, v) serves the cache as well

    class TorchNorm(ModernBlock):  # PyTorch's own RMSNorm, with the same eps, is just as right
        def __init__(self, config):
            super().__init__(config)
            if config.rmsnorm:
                self.norm1, self.norm2 = nn.RMSNorm(config.d_model, eps=1e-6), nn.RMSNorm(config.d_model, eps=1e-6)

    assert utils.check("10.3", Keywords)
    if hasattr(nn, "RMSNorm"):
        assert utils.check("10.3", TorchNorm)


# ---- the model
@pytest.mark.parametrize("d_ff, layers", [(32, 2), (24, 1)])
def test_every_piece_off_is_lesson_08s_gpt(d_ff, layers):
    torch.manual_seed(0)
    theirs = gpt.GPT(17, 16, 4, layers, d_ff, 12)
    ours = ModernGPT(ModernConfig(17, d_model=16, num_heads=4, num_layers=layers, d_ff=d_ff, block_size=12))
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    with torch.no_grad():  # weights away from their initial values, so that every part matters
        for p in theirs.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ours.load_state_dict(theirs.state_dict())
    assert ours.head.weight is ours.tok_emb.weight
    ids = torch.randint(0, 17, (3, 12))
    assert (ours(ids) - theirs(ids)).abs().max() < 1e-5
    prompt = ids[:, :4]
    for kw in ({"temperature": 0}, {"temperature": 1.0, "top_k": 5}):
        a = gpt.generate(theirs, prompt, 8, use_cache=True, generator=torch.Generator().manual_seed(2), **kw)
        b = generate(ours, prompt, 8, generator=torch.Generator().manual_seed(2), **kw)
        assert torch.equal(a, b)


def test_config_switches_build_the_pieces():
    m = ModernGPT(small(**FULL))
    block = m.blocks[0]
    assert isinstance(block.norm1, RMSNorm) and isinstance(m.norm, RMSNorm) and isinstance(block.ff, SwiGLU)
    assert not hasattr(m, "pos_emb") and block.self_attn.k_proj.out_features == 2 * 4
    assert block.ff.gate_proj.out_features == 2 * 32 // 3
    base = ModernGPT(small())
    assert isinstance(base.blocks[0].norm1, nn.LayerNorm) and isinstance(base.blocks[0].ff, FeedForward)
    assert base.pos_emb.weight.shape == (12, 16)
    with pytest.raises(ValueError, match="num_kv_heads"):
        small(num_kv_heads=3)
    with pytest.raises(ValueError, match="even"):
        ModernConfig(5, d_model=12, num_heads=4, rope=True)
    with pytest.raises(ValueError, match="window"):
        small(window=0)


def test_swiglu_keeps_the_parameters_of_the_relu_layer():
    for d in (64, 128, 512):
        config = ModernConfig(10, d_model=d, num_heads=4, d_ff=4 * d)
        relu, swiglu = make_feed_forward(config), make_feed_forward(config.with_(swiglu=True))
        assert abs(sum(p.numel() for p in swiglu.parameters()) / sum(p.numel() for p in relu.parameters()) - 1) < 0.01
    x = torch.randn(2, 3, 64)
    s = SwiGLU(64, 10)
    assert torch.allclose(s(x), s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x)))


def test_learned_positions_stop_at_block_size_and_rope_does_not():
    ids = torch.randint(0, 17, (2, 30))
    with pytest.raises(ValueError, match="learned positions"):
        ModernGPT(small())(ids)
    with pytest.raises(ValueError, match="block_size"):
        generate(ModernGPT(small()), ids[:, :4], 20)
    assert ModernGPT(small(rope=True))(ids).shape == (2, 30, 17)
    assert ModernGPT(small(**FULL))(ids).shape == (2, 30, 17)


def test_the_window_limits_what_each_position_sees():
    """With a window w and L layers, the last output depends on exactly the last 1 + L (w - 1) tokens."""
    torch.manual_seed(0)
    model = ModernGPT(small(**FULL)).eval()  # w = 4, L = 2: 7 tokens
    ids = torch.randint(0, 17, (1, 20))
    base = model(ids)[0, -1]
    for t in range(20):
        changed = ids.clone()
        changed[0, t] = (changed[0, t] + 1) % 17
        moved = (model(changed)[0, -1] - base).abs().max() > 0
        assert moved == (t >= 20 - 7), t


def test_gqa_divides_the_cache_inside_the_model():
    ids = torch.randint(0, 17, (2, 9))
    held = {}
    for g in (4, 2, 1):
        model = ModernGPT(small(rope=True, num_kv_heads=g)).eval()
        _, caches = model.step(ids, [None, None], 0)
        held[g] = cache_bytes(caches)
        assert held[g] == 2 * kv_bytes_per_token(model.config) * 9  # batch of 2
    assert held[4] == 2 * held[2] == 4 * held[1]


@pytest.mark.parametrize("prompt_len", [3, 6])  # shorter and longer than the window of 4
def test_rolling_cache_generation_equals_uncached_and_keeps_memory_constant(prompt_len):
    torch.manual_seed(1)
    model = ModernGPT(small(**FULL)).eval()
    prompt = torch.randint(0, 17, (3, prompt_len))
    for n_new in (4 - min(prompt_len, 4) + 1, 25):  # within the window (when the prompt fits it), and far beyond
        for kw in ({"temperature": 0}, {"temperature": 1.0, "top_k": 5}):
            a, la = generate(model, prompt, n_new, generator=torch.Generator().manual_seed(3), return_logits=True, **kw)
            b, lb = generate(model, prompt, n_new, generator=torch.Generator().manual_seed(3), use_cache=False,
                             return_logits=True, **kw)
            assert torch.equal(a, b) and (la - lb).abs().max() < 1e-5
    held = []
    generate(model, prompt, 30, temperature=0, on_step=lambda caches: held.append(cache_bytes(caches)))
    per = 3 * kv_bytes_per_token(model.config)
    assert held == [per * min(prompt_len + i, 4) for i in range(30)]
    # with the learner's rolling_cache passed in, the same
    calls = []

    def counting(cache, new, window):
        calls.append(window)
        return rolling_cache(cache, new, window)

    assert torch.equal(generate(model, prompt, 6, temperature=0, roll=counting), generate(model, prompt, 6, temperature=0))
    assert calls and set(calls) == {4}


def test_cache_without_a_window_grows_and_equals_recomputing():
    torch.manual_seed(2)
    model = ModernGPT(small(rmsnorm=True, rope=True, num_kv_heads=1)).eval()
    prompt = torch.randint(0, 17, (2, 5))
    held = []
    a = generate(model, prompt, 20, temperature=0, on_step=lambda caches: held.append(cache_bytes(caches)))
    assert torch.equal(a, generate(model, prompt, 20, temperature=0, use_cache=False))
    assert held == [2 * kv_bytes_per_token(model.config) * (5 + i) for i in range(20)]


def test_training_a_modern_model_lowers_the_loss():
    torch.manual_seed(0)
    model = ModernGPT(ModernConfig(5, d_model=16, num_heads=2, num_layers=1, d_ff=32, block_size=8, **dict(
        FULL, num_kv_heads=1)))
    pattern = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    history = gpt.train_lm(model, lambda g: pattern[None].repeat(4, 1), steps=60, lr=1e-2, warmup=5)
    assert history.losses[-1] < history.losses[0] / 2

"""Lesson 08's checks accept the references (and other right answers) and name realistic mistakes;
the reference model equals PyTorch's own layer and its cache gives the same tokens."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils
from utils import gpt
from utils.attention import causal_mask
from utils.gpt import GPT, Block, init_weights
from check_helpers import fails_with

IDS = ("08.1", "08.2", "08.3", "08.4")


def test_references_pass():
    for id in IDS:
        result = utils.check(id, utils.exercises.get(id).reference)
        assert result, result.message


@pytest.mark.parametrize("id", IDS)
def test_unfilled_and_junk_candidates_get_a_clear_answer(id):
    def skeleton(*args, **kwargs):
        raise NotImplementedError()

    class Skeleton(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            raise NotImplementedError()

    assert utils.check(id, Skeleton if id == "08.3" else skeleton).status == "not attempted"
    for junk in (None, 3, "x", lambda *a, **k: None):
        result = utils.check(id, junk)
        assert not result and result.message


# ---- 08.1 the next-token loss
def _loss(kind):
    def loss(logits, tokens):
        V = logits.shape[-1]
        ce = lambda lg, tk: F.cross_entropy(lg.reshape(-1, V), tk.reshape(-1), reduction="none").view(tk.shape)  # noqa: E731
        if kind == "no shift":
            return ce(logits, tokens).mean()
        if kind == "wrong way":
            return ce(logits[:, 1:], tokens[:, :-1]).mean()
        if kind == "roll":
            return ce(logits, tokens.roll(-1, 1)).mean()
        nll = ce(logits[:, :-1], tokens[:, 1:])
        return {"per sequence": lambda: nll.sum(1).mean(), "sum": lambda: nll.sum(), "bits": lambda: nll.mean() / math.log(2),
                "sign": lambda: -nll.mean(), "rows": lambda: nll.mean(0), "detach": lambda: nll.mean().detach(),
                "probs": lambda: -logits[:, :-1].softmax(-1).gather(-1, tokens[:, 1:, None]).mean(),
                "dim": lambda: -logits[:, :-1].log_softmax(1).gather(-1, tokens[:, 1:, None]).mean()}[kind]()
    return loss


def test_loss_mistakes():
    fails_with("08.1", _loss("no shift"), "no shift")
    fails_with("08.1", _loss("wrong way"), "wrong way round")
    fails_with("08.1", _loss("roll"), "last position is scored")
    fails_with("08.1", _loss("per sequence"), "averaged over the sequences")
    fails_with("08.1", _loss("sum"), "sum of the cross-entropy")
    fails_with("08.1", _loss("bits"), "in bits")
    fails_with("08.1", _loss("sign"), "sign is wrong")
    fails_with("08.1", _loss("rows"), "single number")
    fails_with("08.1", _loss("detach"), "no gradient")
    fails_with("08.1", _loss("probs"), "take the log")
    fails_with("08.1", _loss("dim"), "over the vocabulary")


def test_loss_right_answers_written_differently_pass():
    def by_hand(logits, tokens):
        logp = logits[:, :-1].log_softmax(-1)
        return -logp.gather(-1, tokens[:, 1:, None]).mean()

    def transposed(logits, tokens):
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:])

    assert utils.check("08.1", by_hand)
    assert utils.check("08.1", transposed)


# ---- 08.2 sampling
def _sampler(temp="divide", topk="largest", gen=True, greedy=True, rows="own", soft_first=False):
    def sample(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0 and greedy:
            return logits.argmax(-1)
        z = logits if rows == "own" else logits[:1].expand_as(logits)
        if soft_first:
            p = z.softmax(-1) / temperature  # the temperature applied to the probabilities: renormalised away
            if top_k is not None:
                p = p.masked_fill(p < p.topk(top_k, dim=-1).values[..., -1:], 0.0)
            return torch.multinomial(p, 1, generator=generator).squeeze(-1)
        z = z / temperature if temp == "divide" else z * temperature
        if top_k is not None and topk != "ignore":
            kth = z.topk(top_k, dim=-1, largest=topk == "largest").values[..., -1:]
            z = z.masked_fill(z < kth if topk == "largest" else z > kth, float("-inf"))
        return torch.multinomial(z.softmax(-1), 1, generator=generator if gen else None).squeeze(-1)
    return sample


def test_sampling_mistakes():
    fails_with("08.2", _sampler(temp="multiply"), "multiplies the logits")
    fails_with("08.2", _sampler(topk="smallest"), "smallest")
    fails_with("08.2", _sampler(topk="ignore"), "top_k is ignored")
    fails_with("08.2", _sampler(gen=False), "ignores `generator`")
    fails_with("08.2", _sampler(greedy=False), "temperature=0")
    fails_with("08.2", _sampler(rows="first"), "own logits")
    fails_with("08.2", _sampler(soft_first=True), "no effect")
    fails_with("08.2", lambda logits, temperature=1.0, top_k=None, generator=None: logits.argmax(-1), "does not sample")
    fails_with("08.2", lambda logits, temperature=1.0, top_k=None, generator=None: logits.argmax(-1).float(), "int64")


def test_gumbel_max_sampling_is_also_right():
    """Drawing with the Gumbel-max trick (no torch.multinomial) follows the same distribution: it passes."""
    def gumbel(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        z = logits / temperature
        if top_k is not None:
            z = z.masked_fill(z < z.topk(top_k, -1).values[..., -1:], float("-inf"))
        u = torch.rand(z.shape, generator=generator).clamp_min(1e-12)
        return (z - torch.log(-torch.log(u))).argmax(-1)

    assert utils.check("08.2", gumbel)


# ---- 08.3 the GPT model
class _Skeleton(nn.Module):
    def __init__(self, vocab_size, d_model, num_heads, num_layers, d_ff, block_size, causal=True, tie=True):
        super().__init__()
        self.block_size, self.causal = block_size, causal
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, num_heads, d_ff) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie:
            self.head.weight = self.tok_emb.weight
        self.apply(init_weights)

    def run(self, ids, *, positions=True, final_norm=True, mask="causal", scale=1.0):
        T = ids.shape[1]
        x = self.tok_emb(ids) * scale + (self.pos_emb(torch.arange(T)) if positions else 0)
        m = {"causal": causal_mask(T)[None], "inverted": ~causal_mask(T)[None], "none": None,
             "flat": causal_mask(T)}[mask if self.causal else "none"]
        for block in self.blocks:
            x = block(x, m)
        return self.head(self.norm(x) if final_norm else x)


def _model(**run):
    class Model(_Skeleton):
        def forward(self, ids):
            return self.run(ids, **run)
    return Model


class Untied(_Skeleton):
    def __init__(self, *args, causal=True):
        super().__init__(*args, causal=causal, tie=False)

    def forward(self, ids):
        return self.run(ids)


class AlwaysCausal(_Skeleton):
    def forward(self, ids):
        T = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T))
        for block in self.blocks:
            x = block(x, causal_mask(T)[None])
        return self.head(self.norm(x))


class HeadWithBias(_Skeleton):
    def __init__(self, *args, causal=True):
        super().__init__(*args, causal=causal)
        self.head = nn.Linear(self.head.in_features, self.head.out_features)
        self.head.weight = self.tok_emb.weight

    def forward(self, ids):
        return self.run(ids)


class NoAttributes(_Skeleton):
    def __init__(self, *args, causal=True):
        super().__init__(*args, causal=causal)
        del self.block_size

    def forward(self, ids):
        return self.run(ids)


class NoInit(_Skeleton):
    def __init__(self, *args, causal=True):
        super().__init__(*args, causal=causal)
        nn.init.normal_(self.tok_emb.weight)  # as if init_weights had not been applied

    def forward(self, ids):
        return self.run(ids)


def test_gpt_mistakes():
    fails_with("08.3", NoInit, "init_weights")
    fails_with("08.3", _model(mask="none"), "sees the future")
    fails_with("08.3", _model(mask="inverted"), "~mask")
    fails_with("08.3", _model(positions=False), "position embeddings are missing")
    fails_with("08.3", _model(final_norm=False), "final layernorm")
    fails_with("08.3", _model(scale=math.sqrt(16)), "sqrt(d_model)")
    fails_with("08.3", Untied, "not tied")
    fails_with("08.3", AlwaysCausal, "causal=false")
    fails_with("08.3", HeadWithBias, "unexpected: head.bias")
    fails_with("08.3", NoAttributes, "block_size")
    fails_with("08.3", GPT(5, 8, 2, 1, 16, 4), "class itself")


def test_gpt_2d_mask_is_ambiguous_when_batch_equals_length():
    """Why the reference passes causal_mask(T)[None]: a (T, T) mask with B == T is refused, with advice."""
    model = _model(mask="flat")(7, 8, 2, 1, 16, 4)
    with pytest.raises(ValueError, match="ambiguous"):
        model(torch.zeros(4, 4, dtype=torch.long))
    result = utils.check("08.3", _model(mask="flat"))
    assert result.status == "fail" and "ambiguous" in result.message


# ---- 08.4 prefix matching
def _score(**kw):
    from utils.exercises.lesson08 import _score_variant
    return lambda weights, tokens: _score_variant(weights, tokens, **kw)


def test_prefix_matching_mistakes():
    fails_with("08.4", _score(shift=0), "earlier occurrence j itself")
    fails_with("08.4", _score(shift=-1), "j - 1")
    fails_with("08.4", _score(all_queries=True), "never occurred before are counted")
    fails_with("08.4", _score(strict=False), "own position")
    fails_with("08.4", _score(transpose=True), "swapped")
    fails_with("08.4", _score(reduce="max"), "took the largest")
    fails_with("08.4", _score(reduce="mean"), "averaged them")
    fails_with("08.4", lambda w, t: gpt.prefix_matching_score(w, t).mean(), "one score per head")


def test_prefix_matching_score_by_hand():
    tokens = torch.tensor([5, 6, 7, 5, 6, 7])
    w = torch.full((1, 6, 6), 1 / 6)
    # queries 3, 4, 5 have earlier occurrences 0, 1, 2; the positions after them are 1, 2, 3: 1/6 each
    assert torch.allclose(gpt.prefix_matching_score(w, tokens), torch.tensor([1 / 6]))
    uniform = causal_mask(6).float() / causal_mask(6).sum(-1, keepdim=True)  # uniform over the past: 1/(t+1)
    want = (1 / 4 + 1 / 5 + 1 / 6) / 3
    assert torch.allclose(gpt.prefix_matching_score(uniform[None], tokens), torch.tensor([want]))


# ---- the reference model
def test_block_equals_torch_encoder_layer_with_a_causal_mask():
    torch.manual_seed(0)
    for B, T, D, h, d_ff in [(3, 7, 32, 4, 64), (2, 5, 16, 1, 24), (4, 4, 12, 3, 20)]:
        block = Block(D, h, d_ff)
        with torch.no_grad():
            for name, p in block.named_parameters():
                if "norm" in name:
                    p.add_(0.5 * torch.randn_like(p))
        theirs = nn.TransformerEncoderLayer(D, h, d_ff, dropout=0.0, batch_first=True, norm_first=True)
        gpt.copy_into_torch_encoder_layer(block, theirs)
        x = torch.randn(B, T, D)
        ours = block(x, causal_mask(T)[None])
        torch_out = theirs(x, src_mask=~causal_mask(T))  # PyTorch: True = not allowed
        assert (ours - torch_out).abs().max() < 1e-5
        # and the mask matters: without it they differ
        assert (block(x) - torch_out).abs().max() > 1e-3


def test_copy_refuses_what_has_no_counterpart():
    with pytest.raises(ValueError, match="attention-only"):
        gpt.copy_into_torch_encoder_layer(Block(8, 2, 0), nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=True))
    with pytest.raises(ValueError, match="norm_first=True"):
        gpt.copy_into_torch_encoder_layer(Block(8, 2, 16), nn.TransformerEncoderLayer(8, 2, 16, batch_first=True))


def test_gpt_is_causal_tied_and_counts_its_parameters():
    torch.manual_seed(0)
    model = GPT(20, 16, 2, 2, 32, 10)
    assert model.head.weight is model.tok_emb.weight
    n = sum(p.numel() for p in model.parameters())
    untied = n + 20 * 16
    assert sum(p.numel() for p in _Skeleton(20, 16, 2, 2, 32, 10, tie=False).parameters()) == untied
    ids = torch.randint(0, 20, (2, 10))
    out = model(ids)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 20
    diff = (model(changed) - out).abs().amax(-1)  # (B, T)
    assert diff[:, :6].max() == 0 and diff[:, 6:].min() > 0


@pytest.mark.parametrize("d_ff", [32, 0])
def test_cached_generation_gives_the_same_tokens(d_ff):
    torch.manual_seed(1)
    model = GPT(15, 16, 2, 2, d_ff, 24).eval()
    prompt = torch.randint(0, 15, (3, 4))
    for kw in ({"temperature": 0}, {"temperature": 1.0, "top_k": 5}):
        a = gpt.generate(model, prompt, 20, use_cache=False, generator=torch.Generator().manual_seed(3), **kw)
        b = gpt.generate(model, prompt, 20, use_cache=True, generator=torch.Generator().manual_seed(3), **kw)
        assert torch.equal(a, b) and a.shape == (3, 24)
    ids, logits = gpt.generate(model, prompt, 5, temperature=0, return_logits=True, use_cache=True)
    assert logits.shape == (3, 5, 15) and torch.equal(logits.argmax(-1), ids[:, 4:])
    with pytest.raises(ValueError, match="block_size"):
        gpt.generate(model, prompt, 21, use_cache=True)
    assert gpt.generate(model, prompt, 40, temperature=0).shape == (3, 44)  # without the cache: a sliding window
    with pytest.raises(ValueError, match="causal"):
        gpt.generate(GPT(15, 16, 2, 1, 0, 24, causal=False), prompt, 3, use_cache=True)


def test_ablating_a_head_zeroes_its_contribution_only_inside_the_block():
    torch.manual_seed(2)
    model = GPT(11, 16, 4, 2, 0, 8).eval()
    ids = torch.randint(0, 11, (2, 8))
    base = model(ids)
    with gpt.ablate_heads(model, [(1, 2)]):
        ablated = model(ids)
        w = gpt.attention_weights(model, ids)
    assert w.shape == (2, 2, 4, 8, 8)
    assert not torch.allclose(base, ablated)
    assert torch.equal(model(ids), base)  # the hook is removed afterwards
    # ablating by hand: zero head 2's slice of layer 1's output projection's input columns
    with torch.no_grad():
        model.blocks[1].self_attn.out_proj.weight[:, 8:12] = 0
    assert torch.allclose(model(ids), ablated, atol=1e-6)


def test_learning_rate_schedule():
    lrs = [gpt.learning_rate(s, 100, 1e-2, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)  # linear warm-up to the peak
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then it only decays
    assert lrs[-1] == pytest.approx(1e-3)  # to a tenth
    assert gpt.learning_rate(57, 100, 1e-2, 10, schedule=False) == 1e-2


def test_training_lowers_the_loss_and_evaluation_is_per_position():
    torch.manual_seed(0)
    model = GPT(5, 16, 2, 1, 32, 8)
    pattern = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])  # a fixed sequence: easy to learn
    history = gpt.train_lm(model, lambda g: pattern[None].repeat(4, 1), steps=60, lr=1e-2, warmup=5)
    assert len(history.losses) == 60 and history.losses[-1] < history.losses[0] / 2
    per_position = gpt.loss_per_position(model, pattern[None].repeat(3, 1))
    assert per_position.shape == (7,)
    assert gpt.bits_per_char(model, pattern[None]) == pytest.approx(per_position.mean().item() / math.log(2), rel=1e-5)


# ---- issue 24: more mistakes named, more right answers accepted
def _topk_sampler(kind):
    def sample_next(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        z = logits / temperature
        if top_k is not None:
            if kind == "k+1":
                z = z.masked_fill(z < z.topk(top_k + 1, dim=-1).values[..., -1:], float("-inf"))
            elif kind == "k-1":
                z = z.masked_fill(z <= z.topk(top_k, dim=-1).values[..., -1:], float("-inf"))
            elif kind == "fill 0":
                z = z.masked_fill(z < z.topk(top_k, dim=-1).values[..., -1:], 0.0)
            elif kind == "dim 0":
                z = z.masked_fill(z < z.topk(min(top_k, z.shape[0]), dim=0).values[-1:], float("-inf"))
            else:
                z = z.masked_fill(z < z.topk(top_k, dim=-1).values[..., -1:], float("-inf"))
        p = z.softmax(-1)
        if kind == "one u":  # inverse-CDF sampling with one random number for the whole batch
            u = torch.rand(1, generator=generator)
            return (p.cumsum(-1) < u).sum(-1).clamp(max=p.shape[-1] - 1)
        if kind == "own generator":
            return torch.multinomial(p, 1, generator=torch.Generator().manual_seed(0)).squeeze(-1)
        return torch.multinomial(p, 1, generator=generator).squeeze(-1)
    return sample_next


@pytest.mark.parametrize("kind, phrase", [
    ("k+1", "keeps k + 1 tokens"),
    ("k-1", "keeps k - 1 tokens"),
    ("fill 0", "a logit of 0"),
    ("dim 0", "compares the rows of the batch"),
    ("one u", "one random number serves the whole batch"),
    ("own generator", "not with the `generator` you are given"),
])
def test_sampling_mistakes_of_issue_24(kind, phrase):
    fails_with("08.2", _topk_sampler(kind), phrase)


def test_sampling_written_other_ways_passes():
    def inverse_cdf(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        z = logits / temperature
        if top_k is not None:
            z = z.masked_fill(z < z.topk(top_k, -1).values[..., -1:], float("-inf"))
        u = torch.rand(z.shape[0], 1, generator=generator)
        return (z.softmax(-1).cumsum(-1) < u).sum(-1).clamp(max=z.shape[-1] - 1)

    def probabilities(logits, temperature=1.0, top_k=None, generator=None):  # top-k on p, then p ** (1/t)
        if temperature == 0:
            return logits.argmax(-1)
        p = logits.softmax(-1)
        if top_k is not None:
            p = p.masked_fill(p < p.topk(top_k, -1).values[..., -1:], 0.0)
        return torch.multinomial(p ** (1 / temperature), 1, generator=generator).squeeze(-1)

    assert utils.check("08.2", inverse_cdf)
    assert utils.check("08.2", probabilities)
    assert utils.check("08.2", _topk_sampler("right"))


class BufferedGPT(nn.Module):
    """nanoGPT's habits: the causal mask a registered buffer (1, 1, T, T), the tie written the other way round."""

    def __init__(self, vocab_size, d_model, num_heads, num_layers, d_ff, block_size, causal=True):
        super().__init__()
        self.block_size, self.causal = block_size, causal
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList([Block(d_model, num_heads, d_ff) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.tok_emb.weight = self.head.weight
        self.register_buffer("mask", torch.ones(block_size, block_size, dtype=torch.bool).tril()[None, None])
        self.apply(init_weights)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T))
        for block in self.blocks:
            x = block(x, self.mask[:, :, :T, :T] if self.causal else None)
        return self.head(self.norm(x))


def test_gpt_with_a_registered_mask_buffer_passes():
    assert utils.check("08.3", BufferedGPT)


def test_loss_mistakes_of_issue_24():
    def by_all_tokens(logits, tokens):
        V = logits.shape[-1]
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), reduction="sum")
        return nll / tokens.numel()

    def same_positions(logits, tokens):
        return F.cross_entropy(logits[:, 1:].transpose(1, 2), tokens[:, 1:])

    fails_with("08.1", by_all_tokens, "divided the sum by B * T")
    fails_with("08.1", same_positions, "scored on its own token")
    fails_with("08.1", lambda logits, tokens: gpt.next_token_loss(logits, tokens).item(), "`.item()`")


def test_prefix_matching_mistakes_of_issue_24():
    fails_with("08.4", _score(reduce="last"), "not only after the most recent one")
    fails_with("08.4", _score(later=True), "*later* occurrences")


def test_a_top_k_that_removes_every_token_is_named():
    def sample_next(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        z = logits / temperature
        if top_k is not None:  # compares with the largest logit: removes every token
            z = z.masked_fill(z <= z.topk(top_k, -1).values[..., :1], float("-inf"))
        return torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(-1)

    fails_with("08.2", sample_next, "probabilities that hold NaN")

"""The course's GPT block and Transformer decoder layer attend with PyTorch's fused kernel in a training step
(train mode, gradients on) and with the course's own attention otherwise: the same outputs and gradients, and
the attention weights kept exactly when something may read them (heatmaps, head scores)."""
import pytest
import torch

from utils.attention import causal_mask, padding_mask
from utils.gpt import GPT, Block, attention_weights, next_token_loss
from utils.transformer import DecoderLayer


def _grads(module, out, weight):
    return torch.autograd.grad((out * weight).sum(), list(module.parameters()))


@pytest.mark.parametrize("d_ff, causal", [(32, True), (0, True), (32, False)])
def test_block_trains_fused_and_equals_its_eval_mode(d_ff, causal):
    torch.manual_seed(0)
    block = Block(16, 4, d_ff)
    x = torch.randn(3, 9, 16)
    mask = causal_mask(9)[None] if causal else None
    train_out = block.train()(x, mask)
    assert block.last_weights is None  # a training step keeps no weights
    eval_out = block.eval()(x, mask)
    assert block.last_weights.shape == (3, 4, 9, 9)
    torch.testing.assert_close(train_out, eval_out, atol=1e-5, rtol=0)
    weight = torch.randn_like(eval_out)
    for g_train, g_eval in zip(_grads(block, block.train()(x, mask), weight), _grads(block, block.eval()(x, mask), weight)):
        torch.testing.assert_close(g_train, g_eval, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # train mode without gradients (e.g. generation from a model never put in eval mode)
        block.train()(x, mask)
    assert block.last_weights is not None


def test_gpt_training_loss_and_the_weights_read_after_training():
    torch.manual_seed(1)
    model = GPT(11, 16, 2, 2, 24, 12)
    ids = torch.randint(0, 11, (4, 12))
    train_loss = next_token_loss(model.train()(ids), ids)
    eval_loss = next_token_loss(model.eval()(ids), ids)
    assert abs(train_loss.item() - eval_loss.item()) < 1e-5
    weights = attention_weights(model.train(), ids)  # under no_grad: the course's attention, weights kept
    assert weights.shape == (2, 4, 2, 12, 12) and (weights.triu(1) == 0).all()


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_trains_fused_and_equals_its_eval_mode(norm_first):
    torch.manual_seed(2)
    layer = DecoderLayer(16, 4, 32, norm_first=norm_first)
    x, memory = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    tgt_mask, memory_mask = causal_mask(5)[None], padding_mask(torch.tensor([7, 2, 4]), 7)[:, None, :]
    train_out = layer.train()(x, memory, tgt_mask, memory_mask)
    assert layer.last_self_weights is None and layer.last_cross_weights is None
    eval_out = layer.eval()(x, memory, tgt_mask, memory_mask)
    assert layer.last_self_weights.shape == (3, 4, 5, 5) and layer.last_cross_weights.shape == (3, 4, 5, 7)
    torch.testing.assert_close(train_out, eval_out, atol=1e-5, rtol=0)
    weight = torch.randn_like(eval_out)
    g_train = _grads(layer, layer.train()(x, memory, tgt_mask, memory_mask), weight)
    g_eval = _grads(layer, layer.eval()(x, memory, tgt_mask, memory_mask), weight)
    for a, b in zip(g_train, g_eval):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

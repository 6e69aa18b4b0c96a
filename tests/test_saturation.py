"""Saturated gates: pre-activations far beyond the range where exp(-x) overflows float32.

Regression: the C kernels computed sigmoid(x) as 1 / (1 + expf(-x)), which under -ffast-math gave
NaN once expf overflowed (x below about -88), so text training on the generic engine diverged at
step ~20 while the fused engine trained. torch.nn is the oracle; the compiled kernels (the
whole-sequence C loop at B <= 4 and the hybrid per-step kernel) of the built-in cells and of a
user's cell are all checked.
"""
from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cells.examples import UserLSTM


@pytest.mark.parametrize("batch", [2, 8])  # the whole-sequence C loop and the hybrid kernel
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_huge_preactivations_match_torch_nn(kind, batch):
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(3, 5, batch_first=True)
    layer = rnnkit.from_torch(ref, engine="generic")
    x = 300.0 * torch.randn(batch, 6, 3, requires_grad=True)  # pre-activations of +-1000s
    y, _ = layer(x)
    y_ref, _ = ref(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g, = torch.autograd.grad(y.sum(), x)
    g_ref, = torch.autograd.grad(y_ref.sum(), x)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [2, 8])
def test_huge_preactivations_in_a_compiled_user_cell(batch):
    torch.manual_seed(0)
    cell = UserLSTM(5)
    xp = 300.0 * torch.randn(batch, 6, 20)
    y, c = cell(xp)
    assert torch.isfinite(y).all() and torch.isfinite(c).all()
    ref = rnnkit.cells.LSTMCell(5, forget_bias=0.0)
    with torch.no_grad():
        ref.weight.copy_(cell.weight)
        ref.bias.copy_(cell.bias)
    h2, c2 = ref(xp)
    torch.testing.assert_close(y, h2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c, c2, atol=1e-4, rtol=1e-5)

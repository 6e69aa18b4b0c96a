"""LayerNormGRUCell against a hand-written loop (F.layer_norm on plain tensors), and gradcheck."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnkit.cells import GRUCell, LayerNormGRUCell


def _oracle(cell: LayerNormGRUCell, xp: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The equations of the docstring, written out with the cell's raw parameters."""
    H = cell.hidden_size
    W, b = cell.weight, cell.gate_bias
    gx, gh = cell.norm_x.weight, cell.norm_h.weight
    h, out = h0, []
    for t in range(xp.shape[1]):
        a = F.layer_norm(xp[:, t], (3 * H,), gx, None, cell.norm_x.eps) + b
        q = F.layer_norm(h @ W.t(), (3 * H,), gh, None, cell.norm_h.eps)
        r = torch.sigmoid(a[:, :H] + q[:, :H])
        z = torch.sigmoid(a[:, H:2 * H] + q[:, H:2 * H])
        n = torch.tanh(a[:, 2 * H:] + r * q[:, 2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out, 1)  # (B, T, H)


def test_scan_matches_the_equations_forward_and_backward():
    torch.manual_seed(0)
    cell = LayerNormGRUCell(5).double()
    with torch.no_grad():  # non-trivial gains and bias
        cell.norm_x.weight.uniform_(0.5, 1.5)
        cell.norm_h.weight.uniform_(0.5, 1.5)
        cell.gate_bias.uniform_(-0.5, 0.5)
    xp = torch.randn(3, 7, 15, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=torch.float64)
    ours = cell(xp, h=h0)
    ref = _oracle(cell, xp, h0)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, [xp, *cell.parameters()], g)
    ref_grads = torch.autograd.grad(ref, [xp, *cell.parameters()], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_gradcheck_with_lengths_and_reverse():
    torch.manual_seed(1)
    cell = LayerNormGRUCell(3).double()
    xp = torch.randn(2, 4, 9, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    assert torch.autograd.gradcheck(lambda x: cell(x, lengths=lengths, reverse=True), (xp,))


def test_differs_from_a_plain_gru():  # the normalisation is really applied
    torch.manual_seed(2)
    ln, plain = LayerNormGRUCell(4), GRUCell(4, bias=False)
    with torch.no_grad():
        plain.weight.copy_(ln.weight)
    xp = 3.0 * torch.randn(2, 5, 12)
    assert not torch.allclose(ln(xp), plain(xp), atol=1e-3)

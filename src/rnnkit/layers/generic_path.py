"""The generic backend of a recurrent layer: every (layer, direction) projects the input of all T
steps in one GEMM and hands the projection to the engine (``rnnkit.engine.run_cell``), which runs
the cell (a C loop, the hybrid oneDNN + native path or autograd, as the call's plan says).
``RecurrentLayer.forward`` and ``step`` call these when the plan is not fused.

    >>> import torch, rnnkit
    >>> from rnnkit.layers.generic_path import forward_generic
    >>> gru = rnnkit.GRU(3, 4, engine="generic", batch_first=False)
    >>> x = torch.randn(6, 2, 3)                          # (T, B, F)
    >>> y, (h,) = forward_generic(gru, x, (torch.zeros(1, 2, 4),), None, None)
    >>> torch.allclose(y, gru(x)[0]), tuple(h.shape)        # (T, B, H); (L*D, B, H)
    (True, (1, 2, 4))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.engine import BPTT, run_cell
from rnnkit.engine.dispatch import Plan
from rnnkit.engine.gemm import linear
from rnnkit.engine.reset import run_cell_reset

__all__ = ["autocast_dtype", "forward_generic", "ragged", "rebuild_projection", "step_generic"]


def forward_generic(
    rnn: nn.Module, x: Tensor, hx: tuple[Tensor, ...], mask: Tensor | None, bptt: BPTT | None, plan: Plan | None = None,
    reset: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``rnn`` (a RecurrentLayer): x (T, B, F) time-major -> (y (T, B, D*H), finals (L*D, B, H) each);
    ``reset`` (B, T) or None."""
    D = rnn.num_directions
    finals: list[list[Tensor]] = [[] for _ in rnn.state_names]
    inp = x if x.is_contiguous() else x.contiguous()  # (T, B, F), once for both directions
    T, B = inp.shape[0], inp.shape[1]
    reg = rnn.regularisers if rnn.regularisers.active else None
    for index, layer in enumerate(rnn.layers):
        m_in = None if reg is None else reg.input_mask(B, (inp.shape[2],), inp, rnn.training)
        if m_in is not None:  # variational input dropout: one mask per sequence (B, F)
            inp = inp * m_in  # (T, B, F)
        outs = []
        for d, direction in enumerate(layer.directions()):
            k = index * D + d
            # Projections are computed time-major, (T, B, G*H), and handed over as (B, T, G*H)
            # views: the engine walks time-major buffers, so it takes them without a copy.
            xp = linear(inp, direction.input.weight, direction.input.bias).transpose(0, 1)  # one GEMM
            init = {name: hx[i][k] for i, name in enumerate(rnn.state_names)}
            scope = f"layer{index}.{'bwd' if d else 'fwd'}"
            masks = None if reg is None else reg.draw(direction.cell, B, T, inp, rnn.training)
            if reset is not None:  # segments between resets (rnnkit.engine.reset); zeros restart
                result = run_cell_reset(run_cell, direction.cell, {"inputs": xp}, init, {}, reset, mask=mask,
                                        reverse=d == 1, bptt=bptt, scope=scope, contexts={}, plan=plan,
                                        regularise=masks)
            else:
                result = run_cell(direction.cell, {"inputs": xp}, init, {}, mask=mask, reverse=d == 1,
                                  bptt=bptt, scope=scope, donate=True,
                                  rebuild=rebuild_projection(inp, direction.input.weight, direction.input.bias), plan=plan,
                                  regularise=masks)
            outs.append(result.outputs["h"].transpose(0, 1))  # (T, B, H)
            for i, name in enumerate(rnn.state_names):
                finals[i].append(result.final[name])
        inp = outs[0] if D == 1 else torch.cat(outs, dim=2)  # (T, B, D*H)
        if rnn.config.dropout and rnn.training and index < rnn.num_layers - 1:
            inp = F.dropout(inp, rnn.config.dropout, training=True)
    return inp, tuple(torch.stack(f, dim=0) for f in finals)  # (L*D, B, H)


def step_generic(rnn: nn.Module, x: Tensor, hx: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One step of every layer on the engine's cells: x (B, F) -> (y (B, H), finals (L, B, H) each).
    The projections' pre-hooks ran in ``RecurrentLayer.step``; zoneout applies per step."""
    reg = rnn.regularisers
    finals_list: list[list[Tensor]] = [[] for _ in rnn.state_names]
    y = x
    for index, layer in enumerate(rnn.layers):
        if index and rnn.config.dropout and rnn.training:
            y = F.dropout(y, rnn.config.dropout, training=True)
        cell = layer.fwd.cell
        proj = layer.fwd.input  # not called: its pre-hooks ran above, once
        out = cell.pack_outputs(cell.step(F.linear(y, proj.weight, proj.bias), *(h[index] for h in hx)))
        if reg.zoneout:  # s' = a s_new + (1 - a) s; a ~ Bernoulli(1 - p) in training, 1 - p in eval
            a = 1.0 - reg.zoneout
            out = tuple(torch.lerp(h[index], o, torch.bernoulli(torch.full_like(o, a)) if rnn.training else a)
                        for h, o in zip(hx, out))
        for i in range(len(rnn.state_names)):
            finals_list[i].append(out[i])
        y = out[0]  # (B, H)
    finals = tuple(torch.stack(f, dim=0) for f in finals_list)  # (L, B, H)
    return y, finals


def rebuild_projection(inp: Tensor, weight: Tensor, bias: Tensor | None):  # type: ignore[no-untyped-def]
    """Recomputes a donated projection's values (B, T, G) for a double backward; inp is (T, B, F)."""
    return lambda: linear(inp, weight, bias).transpose(0, 1)  # (B, T, G)


def ragged(lens: Tensor | None, T: int) -> bool:
    """Some sequence is shorter than T (``lens`` (B,) on the CPU, or None)."""
    return lens is not None and lens.numel() > 0 and int(lens.min()) < T


def autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype a float32 ``x`` runs as under an enabled autocast on its device (the fused kernels are
    autocast), else None; ``auto`` reads that dtype's rows of the cost table."""
    kind = x.device.type
    if x.dtype == torch.float32 and kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None

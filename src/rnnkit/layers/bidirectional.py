"""``Bidirectional``: any cell or layer run forward and in reverse, outputs concatenated.

As in Flax, a bidirectional RNN is just two RNNs, the second reading each sequence backwards
over its own length.

    >>> import torch, rnnkit
    >>> bi = rnnkit.Bidirectional(rnnkit.GRU(4, 6), rnnkit.GRU(4, 6))
    >>> y, (h_fwd, h_bwd) = bi(torch.randn(2, 5, 4), lengths=torch.tensor([5, 3]))
    >>> tuple(y.shape)                     # (B, T, 2H)
    (2, 5, 12)
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from rnnkit.cells.base import Recurrent
from rnnkit.engine.masks import flip_padded, resolve_mask
from rnnkit.engine.reset import check_reset, flip_reset
from rnnkit.errors import bad_argument

__all__ = ["Bidirectional"]


class Bidirectional(nn.Module):
    """Run ``forward_rnn`` left to right and ``backward_rnn`` right to left; concatenate outputs.

    * Two cells (:class:`rnnkit.Recurrent`): ``bi(*sequences, mask=, lengths=, **named)`` returns
      every declared output concatenated on the last axis, (B, T, *, 2 x features).
    * Two layers (anything called as ``layer(x, state, lengths) -> (y, state)``):
      ``bi(x, state=None, lengths=None)`` returns ``(y (B, T, H_f + H_b), (state_f, state_b))``.

    ``reset`` (B,) or (B, T) bool cuts rows into independent segments for both directions: a
    reset at t restarts the forward pass at t and the backward pass at t - 1
    (``rnnkit.engine.reset``); a reset at step 0 drops both incoming states.
    """

    def __init__(self, forward_rnn: nn.Module, backward_rnn: nn.Module) -> None:
        """Pair two cells or two layers of the same kind; see the class docstring."""
        super().__init__()
        if isinstance(forward_rnn, Recurrent) != isinstance(backward_rnn, Recurrent):
            raise bad_argument("backward_rnn", "the same kind as forward_rnn (two cells or two layers)",
                               type(backward_rnn).__name__, "pair a cell with a cell, a layer with a layer")
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.forward_rnn, Recurrent):
            return self._cells(*args, **kwargs)
        return self._layers(*args, **kwargs)

    def _cells(self, *sequences: Tensor, **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
        fwd = self.forward_rnn.scan(*sequences, **kwargs)
        bwd = self.backward_rnn.scan(*sequences, reverse=True, **kwargs)
        names = self.forward_rnn.output_names
        outs = tuple(torch.cat([fwd.outputs[n], bwd.outputs[n]], dim=-1) for n in names)
        return outs[0] if len(outs) == 1 else outs

    def _layers(
        self, x: Tensor, state: tuple[Any, Any] | None = None, lengths: Tensor | Sequence[int] | None = None,
        *, mask: Tensor | None = None, reset: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Any, Any]]:
        if x.dim() != 3:
            raise bad_argument("x", "a 3-D tensor (B, T, F)", x, "rnnkit layers are batch-first")
        _, lens, prefix = resolve_mask(mask, lengths, x.shape[0], x.shape[1], x.device)
        if not prefix:
            raise bad_argument("mask", "right-padded rows (a prefix of real steps)", "a mask with holes",
                               "pass lengths for right-padded batches")
        state_f, state_b = state if state is not None else (None, None)
        restarts = check_reset(reset, x.shape[0], x.shape[1], x.device)
        if restarts is None:
            y_f, s_f = self.forward_rnn(x, state_f, lens)
            y_b, s_b = self.backward_rnn(flip_padded(x, lens), state_b, lens)
        else:  # the backward layer reads the flipped rows, so it takes the flipped reset
            y_f, s_f = self.forward_rnn(x, state_f, lens, reset=restarts)
            y_b, s_b = self.backward_rnn(flip_padded(x, lens), state_b, lens, reset=flip_reset(restarts, lens))
        y_b = flip_padded(y_b, lens)  # back to time order; padding stays zero
        return torch.cat([y_f, y_b], dim=-1), (s_f, s_b)  # (B, T, H_f + H_b)

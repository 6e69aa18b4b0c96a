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
      Sequence-first layers (``batch_first=False``: ``rnnkit.nn``, ``from_torch`` of a default
      torch.nn module) take and give (T, B, ...) instead; the two layers must agree.

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

    def _batch_first(self) -> bool:
        """The layers' layout: True (B, T, F) unless both are sequence-first (``rnnkit.nn``, torch.nn)."""
        first = getattr(self.forward_rnn, "batch_first", True)
        second = getattr(self.backward_rnn, "batch_first", True)
        if first != second:
            raise bad_argument("backward_rnn", f"batch_first={first}, as forward_rnn", f"batch_first={second}",
                               "build both layers with the same batch_first")
        return bool(first)

    def _layers(
        self, x: Tensor, state: tuple[Any, Any] | None = None, lengths: Tensor | Sequence[int] | None = None,
        *, mask: Tensor | None = None, reset: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Any, Any]]:
        batch_first = self._batch_first()
        layout = "(B, T, F)" if batch_first else "(T, B, F)"
        if not isinstance(x, Tensor) or x.dim() != 3:
            raise bad_argument("x", f"a 3-D tensor {layout} (the layers' batch_first={batch_first})", x,
                               "pass a padded tensor with lengths= (pad_packed_sequence unpacks a PackedSequence)")

        def own(t: Tensor) -> Tensor:  # batch-first <-> the layers' layout (a transpose is its own inverse)
            return t if batch_first else t.transpose(0, 1)

        xb = own(x)  # (B, T, F)
        _, lens, prefix = resolve_mask(mask, lengths, xb.shape[0], xb.shape[1], x.device)
        if not prefix:
            raise bad_argument("mask", "right-padded rows (a prefix of real steps)", "a mask with holes",
                               "pass lengths for right-padded batches")
        state_f, state_b = state if state is not None else (None, None)
        restarts = check_reset(reset, xb.shape[0], xb.shape[1], x.device)
        x_rev = own(flip_padded(xb, lens))  # each row reversed over its own length, in the layers' layout
        if restarts is None:
            y_f, s_f = self.forward_rnn(x, state_f, lens)
            y_b, s_b = self.backward_rnn(x_rev, state_b, lens)
        else:  # the backward layer reads the flipped rows, so it takes the flipped reset
            y_f, s_f = self.forward_rnn(x, state_f, lens, reset=restarts)
            y_b, s_b = self.backward_rnn(x_rev, state_b, lens, reset=flip_reset(restarts, lens))
        y_b = own(flip_padded(own(y_b), lens))  # back to time order; padding stays zero
        return torch.cat([y_f, y_b], dim=-1), (s_f, s_b)  # (B, T, H_f + H_b) or (T, B, H_f + H_b)

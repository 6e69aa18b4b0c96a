"""The argument checks of a recurrent layer: the input's layout, dtype and device, and the state's
shapes in torch's layout (L*D, B, H). A mixin of ``RecurrentLayer``; every failure names the
argument, what was expected, what was received and the fix (``rnnkit.errors.bad_argument``).

    >>> import torch, rnnkit
    >>> lstm = rnnkit.LSTM(3, 5, num_layers=2)
    >>> [tuple(s) for s in lstm._state_shapes(4)]          # (L*D, B, H) for h and c
    [(2, 4, 5), (2, 4, 5)]
    >>> try:
    ...     lstm(torch.randn(4, 7, 6))
    ... except ValueError as e:
    ...     print(str(e).split(".")[0][:60])
    x: expected F = 3 features in the last dimension (input_size
"""
from __future__ import annotations

from torch import Tensor

from rnnkit.errors import bad_argument

__all__ = ["LayerChecks"]

State = Tensor | tuple[Tensor, Tensor]


class LayerChecks:
    """Input and state checks shared by every ``RecurrentLayer``. The host class provides
    ``config``, ``layers``, ``kind``, ``state_names``, ``input_size``, ``hidden_size``,
    ``num_layers`` and ``num_directions``."""

    config: object
    kind: str

    def _check_input(self, x: Tensor, packed: bool = False) -> None:
        name = type(self).__name__
        layout = "(B, T, F)" if self.config.batch_first else "(T, B, F)"
        what = "PackedSequence data (N, F)" if packed else f"a 3-D tensor {layout}"
        if not isinstance(x, Tensor):
            raise bad_argument("x", f"a tensor {layout} or a PackedSequence", x, "pass a torch.Tensor")
        if x.dim() != 3:
            fix = ("add a batch dimension with x.unsqueeze(0)" if x.dim() == 2 and self.config.batch_first
                   else "add a batch dimension with x.unsqueeze(1)" if x.dim() == 2
                   else f"reshape to {layout}; this layer has batch_first={self.config.batch_first}")
            raise bad_argument("x", f"{what} with F = {self.input_size}", x, fix)
        if x.shape[2] != self.input_size:
            raise bad_argument("x", f"F = {self.input_size} features in the last dimension (input_size of this {name})",
                               x, f"project the input to {self.input_size} features or build the layer with input_size={x.shape[2]}")
        if x.shape[1 if self.config.batch_first else 0] == 0 and not packed:
            raise bad_argument("x", "at least one time step (T >= 1)", x, "pass a non-empty sequence")
        weight = self.layers[0].fwd.input.weight
        if x.dtype != weight.dtype:
            fix = (f"convert with x.to({weight.dtype}) or the layer with .to({x.dtype})" if x.dtype.is_floating_point
                   else f"convert with x.to({weight.dtype}); token ids go through an nn.Embedding (or "
                        "rnnkit.models.LanguageModel) first")  # an integer layer does not exist
            raise bad_argument("x", f"dtype {weight.dtype} (the layer's parameters)", x, fix)
        if x.device != weight.device:
            raise bad_argument("x", f"a tensor on {weight.device} (the layer's device)", x,
                               f"move it with x.to({str(weight.device)!r})")

    def _state_shapes(self, batch: int) -> tuple[tuple[int, ...], ...]:
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        h = (L * D, batch, self.config.proj_size or H)
        return (h, (L * D, batch, H)) if self.kind == "lstm" else (h,)

    def _batch_state(self, state: State | None) -> State | None:
        """An unbatched state (L*D, H) -> (L*D, 1, H), for an unbatched input."""
        if state is None:
            return None
        parts = (state,) if isinstance(state, Tensor) else tuple(state)
        for name, part in zip(self.state_names, parts):
            if isinstance(part, Tensor) and part.dim() != 2:
                raise bad_argument(f"state ({name})", "a 2-D tensor (L*D, H) for an unbatched 2-D input", part,
                                   "pass an unbatched state, or batch the input too")
        out = tuple(p.unsqueeze(1) if isinstance(p, Tensor) else p for p in parts)
        return out[0] if isinstance(state, Tensor) else out

    def _check_no_learned_initial(self) -> None:
        """A layer starts from zeros (or the state passed): a cell's learned initial states would be ignored."""
        for index, layer in enumerate(self.layers):
            for side, direction in zip(("fwd", "bwd"), layer.directions()):
                if getattr(direction.cell, "initial", None) is not None:
                    raise bad_argument(
                        f"layers[{index}].{side}.cell", "no learned initial states (a layer starts from zeros or "
                        "from the state passed)", "a cell with learned initial states",
                        "pass state= built from them, or run the cell in rnnkit.CellLayer, which uses them")

    def _check_state(self, state: State | None, batch: int, x: Tensor) -> tuple[Tensor, ...]:
        shapes = self._state_shapes(batch)
        n = len(self.state_names)
        if state is None:
            self._check_no_learned_initial()
            return tuple(x.new_zeros(shape) for shape in shapes)
        parts = (state,) if isinstance(state, Tensor) else tuple(state) if isinstance(state, (tuple, list)) else None
        if parts is None or len(parts) != n:
            expected = "a tuple (h, c)" if n == 2 else "a tensor h"
            each = " and ".join(str(s) for s in dict.fromkeys(shapes))
            raise bad_argument("state", f"{expected}, each of shape {each} (L*D, B, H)", state,
                               "pass the state returned by a previous call, or None for zeros")
        for name, part, shape in zip(self.state_names, parts, shapes):
            if not isinstance(part, Tensor) or tuple(part.shape) != shape:
                raise bad_argument(f"state ({name})", f"shape {shape} (L*D, B, H)", part,
                                   "use torch's layout: layers x directions first, then batch")
            if part.dtype != x.dtype or part.device != x.device:
                raise bad_argument(f"state ({name})", f"dtype {x.dtype} on {x.device} (the input's)", part,
                                   "convert with .to(x)")
        return parts

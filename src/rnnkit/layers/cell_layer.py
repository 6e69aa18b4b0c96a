"""``CellLayer``: your own cell as a layer, projected and run the way the built-in layers are.

A cell reads its input already projected to ``cell.input_width`` columns. ``CellLayer`` owns
that projection and computes it as ``rnnkit.LSTM`` & co. do: the input of all T steps in one
GEMM, time-major, on oneDNN where that is the faster library on this CPU
(``rnnkit.engine.gemm``), handed to the engine as its own buffer (no copy; the engine writes the
activations and then the gradients over it). ``torch.nn.Linear`` + ``cell(...)`` computes the
same numbers, but its GEMMs run on MKL and the engine must copy the projection first.

    >>> import torch, rnnkit
    >>> class MGU(rnnkit.Structured):
    ...     states, gates = ("h",), 2
    ...     def pointwise(self, inputs, hw, h):
    ...         f = torch.sigmoid(inputs[:, :16] + hw[:, :16])
    ...         return (1 - f) * h + f * torch.tanh(inputs[:, 16:] + f * hw[:, 16:])
    >>> layer = rnnkit.CellLayer(MGU(16), input_size=4)
    >>> y, h = layer(torch.randn(3, 10, 4), lengths=torch.tensor([10, 6, 2]))
    >>> tuple(y.shape), tuple(h.shape)          # (B, T, H), (B, H)
    ((3, 10, 16), (3, 16))
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from rnnkit.cells.base import Recurrent
from rnnkit.engine import BPTT, scan
from rnnkit.engine.gemm import linear
from rnnkit.engine.regularise import Regularisers
from rnnkit.errors import bad_argument
from rnnkit.init import Initializer, torch_default

__all__ = ["CellLayer"]


class CellLayer(nn.Module):
    """An input projection (``self.input``, an ``nn.Linear``) and a cell (``self.cell``) with one
    input sequence: ``layer(x, state=None, lengths=None) -> (y, state)``, so it stacks
    (``rnnkit.Stack``) and pairs (``rnnkit.Bidirectional``) like the built-in layers.

    * ``x`` (B, T, input_size); ``y`` (B, T, H): the cell's first declared output (``h``).
    * ``state``: the final states, a tensor for a one-state cell, else a tuple in
      ``cell.states`` order ((h, c) for an LSTM-like cell), (B, H) each; pass it back to go on.
    * ``mask``/``lengths``, ``reverse``, ``bptt`` and ``reset`` act as in ``cell(...)``;
      ``engine`` as in the built-in layers (a single cell always runs on the generic engine).
    * ``input_dropout``, ``recurrent_dropout``, ``zoneout``, ``weight_drop``: the built-in layers'
      regularisers (``rnnkit.Regularisers``), drawn in the same order, so a user LSTM here computes
      what ``rnnkit.LSTM(..., engine="generic")`` computes under one seed. Recurrent dropout and
      weight drop need a ``Structured`` cell (one recurrent matrix); zoneout and input dropout
      take any cell.
    """

    def __init__(self, cell: Recurrent, input_size: int, bias: bool = True,
                 input_init: Initializer | None = None, *, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, weight_drop: float = 0.0) -> None:
        """Give ``cell`` an input projection from ``input_size`` features (``input_init``: the
        projection's initialiser, default torch's) and optional regularisers; see the class docstring."""
        super().__init__()
        if not isinstance(cell, Recurrent) or tuple(cell.sequences) != ("inputs",):
            raise bad_argument("cell", "an rnnkit.Recurrent cell with one input sequence ('inputs')", cell,
                               "subclass rnnkit.Structured (or rnnkit.Recurrent with sequences = ('inputs',))")
        width = cell.sequence_shape("inputs")
        if width is None or len(width) != 1:
            raise bad_argument("cell", "a cell whose input is a vector per step (sequence_shape('inputs') = (G,))",
                               width, "declare sequence_shape, or subclass rnnkit.Structured")
        if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
            raise bad_argument("input_size", "a positive int (features of x)", input_size, "e.g. input_size=32")
        self.input = nn.Linear(input_size, int(width[0]), bias=bias)  # F -> G (the cell's input width)
        hidden = int(cell.state_shape(cell.states[0])[0])
        (input_init or torch_default(hidden))(self.input.weight.data)
        if bias:
            nn.init.zeros_(self.input.bias)
        self.cell = cell
        self.regularisers = Regularisers(input_dropout=input_dropout, recurrent_dropout=recurrent_dropout,
                                         zoneout=zoneout, weight_drop=weight_drop)
        self.regularisers.check_cell(cell)

    @property
    def input_size(self) -> int:
        return self.input.in_features

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | Sequence[int] | None = None, *,
                mask: Tensor | None = None, reverse: bool = False, bptt: BPTT | None = None,
                reset: Tensor | None = None, engine: str = "auto") -> tuple[Tensor, Any]:
        """x (B, T, F) -> (y (B, T, H), final state(s)). See the class docstring."""
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self.input_size:
            raise bad_argument("x", f"a 3-D tensor (B, T, F) with F = {self.input_size}", x,
                               f"project or reshape the input to (B, T, {self.input_size})")
        names = tuple(self.cell.states)
        if state is None:
            init: dict[str, Tensor] = {}
        elif isinstance(state, Tensor) and len(names) == 1:
            init = {names[0]: state}
        elif isinstance(state, (tuple, list)) and len(state) == len(names):
            init = dict(zip(names, state))
        else:
            raise bad_argument("state", f"None or {'a tensor' if len(names) == 1 else f'a tuple of {len(names)} tensors'}"
                               f" ({', '.join(names)})", state, "pass the state a previous call returned")
        inp = x.transpose(0, 1).contiguous()  # (T, B, F)
        masks = None
        if self.regularisers.active:  # the built-in layers' order: the input's mask, then the cell's
            T, B = inp.shape[0], inp.shape[1]
            keep = self.regularisers.input_mask(B, (inp.shape[2],), inp, self.training)
            inp = inp if keep is None else inp * keep  # (T, B, F): one mask per sequence
            masks = self.regularisers.draw(self.cell, B, T, inp, self.training)
        weight, bias = self.input.weight, self.input.bias
        # Time-major projection handed over as a (B, T, G) view: the engine walks time-major
        # buffers, so it takes this one as its own, without a copy.
        xp = linear(inp, weight, bias).transpose(0, 1)  # (B, T, G)
        result = scan(self.cell, {"inputs": xp}, initial_states=init, mask=mask, lengths=lengths, reverse=reverse,
                      bptt=bptt, engine=engine, reset=reset, donate=True, regularisers=masks,
                      rebuild=lambda: linear(inp, weight, bias).transpose(0, 1))  # (B, T, G)
        y = result.outputs[self.cell.output_names[0]]  # (B, T, H)
        finals = tuple(result.final[n] for n in names)  # (B, H) each
        return y, finals[0] if len(finals) == 1 else finals

    def extra_repr(self) -> str:
        reg = ", ".join(f"{k}={v:g}" for k, v in vars(self.regularisers).items() if v)
        return f"input_size={self.input_size}, cell={type(self.cell).__name__}" + (f", {reg}" if reg else "")

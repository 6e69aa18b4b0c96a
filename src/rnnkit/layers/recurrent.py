"""Drop-in recurrent layers: ``rnnkit.RNN``, ``rnnkit.LSTM`` and ``rnnkit.GRU``.

A layer is an input projection plus the engine, stacked ``num_layers`` deep and optionally
bidirectional. Each (layer, direction) is a real submodule holding an ``nn.Linear`` input
projection and a cell, so parameter names read ``layers.0.bwd.cell.weight``. The fused backend
runs the whole stack in PyTorch's native kernel; the generic backend projects the input of all
T steps in one GEMM and runs the cell with the engine.

    >>> import torch, rnnkit
    >>> lstm = rnnkit.LSTM(8, 16, num_layers=2, bidirectional=True)
    >>> y, (h, c) = lstm(torch.randn(4, 10, 8), lengths=torch.tensor([10, 7, 3, 1]))
    >>> tuple(y.shape), tuple(h.shape)          # (B, T, D*H), (L*D, B, H)
    ((4, 10, 32), (4, 4, 16))
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells import ACTIVATIONS, ElmanCell, GRUCell, LSTMCell
from rnnkit.cells.structured import Structured
from rnnkit.checkpoint.registry import register_model
from rnnkit.engine import BPTT, run_cell
from rnnkit.engine.dispatch import Plan, check_engine, make_plan
from rnnkit.engine.fused import run_fused
from rnnkit.engine.gemm import linear
from rnnkit.engine.hooks import run_pre_hooks
from rnnkit.engine.masks import check_lengths, lengths_to_mask, resolve_mask
from rnnkit.errors import bad_argument, describe
from rnnkit.init import Initializer, torch_default

__all__ = ["GRU", "LSTM", "RNN", "LayerConfig", "RecurrentLayer"]

State = Tensor | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class LayerConfig:
    """Everything needed to rebuild a layer (what a checkpoint stores)."""

    kind: str  # "rnn" | "lstm" | "gru"
    input_size: int
    hidden_size: int
    num_layers: int = 1  # stacked layers
    bidirectional: bool = False  # one forward and one reverse direction per layer
    dropout: float = 0.0  # dropout on the outputs of every layer but the last (training only)
    bias: bool = True  # input and recurrent biases
    nonlinearity: str = "tanh"  # RNN only: "tanh" | "relu" | "identity"
    peepholes: bool = False  # LSTM only
    engine: str = "auto"  # "auto" | "fused" | "generic"


class _Direction(nn.Module):
    """One direction of one layer: the input projection and the cell."""

    def __init__(self, input_size: int, cell: Structured, bias: bool, input_init: Initializer | None) -> None:
        super().__init__()
        self.input = nn.Linear(input_size, cell.input_width, bias=bias)  # F -> G*H
        (input_init or torch_default(cell.hidden_size))(self.input.weight.data)
        if bias:
            nn.init.zeros_(self.input.bias)
        self.cell = cell


class _Layer(nn.Module):
    def __init__(self, fwd: _Direction, bwd: _Direction | None) -> None:
        super().__init__()
        self.fwd = fwd
        self.bwd = bwd

    def directions(self) -> list[_Direction]:
        return [self.fwd] if self.bwd is None else [self.fwd, self.bwd]


class RecurrentLayer(nn.Module):
    """Shared machinery of RNN/LSTM/GRU. Batch-first: x (B, T, F) -> y (B, T, D*H)."""

    kind: str = ""
    config_class = LayerConfig

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        engine: str = "auto",
        *,
        bias: bool = True,
        nonlinearity: str = "tanh",
        peepholes: bool = False,
        input_init: Initializer | None = None,  # None: torch's U(-1/sqrt(H), 1/sqrt(H))
        recurrent_init: Initializer | None = None,  # None: orthogonal per gate block
    ) -> None:
        super().__init__()
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad_argument(arg, "a positive int", value, f"pass e.g. {arg}=1 or more")
        if nonlinearity not in ACTIVATIONS:
            raise bad_argument("nonlinearity", f"one of {sorted(ACTIVATIONS)}", nonlinearity,
                               "use 'tanh' or 'relu' (fused) or 'identity' (generic engine)")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise bad_argument("dropout", "a probability in [0, 1)", dropout, "use e.g. dropout=0.2")
        self.config = LayerConfig(
            kind=self.kind, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
            bidirectional=bool(bidirectional), dropout=float(dropout), bias=bias,
            nonlinearity=nonlinearity, peepholes=peepholes, engine=check_engine(engine),
        )
        D = 2 if bidirectional else 1
        layers = []
        for index in range(num_layers):
            width = input_size if index == 0 else D * hidden_size
            dirs = [_Direction(width, self._make_cell(recurrent_init), bias, input_init) for _ in range(D)]
            layers.append(_Layer(dirs[0], dirs[1] if D == 2 else None))
        self.layers = nn.ModuleList(layers)

    # ------------------------------------------------------------------ construction
    def _make_cell(self, recurrent_init: Initializer | None) -> Structured:
        cfg = self.config
        if cfg.kind == "lstm":
            return LSTMCell(cfg.hidden_size, peepholes=cfg.peepholes, bias=cfg.bias, weight_init=recurrent_init)
        if cfg.kind == "gru":
            return GRUCell(cfg.hidden_size, bias=cfg.bias, weight_init=recurrent_init)
        return ElmanCell(cfg.hidden_size, cfg.nonlinearity, bias=cfg.bias, weight_init=recurrent_init)

    @classmethod
    def from_config(cls, config: LayerConfig) -> RecurrentLayer:
        layer_cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[config.kind]
        extra = {"nonlinearity": config.nonlinearity} if config.kind == "rnn" else {}
        if config.kind == "lstm":
            extra["peepholes"] = config.peepholes
        return layer_cls(config.input_size, config.hidden_size, config.num_layers, config.bidirectional,
                         config.dropout, config.engine, bias=config.bias, **extra)

    # ------------------------------------------------------------------ properties
    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def num_directions(self) -> int:
        return 2 if self.config.bidirectional else 1

    @property
    def engine(self) -> str:
        """The requested backend; assign "auto", "fused" or "generic" to change it."""
        return self.config.engine

    @engine.setter
    def engine(self, value: str) -> None:
        self.config = replace(self.config, engine=check_engine(value))

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.kind == "lstm" else ("h",)

    def directions(self) -> list[_Direction]:
        """Every (layer, direction) in torch's order: layer-major, forward before backward."""
        return [d for layer in self.layers for d in layer.directions()]

    def flat_weights(self) -> list[Tensor]:
        """The native kernels' weight list: per direction (W_ih, W_hh[, b_ih, b_hh])."""
        weights: list[Tensor] = []
        for d in self.directions():
            weights += [d.input.weight, d.cell.weight]
            if self.config.bias:
                weights += [d.input.bias, d.cell.bias]
        return weights

    def why_not_fused(self, bptt: BPTT | None = None, prefix_mask: bool = True, dtype: torch.dtype | None = None) -> str | None:
        """None if the fused backend can run this call, else the reason it cannot."""
        kinds = {d.cell.fused_kind for d in self.directions()}
        if None in kinds or len(kinds) != 1:
            if self.config.peepholes:
                return "peepholes, which the native LSTM kernel does not implement"
            if self.config.nonlinearity == "identity":
                return "the identity activation, which the native RNN kernels do not implement"
            return "a cell configuration the native kernels do not implement"
        if bptt is not None and not bptt.is_default:
            return "BPTT options (truncation, per-step clipping, gradient taps) that need the generic engine"
        if not prefix_mask:
            return "a mask that is not a prefix of real steps in every row"
        if dtype is not None and dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            return f"dtype {dtype}"
        return None

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        mask: Tensor | None = None,
        bptt: BPTT | None = None,
    ) -> tuple[Tensor, State]:
        """x (B, T, F) -> (y (B, T, D*H), state), the state in torch's layout (L*D, B, H).

        ``lengths`` (B,) or ``mask`` (B, T) mark real steps of right-padded sequences; at a
        padded step the state carries over and y is zero. ``bptt`` takes BPTT options
        (generic engine only).
        """
        self._check_input(x)
        B, T, _ = x.shape
        if lengths is not None and mask is None:  # the mask is built only if the generic engine runs
            lens, prefix = check_lengths(lengths, B, T, x.device), True
        else:
            mask, lens, prefix = resolve_mask(mask, lengths, B, T, x.device)
        hx = self._check_state(state, B, x)
        if bptt is not None and not isinstance(bptt, BPTT):
            raise bad_argument("bptt", "None or an rnnkit.engine.BPTT", bptt, "pass bptt=BPTT(...)")
        run_pre_hooks(*(m for d in self.directions() for m in (d.input, d.cell)))  # weight_norm, prune, ...
        plan = self._plan(x, lens, prefix, bptt, step=False)
        if plan.fused:
            if lens is not None and (lens.numel() == 0 or int(lens.min()) == T):
                lens = None  # every sequence is full: no packing needed
            y, finals = run_fused(
                self.fused_kind, x, hx, self.flat_weights(), has_biases=self.config.bias,
                num_layers=self.num_layers, dropout=self.config.dropout, training=self.training,
                bidirectional=self.config.bidirectional, lengths=lens, zero_state=state is None,
            )
        else:
            if mask is None and lens is not None:
                mask = lengths_to_mask(lens, T, x.device)
            y, finals = self._forward_generic(x, hx, mask, bptt, plan)
        return y, (finals if self.kind == "lstm" else finals[0])

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step for decoding: x (B, F) -> (y (B, H), state). Unidirectional only.

        It costs one cell step per layer, whatever the length generated so far; the checks
        are kept to the minimum because this is the decoding hot path.
        """
        if self.config.bidirectional:
            raise ValueError("step: expected a unidirectional layer, but this one is bidirectional. "
                             "Fix: a reverse direction needs the whole sequence; call the layer on it instead.")
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise bad_argument("x", f"a 2-D tensor (B, {self.input_size}) for one step", x, "pass x[:, t]")
        hx = self._check_state(state, x.shape[0], x)
        run_pre_hooks(*(m for d in self.directions() for m in (d.input, d.cell)))  # weight_norm, prune, ...
        if self._plan(x, None, True, None, step=True).fused:
            y, finals = run_fused(
                self.fused_kind, x.unsqueeze(1), hx, self.flat_weights(), has_biases=self.config.bias,
                num_layers=self.num_layers, dropout=self.config.dropout, training=self.training,
                bidirectional=False, lengths=None,
            )
            y = y[:, 0]  # (B, H)
        else:
            finals_list: list[list[Tensor]] = [[] for _ in self.state_names]
            y = x
            for index, layer in enumerate(self.layers):
                if index and self.config.dropout and self.training:
                    y = F.dropout(y, self.config.dropout, training=True)
                cell = layer.fwd.cell
                proj = layer.fwd.input  # not called: its pre-hooks ran above, once
                out = cell.pack_outputs(cell.step(F.linear(y, proj.weight, proj.bias), *(h[index] for h in hx)))
                for i in range(len(self.state_names)):
                    finals_list[i].append(out[i])
                y = out[0]  # (B, H)
            finals = tuple(torch.stack(f, dim=0) for f in finals_list)  # (L, B, H)
        return y, (finals if self.kind == "lstm" else finals[0])

    def plan(self, x: Tensor, lengths: Tensor | Sequence[int] | None = None, *, mask: Tensor | None = None,
             bptt: BPTT | None = None) -> Plan:
        """The dispatch plan a call with these arguments runs (backend, loop form, dtype, reasons).

        ``x`` (B, T, F) plans ``forward``; a 2-D ``x`` (B, F) plans ``step``. Nothing is computed.

            >>> import torch, rnnkit
            >>> print(rnnkit.LSTM(4, 8, engine="fused").plan(torch.randn(2, 5, 4)).backend)
            fused
        """
        if isinstance(x, Tensor) and x.dim() == 2:
            return self._plan(x, None, True, None, step=True)
        self._check_input(x)
        B, T, _ = x.shape
        _, lens, prefix = resolve_mask(mask, lengths, B, T, x.device)
        return self._plan(x, lens, prefix, bptt, step=False)

    def _plan(self, x: Tensor, lens: Tensor | None, prefix: bool, bptt: BPTT | None, step: bool) -> Plan:
        """One call's plan (rnnkit.engine.dispatch.make_plan). ``lens`` (B,) CPU or None."""
        B, T = x.shape[0], (1 if step else x.shape[1])
        cell = self.layers[0].fwd.cell
        return make_plan(
            self.engine, cell, why_not_fused=self.why_not_fused(bptt, prefix, x.dtype), dtype=x.dtype,
            device=x.device, batch=B, lengths=lens is not None and lens.numel() > 0 and int(lens.min()) < T,
            backward=torch.is_grad_enabled() and (x.requires_grad or cell.weight.requires_grad),
            plain_bptt=bptt is None or bptt.is_default, step=step, where=type(self).__name__,
        )

    @property
    def fused_kind(self) -> str:
        kind = self.layers[0].fwd.cell.fused_kind
        if kind is None:
            raise ValueError(f"{type(self).__name__}: this cell configuration has no fused kernel")
        return kind

    def _forward_generic(
        self, x: Tensor, hx: tuple[Tensor, ...], mask: Tensor | None, bptt: BPTT | None, plan: Plan | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        D = self.num_directions
        finals: list[list[Tensor]] = [[] for _ in self.state_names]
        inp = x  # (B, T, F)
        for index, layer in enumerate(self.layers):
            outs = []
            # The projections are computed time-major, (T, B, G*H), and handed over as (B, T, G*H) views:
            # the engine walks time-major buffers, so it takes them without a (B, T) -> (T, B) copy.
            inp_t = inp.transpose(0, 1)
            if not inp_t.is_contiguous():
                inp_t = inp_t.contiguous()  # (T, B, F), once for both directions
            for d, direction in enumerate(layer.directions()):
                k = index * D + d
                xp = linear(inp_t, direction.input.weight, direction.input.bias).transpose(0, 1)  # one GEMM
                init = {name: hx[i][k] for i, name in enumerate(self.state_names)}
                scope = f"layer{index}.{'bwd' if d else 'fwd'}"
                result = run_cell(direction.cell, {"inputs": xp}, init, {}, mask=mask, reverse=d == 1,
                                  bptt=bptt, scope=scope, donate=True,
                                  rebuild=_rebuild(inp_t, direction.input.weight, direction.input.bias), plan=plan)
                outs.append(result.outputs["h"])  # (B, T, H)
                for i, name in enumerate(self.state_names):
                    finals[i].append(result.final[name])
            inp = outs[0] if D == 1 else torch.cat(outs, dim=2)  # (B, T, D*H)
            if self.config.dropout and self.training and index < self.num_layers - 1:
                inp = F.dropout(inp, self.config.dropout, training=True)
        return inp, tuple(torch.stack(f, dim=0) for f in finals)  # (L*D, B, H)

    # ------------------------------------------------------------------ checks
    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise bad_argument("x", "a tensor (B, T, F)", x, "pass a torch.Tensor")
        if x.dim() != 3:
            fix = ("add a batch dimension with x.unsqueeze(0)" if x.dim() == 2
                   else "reshape to (B, T, F); rnnkit layers are batch-first")
            raise bad_argument("x", f"a 3-D tensor (B, T, F) with F = {self.input_size}", x, fix)
        if x.shape[2] != self.input_size:
            raise bad_argument("x", f"F = {self.input_size} features in the last dimension (input_size of this {name})",
                               x, f"project the input to {self.input_size} features or build the layer with input_size={x.shape[2]}")
        if x.shape[1] == 0:
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

    def _check_state(self, state: State | None, batch: int, x: Tensor) -> tuple[Tensor, ...]:
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        shape = (L * D, batch, H)
        n = len(self.state_names)
        if state is None:
            zeros = x.new_zeros(shape)
            return (zeros,) * n
        parts = (state,) if isinstance(state, Tensor) else tuple(state) if isinstance(state, (tuple, list)) else None
        if parts is None or len(parts) != n:
            expected = "a tuple (h, c)" if n == 2 else "a tensor h"
            raise bad_argument("state", f"{expected}, each of shape {shape} (L*D, B, H)", state,
                               "pass the state returned by a previous call, or None for zeros")
        for name, part in zip(self.state_names, parts):
            if not isinstance(part, Tensor) or tuple(part.shape) != shape:
                raise bad_argument(f"state ({name})", f"shape {shape} (L*D, B, H)", part,
                                   "use torch's layout: layers x directions first, then batch")
            if part.dtype != x.dtype or part.device != x.device:
                raise bad_argument(f"state ({name})", f"dtype {x.dtype} on {x.device} (the input's)", part,
                                   f"convert with .to(x)")
        return parts

    def to_torch(self) -> nn.RNNBase:
        """The equal ``torch.nn.RNN``/``LSTM``/``GRU`` (batch_first=True)."""
        from rnnkit.layers.convert import to_torch

        return to_torch(self)

    def extra_repr(self) -> str:
        c = self.config
        return (f"{c.input_size}, {c.hidden_size}, num_layers={c.num_layers}, bidirectional={c.bidirectional}, "
                f"dropout={c.dropout}, engine={c.engine!r}")


def _rebuild(inp_t: Tensor, weight: Tensor, bias: Tensor | None):
    """Recomputes a donated projection's values (B, T, G) for a double backward."""
    return lambda: linear(inp_t, weight, bias).transpose(0, 1)  # (B, T, G)


@register_model
class RNN(RecurrentLayer):
    """Elman RNN layer; ``nonlinearity`` is "tanh", "relu" (both fused) or "identity" (generic)."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, engine: str = "auto", *, nonlinearity: str = "tanh", bias: bool = True,
                 input_init: Initializer | None = None, recurrent_init: Initializer | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, engine, bias=bias,
                         nonlinearity=nonlinearity, input_init=input_init, recurrent_init=recurrent_init)


@register_model
class LSTM(RecurrentLayer):
    """LSTM layer (gate order i, f, g, o); ``peepholes=True`` runs on the generic engine."""

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, engine: str = "auto", *, peepholes: bool = False, bias: bool = True,
                 input_init: Initializer | None = None, recurrent_init: Initializer | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, engine, bias=bias,
                         peepholes=peepholes, input_init=input_init, recurrent_init=recurrent_init)


@register_model
class GRU(RecurrentLayer):
    """GRU layer, reset-after variant (gate order r, z, n) as in cuDNN and torch.nn.GRU."""

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, engine: str = "auto", *, bias: bool = True,
                 input_init: Initializer | None = None, recurrent_init: Initializer | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, engine, bias=bias,
                         input_init=input_init, recurrent_init=recurrent_init)

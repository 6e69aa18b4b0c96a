"""Drop-in recurrent layers: ``rnnkit.RNN``, ``rnnkit.LSTM`` and ``rnnkit.GRU``.

A layer is an input projection plus the engine, stacked ``num_layers`` deep and optionally
bidirectional. The constructor takes torch.nn's arguments in torch.nn's order; the one default
that differs is ``batch_first=True`` (``rnnkit.nn.LSTM`` & co. keep torch's ``False``). Inputs
may be padded tensors with ``lengths``/``mask``, or a ``PackedSequence`` (output packed too).

Each (layer, direction) is a real submodule holding an ``nn.Linear`` input projection and a
cell; ``state_dict()`` and attribute access speak torch's names (``weight_hh_l0_reverse``, see
``rnnkit.layers.torch_names``). The fused backend runs the whole stack in PyTorch's native
kernel; the generic backend projects the input of all T steps in one GEMM and runs the cell
with the engine.

    >>> import torch, rnnkit
    >>> lstm = rnnkit.LSTM(8, 16, num_layers=2, bidirectional=True)
    >>> y, (h, c) = lstm(torch.randn(4, 10, 8), lengths=torch.tensor([10, 7, 3, 1]))
    >>> tuple(y.shape), tuple(h.shape)          # (B, T, D*H), (L*D, B, H)
    ((4, 10, 32), (4, 4, 16))
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.cells.base import Recurrent
from rnnkit.cells.structured import Structured
from rnnkit.engine import BPTT
from rnnkit.engine.dispatch import Plan, make_plan
from rnnkit.engine.fused import run_fused
from rnnkit.engine.hooks import run_pre_hooks
from rnnkit.engine.kinds import fused_kind
from rnnkit.engine.masks import check_lengths, lengths_to_mask, resolve_mask
from rnnkit.engine.regularise import Regularisers
from rnnkit.engine.reset import check_reset, check_step_reset, restart
from rnnkit.errors import bad_argument
from rnnkit.init import Initializer, torch_default
from rnnkit.layers.checks import LayerChecks
from rnnkit.layers.config import LayerConfig, check_layer_args
from rnnkit.layers import regularised
from rnnkit.layers.export import to_torch
from rnnkit.layers.generic_path import autocast_dtype, forward_generic, ragged, step_generic
from rnnkit.layers.packed import forward_packed
from rnnkit.layers.projected import ProjectedLSTMCell
from rnnkit.layers.resets import fused_with_resets, plan_resets, plan_step_reset
from rnnkit.layers.torch_names import TorchNames

__all__ = ["LayerConfig", "RecurrentLayer"]

State = Tensor | tuple[Tensor, Tensor]
_BY_KIND: dict[str, type] = {}  # "rnn" | "lstm" | "gru" -> the class from_config builds


class _Direction(nn.Module):
    """One direction of one layer: the input projection and the cell."""

    def __init__(self, input_size: int, cell: Recurrent, bias: bool, input_init: Initializer | None) -> None:
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


class RecurrentLayer(LayerChecks, TorchNames):
    """Shared machinery of RNN/LSTM/GRU: x (B, T, F) (or (T, B, F)) -> y (B, T, D*H)."""

    kind: str = ""
    config_class = LayerConfig
    _torch_init = False  # True (rnnkit.nn): every parameter U(-1/sqrt(H), 1/sqrt(H)), drawn as torch.nn does
    _unbatched_ok = False  # True (rnnkit.nn): a 2-D input is one unbatched sequence, as in torch.nn

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
        batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
        nonlinearity: str = "tanh",
        engine: str = "auto",  # "auto" | "fused" | "generic"
        peepholes: bool = False,  # LSTM only; runs on the generic engine
        input_init: Initializer | None = None,  # None: torch's U(-1/sqrt(H), 1/sqrt(H))
        recurrent_init: Initializer | None = None,  # None: orthogonal per gate block
        input_dropout: float = 0.0,  # regularisers (rnnkit.Regularisers), training only unless said
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,  # eval mode: the expectation
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        rng = torch.get_rng_state() if self._torch_init else None  # torch.nn draws only in reset_parameters
        self.config = check_layer_args(
            self.kind, input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, proj_size=proj_size, nonlinearity=nonlinearity,
            peepholes=peepholes, engine=engine, warn_dropout=self._torch_init, input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout, weight_drop=weight_drop)
        cfg = self.config
        D = 2 if cfg.bidirectional else 1
        out = cfg.proj_size or cfg.hidden_size
        layers = []
        for index in range(cfg.num_layers):
            width = cfg.input_size if index == 0 else D * out
            dirs = [_Direction(width, self._make_cell(recurrent_init), cfg.bias, input_init) for _ in range(D)]
            layers.append(_Layer(dirs[0], dirs[1] if D == 2 else None))
        self.layers = nn.ModuleList(layers)
        self._install_torch_names()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)
        if rng is not None:
            torch.set_rng_state(rng)
            self.reset_parameters()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _BY_KIND.setdefault(cls.kind, cls)  # the first: rnnkit.RNN/LSTM/GRU (rnnkit.layers.classes)

    @property
    def regularisers(self) -> Regularisers:
        """The layer's regularisers, read from its config (what checkpoints and ``to_torch`` read)."""
        cached = self.__dict__.get("_regularisers")
        if cached is None or cached[0] is not self.config:
            cached = (self.config, self.config.regularisers)
            self.__dict__["_regularisers"] = cached
        return cached[1]

    @regularisers.setter
    def regularisers(self, value: object) -> None:
        asked = ", ".join(f"{k}={v:g}" for k, v in vars(value).items() if v) if isinstance(value, Regularisers) else ""
        raise AttributeError(f"regularisers: expected no assignment (the config holds them; checkpoints and to_torch() "
                             f"read it), but received {value!r:.80}. Fix: build a new "
                             f"rnnkit.{self.kind.upper()}(..., {asked or 'zoneout=0.1'})")

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)), in torch's order
        (so under the same seed, the same values as the torch.nn module)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for weight in self._flat_weights:
                weight.uniform_(-bound, bound)

    # ------------------------------------------------------------------ construction
    def _make_cell(self, recurrent_init: Initializer | None) -> Recurrent:
        cfg = self.config
        if cfg.kind == "lstm" and cfg.proj_size:
            if cfg.peepholes:
                raise bad_argument("peepholes", "False with proj_size", True, "choose peepholes or a projection")
            return ProjectedLSTMCell(cfg.hidden_size, cfg.proj_size, bias=cfg.bias, weight_init=recurrent_init)
        if cfg.kind == "lstm":
            return LSTMCell(cfg.hidden_size, peepholes=cfg.peepholes, bias=cfg.bias, weight_init=recurrent_init)
        if cfg.kind == "gru":
            return GRUCell(cfg.hidden_size, bias=cfg.bias, weight_init=recurrent_init)
        return ElmanCell(cfg.hidden_size, cfg.nonlinearity, bias=cfg.bias, weight_init=recurrent_init)

    @classmethod
    def from_config(cls, config: LayerConfig) -> RecurrentLayer:
        """The layer ``config`` describes (of this class when it has the config's kind)."""
        c = config
        target = cls if cls.kind == c.kind else _BY_KIND[c.kind]
        kwargs = dict(num_layers=c.num_layers, bias=c.bias, batch_first=c.batch_first, dropout=c.dropout,
                      bidirectional=c.bidirectional, proj_size=c.proj_size, engine=c.engine)
        if c.kind == "rnn":
            kwargs["nonlinearity"] = c.nonlinearity
        if c.peepholes:
            kwargs["peepholes"] = True
        for name in ("input_dropout", "recurrent_dropout", "zoneout", "weight_drop"):
            if getattr(c, name) and target._torch_init:  # rnnkit.nn: torch's signature, no regularisers
                raise bad_argument(name, f"0 for {target.__module__}.{target.__name__} (torch.nn's signature has no "
                                   "regularisers)", getattr(c, name),
                                   f"rebuild it with rnnkit.{target.__name__}.from_config(config)")
            if getattr(c, name):
                kwargs[name] = getattr(c, name)
        return target(c.input_size, c.hidden_size, **kwargs)

    def directions(self) -> list[_Direction]:
        """Every (layer, direction) in torch's order: layer-major, forward before backward."""
        return [d for layer in self.layers for d in layer.directions()]

    def flat_weights(self) -> list[Tensor]:
        """The native kernels' weight list: per direction ``(W_ih, W_hh[, b_ih, b_hh][, W_hr])``."""
        weights: list[Tensor] = []
        for d in self.directions():
            weights += [d.input.weight, d.cell.weight]
            if self.config.bias:
                weights += [d.input.bias, d.cell.bias]
            if self.config.proj_size:
                weights.append(d.cell.weight_hr)
        return weights

    def why_not_fused(self, bptt: BPTT | None = None, prefix_mask: bool = True, dtype: torch.dtype | None = None,
                      *, regularisers: bool = True) -> str | None:
        """None if the fused backend can run this call, else the reason it cannot.
        ``regularisers=False`` leaves the regularisers out (the plain stack ``to_torch`` builds)."""
        kinds = {fused_kind(d.cell) for d in self.directions()}
        if None in kinds or len(kinds) != 1:
            if self.config.peepholes:
                return "peepholes, which the native LSTM kernel does not implement"
            if self.config.nonlinearity == "identity":
                return "the identity activation, which the native RNN kernels do not implement"
            return "a cell configuration the native kernels do not implement"
        if regularisers and self.regularisers.active and regularised.why_not_fused(self) is not None:
            return regularised.why_not_fused(self)
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
        x: Tensor | PackedSequence,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        mask: Tensor | None = None,
        bptt: BPTT | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        """x (B, T, F) -> (y (B, T, D*H), state), the state in torch's layout (L*D, B, H).

        With ``batch_first=False``, x (T, B, F) -> y (T, B, D*H). A ``PackedSequence`` input
        gives a ``PackedSequence`` output, as in torch.nn. ``lengths`` (B,) or ``mask`` (B, T)
        mark real steps of right-padded sequences; at a padded step the state carries over and
        y is zero. ``bptt`` takes BPTT options (generic engine only). ``reset`` bool (B,) or (B, T)
        restarts rows from zeros at the first step, or at the marked steps, in every layer
        (``rnnkit.engine.reset``; the streaming guide in the docs).
        """
        if bptt is not None and not isinstance(bptt, BPTT):
            raise bad_argument("bptt", "None or an rnnkit.engine.BPTT", bptt, "pass bptt=BPTT(...)")
        if isinstance(x, PackedSequence):
            if lengths is not None or mask is not None:
                raise bad_argument("lengths, mask", "neither with a PackedSequence input (it holds the lengths)",
                                   "lengths or mask", "drop lengths= and mask=")
            if reset is not None:
                raise bad_argument("reset", "None with a PackedSequence input", reset,
                                   "pass a padded tensor with lengths= to use reset=")
            return forward_packed(self, x, state, bptt)
        bf = self.config.batch_first
        unbatched = self._unbatched_ok and isinstance(x, Tensor) and x.dim() == 2
        if unbatched:
            x, state = x.unsqueeze(0 if bf else 1), self._batch_state(state)
            reset = reset.unsqueeze(0) if isinstance(reset, Tensor) and reset.dim() < 2 else reset
        self._check_input(x)
        B, T = (x.shape[0], x.shape[1]) if bf else (x.shape[1], x.shape[0])
        if lengths is not None and mask is None:  # the mask is built only if the generic engine runs
            lens, prefix = check_lengths(lengths, B, T, x.device), True
        else:
            mask, lens, prefix = resolve_mask(mask, lengths, B, T, x.device)
        hx = self._check_state(state, B, x)
        restarts = check_reset(reset, B, T, x.device)
        if restarts is not None:  # rows restarting at step 0 drop their state; later resets cut time
            hx = restart(hx, restarts[:, 0], batch_dim=1)
            restarts = restarts if bool(restarts[:, 1:].any()) else None
        run_pre_hooks(*(m for d in self.directions() for m in (d.input, d.cell)))  # weight_norm, prune, ...
        plan = self._plan(x, B, ragged(lens, T), prefix, bptt, step=False)
        if plan.fused and self.regularisers.active:
            x = regularised.drop_fused_input(self, x)  # input dropout: one mask per sequence
        if plan.fused and restarts is not None:
            y, finals = fused_with_resets(self, x, hx, lens, restarts)
        elif plan.fused:
            if lens is not None and (lens.numel() == 0 or int(lens.min()) == T):
                lens = None  # every sequence is full: no packing needed
            y, finals = run_fused(
                self.fused_kind, x, hx, regularised.fused_weights(self), has_biases=self.config.bias,
                num_layers=self.num_layers, dropout=self.config.dropout, training=self.training,
                bidirectional=self.config.bidirectional, lengths=lens, zero_state=state is None, batch_first=bf,
            )
        else:
            if mask is None and lens is not None:
                mask = lengths_to_mask(lens, T, x.device)
            y, finals = forward_generic(self, x.transpose(0, 1) if bf else x, hx, mask, bptt, plan,
                                              reset=restarts)  # (T, B, D*H)
            y = y.transpose(0, 1) if bf else y  # (B, T, D*H) or (T, B, D*H)
        if unbatched:
            y, finals = y.squeeze(0 if bf else 1), tuple(f.squeeze(1) for f in finals)
        return y, (finals if self.kind == "lstm" else finals[0])

    def step(self, x: Tensor, state: State | None = None, *, reset: Tensor | None = None) -> tuple[Tensor, State]:
        """One time step for decoding: x (B, F) -> (y (B, H), state). Unidirectional only.

        It costs one cell step per layer, whatever the length generated so far; the checks
        are kept to the minimum because this is the decoding hot path. ``reset`` bool (B,)
        restarts the marked rows from zeros before the step.
        """
        if self.config.bidirectional:
            raise ValueError("step: expected a unidirectional layer, but this one is bidirectional. "
                             "Fix: a reverse direction needs the whole sequence; call the layer on it instead.")
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise bad_argument("x", f"a 2-D tensor (B, {self.input_size}) for one step", x, "pass x[:, t]")
        hx = self._check_state(state, x.shape[0], x)
        reg = self.regularisers
        if self.training and reg.active and (reg.input_dropout or reg.recurrent_dropout or reg.weight_drop):
            raise ValueError("step: expected eval mode for a layer with dropout regularisers (one mask per "
                             "sequence), but it is in training mode. Fix: call the layer on the whole sequence "
                             "to train, or layer.eval() to decode.")
        if reset is not None:
            hx = restart(hx, check_step_reset(reset, x.shape[0], x.device), batch_dim=1)
        run_pre_hooks(*(m for d in self.directions() for m in (d.input, d.cell)))  # weight_norm, prune, ...
        if self._plan(x, x.shape[0], False, True, None, step=True).fused:
            y, finals = run_fused(
                self.fused_kind, x.unsqueeze(1), hx, self.flat_weights(), has_biases=self.config.bias,
                num_layers=self.num_layers, dropout=self.config.dropout, training=self.training,
                bidirectional=False, lengths=None,
            )
            y = y[:, 0]  # (B, H)
        else:
            y, finals = step_generic(self, x, hx)  # (B, H), (L, B, H) each
        return y, (finals if self.kind == "lstm" else finals[0])

    def plan(self, x: Tensor, lengths: Tensor | Sequence[int] | None = None, *, mask: Tensor | None = None,
             bptt: BPTT | None = None, reset: Tensor | None = None) -> Plan:
        """The dispatch plan a call with these arguments runs (backend, loop form, dtype, reasons).

        ``x`` in the layer's layout plans ``forward``; a 2-D ``x`` (B, F) plans ``step``. Nothing is
        computed. With ``reset``, the "resets" reason names the restarting rows and the segments
        time is cut into.

            >>> import torch, rnnkit
            >>> print(rnnkit.LSTM(4, 8, engine="fused").plan(torch.randn(2, 5, 4)).backend)
            fused
            >>> reset = torch.tensor([[False, False, True, False, False], [True, False, False, False, False]])
            >>> print(rnnkit.LSTM(4, 8, engine="fused").plan(torch.randn(2, 5, 4), reset=reset).reason("resets"))
            row 1 restarts from zeros at step 0 (the incoming state is dropped); row 0 restarts from zeros later: time is cut where some row restarts, into 2 segments [0, 2) [2, 5)
        """
        if isinstance(x, Tensor) and x.dim() == 2:
            plan = self._plan(x, x.shape[0], False, True, None, step=True)
            return plan if reset is None else plan_step_reset(plan, check_step_reset(reset, x.shape[0], x.device))
        self._check_input(x)
        B, T = (x.shape[0], x.shape[1]) if self.config.batch_first else (x.shape[1], x.shape[0])
        mask, lens, prefix = resolve_mask(mask, lengths, B, T, x.device)
        plan = self._plan(x, B, ragged(lens, T), prefix, bptt, step=False)
        return plan_resets(self, plan, check_reset(reset, B, T, x.device), lens, mask, bptt)

    def _plan(self, x: Tensor, B: int, ragged: bool, prefix: bool, bptt: BPTT | None, step: bool) -> Plan:
        """One call's plan (rnnkit.engine.dispatch.make_plan). ``ragged``: some sequence is shorter than T."""
        cell = self.layers[0].fwd.cell
        why = self.why_not_fused(bptt, prefix, x.dtype)
        engine = self.engine
        if self.config.proj_size and engine == "auto" and why is None:
            engine = "fused"  # the projected cell runs step-wise under autograd on the generic engine: slower
        return make_plan(
            engine, cell, why_not_fused=why, dtype=x.dtype, device=x.device, batch=B, lengths=ragged,
            backward=torch.is_grad_enabled() and (x.requires_grad or cell.weight.requires_grad),
            plain_bptt=bptt is None or bptt.is_default, structured=isinstance(cell, Structured), step=step,
            where=type(self).__name__, regularised=self.regularisers.inside(self.training),
            cost_dtype=autocast_dtype(x),
        )

    @property
    def fused_kind(self) -> str:
        kind = fused_kind(self.layers[0].fwd.cell)
        if kind is None:
            raise ValueError(f"{type(self).__name__}: this cell configuration has no fused kernel")
        return kind

    def to_torch(self, *, drop_regularisers: bool = False) -> nn.RNNBase:
        """The equal ``torch.nn.RNN``/``LSTM``/``GRU``, with this layer's ``batch_first``.

        torch.nn has no regularisers: a layer with dropout regularisers raises unless
        ``drop_regularisers=True`` (the module then equals the layer in eval mode); zoneout raises.
        """
        return to_torch(self, drop_regularisers=drop_regularisers)

    def extra_repr(self) -> str:
        c = self.config
        text = f"{c.input_size}, {c.hidden_size}"
        if c.num_layers != 1:
            text += f", num_layers={c.num_layers}"
        if self.kind == "rnn" and c.nonlinearity != "tanh":
            text += f", nonlinearity={c.nonlinearity!r}"
        for name, default in (("bias", True), ("dropout", 0.0), ("bidirectional", False), ("proj_size", 0),
                              ("peepholes", False), ("input_dropout", 0.0), ("recurrent_dropout", 0.0),
                              ("zoneout", 0.0), ("weight_drop", 0.0)):
            if getattr(c, name) != default:
                text += f", {name}={getattr(c, name)}"
        return text + f", batch_first={c.batch_first}, engine={c.engine!r}"



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
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.cells.base import Recurrent
from rnnkit.cells.structured import Structured
from rnnkit.engine import BPTT, run_cell
from rnnkit.engine.dispatch import Plan, make_plan
from rnnkit.engine.fused import run_fused, run_fused_packed
from rnnkit.engine.gemm import linear
from rnnkit.engine.hooks import run_pre_hooks
from rnnkit.engine.kinds import fused_kind
from rnnkit.engine.masks import check_lengths, lengths_to_mask, resolve_mask
from rnnkit.engine.regularise import Regularisers
from rnnkit.engine.reset import check_reset, check_step_reset, restart, run_cell_reset
from rnnkit.errors import bad_argument
from rnnkit.init import Initializer, torch_default
from rnnkit.layers.config import LayerConfig, check_layer_args
from rnnkit.layers import regularised
from rnnkit.layers.export import to_torch
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


class RecurrentLayer(TorchNames):
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
            return self._forward_packed(x, state, bptt)
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
        plan = self._plan(x, B, _ragged(lens, T), prefix, bptt, step=False)
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
            y, finals = self._forward_generic(x.transpose(0, 1) if bf else x, hx, mask, bptt, plan,
                                              reset=restarts)  # (T, B, D*H)
            y = y.transpose(0, 1) if bf else y  # (B, T, D*H) or (T, B, D*H)
        if unbatched:
            y, finals = y.squeeze(0 if bf else 1), tuple(f.squeeze(1) for f in finals)
        return y, (finals if self.kind == "lstm" else finals[0])

    def _forward_packed(self, packed: PackedSequence, state: State | None,
                        bptt: BPTT | None) -> tuple[PackedSequence, State]:
        """A PackedSequence in, a PackedSequence out (same batch sizes and indices), torch's h_n order."""
        data = packed.data  # (N, F), the steps of all sequences, time-major
        self._check_input(data.unsqueeze(1), packed=True)
        B = int(packed.batch_sizes[0])
        hx = self._check_state(state, B, data)
        run_pre_hooks(*(m for d in self.directions() for m in (d.input, d.cell)))  # weight_norm, prune, ...
        plan = self._plan(data, B, int(packed.batch_sizes[-1]) != B, True, bptt, step=False)
        if plan.fused:
            if self.regularisers.active:
                packed = regularised.drop_packed_input(self, packed)
            out, finals = run_fused_packed(
                self.fused_kind, packed, hx, regularised.fused_weights(self), has_biases=self.config.bias,
                num_layers=self.num_layers, dropout=self.config.dropout, training=self.training,
                bidirectional=self.config.bidirectional, zero_state=state is None,
            )
        else:  # padded + lengths on the generic engine: no per-step packed kernels
            x, lens = pad_packed_sequence(packed)  # (T, B, F) in the caller's order, lens (B,) on the CPU
            T = x.shape[0]
            mask = None if int(lens.min()) == T else lengths_to_mask(lens, T, x.device)
            y, finals = self._forward_generic(x, hx, mask, bptt, plan)  # (T, B, D*H)
            if packed.sorted_indices is not None:
                y = y.index_select(1, packed.sorted_indices)  # (T, B, D*H), longest first
                lens = lens.index_select(0, packed.sorted_indices.cpu())
            out = PackedSequence(pack_padded_sequence(y, lens).data, packed.batch_sizes,
                                 packed.sorted_indices, packed.unsorted_indices)
        return out, (finals if self.kind == "lstm" else finals[0])

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
            finals_list: list[list[Tensor]] = [[] for _ in self.state_names]
            y = x
            for index, layer in enumerate(self.layers):
                if index and self.config.dropout and self.training:
                    y = F.dropout(y, self.config.dropout, training=True)
                cell = layer.fwd.cell
                proj = layer.fwd.input  # not called: its pre-hooks ran above, once
                out = cell.pack_outputs(cell.step(F.linear(y, proj.weight, proj.bias), *(h[index] for h in hx)))
                if reg.zoneout:  # s' = a s_new + (1 - a) s; a ~ Bernoulli(1 - p) in training, 1 - p in eval
                    a = 1.0 - reg.zoneout
                    out = tuple(torch.lerp(h[index], o, torch.bernoulli(torch.full_like(o, a)) if self.training else a)
                                for h, o in zip(hx, out))
                for i in range(len(self.state_names)):
                    finals_list[i].append(out[i])
                y = out[0]  # (B, H)
            finals = tuple(torch.stack(f, dim=0) for f in finals_list)  # (L, B, H)
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
        plan = self._plan(x, B, _ragged(lens, T), prefix, bptt, step=False)
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
            cost_dtype=_autocast_dtype(x),
        )

    @property
    def fused_kind(self) -> str:
        kind = fused_kind(self.layers[0].fwd.cell)
        if kind is None:
            raise ValueError(f"{type(self).__name__}: this cell configuration has no fused kernel")
        return kind

    def _forward_generic(
        self, x: Tensor, hx: tuple[Tensor, ...], mask: Tensor | None, bptt: BPTT | None, plan: Plan | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (T, B, F) time-major -> (y (T, B, D*H), finals (L*D, B, H) each); ``reset`` (B, T) or None."""
        D = self.num_directions
        finals: list[list[Tensor]] = [[] for _ in self.state_names]
        inp = x if x.is_contiguous() else x.contiguous()  # (T, B, F), once for both directions
        T, B = inp.shape[0], inp.shape[1]
        reg = self.regularisers if self.regularisers.active else None
        for index, layer in enumerate(self.layers):
            m_in = None if reg is None else reg.input_mask(B, (inp.shape[2],), inp, self.training)
            if m_in is not None:  # variational input dropout: one mask per sequence (B, F)
                inp = inp * m_in  # (T, B, F)
            outs = []
            for d, direction in enumerate(layer.directions()):
                k = index * D + d
                # Projections are computed time-major, (T, B, G*H), and handed over as (B, T, G*H)
                # views: the engine walks time-major buffers, so it takes them without a copy.
                xp = linear(inp, direction.input.weight, direction.input.bias).transpose(0, 1)  # one GEMM
                init = {name: hx[i][k] for i, name in enumerate(self.state_names)}
                scope = f"layer{index}.{'bwd' if d else 'fwd'}"
                masks = None if reg is None else reg.draw(direction.cell, B, T, inp, self.training)
                if reset is not None:  # segments between resets (rnnkit.engine.reset); zeros restart
                    result = run_cell_reset(run_cell, direction.cell, {"inputs": xp}, init, {}, reset, mask=mask,
                                            reverse=d == 1, bptt=bptt, scope=scope, contexts={}, plan=plan,
                                            regularise=masks)
                else:
                    result = run_cell(direction.cell, {"inputs": xp}, init, {}, mask=mask, reverse=d == 1,
                                      bptt=bptt, scope=scope, donate=True,
                                      rebuild=_rebuild(inp, direction.input.weight, direction.input.bias), plan=plan,
                                      regularise=masks)
                outs.append(result.outputs["h"].transpose(0, 1))  # (T, B, H)
                for i, name in enumerate(self.state_names):
                    finals[i].append(result.final[name])
            inp = outs[0] if D == 1 else torch.cat(outs, dim=2)  # (T, B, D*H)
            if self.config.dropout and self.training and index < self.num_layers - 1:
                inp = F.dropout(inp, self.config.dropout, training=True)
        return inp, tuple(torch.stack(f, dim=0) for f in finals)  # (L*D, B, H)

    # ------------------------------------------------------------------ checks
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

    def _check_state(self, state: State | None, batch: int, x: Tensor) -> tuple[Tensor, ...]:
        shapes = self._state_shapes(batch)
        n = len(self.state_names)
        if state is None:
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


def _rebuild(inp: Tensor, weight: Tensor, bias: Tensor | None):  # type: ignore[no-untyped-def]
    """Recomputes a donated projection's values (B, T, G) for a double backward; inp is (T, B, F)."""
    return lambda: linear(inp, weight, bias).transpose(0, 1)  # (B, T, G)


def _ragged(lens: Tensor | None, T: int) -> bool:
    """Some sequence is shorter than T (``lens`` (B,) on the CPU, or None)."""
    return lens is not None and lens.numel() > 0 and int(lens.min()) < T


def _autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype a float32 ``x`` runs as under an enabled autocast on its device (the fused kernels are
    autocast), else None; ``auto`` reads that dtype's rows of the cost table."""
    kind = x.device.type
    if x.dtype == torch.float32 and kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None

"""``LayerConfig``: what rebuilds an ``rnnkit.RNN``/``LSTM``/``GRU``, and the checks of its arguments.

The constructor arguments follow ``torch.nn.RNN``/``LSTM``/``GRU`` in name, order and meaning
(``batch_first`` is the one default rnnkit changes, see ``rnnkit.nn`` for torch's). Every value
is type-checked here, so ``bidirectional=0.1`` or ``batch_first="yes"`` raise instead of being
read as truthy.

    >>> check_layer_args("lstm", 8, 16, num_layers=2, bias=True, batch_first=False, dropout=0.1,
    ...                  bidirectional=True, proj_size=4, nonlinearity="tanh", peepholes=False,
    ...                  engine="auto").proj_size
    4
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

from rnnkit.cells import ACTIVATIONS
from rnnkit.engine.dispatch import check_engine
from rnnkit.engine.regularise import Regularisers
from rnnkit.errors import bad_argument, describe

__all__ = ["LayerConfig", "check_layer_args"]


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
    batch_first: bool = True  # True: x (B, T, F); False: x (T, B, F), torch.nn's default
    proj_size: int = 0  # LSTM only: 0, or the width P < H of a projected hidden state (torch's proj_size)
    # Recurrent regularisers (rnnkit.Regularisers), 0 = off:
    input_dropout: float = 0.0  # variational dropout on each layer's input, one mask per sequence
    recurrent_dropout: float = 0.0  # variational dropout on the state feeding the recurrent matmul
    zoneout: float = 0.0  # each state keeps its previous value with this probability (eval: expectation)
    weight_drop: float = 0.0  # DropConnect on W_hh, one mask per forward call (AWD-LSTM)

    @property
    def regularisers(self) -> Regularisers:
        """The layer's regularisers as an ``rnnkit.Regularisers``."""
        return Regularisers(self.input_dropout, self.recurrent_dropout, self.zoneout, self.weight_drop)


def _int(name: str, value: object, low: int, fix: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        expected = "a positive int" if low == 1 else f"an int >= {low}"
        raise bad_argument(name, expected, describe(value), fix)
    return int(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):  # numpy bools included via the value check below
        if type(value).__name__ == "bool_":
            return bool(value)
        raise bad_argument(name, "a bool (True or False)", describe(value), f"pass {name}=True or {name}=False")
    return value


def check_layer_args(
    kind: str, input_size: object, hidden_size: object, *, num_layers: object, bias: object,
    batch_first: object, dropout: object, bidirectional: object, proj_size: object, nonlinearity: object,
    peepholes: object, engine: object, warn_dropout: bool = False, input_dropout: object = 0.0,
    recurrent_dropout: object = 0.0, zoneout: object = 0.0, weight_drop: object = 0.0,
) -> LayerConfig:
    """Validate a layer's constructor arguments and return its config; ValueError on bad input.

    ``warn_dropout``: warn, as torch.nn does, that dropout does nothing in a single-layer stack.
    """
    input_size = _int("input_size", input_size, 1, "pass the number of input features, e.g. input_size=8")
    hidden_size = _int("hidden_size", hidden_size, 1, "pass e.g. hidden_size=64")
    num_layers = _int("num_layers", num_layers, 1, "pass e.g. num_layers=1 or more")
    proj_size = _int("proj_size", proj_size, 0, "pass proj_size=0 (no projection) or a width below hidden_size")
    if proj_size and kind != "lstm":
        raise bad_argument("proj_size", "0 (only LSTM has projections)", proj_size, "drop proj_size")
    if proj_size >= hidden_size:
        raise bad_argument("proj_size", f"an int smaller than hidden_size = {hidden_size}", proj_size,
                           f"pass proj_size < {hidden_size}, or 0 for no projection")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= float(dropout) <= 1.0:
        raise bad_argument("dropout", "a probability in [0, 1]", describe(dropout), "use e.g. dropout=0.2")
    if warn_dropout and float(dropout) > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                      f"expects num_layers greater than 1, but got dropout={dropout} and num_layers=1",
                      UserWarning, stacklevel=4)
    if not isinstance(nonlinearity, str) or nonlinearity not in ACTIVATIONS:
        raise bad_argument("nonlinearity", f"one of {sorted(ACTIVATIONS)}", describe(nonlinearity),
                           "use 'tanh' or 'relu' (fused) or 'identity' (generic engine)")
    if not isinstance(engine, str):
        raise bad_argument("engine", "one of 'auto', 'fused', 'generic'", describe(engine), "pass engine='auto'")
    reg = Regularisers(input_dropout, recurrent_dropout, zoneout, weight_drop)  # type: ignore[arg-type]
    if proj_size and (reg.recurrent_dropout or reg.weight_drop):
        name = "recurrent_dropout" if reg.recurrent_dropout else "weight_drop"
        raise bad_argument(name, "0 with proj_size (the projected LSTM has two recurrent matrices)",
                           getattr(reg, name), "drop proj_size, or use zoneout / input_dropout")
    return LayerConfig(
        kind=kind, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
        bidirectional=_bool("bidirectional", bidirectional), dropout=float(dropout), bias=_bool("bias", bias),
        nonlinearity=nonlinearity, peepholes=_bool("peepholes", peepholes), engine=check_engine(engine),
        batch_first=_bool("batch_first", batch_first), proj_size=proj_size, input_dropout=reg.input_dropout,
        recurrent_dropout=reg.recurrent_dropout, zoneout=reg.zoneout, weight_drop=reg.weight_drop,
    )

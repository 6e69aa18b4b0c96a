"""The recurrent body every ready-made model shares, and its config."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rnnkit.errors import bad_argument
from rnnkit.layers import GRU, LSTM, RNN, RecurrentLayer

__all__ = ["CELLS", "RNNConfig", "build_rnn", "final_hidden"]

CELLS = ("elman", "lstm", "gru")


@dataclass(frozen=True)
class RNNConfig:
    """Which recurrent stack a model uses."""

    cell: str = "lstm"  # "elman" | "lstm" | "gru"
    hidden_size: int = 64  # units per direction and layer
    num_layers: int = 1  # stacked layers
    bidirectional: bool = False  # a reverse direction too (not for next-step prediction)
    dropout: float = 0.0  # between stacked layers, training only
    nonlinearity: str = "tanh"  # Elman only: "tanh" | "relu" | "identity"
    engine: str = "auto"  # "auto" | "fused" | "generic"
    # recurrent regularisers (rnnkit.Regularisers), 0 = off
    input_dropout: float = 0.0  # variational dropout on each layer's input
    recurrent_dropout: float = 0.0  # variational dropout on the state feeding the recurrent matmul
    zoneout: float = 0.0  # each state keeps its previous value with this probability
    weight_drop: float = 0.0  # DropConnect on W_hh (AWD-LSTM)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise bad_argument("cell", f"one of {', '.join(CELLS)}", self.cell, "pick e.g. cell='lstm'")
        for name in ("hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad_argument(name, "a positive int", value, f"pass e.g. {name}=64" if name == "hidden_size" else "pass e.g. 1")

    @property
    def output_size(self) -> int:
        """Width of the stack's output: directions x hidden_size."""
        return self.hidden_size * (2 if self.bidirectional else 1)


def build_rnn(config: RNNConfig, input_size: int) -> RecurrentLayer:
    """The rnnkit layer for ``config`` reading ``input_size`` features."""
    common = dict(num_layers=config.num_layers, bidirectional=config.bidirectional,
                  dropout=config.dropout, engine=config.engine, input_dropout=config.input_dropout,
                  recurrent_dropout=config.recurrent_dropout, zoneout=config.zoneout,
                  weight_drop=config.weight_drop)
    if config.cell == "lstm":
        return LSTM(input_size, config.hidden_size, **common)
    if config.cell == "gru":
        return GRU(input_size, config.hidden_size, **common)
    return RNN(input_size, config.hidden_size, nonlinearity=config.nonlinearity, **common)


def final_hidden(h_n: Tensor, num_layers: int, bidirectional: bool) -> Tensor:
    """The top layer's final hidden state(s): (L*D, B, H) -> (B, D*H)."""
    if bidirectional:
        return h_n.view(num_layers, 2, *h_n.shape[1:])[-1].transpose(0, 1).flatten(1)  # (B, 2H)
    return h_n[-1]  # (B, H)

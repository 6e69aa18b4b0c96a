"""Layers: input projection + engine. Drop-in RNN/LSTM/GRU, Bidirectional, Stack, torch conversion."""
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.cell_layer import CellLayer
from rnnkit.layers.classes import GRU, LSTM, RNN
from rnnkit.layers.config import LayerConfig
from rnnkit.layers.convert import from_torch, to_torch
from rnnkit.layers.projected import ProjectedLSTMCell
from rnnkit.layers.recurrent import RecurrentLayer
from rnnkit.layers.stack import Stack
from rnnkit.layers.stream import Stream
from rnnkit.layers.torch_names import legacy_renames, upgrade_legacy_keys

__all__ = ["Bidirectional", "CellLayer", "GRU", "LSTM", "LayerConfig", "ProjectedLSTMCell", "RNN", "RecurrentLayer", "Stack", "Stream",
           "from_torch", "legacy_renames", "to_torch",
           "upgrade_legacy_keys"]

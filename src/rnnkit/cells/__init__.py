"""Cells: one time step each. Built-in cells take the input already projected by a layer.

Write your own by subclassing :class:`Recurrent` (any step) or :class:`Structured` (a step that
is one recurrent matmul then pointwise math, which the generic engine runs fastest).
"""
from rnnkit.cells.base import Recurrent, Scan
from rnnkit.cells.elman import ACTIVATIONS, ElmanCell, SimpleRecurrent
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.layernorm_gru import LayerNormGRUCell
from rnnkit.cells.layernorm_lstm import LayerNormLSTMCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.structured import Structured

__all__ = [
    "ACTIVATIONS", "ElmanCell", "GRUCell", "LSTMCell", "LayerNormGRUCell", "LayerNormLSTMCell", "Recurrent",
    "Scan", "SimpleRecurrent", "Structured",
]

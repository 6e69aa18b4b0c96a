"""Cells: one time step each, run over time when called. Built-in cells take the input already projected by a layer.

Write your own by subclassing :class:`Recurrent` (any step) or :class:`Structured` (a step that
is one recurrent matmul then pointwise math, which the generic engine compiles to native code).
A cell is its step's pure math (``rnnkit.steps``) plus the engine's Blocks-style call
(``rnnkit.engine.call``): this package imports the engine, the engine imports only the steps.

    >>> import torch, rnnkit
    >>> h = rnnkit.cells.GRUCell(4)(torch.zeros(2, 5, 12))     # (B, T, 3H) -> (B, T, H)
    >>> tuple(h.shape)
    (2, 5, 4)
"""
from rnnkit.cells.base import Recurrent, Scan
from rnnkit.cells.builtin import ElmanCell, GRUCell, LayerNormGRUCell, LayerNormLSTMCell, LSTMCell, SimpleRecurrent
from rnnkit.cells.structured import Structured
from rnnkit.steps.elman import ACTIVATIONS

__all__ = [
    "ACTIVATIONS", "ElmanCell", "GRUCell", "LSTMCell", "LayerNormGRUCell", "LayerNormLSTMCell", "Recurrent",
    "Scan", "SimpleRecurrent", "Structured",
]

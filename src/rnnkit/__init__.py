"""rnnkit: recurrent neural networks on PyTorch.

Write one step and get the whole sequence (``rnnkit.Recurrent``), or use the drop-in layers
``rnnkit.RNN``/``LSTM``/``GRU``, which run on PyTorch's fused kernels where they can.
"""
from __future__ import annotations

from rnnkit import cells, engine, init
from rnnkit.cells import Recurrent, Structured
from rnnkit.engine import BPTT, GradientTap
from rnnkit.errors import CheckpointError
from rnnkit.layers import GRU, LSTM, RNN, Bidirectional, Stack, from_torch
from rnnkit.training.checkpoint import load, save

__version__ = "0.1.0"

__all__ = [
    "BPTT", "Bidirectional", "CheckpointError", "GRU", "GradientTap", "LSTM", "RNN", "Recurrent", "Stack", "Structured",
    "__version__", "cells", "engine", "from_torch", "init", "load", "save",
]

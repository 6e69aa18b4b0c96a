"""rnnkit: recurrent neural networks on PyTorch.

Write one step and get the whole sequence (``rnnkit.Recurrent``), or use the drop-in layers
``rnnkit.RNN``/``LSTM``/``GRU``, which run on PyTorch's fused kernels where they can.
``rnnkit.save``/``rnnkit.load`` store and rebuild the layers and the built-in models
(``rnnkit.checkpoint``); importing rnnkit loads no training or generation code.
"""
from __future__ import annotations

from rnnkit import cells, engine, init, models, nn
from rnnkit._version import __version__
from rnnkit.accelerate import accelerate
from rnnkit.cells import Recurrent, Structured
from rnnkit.checkpoint import CheckpointError, load, save
from rnnkit.engine import BPTT, GradientTap, Regularisers
from rnnkit.layers import GRU, LSTM, RNN, Bidirectional, Stack, Stream, from_torch

__all__ = [
    "BPTT", "Bidirectional", "CheckpointError", "GRU", "GradientTap", "LSTM", "RNN", "Recurrent", "Regularisers",
    "Stack", "Stream", "Structured",
    "__version__", "cells", "engine", "from_torch", "accelerate", "init", "load", "models", "nn", "save",
]

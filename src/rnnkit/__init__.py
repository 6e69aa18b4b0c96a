"""rnnkit: recurrent neural networks on PyTorch.

Write one step and get the whole sequence, or use drop-in layers that run on PyTorch's fused
kernels where they can. Importing rnnkit loads no training or generation code.

Layers (batch-first; torch.nn's constructor and results):
    ``RNN``, ``LSTM``, ``GRU``     multi-layer, bidirectional, ``engine="auto" | "fused" | "generic"``
    ``Stack``, ``Bidirectional``   compose layers or cells; ``from_torch`` converts a torch.nn layer
    ``Stream``                     carry a layer's state across calls, chunk after chunk (``reset=``)
    ``rnnkit.nn``                  the same layers with torch.nn's defaults, for code written against it
Your own cell:
    ``Recurrent``, ``Structured``  write ``step`` (or ``pointwise``); the engine runs the sequence
    ``CellLayer``                  your cell with its input projection, run as the built-in layers are
    ``rnnkit.cells``               the built-in cells (Elman, LSTM, GRU, LayerNorm-LSTM/GRU, ...)
Training options: ``BPTT`` (truncation, clipping), ``GradientTap`` (per-step gradient norms), ``Regularisers``
(variational dropout, zoneout, DropConnect),
``accelerate`` (swap a model's torch.nn RNNs for rnnkit's). Saving: ``save``, ``load``, ``CheckpointError``
(safetensors + JSON). Models: ``rnnkit.models``; initialisers: ``rnnkit.init``. Training, sampling
and evaluation from the shell: the ``rnnkit`` command (``rnnkit train --help``).

    >>> import torch, rnnkit
    >>> y, (h, c) = rnnkit.LSTM(4, 8)(torch.randn(2, 5, 4))   # x (B, T, F)
    >>> tuple(y.shape), tuple(h.shape)                         # (B, T, H), (L, B, H)
    ((2, 5, 8), (1, 2, 8))

``help(rnnkit.LSTM)`` (any layer) starts with the class's own documentation; the torch.nn.Module
methods it inherits follow at the end.
"""
from __future__ import annotations

from rnnkit import cells, engine, init, models, nn, steps
from rnnkit._version import __version__
from rnnkit.accelerate import accelerate
from rnnkit.cells import Recurrent, Structured
from rnnkit.checkpoint import CheckpointError, load, save
from rnnkit.engine import BPTT, GradientTap, Regularisers, explain
from rnnkit.layers import GRU, LSTM, RNN, Bidirectional, CellLayer, Stack, Stream, from_torch

__all__ = [
    "BPTT", "Bidirectional", "CellLayer", "CheckpointError", "GRU", "GradientTap", "LSTM", "RNN", "Recurrent", "Regularisers",
    "Stack", "Stream", "Structured",
    "__version__", "cells", "engine", "explain", "from_torch", "accelerate", "init", "load", "models", "nn", "save",
    "steps",
]

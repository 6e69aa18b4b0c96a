"""Steps: the pure math of one time step of every cell, built-in or custom. No engine here.

A step declares its sequences, states, contexts and outputs and computes one time step
(``step``); a structured step is one recurrent matmul then ``pointwise`` math. The engine
(``rnnkit.engine``) imports these classes to run them over time and to recognise the built-in
math (``rnnkit.engine.fused_kind``); nothing here imports the engine. The cells you call,
``rnnkit.Recurrent``, ``rnnkit.Structured`` and ``rnnkit.cells.*``, are these steps plus the
engine's Blocks-style call, so ``rnnkit.cells.LSTMCell`` is an ``LSTMStep``.

    >>> import torch
    >>> h = ElmanStep(3, activation="identity").step(torch.ones(2, 3), torch.zeros(2, 3))   # (B, H)
    >>> tuple(h.shape)
    (2, 3)
"""
from rnnkit.steps.base import RecurrentStep
from rnnkit.steps.elman import ACTIVATIONS, ElmanStep
from rnnkit.steps.gru import GRUStep
from rnnkit.steps.layernorm_gru import LayerNormGRUStep
from rnnkit.steps.layernorm_lstm import LayerNormLSTMStep
from rnnkit.steps.lstm import LSTMStep
from rnnkit.steps.projected import ProjectedLSTMStep
from rnnkit.steps.structured import StructuredStep

__all__ = [
    "ACTIVATIONS", "ElmanStep", "GRUStep", "LSTMStep", "LayerNormGRUStep", "LayerNormLSTMStep", "ProjectedLSTMStep",
    "RecurrentStep", "StructuredStep",
]

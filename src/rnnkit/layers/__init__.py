"""Layers: input projection + engine. Drop-in RNN/LSTM/GRU, Bidirectional, Stack, torch conversion."""
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.convert import from_torch, to_torch
from rnnkit.layers.recurrent import GRU, LSTM, RNN, LayerConfig, RecurrentLayer
from rnnkit.layers.stack import Stack

__all__ = ["Bidirectional", "GRU", "LSTM", "LayerConfig", "RNN", "RecurrentLayer", "Stack", "from_torch", "to_torch"]

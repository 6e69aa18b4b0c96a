"""Layers: input projection + engine. Drop-in RNN/LSTM/GRU, Bidirectional, Stack, torch conversion."""
from rnnkit.layers.recurrent import GRU, LSTM, RNN, LayerConfig, RecurrentLayer

__all__ = ["GRU", "LSTM", "RNN", "LayerConfig", "RecurrentLayer"]

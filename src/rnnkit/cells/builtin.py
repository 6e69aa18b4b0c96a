"""The built-in cells you call: each is its step's math (``rnnkit.steps``) plus the engine's call.

Every built-in cell reads an input already projected by a layer, as in Blocks. Calling one runs
it over time (``cell(x)``, ``cell.scan(x)``); ``cell.step(...)`` is one step. The math, and the
arguments each takes, are in the step class it inherits from (``LSTMCell`` is an ``LSTMStep``).
"""
from __future__ import annotations

from rnnkit.cells.structured import Structured
from rnnkit.steps import ElmanStep, GRUStep, LayerNormGRUStep, LayerNormLSTMStep, LSTMStep

__all__ = ["ElmanCell", "GRUCell", "LSTMCell", "LayerNormGRUCell", "LayerNormLSTMCell", "SimpleRecurrent"]


class ElmanCell(ElmanStep, Structured):
    """Elman's simple recurrent transition on an already-projected input.

    ``inputs`` is x_t W_ih^T + b_ih, (B, H); the step is ``h' = act(inputs + h W^T + b)``. With
    ``activation="identity"`` and ``weight_init=init.identity()`` it is the accumulator of the
    Blocks tutorial::

        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.ElmanCell(3, activation="identity", weight_init=rnnkit.init.identity())
        >>> cell(torch.ones(1, 3, 3))[0, :, 0].tolist()    # (B, T, H)
        [1.0, 2.0, 3.0]
    """


class LSTMCell(LSTMStep, Structured):
    """LSTM transition on an already-projected input, gate order (i, f, g, o) as in torch.nn.

    ``inputs`` is x_t W_ih^T + b_ih, (B, 4H)::

        i, f, g, o = split(inputs + h W^T + b)           # each (B, H)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    ``peepholes=True`` adds Gers & Schmidhuber's diagonal peepholes: the i and f gates see the
    previous cell c, the o gate sees the new cell c'. ``forget_bias`` initialises the forget
    slice of the recurrent bias (Jozefowicz et al. 2015 recommend 1.0).

        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.LSTMCell(4)
        >>> h, c = cell(torch.zeros(2, 5, 16))      # (B, T, 4H) -> (B, T, H) twice
        >>> tuple(h.shape), tuple(c.shape)
        ((2, 5, 4), (2, 5, 4))
    """


class GRUCell(GRUStep, Structured):
    """GRU transition on an already-projected input, gate order (r, z, n) as in torch.nn.

    ``inputs`` is x_t W_ih^T + b_ih, (B, 3H); ``hw = h W^T + b`` (B, 3H)::

        r = sigmoid(x_r + hw_r);  z = sigmoid(x_z + hw_z)
        n = tanh(x_n + r * hw_n)                  # reset applied after the matmul
        h' = (1 - z) * n + z * h

        >>> import torch, rnnkit
        >>> tuple(rnnkit.cells.GRUCell(4)(torch.zeros(2, 5, 12)).shape)   # (B, T, 3H) -> (B, T, H)
        (2, 5, 4)
    """


class LayerNormLSTMCell(LayerNormLSTMStep, Structured):
    """LSTM with layer normalisation of the input and recurrent contributions and of the cell.

    ``inputs`` is the projected input x_t W_ih^T (B, 4H); the recurrent matmul carries no bias,
    the gain/bias of the layer norms do that job::

        gates = LN_x(inputs) + LN_h(h W^T) + b
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(LN_c(c'))

        >>> import torch, rnnkit
        >>> h, c = rnnkit.cells.LayerNormLSTMCell(4)(torch.randn(2, 5, 16))
        >>> tuple(h.shape)
        (2, 5, 4)
    """


class LayerNormGRUCell(LayerNormGRUStep, Structured):
    """GRU (reset-after, gate order r, z, n) with layer normalisation of both contributions.

    ``inputs`` is the projected input x_t W_ih^T (B, 3H); the recurrent matmul carries no bias, the
    gate bias and the layer norms' gains do that job::

        a = LN_x(inputs) + b;  q = LN_h(h W^T)                 # each (B, 3H), LN over all 3H
        r = sigmoid(a_r + q_r);  z = sigmoid(a_z + q_z)
        n = tanh(a_n + r * q_n);  h' = (1 - z) * n + z * h

        >>> import torch, rnnkit
        >>> tuple(rnnkit.cells.LayerNormGRUCell(4)(torch.randn(2, 5, 12)).shape)   # (B, T, 3H) -> (B, T, H)
        (2, 5, 4)
    """


SimpleRecurrent = ElmanCell  # Blocks' name for the same brick

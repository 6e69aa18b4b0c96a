"""Weight initialisers, as objects you hand to a cell (Blocks' ``weights_init=`` style).

Each initialiser is a callable that fills a tensor in place and returns it. Recurrent weights
of gated cells are stacks of G square blocks, (G*H, H); ``identity`` and ``orthogonal`` work
block by block, so every gate's recurrent matrix gets the property on its own.

    >>> import torch
    >>> from rnnkit import init
    >>> w = init.identity(2.0)(torch.empty(3, 3))
    >>> w.diagonal().tolist()
    [2.0, 2.0, 2.0]
    >>> w = init.spectral(radius=1.0)(torch.empty(10, 10))   # seed 001's rescaling
    >>> round(torch.linalg.matrix_norm(w, ord=2).item(), 5)
    1.0
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from rnnkit.errors import bad_argument

__all__ = ["Initializer", "identity", "orthogonal", "spectral", "constant", "uniform", "torch_default"]

Initializer = Callable[[Tensor], Tensor]


def _blocks(tensor: Tensor) -> list[Tensor]:
    """Split a (G*H, H) matrix into its G square (H, H) blocks; other shapes stay whole."""
    if tensor.dim() != 2:
        raise bad_argument("tensor", "a 2-D weight matrix", tensor, "apply this initialiser to a matrix")
    rows, cols = tensor.shape
    if rows > cols and rows % cols == 0:
        return list(tensor.split(cols, dim=0))  # G x (H, H)
    return [tensor]


def identity(scale: float = 1.0) -> Initializer:
    """Scaled identity per square block (Blocks' ``Identity(mult)``; Le et al.'s IRNN)."""

    def fill(tensor: Tensor) -> Tensor:
        with torch.no_grad():
            for block in _blocks(tensor):
                nn.init.eye_(block)
                block.mul_(scale)
        return tensor

    return fill


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix per square block (Saxe et al.), times ``gain``."""

    def fill(tensor: Tensor) -> Tensor:
        with torch.no_grad():
            for block in _blocks(tensor):
                nn.init.orthogonal_(block, gain=gain)
        return tensor

    return fill


def spectral(radius: float = 1.0, low: float = -1.0, high: float = 1.0) -> Initializer:
    """Uniform(low, high) entries rescaled so the largest singular value equals ``radius``.

    This is seed 001's ``sample_weights``: it fixes the largest singular value, which governs
    whether gradients vanish or explode through a tanh recurrence (Pascanu et al. 2013).
    """
    if radius <= 0:
        raise bad_argument("radius", "a positive largest singular value", radius, "use e.g. radius=1.0")

    def fill(tensor: Tensor) -> Tensor:
        if tensor.dim() != 2:
            raise bad_argument("tensor", "a 2-D weight matrix", tensor, "apply spectral() to a matrix")
        with torch.no_grad():
            nn.init.uniform_(tensor, low, high)
            sigma = torch.linalg.matrix_norm(tensor.double(), ord=2)
            tensor.mul_(radius / sigma.item())
        return tensor

    return fill


def constant(value: float) -> Initializer:
    """Every entry equal to ``value`` (Blocks' ``Constant``)."""

    def fill(tensor: Tensor) -> Tensor:
        with torch.no_grad():
            nn.init.constant_(tensor, value)
        return tensor

    return fill


def uniform(low: float, high: float) -> Initializer:
    """Entries drawn from Uniform(low, high)."""
    if not low < high:
        raise bad_argument("low, high", "low < high", f"low={low}, high={high}", "swap or widen the bounds")

    def fill(tensor: Tensor) -> Tensor:
        with torch.no_grad():
            nn.init.uniform_(tensor, low, high)
        return tensor

    return fill


def torch_default(hidden_size: int) -> Initializer:
    """torch.nn.RNN/LSTM/GRU's default: Uniform(-1/sqrt(H), 1/sqrt(H)) for every tensor."""
    bound = hidden_size ** -0.5
    return uniform(-bound, bound)

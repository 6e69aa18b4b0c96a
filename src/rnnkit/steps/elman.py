"""The Elman (simple recurrent) cell: h' = act(x + h W^T + b)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from rnnkit.steps.structured import StructuredStep
from rnnkit.errors import bad_argument
from rnnkit.init import Initializer

__all__ = ["ACTIVATIONS", "ElmanStep"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda a: a,
}


class ElmanStep(StructuredStep):
    """Elman's simple recurrent transition on an already-projected input (the math of ``rnnkit.cells.ElmanCell``).

    ``inputs`` is x_t W_ih^T + b_ih, (B, H); the step is ``h' = act(inputs + h W^T + b)``. With
    ``activation="identity"`` and ``weight_init=init.identity()`` it is the accumulator of the
    Blocks tutorial::

        >>> import torch, rnnkit
        >>> step = ElmanStep(3, activation="identity", weight_init=rnnkit.init.identity())
        >>> step.step(torch.ones(1, 3), torch.ones(1, 3))[0].tolist()    # (B, H), (B, H) -> (B, H)
        [2.0, 2.0, 2.0]
    """

    states = ("h",)
    gates = 1

    def __init__(
        self,
        hidden_size: int,
        activation: str = "tanh",  # "tanh" | "relu" | "identity"
        *,
        bias: bool = True,
        weight_init: Initializer | None = None,
        bias_init: Initializer | None = None,
        learn_initial_state: bool = False,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise bad_argument(
                "activation", f"one of {sorted(ACTIVATIONS)}", activation,
                "pick a built-in activation, or write a custom cell for another one",
            )
        super().__init__(
            hidden_size, bias=bias, weight_init=weight_init, bias_init=bias_init,
            learn_initial_state=learn_initial_state,
        )
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:  # type: ignore[override]
        return self._act(inputs + hw)  # (B, H)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


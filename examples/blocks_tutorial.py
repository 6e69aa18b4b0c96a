"""Seed 000, the Blocks recurrent-bricks tutorial, in rnnkit: every number it prints, and its two "Todo"s.

Blocks is time-major, (T, B, F) = (3, 1, 3); rnnkit is batch-first, so the tutorial's
``numpy.ones((3, 1, 3))`` is ``torch.ones(1, 3, 3)`` here and each printed row is one time step.
Nothing is trained: identity weights make every number exact.

    python examples/blocks_tutorial.py [--out runs/examples/blocks] [--quick]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells import ElmanCell


def accumulator(dim: int = 3) -> ElmanCell:
    """h_t = x_t + h_{t-1}: an identity activation and identity recurrent weights."""
    return ElmanCell(dim, activation="identity", weight_init=rnnkit.init.identity())


class FeedbackRNN(rnnkit.Recurrent):
    """Two accumulators in one step: the first also reads the second's state (Blocks' iterate=False)."""

    states = ("first", "second")

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.first_layer, self.second_layer = accumulator(dim), accumulator(dim)

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.dim,)

    def step(self, inputs: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        first_h = self.first_layer.step(inputs, first + second)  # (B, H): a single step of another cell
        second_h = self.second_layer.step(first_h, second)  # (B, H)
        return first_h, second_h


def rows(y: Tensor) -> list[list[float]]:
    """(1, T, H) -> T rows of H values, as the tutorial prints them (one row per time step)."""
    return y[0].tolist()


def main(argv: list[str] | None = None) -> dict[str, list[list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/examples/blocks", help="folder for blocks_tutorial.png")
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry: the full run is instant")
    args = parser.parse_args(argv)
    x = torch.ones(1, 3, 3)  # (B, T, F)
    rnn = accumulator()
    doubler = nn.Linear(3, 3)  # Blocks applies W x_t outside the recurrent brick; so does rnnkit
    rnnkit.init.identity(2.0)(doubler.weight.data)
    nn.init.zeros_(doubler.bias)
    h0 = torch.ones(1, 3)  # (B, H)
    feedback = FeedbackRNN(3)
    first, second = feedback(x)  # (B, T, H) each
    step_first, step_second = torch.zeros(1, 3), torch.zeros(1, 3)
    single = []
    for t in range(3):  # the single-step use: chain the steps by hand
        step_first, step_second = feedback(x[:, t], first=step_first, second=step_second, iterate=False)
        single.append(step_second[0].tolist())
    identity = dict(input_init=rnnkit.init.identity(), recurrent_init=rnnkit.init.identity())
    deep = rnnkit.RNN(3, 3, num_layers=3, nonlinearity="identity", **identity)
    bidir = rnnkit.RNN(3, 3, bidirectional=True, nonlinearity="identity", **identity)
    with torch.no_grad():
        _, h_deep = deep(x)  # h (L, B, H): the last step of each layer
        y_bi, _ = bidir(x)  # (B, T, 2H): forward units, then backward units
        results = {
            "accumulator": rows(rnn(x)),
            "doubler": rows(rnn(doubler(x))),
            "initial state 1": rows(rnn(x, h=h0)),
            "reverse": rows(rnn(torch.tensor([[[1.0] * 3, [2.0] * 3, [3.0] * 3]]), reverse=True)),
            "return_initial_states": rows(rnn(x, h=h0, return_initial_states=True)),
            "return_initial_states reverse": rows(rnn(x, h=h0, reverse=True, return_initial_states=True)),
            "feedback first": rows(first),
            "feedback second": rows(second),
            "single steps (second)": single,
            "deep 3 layers, last steps": h_deep[:, 0].tolist(),
            "bidirectional forward": rows(y_bi[..., :3]),
            "bidirectional backward": rows(y_bi[..., 3:]),
        }
    for name, values in results.items():
        print(f"{name:>30}: {values}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("accumulator", "doubler", "initial state 1", "feedback first", "feedback second"):
        ax.plot(range(1, 4), [row[0] for row in results[name]], marker="o", label=name)
    ax.set(xlabel="time step t", ylabel="h_t (every unit)", title="Seed 000: the Blocks tutorial's states", xticks=[1, 2, 3])
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "blocks_tutorial.png", dpi=100)
    print(f"figure: {out / 'blocks_tutorial.png'}")
    return results


if __name__ == "__main__":
    main()

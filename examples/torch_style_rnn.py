"""Seed 003, an RNN the Torch7 way: mini-batches, tied parameters, one flat parameter vector.

The seed builds ``h_t = tanh(Linear(9, 8)(JoinTable(x_t, h_{t-1})))`` with nngraph, clones it
per time step with tied weights, flattens every parameter into one vector for a generic
optimiser, and trains a sequence -> one value regression with ``-hidden 26 -batch 20 -rate 0.02``:
755 parameters. Here:

* **the cell** is that step written once with rnnkit's custom-cell API; the engine runs it over
  time, so the parameters are shared across time by construction (one Linear, any length);
* **mini-batches** hold sequences of different lengths, padded, with a mask: padded steps carry
  the state over, so the final state of each sequence is the one after its own last real step;
* **one flat vector**: every parameter (and its gradient) is re-pointed into one contiguous
  tensor, as Torch7's ``getParameters()`` does, and a generic optimiser (``torch.optim.Adam`` at
  the seed's rate 0.02) sees that one vector and a ``feval`` that fills its gradient.

The toy data: x_t ~ N(0, 1), 3 to 12 steps; the target is the mean of the sequence.

    python examples/torch_style_rnn.py [--epochs 30] [--out runs/examples/torch_style] [--quick]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.data.batching import pad_sequences


class JoinCell(rnnkit.Recurrent):
    """h' = tanh(W [x, h] + b): the seed's JoinTable + Linear(F + H, H), one step."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.linear = nn.Linear(features + hidden, hidden)  # shared by every time step

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.hidden,)

    def step(self, inputs: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(self.linear(torch.cat([inputs, h], dim=-1)))  # (B, H)


class SequenceToOne(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.cell, self.head = JoinCell(1, hidden), nn.Linear(hidden, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        final = self.cell.scan(x, mask=mask).final["h"]  # (B, H) after each sequence's last real step
        return self.head(final)[:, 0]  # (B,)


def flatten(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Point every parameter and gradient into one vector each (Torch7's getParameters)."""
    params = list(model.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))  # (P,)
    grad = torch.zeros_like(flat)  # (P,)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)  # a view: updating flat updates the model
        p.grad = grad[offset:offset + n].view_as(p)  # backward accumulates into grad in place
        offset += n
    flat.grad = grad
    return flat, grad


def make_data(n: int, generator: torch.Generator) -> tuple[list[Tensor], Tensor]:
    lengths = torch.randint(3, 13, (n,), generator=generator)
    xs = [torch.randn(int(t), 1, generator=generator) for t in lengths]  # each (T_i, 1)
    return xs, torch.stack([x.mean() for x in xs])  # (N,)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="passes over the 2,000 training sequences (30)")
    parser.add_argument("--out", default="runs/examples/torch_style", help="folder for torch_style_rnn.png")
    parser.add_argument("--quick", action="store_true", help="6 epochs")
    args = parser.parse_args(argv)
    epochs = args.epochs or (6 if args.quick else 30)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    (train_x, train_y), (val_x, val_y) = make_data(2000, gen), make_data(500, gen)
    model = SequenceToOne(hidden=26)
    flat, grad = flatten(model)
    print(f"parameters: {flat.numel()} in one flat vector (seed 003: 755)")
    val_batch, val_mask, _ = pad_sequences(val_x)  # (N, T, 1), (N, T)

    def feval(xs: list[Tensor], ys: Tensor) -> float:
        """The loss of one mini-batch; its gradient lands in the flat ``grad`` (= flat.grad)."""
        grad.zero_()
        batch, mask, _ = pad_sequences(xs)  # (B, T, 1), (B, T)
        loss = ((model(batch, mask) - ys) ** 2).mean()
        loss.backward()
        return loss.item()

    optimizer = torch.optim.Adam([flat], lr=0.02)  # generic: it sees one vector, not the network
    curve = []
    for epoch in range(epochs):
        order = torch.randperm(len(train_x), generator=gen)
        for start in range(0, len(order), 20):  # batch 20
            idx = order[start:start + 20].tolist()
            optimizer.step(lambda: feval([train_x[i] for i in idx], train_y[idx]))
        with torch.no_grad():
            curve.append(((model(val_batch, val_mask) - val_y) ** 2).mean().item())
        print(f"epoch {epoch + 1:>2}: validation MSE {curve[-1]:.4f}")
    baseline = ((val_y - train_y.mean()) ** 2).mean().item()
    print(f"validation MSE {curve[-1]:.4f} against {baseline:.4f} for predicting the mean "
          f"({curve[-1] / baseline:.1%} of it)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, epochs + 1), curve, marker="o", label="rnnkit JoinCell, hidden 26 (755 parameters)")
    ax.axhline(baseline, color="gray", linestyle="--", label="predict the mean")
    ax.set(xlabel="epoch", ylabel="validation MSE", title="Seed 003: sequence -> one value", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "torch_style_rnn.png", dpi=100)
    print(f"figure: {out / 'torch_style_rnn.png'}")
    return {"parameters": flat.numel(), "val_mse": curve[-1], "baseline_mse": baseline}


if __name__ == "__main__":
    main()

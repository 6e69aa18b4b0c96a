"""Seed 001, the Elman network: the Reber grammar, its embedded version, and the sine/cosine exercise.

1. An Elman net learns the Reber grammar (next-symbol sets, one sigmoid per symbol, as the seed);
   the learning curve is plotted, one word's per-step predictions are printed against the
   targets, and words sampled from the net are checked against the grammar.
2. The embedded grammar, Elman against LSTM under the seed's own recipe (hidden 10, plain SGD
   lr 0.2, one word per step, learned h0), with the figures as measured: seed 001 says the
   Elman net cannot carry the long-range dependency. Then an LSTM under the modern recipe
   (hidden 64, Adam 1e-2, batch 16: the recipe ``rnnkit train``'s main job was built on).
3. The exercise: a 4-unit Elman net regresses seed 001's sine/cosine sequences (SGD lr 0.1).

The full run uses the seed's recipe throughout (at most 10,000 words for part 1, 40,000 per
run and 3 seeds per cell for part 2, 10,000 iterations for part 3). ``--quick`` (CI) trains
part 1 with the modern recipe, gives part 2's seed-recipe runs 1,500 words and one seed (far
too few to solve: the line says so), and part 3 2,000 iterations.

    python examples/elman_reber.py [--out runs/examples/reber] [--quick]
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from torch import nn

import rnnkit
from rnnkit.data import reber
from rnnkit.data.synthetic import sine_exercise
from rnnkit.training import Trainer, make_config


def train(task: str, recipe: str, cell: str, seed: int, out: Path, **overrides):
    config = make_config(task, recipe, overrides={"cell": cell, "seed": seed, "plot": False, "tensorboard": False,
                                                  "out": str(out / f"{task}-{recipe}-{cell}-{seed}"), **overrides})
    return Trainer(config, progress=False, overwrite=True).fit()  # re-running replaces these runs


def sine(iterations: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Seed 001's exercise: S_ (2, 32, 2) -> T_ (the input one step earlier), hidden 4, SGD lr 0.1."""
    x, target = sine_exercise()  # (B, T, 2) each
    torch.manual_seed(0)
    rnn, head, h0 = rnnkit.RNN(2, 4), nn.Linear(4, 2), nn.Parameter(torch.zeros(1, 1, 4))  # learned h0 (L, 1, H)
    optimizer = torch.optim.SGD([*rnn.parameters(), *head.parameters(), h0], lr=0.1)
    for _ in range(iterations):
        y, _ = rnn(x, h0.expand(1, 2, 4).contiguous())  # (B, T, H)
        loss = ((head(y) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item(), head(rnn(x, h0.expand(1, 2, 4).contiguous())[0]).detach(), target


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/examples/reber", help="folder for the runs and elman_reber.png")
    parser.add_argument("--quick", action="store_true", help="short budgets for CI (see above)")
    args = parser.parse_args(argv)
    out, quick = Path(args.out), args.quick
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    results: dict[str, float] = {}
    # 1. The Reber grammar.
    recipe, budget = ("modern", {"steps": 400, "eval_every": 25}) if quick else ("seed001", {"steps": 10_000})
    run = train("reber", recipe, "elman", 0, out, stop_when_solved=False, **budget)  # sharpen beyond 0.99
    results["reber_accuracy"] = run.metrics["next_symbol_set_accuracy"]
    print(f"Reber, Elman ({recipe} recipe): next_symbol_set_accuracy {results['reber_accuracy']:.4f} on 1,000 held-out "
          f"words after {run.summary['train_sequences']:,} training words")
    model, word = run.model, reber.sample(random.Random(1), min_length=12)
    ids = torch.tensor([[reber.SYMBOLS.index(s) for s in word[:-1]]])  # (1, T)
    with torch.no_grad():
        probs = torch.sigmoid(model(ids)[0][0])  # (T, 7)
    _, targets, _ = reber.word_tensors(word)  # (T, 7)
    print(f"per-step predictions for {word} (columns {' '.join(reber.SYMBOLS)}):")
    for t, (p, y) in enumerate(zip(probs, targets)):
        print(f"  after {word[:t + 1]:<12} predicted {' '.join(f'{v:.2f}' for v in p.tolist())}"
              f"  target {' '.join(str(int(v)) for v in y.tolist())}")
    samples = model.generate("B", vocab=reber.SYMBOLS, end_token="E", num_samples=200, max_length=60, seed=0).texts
    for text in samples[:10]:
        print(f"  in_grammar({text}) = {reber.in_grammar(text)}")
    results["sample_valid"] = sum(reber.in_grammar(t) for t in samples) / len(samples)
    print(f"sampled words in the grammar: {results['sample_valid']:.1%} of {len(samples)}")
    # 2. The embedded grammar under the seed's recipe, as measured; then the LSTM's modern recipe.
    seeds, budget = (1, {"steps": 1500, "eval_every": 500, "eval_size": 300}) if quick else (3, {})
    curves = {}
    for cell in ("elman", "lstm"):
        runs = [train("embedded-reber", "seed001", cell, seed, out, **budget) for seed in range(seeds)]
        curves[cell] = [[(r["sequences"], r["long_range_accuracy"]) for r in run.history] for run in runs]
        solved = [run.summary["train_sequences"] for run in runs if run.solved]
        finals = ", ".join(f"{run.metrics['long_range_accuracy']:.3f}" for run in runs)
        print(f"embedded Reber, seed 001's recipe, {cell} h10: solved {len(solved)}/{seeds} within "
              f"{runs[0].summary['config']['steps']:,} words (words to solve: {solved or '-'}); final long_range_accuracy {finals}")
    modern = train("embedded-reber", "modern", "lstm", 0, out)
    results["lstm_long_range"] = modern.metrics["long_range_accuracy"]
    print(f"embedded Reber, modern recipe, lstm h64: long_range_accuracy {results['lstm_long_range']:.4f} after "
          f"{modern.summary['train_sequences']:,} words")
    # 3. The sine/cosine exercise.
    results["sine_mse"], prediction, target = sine(2000 if quick else 10_000)
    print(f"sine/cosine exercise: training MSE {results['sine_mse']:.2e} (seed 001: 1.3e-04 after 10,000 iterations)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    words = [r["sequences"] for r in run.history]
    ax[0].plot(words, [r["train_loss"] for r in run.history], label="training loss (BCE)")
    ax[0].plot(words, [r["next_symbol_set_accuracy"] for r in run.history], label="next-symbol set accuracy")
    ax[0].set(xlabel="training words", title=f"Reber grammar, Elman ({recipe} recipe)")
    for cell, color in (("elman", "C0"), ("lstm", "C1")):
        for i, curve in enumerate(curves[cell]):
            ax[1].plot(*zip(*curve), color=color, label=f"{cell} h10" if i == 0 else None)
    ax[1].plot(*zip(*[(r["sequences"], r["long_range_accuracy"]) for r in modern.history]), "C2--", label="lstm h64, modern")
    ax[1].set(xlabel="training words", ylabel="long_range_accuracy", title="Embedded Reber")
    ax[2].plot(target[0, :, 0], "k.", label="target sin")
    ax[2].plot(prediction[0, :, 0], label="prediction sin")
    ax[2].set(xlabel="time step", title=f"Sine/cosine exercise (MSE {results['sine_mse']:.1e})")
    for a in ax:
        a.legend()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "elman_reber.png", dpi=100)
    print(f"figure: {out / 'elman_reber.png'}")
    return results


if __name__ == "__main__":
    main()

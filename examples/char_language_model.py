"""Seed 002, a character language model: train, score in nats and bits per character, generate.

Trains an LSTM language model on a text with stateful truncated BPTT (default: Python's own
``pydoc_data`` topics, so nothing is downloaded; ``--data`` takes any UTF-8 file, e.g. Tiny
Shakespeare), scores the whole validation text as one stream, compares the loss with the
unigram entropy (what a model that ignores the context can reach), then samples text with a
temperature and top-k from the reloaded checkpoint.

The training budget is a number of optimiser steps, not a wall-clock time: on a busy machine a
short time budget can leave the model barely trained, and greedy decoding from such a model
repeats its most frequent characters (this script's older version printed ``'The "'"    ...'``
for that reason). Sampling with a temperature also avoids greedy decoding's loops.

    python examples/char_language_model.py [--data file.txt] [--steps 1500] [--out runs/examples/lm] [--quick]
"""
from __future__ import annotations

import argparse
import math

from rnnkit.generation import from_checkpoint
from rnnkit.training import Trainer, make_config


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a UTF-8 text file (default: pydoc_data.topics)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default 1500; --quick: 100)")
    parser.add_argument("--out", default="runs/examples/lm", help="the run folder (checkpoint, curve.png)")
    parser.add_argument("--quick", action="store_true", help="100 steps, one thread (seconds)")
    parser.add_argument("--prompt", default="The ")
    args = parser.parse_args(argv)
    steps = args.steps or (100 if args.quick else 1500)
    config = make_config("text", overrides={
        "data": args.data, "steps": steps, "time_budget": None, "num_layers": 1, "hidden_size": 128,
        "embedding_size": 64, "batch_size": 16, "bptt": 64, "dropout": 0.1, "warmup_steps": 20,
        "eval_every": max(steps // 5, 1), "checkpoint_interval": 3600.0, "precision": "fp32", "out": args.out,
        **({"threads": 1} if args.quick else {})})
    result = Trainer(config, progress=False, overwrite=True).fit()  # re-running replaces the example's run
    if result.stopped == "diverged":
        raise SystemExit(f"training diverged ({result.summary.get('nonfinite')}); the last good checkpoint is kept")
    loss, unigram = result.metrics["val_loss"], result.summary["baseline"]["unigram_val_loss"]
    print(f"data: {result.summary['data']}")
    print(f"trained {result.summary['steps']} steps, {result.summary['train_tokens']:,} characters, "
          f"{result.summary['wall_seconds']:.1f} s")
    print(f"validation loss: {loss:.3f} nats/char = {loss / math.log(2):.3f} bits/char")
    print(f"unigram entropy: {unigram:.3f} nats/char = {unigram / math.log(2):.3f} bits/char")
    print(f"below unigram entropy: {loss < unigram}")
    generator, _ = from_checkpoint(result.checkpoint)
    for temperature in (0.5, 1.0):
        out = generator.generate(args.prompt, max_length=120, temperature=temperature, top_k=10, seed=0)
        print(f"sample (temperature {temperature}, top-k 10): {out.texts[0]!r}")
    print(f"figure: {result.summary['run_dir']}/curve.png")
    return {"val_loss": loss, "unigram_val_loss": unigram}


if __name__ == "__main__":
    main()

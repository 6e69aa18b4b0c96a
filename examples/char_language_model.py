"""A character language model on the built-in corpus (or your text), with stateful truncated BPTT.

Trains for a short time budget, scores the whole validation text as one stream, then reloads
the checkpoint and continues a prompt greedily, one character at a time with the state carried.

    python examples/char_language_model.py [--data file.txt] [--time-budget 60s] [--out runs/example-lm]
"""
from __future__ import annotations

import argparse

import torch

import rnnkit
from rnnkit.data import Vocab
from rnnkit.training import Trainer, load_checkpoint, make_config, parse_duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a UTF-8 text file (default: pydoc_data.topics)")
    parser.add_argument("--time-budget", default="30s")
    parser.add_argument("--out", default="runs/example-lm")
    args = parser.parse_args()
    config = make_config("text", overrides={"data": args.data, "time_budget": parse_duration(args.time_budget),
                                            "hidden_size": 256, "num_layers": 1, "dropout": 0.1, "batch_size": 32,
                                            "bptt": 64, "warmup_steps": 20, "eval_every": 100, "out": args.out})
    result = Trainer(config).fit()
    print(f"validation: {result.metrics['val_loss']:.3f} nats/char ({result.metrics['val_bpc']:.3f} bits/char) "
          f"after {result.summary['train_tokens']:,} training characters")
    checkpoint = load_checkpoint(result.checkpoint)
    model, vocab = checkpoint.model, Vocab.from_json(checkpoint.vocab)
    text, state = "The ", None
    with torch.no_grad():
        logits, state = model(vocab.encode(text).unsqueeze(0), state)  # (1, T, V)
        for _ in range(120):
            next_id = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            text += vocab.decode(next_id[0])
            logits, state = model(next_id, state)
    print(f"greedy continuation: {text!r}")
    assert isinstance(rnnkit.load(result.checkpoint), torch.nn.Module)


if __name__ == "__main__":
    main()

"""Training throughput: ``rnnkit.training.Trainer`` against a minimal hand-written PyTorch loop.

Both train the same character LSTM language model (embedding -> dropout -> 2-layer LSTM ->
dropout -> linear, cross-entropy, gradient clipping, Adam) on the same contiguous TBPTT
batches of the same corpus, with the state carried across chunks, in the same process, with
``torch.set_num_threads(2)``. The hand-written loop is what a careful user writes with
``torch.nn.LSTM``; the Trainer runs rnnkit's ``LanguageModel`` (fused kernel) with everything it
adds per step: the learning-rate schedule, counters, the budget checks, the progress display.
Both run in float32 (the text task's default precision "auto" would pick bf16 autocast on a CPU
with native bf16, which is a different computation from the hand loop's).

After one untimed warm-up pair, each repeat trains a fresh model for ``--steps`` steps with
each, back to back, in ABBA order (Trainer, hand, hand, Trainer, ...). Trainer tokens/s = tokens / the loop's wall time up to its final
evaluation (the evaluation itself is excluded; the hand loop has none); hand tokens/s =
tokens / wall time of its loop. Reported: the median of each, and the headline ratio, the median
over repeats of Trainer / hand within a pair (target >= 0.95), which cancels a machine whose speed
drifts during the run.

Usage:
    python benchmarks/bench_trainer.py [--quick] [--repeats 5] [--steps 30] [--threads 2] [--json PATH]
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.data import CharCorpus, TextStream
from rnnkit.training.config import make_config
from rnnkit.training.task_text import TextTask
from rnnkit.training.trainer import Trainer

FULL = dict(embedding_size=128, hidden_size=256, num_layers=2, batch_size=32, bptt=128, dropout=0.2)  # issue's ref.
QUICK = dict(embedding_size=32, hidden_size=64, num_layers=2, batch_size=16, bptt=32, dropout=0.2)


class HandLM(nn.Module):
    """The plain PyTorch model: nn.Embedding, nn.LSTM(batch_first), nn.Linear."""

    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, layers, batch_first=True, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None):
        e = F.dropout(self.embedding(x), self.dropout, self.training)  # (B, T, E)
        y, state = self.lstm(e, state)  # (B, T, H)
        return self.decoder(F.dropout(y, self.dropout, self.training)), state  # (B, T, V)


def hand_loop(ids: torch.Tensor, vocab: int, size: dict, steps: int, lr: float, clip: float) -> float:
    """Tokens per second of the hand-written loop over ``steps`` TBPTT chunks."""
    torch.manual_seed(0)
    model = HandLM(vocab, size["embedding_size"], size["hidden_size"], size["num_layers"], size["dropout"])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream = TextStream(ids, size["batch_size"], size["bptt"])
    model.train()
    state, tokens = None, 0
    start = time.perf_counter()
    for step in range(steps):
        chunk = step % len(stream)
        x, y = stream[chunk]
        if chunk == 0:
            state = None
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        tokens += x.numel()
    return tokens / (time.perf_counter() - start)


def trainer_run(text: str, size: dict, steps: int, lr: float, clip: float, threads: int) -> float:
    """Tokens per second of ``Trainer.fit`` over ``steps`` steps (its loop, up to the final evaluation)."""
    with tempfile.TemporaryDirectory() as out:
        config = make_config("text", overrides={**size, "steps": steps, "time_budget": None, "lr": lr,
                                                "clip_norm": clip, "warmup_steps": 0, "decay": "cosine",
                                                "eval_every": 0, "plot": False, "tensorboard": False,
                                                "out": out, "threads": threads, "precision": "fp32"})
        task = TextTask(config, text=text)
        result = Trainer(config, task=task, progress=True, progress_file=io.StringIO()).fit()
        last = result.history[-1]
        return last["tokens"] / last["wall_seconds"]


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small model and few steps (seconds; for CI)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5, quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per repeat (default 30, quick 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both sides (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = QUICK if args.quick else FULL
    repeats = args.repeats or (2 if args.quick else 5)
    steps = args.steps or (8 if args.quick else 30)
    corpus = CharCorpus.default()
    # the Trainer scores the last 10% of the text it is given at the end (not timed): keep that short
    need = steps * size["batch_size"] * size["bptt"] + size["batch_size"] + 1
    text = corpus.text[: max(need * 10 // 9 + 64, 4096)]
    train_ids = CharCorpus.from_string(text).split(0.1)[0]
    vocab = len(CharCorpus.from_string(text).vocab)
    lr, clip = 2e-3, 1.0
    trainer_tps, hand_tps = [], []
    if not args.quick:  # (a smoke test's figures mean nothing: it skips the warm-up)
        trainer_run(text, size, steps, lr, clip, args.threads)  # warm-up pair, not timed: oneDNN primitives,
        hand_loop(train_ids, vocab, size, steps, lr, clip)  # allocator growth, lazy imports
    for r in range(repeats):  # ABBA order, so neither side always runs first
        if r % 2 == 0:
            trainer_tps.append(trainer_run(text, size, steps, lr, clip, args.threads))
            hand_tps.append(hand_loop(train_ids, vocab, size, steps, lr, clip))
        else:
            hand_tps.append(hand_loop(train_ids, vocab, size, steps, lr, clip))
            trainer_tps.append(trainer_run(text, size, steps, lr, clip, args.threads))
    pair_ratios = [t / h for t, h in zip(trainer_tps, hand_tps)]
    result = {
        "benchmark": "trainer_throughput", "quick": args.quick, "model": size, "steps": steps, "repeats": repeats,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "trainer_tokens_per_second": trainer_tps, "hand_tokens_per_second": hand_tps,
        "trainer_median": statistics.median(trainer_tps), "hand_median": statistics.median(hand_tps),
    }
    # the headline: the median over pairs of the ratio within a pair (the two runs of a pair are
    # back to back, so a drift of the machine's speed over the run cancels)
    result["pair_ratios"] = pair_ratios
    result["ratio_of_medians"] = result["trainer_median"] / result["hand_median"]
    result["ratio"] = statistics.median(pair_ratios)
    result["target"] = 0.95
    result["pass"] = result["ratio"] >= result["target"]
    print(f"Trainer: {result['trainer_median']:,.0f} tokens/s, hand-written loop: {result['hand_median']:,.0f} "
          f"tokens/s (medians); ratio {result['ratio']:.3f}, the median of the {repeats} paired ratios "
          f"{', '.join(f'{x:.3f}' for x in pair_ratios)} (target >= 0.95) [{'quick' if args.quick else 'full'}: "
          f"{size}, {steps} steps x {repeats} repeats]")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

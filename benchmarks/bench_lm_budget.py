"""Tiny Shakespeare at a time budget: ``rnnkit train`` on default flags against a plain PyTorch LSTM loop.

Two kinds of run, each in its own process (run each under the exclusive CPU lock, one per hold):

- ``--kind rnnkit --budget 2m``: ``rnnkit train --task text --data D --time-budget 2m`` on default
  flags (``--precision fp32`` added with ``--fp32``: the figure for a CPU without native bf16). It
  reports the final ``val_loss`` (nats/char, the whole validation text read as one stream), the
  budget table's choice, steps, characters and throughput, and copies ``curve.png`` with ``--png``.
- ``--kind plain --budget 10m --marks 2m,5m,10m``: a plain PyTorch character LSTM, the issue's
  reference point: ``nn.Embedding(V, 128)`` -> ``nn.LSTM(128, 256, num_layers=2)`` -> ``nn.Linear``,
  float32, Adam 2e-3, gradient norm clipped at 1, batch 32 x 128 characters with the state carried
  across chunks (32 contiguous streams), no schedule, no dropout. Its clock counts training only
  (the evaluations are paused out of it, while rnnkit's budget includes its own evaluations: the
  comparison favours the baseline). At each mark it scores ``val_loss`` with the same data split
  (rnnkit's ``CharCorpus``: the first 90% trains, the last 10% validates) and the same measurement
  (``rnnkit.training.task_text.stream_loss``, one stream, the state carried), so one 10-minute run
  gives the baseline at 2, 5 and 10 minutes.

Usage:
    python benchmarks/bench_lm_budget.py --kind rnnkit --budget 2m --json r2.json --png docs/img/lm_2m.png
    python benchmarks/bench_lm_budget.py --kind plain --budget 10m --marks 2m,5m,10m --json plain.json
    python benchmarks/bench_lm_budget.py --quick     # both kinds for <= 1 s on a small generated text (smoke test)
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare.txt"
TARGETS = {120.0: 1.70, 300.0: 1.55, 600.0: 1.47}  # issue 12, acceptance 2


class PlainLSTM(nn.Module):
    """Embedding -> torch.nn.LSTM -> Linear; ``forward(x, state) -> (logits, state)``."""

    def __init__(self, vocab: int, embedding: int = 128, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        y, state = self.lstm(self.embedding(x), state)  # (B, T, H)
        return self.head(y), state  # (B, T, V)


def plain_run(text_path: Path | None, text: str | None, budget: float, marks: list[float], seed: int = 0,
              batch: int = 32, bptt: int = 128, lr: float = 2e-3, hidden: int = 256) -> dict:
    """Train the plain loop for ``budget`` seconds of training time; val_loss at each mark (seconds)."""
    from rnnkit.data import CharCorpus
    from rnnkit.training.task_text import stream_loss

    torch.manual_seed(seed)
    random.seed(seed)
    corpus = CharCorpus.from_path(text_path) if text is None else CharCorpus.from_string(text)
    train, val = corpus.split(0.1)
    model = PlainLSTM(len(corpus.vocab), hidden=hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    per_row = (len(train) - 1) // batch
    chunks = per_row // bptt
    xs = train[: batch * per_row].view(batch, per_row)  # (B, N): row b is a contiguous stream
    ys = train[1: batch * per_row + 1].view(batch, per_row)
    state, step, clock, tokens, losses = None, 0, 0.0, 0, []
    rows, pending = [], sorted(marks)
    while pending:
        t0 = time.perf_counter()
        k = step % chunks
        x, y = xs[:, k * bptt:(k + 1) * bptt], ys[:, k * bptt:(k + 1) * bptt]  # (B, T) each
        model.train()
        logits, state = model(x, state if k > 0 else None)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state = tuple(s.detach() for s in state)
        step, tokens = step + 1, tokens + x.numel()
        losses.append(float(loss.detach()))
        clock += time.perf_counter() - t0
        while pending and clock >= pending[0]:
            mark = pending.pop(0)
            started = time.perf_counter()
            val_loss = stream_loss(model, val, streams=1)  # rnnkit's final measurement: one stream
            rows.append({"mark_seconds": mark, "train_seconds": round(clock, 3), "steps": step, "tokens": tokens,
                         "train_loss": sum(losses[-50:]) / len(losses[-50:]), "val_loss": val_loss,
                         "eval_seconds": round(time.perf_counter() - started, 3)})
            print(f"plain LSTM at {mark:g}s of training: step {step:,}, {tokens / 1e6:.2f} M characters, "
                  f"train {rows[-1]['train_loss']:.4f}, val_loss {val_loss:.4f}", flush=True)
    return {"kind": "plain", "model": f"embedding 128, torch.nn.LSTM 2 x {hidden}, fp32, Adam 2e-3, clip 1, batch 32 x 128, "
            "state carried", "parameters": sum(p.numel() for p in model.parameters()), "data": corpus.source,
            "tokens_per_second": tokens / clock, "threads": torch.get_num_threads(), "marks": rows}


def rnnkit_run(data: Path, budget: str, fp32: bool, png: Path | None, extra: list[str]) -> dict:
    """``rnnkit train --task text --data data --time-budget budget`` on default flags, in its own process."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [sys.executable, "-m", "rnnkit.cli", "train", "--task", "text", "--data", str(data),
                   "--time-budget", budget, "--out", str(out), "--no-tensorboard", "--json", str(out / "s.json"),
                   *(["--precision", "fp32"] if fp32 else []), *extra]
        print("$", " ".join(command[2:]), flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"rnnkit train failed ({done.returncode}):\n{done.stderr[-2000:]}")
        choice = next((line for line in done.stderr.splitlines() if "budget table" in line), None)
        summary = json.loads((out / "s.json").read_text())
        curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        if png is not None and (out / "curve.png").exists():
            png.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "curve.png", png)
    keep = ("step", "wall_seconds", "tokens", "train_loss", "val_loss", "final")
    return {"kind": "rnnkit", "command": "rnnkit " + " ".join(command[4:6] + command[6:8] + command[8:10]),
            "fp32": fp32, "choice": choice, "val_loss": summary["metrics"]["val_loss"], "steps": summary["steps"],
            "tokens": summary["train_tokens"], "tokens_per_second": summary["tokens_per_second"],
            "loop_seconds": summary["loop_seconds"], "wall_seconds": summary["wall_seconds"],
            "precision": summary["precision"], "parameters": summary["parameters"],
            "schedule_steps": summary["schedule_steps"], "schedule_plans": summary.get("schedule_plans"),
            "unigram_val_loss": summary["baseline"]["unigram_val_loss"],
            "curve": [{k: r.get(k) for k in keep} for r in curve]}


def _plans(r: dict) -> str:
    """Where the learning-rate decay was planned to end: first and last plan (the run re-plans as it goes)."""
    plans = r.get("schedule_plans") or []
    if not plans:
        return f"schedule {r['schedule_steps']}"
    return f"decay planned to end at {plans[0][1]:,} at step {plans[0][0]:,}, finally at {plans[-1][1]:,}"


def _seconds(text: str) -> float:
    from rnnkit.training.config import parse_duration

    return parse_duration(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("rnnkit", "plain"), default="rnnkit", help="which run (default rnnkit)")
    parser.add_argument("--budget", default="2m", help="training time: 2m, 5m, 10m or seconds (default 2m)")
    parser.add_argument("--marks", default=None, help="plain: comma-separated times to score at (default: the budget)")
    parser.add_argument("--fp32", action="store_true", help="rnnkit: add --precision fp32")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the text (default ../shared/data/...)")
    parser.add_argument("--png", type=Path, default=None, help="rnnkit: copy the run's curve.png here")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--quick", action="store_true", help="both kinds for <= 1 s on a small generated text")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.quick:
        rng = random.Random(0)
        words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
        text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400))  # ~12k characters
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "quick.txt"
            path.write_text(text, encoding="utf-8")
            results = [rnnkit_run(path, "1s", False, None, ["--threads", "2", "--no-plot"]),
                       plain_run(path, None, 0.5, [0.25, 0.5], hidden=32)]
        for r in results:
            assert all(v == v for v in ([r["val_loss"]] if "val_loss" in r else [m["val_loss"] for m in r["marks"]]))
        print(f"quick: rnnkit val_loss {results[0]['val_loss']:.3f} ({results[0]['choice']}); plain at 0.5 s "
              f"{results[1]['marks'][-1]['val_loss']:.3f} (smoke test only)")
    else:
        if not args.data.exists():
            raise SystemExit(f"--data: {args.data} does not exist. Fix: get Tiny Shakespeare (README, 'A character "
                             "language model') and pass --data PATH")
        budget = _seconds(args.budget)
        if args.kind == "plain":
            marks = [_seconds(m) for m in args.marks.split(",")] if args.marks else [budget]
            results = [plain_run(args.data, None, budget, marks)]
        else:
            r = rnnkit_run(args.data, args.budget, args.fp32, args.png, [])
            target = TARGETS.get(budget)
            verdict = "" if target is None else f" (target <= {target}: {'met' if r['val_loss'] <= target else 'NOT met'})"
            print(f"{r['choice']}\nrnnkit {args.budget}{' fp32' if args.fp32 else ''}: val_loss {r['val_loss']:.4f}"
                  f"{verdict}; {r['steps']:,} steps ({_plans(r)}), {r['tokens'] / 1e6:.2f} M characters, "
                  f"{r['tokens_per_second']:,.0f} characters/s, {r['precision']}, wall {r['wall_seconds']:.0f} s")
            results = [r]
    if args.json is not None:
        args.json.write_text(json.dumps({"budget": args.budget, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

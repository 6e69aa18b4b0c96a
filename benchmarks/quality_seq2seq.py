"""Sequence-to-sequence quality (issue 14): attention against no attention, greedy against beam search.

For each task asked for, two models of the same size are trained under the same budget, one with
attention and one without; each is then scored on the task's 1,000 held-out pairs with greedy
decoding and with beam search (width 5, length-normalised): exact match, BLEU and chrF
(sacrebleu), plus the wall and CPU time (all threads) of training and decoding. The attention model's maps for a few
held-out pairs are drawn to ``<out>/<task>_attention.png``.

It measures quality, not speed, so it is not one of the ``bench_*`` scripts that ``run.py`` runs.
Run it alone under the exclusive CPU lock; the budget per model is ``--time-budget``/``--steps``.

Usage:
    python benchmarks/quality_seq2seq.py --task translate --steps 1500 --time-budget 150 --json out.json
    python benchmarks/quality_seq2seq.py --task reverse --steps 1500 --time-budget 240
    python benchmarks/quality_seq2seq.py --quick      # every code path, tiny sizes (tests)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["main", "plot_attention", "run_task"]


def plot_attention(model: Any, task: Any, rows: list[int], path: Path) -> None:
    """Draw the attention map (target tokens x source tokens) of held-out pairs ``rows`` into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4.5), squeeze=False)
    model.eval()
    for ax, row in zip(axes[0], rows):
        src, n = task.held.source[row: row + 1], task.held.source_lengths[row: row + 1]
        out = model.translate(src, n, max_length=int(task.held.target_lengths.max()) + 10)[0]
        target_in = torch.tensor([[model.config.bos_id] + out])
        with torch.no_grad():
            _, weights = model(src, n, target_in)  # (1, T, S)
        source_tokens = [task.source_vocab.tokens[i] for i in src[0, : int(n)].tolist()]
        target_tokens = [task.target_vocab.tokens[i] for i in out] + ["</s>"]
        ax.imshow(weights[0, :, : int(n)].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=70, fontsize=8)
        ax.set_yticks(range(len(target_tokens)), target_tokens, fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output (greedy)")
    fig.suptitle(f"{task.name}: attention weights on held-out pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_task(task_name: str, *, steps: int, time_budget: float | None, out: Path, overrides: dict[str, Any],
             beam: int = 5, threads: int = 2, attentions: tuple[str, ...] = ("bahdanau", "none")) -> dict[str, Any]:
    """Train attention and no-attention models of one task and score both decoders; a JSON-able dict."""
    from rnnkit.training.config import make_config
    from rnnkit.training.tasks import make_task
    from rnnkit.training.trainer import Trainer

    torch.set_num_threads(threads)
    results: dict[str, Any] = {"task": task_name, "budget": {"steps": steps, "time_budget": time_budget,
                                                            "threads": threads}, "models": {}}
    for attention in attentions:
        config = make_config(task_name, overrides={
            "steps": steps, "time_budget": time_budget, "attention": attention, "out": str(out / f"{task_name}_"
                                                                                            f"{attention}"),
            "plot": False, "tensorboard": False, "threads": threads, "checkpoint_interval": 3600.0, **overrides})
        task = make_task(config)
        start, cpu_start = time.perf_counter(), time.process_time()
        result = Trainer(config, task=task, progress=False).fit()
        train_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        entry: dict[str, Any] = {"train_wall_seconds": round(train_seconds, 1),
                                 "train_cpu_seconds": round(cpu_seconds, 1), "steps": result.summary.get("steps"),
                                 "stopped": result.stopped, "parameters": result.summary.get("parameters"),
                                 "held_out_pairs": len(task.held), "data": task.describe()}
        for name, width in (("greedy", None), (f"beam{beam}", beam)):
            t0, c0 = time.perf_counter(), time.process_time()
            metrics = task.evaluate(result.model, final=True, beam=width)
            entry[name] = {k: round(v, 4) for k, v in metrics.items()} | {
                "decode_seconds": round(time.perf_counter() - t0, 1),
                "decode_cpu_seconds": round(time.process_time() - c0, 1)}
        results["models"][attention] = entry
        print(json.dumps({attention: entry}), flush=True)
        if attention != "none":
            picture = out / f"{task_name}_attention.png"
            plot_attention(result.model, task, [0, 1, 2], picture)
            results["attention_png"] = str(picture)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", action="append", choices=("translate", "reverse", "add", "dates"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attention", action="append", choices=("bahdanau", "dot", "general", "none"),
                        help="the models to train (default: bahdanau and none)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/quality_seq2seq"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every code path in seconds")
    args = parser.parse_args(argv)
    tasks = args.task or ["translate", "reverse"]
    overrides: dict[str, Any] = {}
    if args.quick:
        args.steps, overrides = 3, {"eval_size": 12, "hidden_size": 16, "embedding_size": 8, "eval_every": 0}
        tasks = args.task or ["add"]
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "torch": torch.__version__, "tasks": [run_task(t, steps=args.steps, time_budget=args.time_budget,
                                                            out=args.out, overrides=overrides, beam=args.beam,
                                                            threads=args.threads,
                                                            attentions=tuple(args.attention or ("bahdanau", "none")))
                        for t in tasks]}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()

"""``rnnkit info CHECKPOINT``: what a checkpoint holds (config, parameter count, training history).

The model's files are verified against the manifest's SHA-256 first, and then the training
state's, so ``info`` doubles as an integrity check; a damaged training state is reported
(the model stays usable by eval and sample). Any rnnkit checkpoint works, also one written by
``rnnkit.save`` outside a run.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rnnkit.cli.common import add_json_argument, check_writable_file, user_errors, write_json

__all__ = ["add_parser", "checkpoint_info", "run"]

EXAMPLES = """examples:
  rnnkit info runs/embedded-reber            # a run folder or its checkpoint/ folder
  rnnkit info runs/shakespeare/checkpoint --json info.json
"""
HISTORY_ROWS = 12  # evaluations shown (first, last and evenly spaced between)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help="show a checkpoint's config, size and training history",
                                   description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT", type=Path, help="a run folder or a checkpoint folder")
    add_json_argument(parser)
    return parser


def checkpoint_info(path: Path) -> dict[str, Any]:
    """The facts ``rnnkit info`` shows, as JSON-able data; CLIError on a missing or bad checkpoint."""
    from rnnkit.checkpoint import CheckpointError, checkpoint_folder, config_to_json, load_checkpoint, load_training_state

    with user_errors():
        ckpt = load_checkpoint(checkpoint_folder(path))
    manifest_files = sorted(p.name for p in ckpt.path.iterdir() if not p.name.startswith("."))
    params = list(ckpt.model.parameters())
    info: dict[str, Any] = {
        "checkpoint": str(ckpt.path), "model_type": ckpt.model_type, "rnnkit_version": ckpt.rnnkit_version,
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "config": config_to_json(ckpt.config), "files": {name: (ckpt.path / name).stat().st_size
                                                          for name in manifest_files},
        "vocab_size": len(ckpt.vocab["chars"]) if isinstance(ckpt.vocab, dict) and "chars" in ckpt.vocab else None,
    }
    metadata = ckpt.metadata or {}
    if "train_config" in metadata:
        info["train_config"] = metadata["train_config"]
    if "summary" in metadata:
        info["summary"] = {k: v for k, v in metadata["summary"].items() if k != "config"}
    if "training" in ckpt.files:  # the model is usable without it: a damaged training state is reported, not fatal
        try:
            state = load_training_state(ckpt.path)
        except CheckpointError as error:
            info["training_error"] = str(error)
        else:
            info["training"] = {"step": state.step, "epoch": state.epoch, "sequences": state.sequences,
                                "tokens": state.tokens, "history": state.metrics}
    return info


def _plain(config: Any, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in config.items():
        if key == "__dataclass__":
            continue
        if isinstance(value, dict):
            rows += _plain(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", repr(value)))
    return rows


def run(args: argparse.Namespace) -> int:
    check_writable_file(args.json)
    info = checkpoint_info(args.checkpoint)
    write_json(args.json, info)
    if str(args.json) == "-":
        return 0
    from rich.table import Table

    from rnnkit.cli.summary import console

    out = console()
    out.print(f"[bold]{info['model_type']}[/bold] in {info['checkpoint']} (rnnkit {info['rnnkit_version']}): "
              f"{info['parameters']:,} parameters, files verified (SHA-256)")
    config = Table(title="model config", title_justify="left", show_header=False)
    for key, value in _plain(info["config"]):
        config.add_row(key, value)
    out.print(config)
    if "train_config" in info:
        train = {k: v for k, v in info["train_config"].items() if k != "__dataclass__"}
        out.print("[bold]training config[/bold] " + ", ".join(f"{k}={v!r}" for k, v in train.items()))
    if "summary" in info:
        s = info["summary"]
        out.print(f"[bold]result[/bold] stopped: {s.get('stopped')}, solved: {s.get('solved')}, "
                  f"{s.get('train_sequences', 0):,} sequences, {s.get('wall_seconds')} s wall; metrics: "
                  + ", ".join(f"{k}={v:.4g}" for k, v in s.get("metrics", {}).items()))
    if "training_error" in info:
        out.print(f"[bold red]training state unusable[/bold red] (eval and sample still work; --resume does not): "
                  f"{info['training_error']}")
    history = info.get("training", {}).get("history", [])
    if history:
        keys = [k for k in history[-1] if k not in ("epoch", "wall_seconds", "train_seconds", "lr", "tokens_per_second",
                                                   "tokens", "solved")]
        table = Table(title=f"training history ({len(history)} evaluations)", title_justify="left")
        for key in keys:
            table.add_column(key, justify="right")
        step = max(1, len(history) // HISTORY_ROWS)
        shown = history[::step][: HISTORY_ROWS - 1] + ([history[-1]] if len(history) > 1 else [])
        for record in shown:
            table.add_row(*(_cell(record.get(k)) for k in keys))
        out.print(table)
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)

"""``rnnkit eval CHECKPOINT [--data PATH]``: score a trained model on held-out data.

Without ``--data`` the model is scored on its task's own held-out data: the validation text
(the last 10% of the training corpus) or the fixed held-out words or sequences. With ``--data``:

- text models: the whole file (or folder) is scored as one stream, state carried, in nats per
  character (``val_loss``) and bits per character (``val_bpc``);
- Reber models: a file of words, one per line (blank lines skipped), scored with the task's
  metrics; every word must be in the grammar.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rnnkit.cli.common import CLIError, add_json_argument, check_writable_file, user_errors, write_json

__all__ = ["add_parser", "evaluate_checkpoint", "run"]

EXAMPLES = """examples:
  rnnkit eval runs/embedded-reber                  # the run folder or its checkpoint/ folder
  rnnkit eval runs/shakespeare --data other.txt --json eval.json
  rnnkit eval runs/reber --data words.txt          # one Reber word per line
  rnnkit eval runs/shakespeare --data other.txt --unk   # other.txt holds characters the model never saw
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="score a checkpoint on held-out data",
                                   description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT", type=Path, help="a run folder or a checkpoint folder")
    parser.add_argument("--data", metavar="PATH", type=Path, default=None,
                        help="text to score (text models) or words, one per line (Reber models)")
    parser.add_argument("--unk", action="store_true",
                        help="text models: score a --data file that holds characters the model never saw; they "
                             "map to <unk> if the vocabulary has one, else they are left out (and counted)")
    parser.add_argument("--device", metavar="DEVICE", default="auto",
                        help="auto (CUDA when available, else CPU; default), cpu, cuda or cuda:N")
    add_json_argument(parser)
    return parser


def _reber_words(path: Path, embedded: bool) -> list[str]:
    from rnnkit.data import reber
    from rnnkit.data.text import read_text

    words = [w.strip() for w in read_text(path).splitlines() if w.strip()]
    for number, word in enumerate(words, 1):
        if not reber.in_grammar(word, embedded):
            kind = "embedded Reber" if embedded else "Reber"
            raise CLIError(f"--data: expected one {kind} word per line, but word {number} ({word[:40]!r}) of {path} "
                           "is not in the grammar. Fix: remove or correct it")
    if not words:
        raise CLIError(f"--data: expected words, one per line, but {path} holds none. Fix: add some words")
    return words


def _known_ids(vocab: Any, text: str) -> tuple[Any, int]:
    """Ids of ``text`` with unseen characters mapped to ``<unk>`` (a vocabulary with one) or left out."""
    import numpy as np
    import torch

    from rnnkit.data.vocab import Vocab

    mapper = Vocab(vocab.chars, "unk")  # same ids for known characters; unseen ones -> len(chars)
    ids = mapper.encode_numpy(text)  # (N,)
    unseen = ids == len(vocab.chars)  # (N,)
    if vocab.unknown != "unk":
        ids = ids[~unseen]
    return torch.from_numpy(np.ascontiguousarray(ids)), int(unseen.sum())


def evaluate_checkpoint(checkpoint: Path, data: Path | None, unk: bool = False,
                        device: str = "auto") -> dict[str, Any]:
    """The summary ``rnnkit eval`` prints and writes; CLIError on bad input. ``device``: see ``--device``."""
    from rnnkit.data.vocab import Vocab
    from rnnkit.training.checkpoint import load_checkpoint
    from rnnkit.training.run_state import CHECKPOINT_DIR, config_from_metadata, is_run_dir
    from rnnkit.training.tasks import make_task

    from rnnkit.training.device import resolve_device

    with user_errors({"device": "--device"}):
        target = resolve_device(device)
        folder = checkpoint / CHECKPOINT_DIR if is_run_dir(checkpoint) else checkpoint
        ckpt = load_checkpoint(folder, device=target)
        config = config_from_metadata(ckpt.metadata, ckpt.path)
    model = ckpt.model
    summary: dict[str, Any] = {"checkpoint": str(ckpt.path), "task": config.task, "cell": config.cell,
                               "parameters": sum(p.numel() for p in model.parameters()), "device": str(target)}
    if config.task == "text":
        from rnnkit.training.task_text import stream_loss

        vocab = Vocab.from_json(ckpt.vocab) if ckpt.vocab is not None else None
        if data is not None:
            from rnnkit.data.text import read_text

            unseen = None
            with user_errors({"path": "--data", "text": "--data"}):
                vocab = vocab if vocab is not None else make_task(config).vocab
                text = read_text(data)
                if unk:
                    ids, unseen = _known_ids(vocab, text)
                else:
                    try:
                        ids = vocab.encode(text)
                    except ValueError as error:
                        error.cli_fix = "pass --unk to score the text without the characters the model never saw"
                        raise
            if unseen is not None:
                summary["unseen_characters"] = unseen
                summary["unseen_handling"] = "<unk>" if vocab.unknown == "unk" else "left out"
            if len(ids) < 2:
                raise CLIError(f"--data: expected at least 2 characters to score, found {len(ids)} in {data}")
            where = f"{data} (whole text, one stream)"
        else:
            with user_errors({"path": f"the run's training text ({config.data or 'pydoc_data.topics'})"}):
                task = make_task(config) if vocab is None else _text_task(config, vocab)
            ids = task.val_ids
            where = f"validation split of {task.corpus.source} (last {config.val_fraction:.0%})"
        loss = stream_loss(model, ids)
        summary.update(data=where, characters=len(ids), metrics={"val_loss": loss, "val_bpc": loss / math.log(2)})
        return summary
    with user_errors():
        task = make_task(config)
    if data is not None:
        if config.task not in ("reber", "embedded-reber"):
            raise CLIError(f"--data: task {config.task!r} generates its own held-out data, so --data applies only to "
                           "text and Reber models. Fix: drop --data")
        with user_errors({"path": "--data"}):
            words = _reber_words(data, task.embedded)
        from rnnkit.data import reber

        from rnnkit.training.task_reber import sample_validity

        metrics = task.evaluate_words(model, reber.encode(words, task.embedded))
        metrics["sample_validity"] = sample_validity(model, task.grammar)  # solved includes generation
        summary.update(data=f"{data} ({len(words)} words)", metrics=metrics)
    else:
        summary.update(data=task.describe(), metrics=task.evaluate(model, final=True))
    solved = task.solved(summary["metrics"])
    if solved is not None:
        summary["solved"] = solved
    return summary


def _text_task(config: Any, vocab: Any) -> Any:
    from rnnkit.training.task_text import TextTask

    return TextTask(config, vocab=vocab)


def run(args: argparse.Namespace) -> int:
    check_writable_file(args.json)
    if args.data is not None and not args.data.exists():
        raise CLIError(f"--data: expected an existing file or folder, but {str(args.data)!r} does not exist. "
                       "Fix: check the path")
    summary = evaluate_checkpoint(args.checkpoint, args.data, unk=args.unk, device=args.device)
    write_json(args.json, summary)
    if str(args.json) != "-":
        from rnnkit.cli.summary import console, metrics_table

        out = console()
        out.print(f"[bold]{summary['task']}[/bold] {summary['cell']} model ({summary['parameters']:,} parameters) "
                  f"from {summary['checkpoint']}\non {summary['data']}")
        out.print(metrics_table(summary["metrics"]))
        if summary.get("unseen_characters"):
            out.print(f"{summary['unseen_characters']:,} character(s) the model never saw: "
                      f"{summary['unseen_handling']}")
    return 0

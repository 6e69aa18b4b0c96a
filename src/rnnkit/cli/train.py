"""``rnnkit train``: train a model on a task, with a progress bar, records, a plot and a checkpoint.

Flags map one-to-one onto ``rnnkit.training.TrainConfig`` fields; a flag left out takes the
task's default (``TASK_DEFAULTS``), after the ``--recipe``. A new run never replaces another
(see ``rnnkit.training.run_dir``): the default folder takes a fresh name, a named ``--out``
that holds a run is refused unless ``--overwrite``.

``--resume RUN`` continues a run from its checkpoint with the run's own settings; only budgets,
cadences, ``--device`` and ``--out`` may be given again. Without a budget flag it finishes the
run's own budget (an interrupted run ends where it would have). A budget flag given with
``--resume`` is *more on top* and replaces the run's budgets: ``--steps 500`` trains 500 more
steps, ``--time-budget 5m`` five more minutes, ``--epochs 2`` two more epochs (the first reached
ends it). The learning-rate schedule keeps the run's length in steps: past it, the run goes on at
the final learning rate. The line printed before training says what the resumed run will do.

Exit codes: 0 done, 2 bad input, 1 stopped on a non-finite value, 130 / 143 stopped by SIGINT /
SIGTERM (a checkpoint of the last completed step is written; ``--resume`` loses no step).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rnnkit.cli.common import (CLIError, add_json_argument, check_writable_file, closed_probability, duration,
                               non_negative_int, positive_float, positive_int, probability, user_errors, write_json)

__all__ = ["add_parser", "config_from_args", "run"]

EXAMPLES = """examples:
  rnnkit train                                   # the main job: LSTM on the embedded Reber grammar
  rnnkit train --cell elman --seed 3 --json out.json
  rnnkit train --recipe seed001 --cell elman     # seed 001's setup: hidden 10, SGD lr 0.2, one word per step
  rnnkit train --task text --data tinyshakespeare.txt --time-budget 10m --out runs/shakespeare
  rnnkit train --task copy --seq-len 100 --cell gru --steps 3000
  rnnkit train --task text --tokens word         # a word-level language model (the same as --task words)
  rnnkit train --task translate --attention bahdanau   # French number words -> English (num2words)
  rnnkit train --task reverse --seq-len 30 --attention none
  rnnkit train --resume runs/shakespeare                    # finish an interrupted run's own budget
  rnnkit train --resume runs/shakespeare --time-budget 5m   # train 5 more minutes

The run folder (--out, default runs/<task>) receives checkpoint/, metrics.jsonl, curve.png and
summary.json. A new run never replaces one: the default folder takes a fresh name (runs/<task>-2),
a named --out that holds a run is refused (--overwrite replaces it). Ctrl-C or SIGTERM stop at
the next step and write a checkpoint that --resume continues (exit 130 / 143).
"""

# (flags, config field, argparse keywords)
_FLAGS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--cell",), "cell", dict(choices=("elman", "lstm", "gru"), help="recurrent cell (default: lstm)")),
    (("--hidden",), "hidden_size", dict(type=positive_int, metavar="N", help="hidden units per layer")),
    (("--layers",), "num_layers", dict(type=positive_int, metavar="N", help="stacked recurrent layers")),
    (("--bidirectional",), "bidirectional", dict(action="store_true", help="add a reverse direction (adding, copy)")),
    (("--dropout",), "dropout", dict(type=probability, metavar="P", help="dropout between layers (text: also "
                                                                         "on the embedding and output)")),
    (("--input-dropout",), "input_dropout", dict(type=probability, metavar="P",
                                                 help="text/words: variational dropout on each layer's input")),
    (("--recurrent-dropout",), "recurrent_dropout", dict(type=probability, metavar="P",
                                                         help="text/words: variational dropout on the recurrent state")),
    (("--zoneout",), "zoneout", dict(type=closed_probability, metavar="P",
                                     help="text/words: each state keeps its previous value with P (0 to 1)")),
    (("--weight-drop",), "weight_drop", dict(type=probability, metavar="P",
                                             help="text/words: DropConnect on the recurrent matrix (AWD-LSTM)")),
    (("--embedding",), "embedding_size", dict(type=positive_int, metavar="N", help="text: embedding width")),
    (("--tie-weights",), "tie_weights", dict(action="store_true", help="text: share embedding and softmax weights")),
    (("--engine",), "engine", dict(choices=("auto", "fused", "generic"), help="recurrence backend (default: auto)")),
    (("--precision",), "precision", dict(choices=("auto", "fp32", "bf16"),
                                         help="bf16: bfloat16 autocast of the forward pass (weights stay fp32); "
                                              "auto: bf16 on CPUs with native bf16, else fp32 (text default)")),
    (("--optimizer",), "optimizer", dict(choices=("adam", "sgd"), help="optimiser (default: adam)")),
    (("--lr",), "lr", dict(type=positive_float, metavar="LR", help="peak learning rate")),
    (("--momentum",), "momentum", dict(type=probability, metavar="M", help="SGD momentum")),
    (("--weight-decay",), "weight_decay", dict(type=float, metavar="W", help="L2 penalty")),
    (("--clip",), "clip_norm", dict(type=positive_float, metavar="NORM", help="clip the gradient norm to NORM")),
    (("--warmup",), "warmup_steps", dict(type=non_negative_int, metavar="STEPS", help="linear warm-up steps")),
    (("--decay",), "decay", dict(choices=("none", "linear", "cosine"), help="learning-rate decay over the budget")),
    (("--min-lr-ratio",), "min_lr_ratio", dict(type=float, metavar="R", help="final lr as a fraction of --lr")),
    (("--batch-size",), "batch_size", dict(type=positive_int, metavar="B", help="sequences per step")),
    (("--bptt",), "bptt", dict(type=positive_int, metavar="T", help="text: steps per truncated-BPTT chunk")),
    (("--seq-len",), "seq_len", dict(type=positive_int, metavar="T", help="sine length, adding length, copy lag")),
    (("--steps",), "steps", dict(type=positive_int, metavar="N", help="at most N optimiser steps (given alone, the run's length: the task's default time budget is dropped)")),
    (("--epochs",), "epochs", dict(type=positive_float, metavar="E", help="text: at most E passes over the data")),
    (("--time-budget",), "time_budget", dict(type=duration, metavar="DURATION",
                                             help="wall-time budget: 90s, 10m, 1h30m, 1.5h or seconds")),
    (("--eval-every",), "eval_every", dict(type=non_negative_int, metavar="N", help="evaluate every N steps")),
    (("--eval-size",), "eval_size", dict(type=positive_int, metavar="N", help="held-out words or sequences")),
    (("--patience",), "patience", dict(type=positive_int, metavar="N",
                                       help="stop after N evaluations without improvement")),
    (("--keep-going",), "stop_when_solved", dict(action="store_false", help="do not stop when the task is solved")),
    (("--checkpoint-interval",), "checkpoint_interval", dict(type=duration, metavar="DURATION",
                                                             help="time between checkpoints (default 60s)")),
    (("--no-plot",), "plot", dict(action="store_false", help="do not write curve.png")),
    (("--no-tensorboard",), "tensorboard", dict(action="store_false", help="do not log to TensorBoard")),
    (("--on-nonfinite",), "on_nonfinite", dict(choices=("stop", "skip"),
                                                help="a NaN/Inf loss or gradient: stop the run, keeping the last good "
                                                     "checkpoint (default), or skip the step")),
    (("--device",), "device", dict(type=str, metavar="DEVICE",
                                   help="auto (CUDA when available, else CPU; default), cpu, cuda or cuda:N")),
    (("--threads",), "threads", dict(type=positive_int, metavar="N",
                                     help="torch CPU threads (default: 1 for small tasks, all cores for text)")),
    (("--seed",), "seed", dict(type=non_negative_int, metavar="S", help="random seed (default 0)")),
    (("--out",), "out", dict(metavar="DIR", help="run folder (default runs/<task>)")),
    (("--data",), "data", dict(metavar="PATH", help="text/words: a UTF-8 file or folder (default: "
                                                   "pydoc_data.topics); translate: a TSV of source<TAB>target")),
    # sequence-to-sequence tasks (translate, reverse, add, dates) and the word-level language model (words)
    (("--attention",), "attention", dict(choices=("bahdanau", "dot", "general", "none"),
                                         help="pairs: the decoder's attention (default: bahdanau)")),
    (("--sampling-rate",), "sampling_rate", dict(type=probability, metavar="P",
                                                 help="pairs: scheduled sampling, feed the model's own token with P")),
    (("--languages",), "languages", dict(metavar="SRC-TGT", help="translate: num2words languages (default fr-en)")),
    (("--max-source-length",), "max_source_length", dict(type=positive_int, metavar="N",
                                                         help="pairs: longer sources are an error (default 200)")),
    (("--vocab-size",), "vocab_size", dict(type=positive_int, metavar="V",
                                           help="words: keep the V most frequent words (default 10000)")),
    (("--lm-unit",), "lm_unit", dict(choices=("sentences", "stream"), help="words: train on sentences or a stream")),
]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from rnnkit.training.config import RECIPES, TASKS

    parser = subparsers.add_parser("train", help="train a model (default: LSTM on the embedded Reber grammar)",
                                   description="Train a recurrent network on a task and save the run.",
                                   epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default=argparse.SUPPRESS,
                        help="what to learn (default: embedded-reber)")
    parser.add_argument("--tokens", choices=("char", "word"), default=argparse.SUPPRESS,
                        help="text: model characters (default) or words; --task text --tokens word is --task words")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=argparse.SUPPRESS,
                        help="a named set of defaults: modern (default) or seed001 (Reber only)")
    for flags, dest, kwargs in _FLAGS:
        parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, **kwargs)
    parser.add_argument("--resume", metavar="RUN", type=Path, default=None,
                        help="continue the run in folder RUN from its checkpoint; a budget given with it is more "
                             "on top (--steps 500: 500 more steps)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let this new run replace the run its --out folder holds (else that is refused)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary (errors only)")
    add_json_argument(parser)
    return parser


FLAG_OF = {dest: flags[0] for flags, dest, _ in _FLAGS} | {"path": "--data", "resume": "--resume", "task": "--task",
                                                           "recipe": "--recipe"}


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {dest: getattr(args, dest) for _, dest, _ in _FLAGS if hasattr(args, dest)}


BUDGETS = ("steps", "epochs", "time_budget")


def config_from_args(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """The TrainConfig the flags describe, and the checkpoint to resume (or None). CLIError on bad input.

    On resume, budget flags are more on top of the run so far (see the module docstring); the
    config returned holds the totals, as ``Trainer`` expects.
    """
    from rnnkit.training.config import make_config
    from rnnkit.training.run_state import RESUMABLE_FIELDS, config_from_metadata, resolve_resume

    _tokens_to_task(args)
    overrides = _given(args)
    if overrides.get("data") is not None and Path(overrides["data"]).exists():
        overrides["data"] = str(Path(overrides["data"]).resolve())  # eval and --resume work from any folder
    if args.resume is None:
        with user_errors(FLAG_OF):
            return make_config(getattr(args, "task", "embedded-reber"), getattr(args, "recipe", "modern"),
                               overrides), None
    fixed = sorted(k for k in overrides if k not in RESUMABLE_FIELDS)
    fixed += [k for k in ("task", "recipe") if hasattr(args, k)]
    if fixed:
        raise CLIError(f"--resume: a resumed run keeps its own settings, so only budgets, cadences, --device and --out "
                       f"may be given, but {', '.join(sorted(fixed))} was given. Fix: drop them, or start a new run")
    import dataclasses

    from rnnkit.checkpoint import load_checkpoint

    with user_errors(FLAG_OF):
        checkpoint = resolve_resume(args.resume)
        ckpt = load_checkpoint(checkpoint, training_state=True)  # a resume verifies every file
        saved = config_from_metadata(ckpt.metadata, checkpoint)
        out = overrides.pop("out", str(checkpoint.parent) if checkpoint.name == "checkpoint" else saved.run_dir)
        more = {k: overrides.pop(k) for k in BUDGETS if k in overrides}
        if more:  # more on top: the totals are the run so far plus what was given; budgets not given are dropped
            state = ckpt.training_state
            step = state.step if state is not None else 0
            clocks = (state.scheduler or {}) if state is not None else {}
            per_epoch = _steps_per_epoch(saved) if "epochs" in more else None
            overrides["steps"] = step + more["steps"] if "steps" in more else None
            overrides["time_budget"] = (float(clocks.get("elapsed", 0.0)) + more["time_budget"]
                                        if "time_budget" in more else None)
            overrides["epochs"] = step / per_epoch + more["epochs"] if per_epoch else None
        return dataclasses.replace(saved, out=out, **overrides), checkpoint


def _tokens_to_task(args: argparse.Namespace) -> None:
    """``--tokens word`` with ``--task text`` (or no task) is the word-level language model, ``--task words``."""
    tokens = getattr(args, "tokens", None)
    if tokens is None:
        return
    if args.resume is not None:
        raise CLIError("--tokens: a resumed run keeps its own task, but --tokens was given. Fix: drop --tokens")
    task = getattr(args, "task", None)
    wanted = {"char": "text", "word": "words"}[tokens]
    if task not in (None, "text", wanted):
        raise CLIError(f"--tokens: expected it only with --task text, but --task {task} was given. "
                       f"Fix: drop --tokens, or use --task text --tokens {tokens}")
    args.task = wanted


def _steps_per_epoch(config: Any) -> int | None:
    from rnnkit.training.tasks import make_task

    return make_task(config).steps_per_epoch()


def resume_plan(config: Any, checkpoint: Path, given: dict[str, Any]) -> str:
    """One line: where the resumed run stands and what it will do."""
    from rnnkit.checkpoint import load_training_state
    from rnnkit.training.progress import format_duration

    state = load_training_state(checkpoint)
    clocks = state.scheduler or {}
    elapsed = float(clocks.get("elapsed", 0.0))
    length = clocks.get("schedule_steps")
    goals = []
    if config.steps is not None:
        goals.append(f"{max(0, config.steps - state.step):,} more steps (to step {config.steps:,})")
    if config.epochs is not None:
        goals.append(f"to epoch {config.epochs:g}")
    if config.time_budget is not None:
        goals.append(f"{format_duration(max(0.0, config.time_budget - elapsed))} more training time "
                     f"(to {format_duration(config.time_budget)})")
    how = "more on top, as given" if any(k in given for k in BUDGETS) else "the run's own budget"
    lr = (f"; the learning rate follows the run's schedule of {length:,} steps" if length else "")
    if length and clocks.get("schedule_plans") and config.steps is None and config.epochs is None:
        lr += " (as planned so far: a time-only run re-plans it at each evaluation)"
    return (f"resuming {checkpoint.parent if checkpoint.name == 'checkpoint' else checkpoint} at step "
            f"{state.step:,} ({format_duration(elapsed)} trained): {', or '.join(goals)}, whichever comes first "
            f"({how}){lr}")


def _check_paths(config: Any) -> None:
    out = Path(config.run_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: expected a folder (created if missing), but {str(out)!r} is a file. "
                       "Fix: pass a folder path, e.g. --out runs/my-run")
    if config.data is not None and not Path(config.data).exists():
        raise CLIError(f"--data: expected an existing file or folder, but {config.data!r} does not exist. "
                       "Fix: check the path")


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    config, resume = config_from_args(args)
    _check_paths(config)
    check_writable_file(args.json)
    from rnnkit.training.distributed import setup
    from rnnkit.training.interrupt import SIGNAL_NAMES, exit_code
    from rnnkit.training.run_dir import claim_run_dir
    from rnnkit.training.tasks import make_task
    from rnnkit.training.trainer import Trainer

    main_rank = os.environ.get("RANK", "0") in ("", "0")
    if resume is None and main_rank:
        with user_errors(FLAG_OF):
            config, note = claim_run_dir(config, overwrite=args.overwrite)
        if note:
            print(f"rnnkit train: {note}", file=sys.stderr)
    elif resume is not None and main_rank:
        print(f"rnnkit train: {resume_plan(config, resume, _given(args))}", file=sys.stderr)
    with user_errors(FLAG_OF):
        dist = setup(device=config.device)
        task = make_task(config, dist.rank, dist.world_size)
        trainer = Trainer(config, task=task, progress=not args.quiet, dist=dist, overwrite=args.overwrite)
    from rnnkit.training.budget import describe_budget_choice

    choice = describe_budget_choice(config)
    if choice and resume is None and main_rank and not args.quiet:  # after the data has been read: no error follows
        print(f"rnnkit train: {choice}", file=sys.stderr)
    with user_errors(FLAG_OF):
        result = trainer.fit(resume=resume)
    if dist.is_main:
        write_json(args.json, result.summary)
        if not args.quiet:
            from rnnkit.cli.summary import print_summary

            print_summary(result.summary, result.history)
    run_dir = result.summary["run_dir"]
    if result.stopped == "interrupted":
        signum = result.extra.get("signal")
        name = SIGNAL_NAMES.get(signum, "an interrupt") if signum is not None else "an interrupt"
        if dist.is_main:
            print(f"rnnkit train: stopped by {name} after step {result.summary['steps']:,}; the checkpoint holds it. "
                  f"Continue with: rnnkit train --resume {run_dir}", file=sys.stderr)
        return exit_code(signum) if signum is not None else 130
    if result.stopped == "diverged":
        if dist.is_main:
            print(f"rnnkit train: {result.extra.get('nonfinite', 'a non-finite value')}; stopped, and the last good "
                  f"checkpoint in {run_dir}/checkpoint is kept (--on-nonfinite skip skips such steps)", file=sys.stderr)
        return 1
    return 0

"""The ``Trainer``: seeded, resumable training of any task, with records, plots and checkpoints.

One loop serves every task: draw the step's batch, set the scheduled learning rate, forward,
backward, clip, step; evaluate every ``eval_every`` steps; stop at the first budget reached
(steps, epochs, time), when solved, or out of patience. Everything the run depends on is a
function of the config's seed, so two runs with the same config end with bitwise-identical
weights on the CPU, and a run resumed from its checkpoint ends exactly where the uninterrupted
run would (the checkpoint stores weights, optimizer moments, counters, elapsed time, the RNG
states and the carried TBPTT state; the data of step k is a pure function of k).

Ctrl-C stops the run at the next step boundary, writes a checkpoint and returns with
``stopped == "interrupted"`` (a second Ctrl-C aborts at once, leaving the last checkpoint).

Example:
    >>> import tempfile
    >>> from rnnkit.training.config import make_config
    >>> config = make_config("reber", overrides={"steps": 20, "eval_every": 10, "eval_size": 50,
    ...                                          "plot": False, "out": tempfile.mkdtemp()})
    >>> result = Trainer(config, progress=False).fit()
    >>> result.summary["train_sequences"], result.stopped
    (320, 'steps')
"""
from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from rnnkit.errors import bad_argument
from rnnkit.training.config import TrainConfig
from rnnkit.training.distributed import DistInfo, agree_stop, all_sum, setup, teardown, wrap
from rnnkit.training.progress import ProgressDisplay
from rnnkit.training.records import MetricsLog, plot_curves, tensorboard_writer, write_json_atomic
from rnnkit.training.run_state import (CHECKPOINT_DIR, changed_fields, config_from_metadata, encode_carry,
                                       resolve_resume)
from rnnkit.training.schedule import LRSchedule
from rnnkit.training.tasks import Task, make_task, step_seed, unwrap

__all__ = ["TrainResult", "Trainer", "build_optimizer"]

PLOT_INTERVAL = 5.0  # seconds: curve.png is redrawn at an evaluation when this long has passed since the last draw
PLOT_SHARE = 0.05  # ... and when drawing has taken at most this share of the time since (always at the end)


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns."""

    summary: dict[str, Any]  # the JSON summary (also <run>/summary.json)
    metrics: dict[str, float]  # the last evaluation's metrics
    history: list[dict[str, Any]]  # one record per evaluation (also <run>/metrics.jsonl)
    model: nn.Module  # the trained model (unwrapped), in eval mode
    checkpoint: Path | None  # the checkpoint folder (None on ranks other than 0)
    stopped: str  # "steps" | "epochs" | "time_budget" | "solved" | "patience" | "diverged" | "interrupted"
    solved: bool | None  # whether the last evaluation solved the task (None: the task has no such notion)
    extra: dict[str, Any] = field(default_factory=dict)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum) over the trainable parameters, as the config says."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Train ``config.task`` as ``config`` says; see the module docstring.

    ``task`` replaces the task ``config.task`` names (e.g. a ``TextTask`` on an in-memory text);
    ``callback(trainer)`` runs after every optimiser step (it may call ``request_stop``).
    """

    def __init__(self, config: TrainConfig, *, task: Task | None = None, progress: bool = True,
                 progress_file: IO[str] | None = None, callback: Callable[[Trainer], None] | None = None,
                 dist: DistInfo | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise bad_argument("config", "a TrainConfig", config, "build one with make_config(task, ...)")
        self.config = config
        self.task = task
        self.show_progress = progress
        self.progress_file = progress_file
        self.callback = callback
        self.dist = dist
        self.step = 0  # optimiser steps taken
        self.sequences = 0  # training sequences seen, all ranks
        self.tokens = 0  # training tokens seen, all ranks
        self.elapsed = 0.0  # seconds in the training loop (carried over a resume)
        self.train_seconds = 0.0  # of which in training steps (not evaluation or saving)
        self.history: list[dict[str, Any]] = []
        self._stop: str | None = None

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop at the next step boundary (what Ctrl-C does); a checkpoint is written."""
        self._stop = reason

    # ------------------------------------------------------------------ setup
    def _restore(self, resume: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        from rnnkit.training.checkpoint import load_checkpoint
        from rnnkit.training._state import restore_rng_state

        ckpt = load_checkpoint(resolve_resume(resume))
        saved = config_from_metadata(ckpt.metadata, ckpt.path)
        changed = changed_fields(saved, self.config)
        if changed:
            pairs = ", ".join(f"{n}={getattr(saved, n)!r}" for n in changed)
            raise bad_argument("resume", "the run's own settings (only budgets, cadences and --out may change)",
                               f"changes to {', '.join(changed)}", f"keep {pairs}, or start a new run")
        state = ckpt.training_state
        if state is None:
            raise bad_argument("resume", "a checkpoint with a training state", str(ckpt.path), "resume a run folder")
        model.load_state_dict(ckpt.model.state_dict())
        optimizer.load_state_dict(state.optimizer)
        self.step, self.sequences, self.tokens = state.step, state.sequences, state.tokens
        self.elapsed = float(state.scheduler["elapsed"])
        self.train_seconds = float(state.scheduler["train_seconds"])
        self.history = list(state.metrics)
        self._best = state.extra.get("best")
        self._since_best = int(state.extra.get("since_best", 0))
        if self.dist_info.rank == 0 and state.rng is not None:
            restore_rng_state(state.rng)
        else:  # other ranks' dropout streams are not saved: reseed them from the step
            torch.manual_seed(step_seed("dropout", self.config.seed, self.dist_info.rank, self.step))
        return state.extra.get("carry")

    def _save(self, model: nn.Module, optimizer: torch.optim.Optimizer, carry: Any, final: dict | None) -> Path:
        from rnnkit.models.registry import config_to_json
        from rnnkit.training._state import TrainingState, capture_rng_state
        from rnnkit.training.checkpoint import save

        state = TrainingState(
            step=self.step, epoch=self._epoch(), tokens=self.tokens, sequences=self.sequences,
            optimizer=optimizer.state_dict(), rng=capture_rng_state(),
            scheduler={"elapsed": self.elapsed, "train_seconds": self.train_seconds},
            data_position={"step": self.step, "chunk": self._chunk()}, metrics=self.history,
            extra={"carry": encode_carry(carry), "best": self._best, "since_best": self._since_best},
        )
        metadata = {"train_config": config_to_json(self.config), "task": self.config.task, "cell": self.config.cell}
        if final is not None:
            metadata["summary"] = final
        return save(unwrap(model), self.run_dir / CHECKPOINT_DIR, vocab=self._task.vocab_json(),
                    training_state=state, metadata=metadata)

    def _epoch(self) -> int:
        per = self._task.steps_per_epoch()
        return self.step // per if per else 0

    def _chunk(self) -> int | None:
        per = self._task.steps_per_epoch()
        return self.step % per if per else None

    def _budget_reason(self) -> str | None:
        c = self.config
        if c.steps is not None and self.step >= c.steps:
            return "steps"
        per = self._task.steps_per_epoch()
        if c.epochs is not None and per and self.step >= math.ceil(c.epochs * per):
            return "epochs"
        if c.time_budget is not None and self.elapsed >= c.time_budget:
            return "time_budget"
        return None

    # ------------------------------------------------------------------ the run
    def fit(self, resume: str | Path | None = None) -> TrainResult:
        """Run the training; ``resume`` is a run folder (or its checkpoint) to continue from."""
        start = time.perf_counter()
        c = self.config
        self.dist_info = self.dist or setup()
        rank, world = self.dist_info.rank, self.dist_info.world_size
        self.run_dir = Path(c.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise bad_argument("out", "a folder (created if missing)", f"{str(self.run_dir)!r}, an existing file",
                               "pass a folder path, e.g. --out runs/my-run")
        threads = torch.get_num_threads()
        if not self.dist_info.distributed:  # torchrun ranks split the cores in setup()
            torch.set_num_threads(c.threads_for)
        try:
            return self._fit(resume, start)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: str | Path | None, start: float) -> TrainResult:
        c = self.config
        rank, world = self.dist_info.rank, self.dist_info.world_size
        seed_everything(c.seed)
        self._task = self.task or make_task(c, rank, world)
        model = self._task.build_model()
        optimizer = build_optimizer(c, model)
        schedule = LRSchedule.from_config(c, self._task.steps_per_epoch())
        self._best, self._since_best = None, 0
        if world > 1:  # the same initial weights everywhere (DDP broadcasts too), then per-rank dropout
            torch.manual_seed(step_seed("dropout", c.seed, rank, 0))
        carry = self._restore(resume, model, optimizer) if resume is not None else None
        net = wrap(model, self.dist_info)
        main = self.dist_info.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(self.run_dir / "metrics.jsonl", self.history) if main else None
        board = tensorboard_writer(self.run_dir / "tensorboard") if main and c.tensorboard else None
        display = ProgressDisplay(total_steps=c.steps, time_budget=c.time_budget, headline=self._task.headline,
                                  enabled=self.show_progress and main, file=self.progress_file,
                                  description=f"{c.task} {c.cell}")
        stopped: str | None = None
        last_eval_step, last_ckpt = -1, time.monotonic()
        last_plot, plot_cost = time.monotonic(), 0.0
        loss_sum, loss_count, tokens_mark, train_mark = 0.0, 0, 0, 0.0
        in_step = False
        metrics: dict[str, float] = dict(self.history[-1]) if self.history else {}
        old_handler = self._install_sigint()
        display.start()
        loop_start = time.perf_counter() - self.elapsed

        def evaluate(final: bool) -> None:
            nonlocal last_eval_step, last_plot, plot_cost, last_ckpt, loss_sum, loss_count, tokens_mark, train_mark
            nonlocal metrics
            nonlocal stopped
            values = self._task.evaluate(net, final=final)
            solved = self._task.solved(values)
            spent = self.train_seconds - train_mark
            record: dict[str, Any] = {
                "step": self.step, "epoch": self._epoch(), "sequences": self.sequences, "tokens": self.tokens,
                "wall_seconds": round(time.perf_counter() - loop_start, 3),
                "train_seconds": round(self.train_seconds, 3), "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / loss_count if loss_count else None,
                "tokens_per_second": (self.tokens - tokens_mark) / spent if spent > 0 else None, **values}
            if solved is not None:
                record["solved"] = solved
            self.history.append(record)
            metrics = values
            loss_sum, loss_count, tokens_mark, train_mark = 0.0, 0, self.tokens, self.train_seconds
            last_eval_step = self.step
            headline = values.get(self._task.headline)
            if headline is not None and self._task.better(headline, self._best):
                self._best, self._since_best = headline, 0
            else:
                self._since_best += 1
            if main:
                log.append(record)
                if board is not None:
                    for key, value in record.items():
                        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                            board.add_scalar(key, value, self.step)
                wait = max(PLOT_INTERVAL, plot_cost / PLOT_SHARE)
                if c.plot and (final or time.monotonic() - last_plot >= wait):
                    before = time.monotonic()
                    self._plot()
                    last_plot = time.monotonic()
                    plot_cost = last_plot - before
            display.evaluated(values, final=final)
            if c.stop_when_solved and solved and stopped is None:
                stopped = "solved"
            if c.patience is not None and self._since_best >= c.patience and stopped is None:
                stopped = "patience"
            if main and not final and (time.monotonic() - last_ckpt >= c.checkpoint_interval):
                self._save(net, optimizer, carry, None)
                last_ckpt = time.monotonic()

        try:
            while True:
                self.elapsed = time.perf_counter() - loop_start
                reason = stopped or self._stop or self._budget_reason()
                if agree_stop(reason is not None, self.dist_info):
                    stopped = reason or "interrupted"  # another rank stopped (e.g. its Ctrl-C)
                    break
                t0 = time.perf_counter()
                in_step = True
                batch = self._task.batch(self.step)
                lr = schedule.lr_at(self.step, self.elapsed)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                net.train()
                loss, new_carry = self._task.loss(net, batch, carry)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.clip_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), c.clip_norm)
                value = float(loss.detach())
                if not math.isfinite(value):
                    stopped = "diverged"
                    in_step = False
                    break
                optimizer.step()
                carry = new_carry
                self.step += 1
                self.sequences += batch.sequences * world  # every rank's batch has batch_size sequences
                self.tokens += all_sum(batch.tokens, self.dist_info)
                in_step = False
                loss_sum += value
                loss_count += 1
                now = time.perf_counter()
                self.train_seconds += now - t0
                self.elapsed = now - loop_start
                spent = self.train_seconds - train_mark
                display.update(step=self.step, elapsed=self.elapsed, train_loss=loss_sum / loss_count, lr=lr,
                               tokens_per_second=(self.tokens - tokens_mark) / spent if spent > 0 else 0.0)
                if self.callback is not None:
                    self.callback(self)
                if c.eval_every and self.step % c.eval_every == 0:
                    evaluate(final=False)
        except KeyboardInterrupt:
            if in_step:  # mid-step: the weights may be half-updated; keep the last checkpoint as it is
                display.stop()
                self._uninstall_sigint(old_handler)
                raise
            stopped = "interrupted"
        finally:
            self._uninstall_sigint(old_handler)
        self.elapsed = time.perf_counter() - loop_start
        if stopped != "interrupted" and last_eval_step != self.step:
            evaluate(final=True)
        elif main and c.plot and self.history:
            self._plot()
        display.stop()
        solved = self._task.solved(metrics) if metrics and stopped != "interrupted" else None
        summary = self._summary(metrics, stopped or "steps", solved, start, model)
        checkpoint = None
        if main:
            checkpoint = self._save(net, optimizer, carry, summary)
            summary["wall_seconds"] = round(time.perf_counter() - start, 3)
            write_json_atomic(self.run_dir / "summary.json", summary)
            if board is not None:
                board.close()
        teardown(self.dist_info)
        model.eval()
        return TrainResult(summary=summary, metrics=metrics, history=self.history, model=model,
                           checkpoint=checkpoint, stopped=stopped or "steps", solved=solved)

    def _plot(self) -> None:
        text = self.config.task == "text"
        plot_curves(self.history, self.run_dir / "curve.png", title=f"{self.config.task}, {self.config.cell}",
                    x_key="tokens" if text else "sequences",
                    x_label="training characters" if text else "training sequences")

    def _summary(self, metrics: dict[str, float], stopped: str, solved: bool | None, start: float,
                 model: nn.Module) -> dict[str, Any]:
        from rnnkit.models.registry import config_to_json

        c = self.config
        keep = {k: v for k, v in metrics.items() if k not in ("step", "epoch", "sequences", "tokens", "wall_seconds",
                                                                "train_seconds", "lr", "train_loss",
                                                                "tokens_per_second", "solved")}
        return {
            "task": c.task, "cell": c.cell, "checkpoint": str(self.run_dir / CHECKPOINT_DIR),
            "train_sequences": self.sequences, "train_tokens": self.tokens,
            "wall_seconds": round(time.perf_counter() - start, 3), "world_size": self.dist_info.world_size,
            "metrics": keep, "solved": solved, "stopped": stopped, "steps": self.step, "epochs": self._epoch(),
            "train_seconds": round(self.train_seconds, 3),
            "tokens_per_second": round(self.tokens / self.train_seconds, 1) if self.train_seconds else None,
            "parameters": sum(p.numel() for p in model.parameters()), "baseline": self._task.baseline(),
            "data": self._task.describe(), "run_dir": str(self.run_dir), "config": config_to_json(c),
        }

    # ------------------------------------------------------------------ Ctrl-C
    def _install_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            return None  # someone else handles Ctrl-C: leave it to them

        def handler(signum: int, frame: Any) -> None:
            if self._stop is None:
                self._stop = "interrupted"
            else:  # a second Ctrl-C: stop at once
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handler)
        return previous

    def _uninstall_sigint(self, previous: Any) -> None:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)

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
from rnnkit.training.interrupt import graceful_sigint
from rnnkit.training.progress import ProgressDisplay
from rnnkit.training.records import MetricsLog, plot_curves, tensorboard_writer, write_json_atomic
from rnnkit.training.run_state import CHECKPOINT_DIR, restore_run, save_run
from rnnkit.training.schedule import LRSchedule
from rnnkit.training.tasks import Task, make_task, step_seed

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


@dataclass
class _Run:
    """The mutable state of one ``fit`` call besides the trainer's counters."""

    model: nn.Module  # the model itself
    net: nn.Module  # what is called: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    carry: Any = None  # the recurrent state carried to the next step (text), detached
    metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation's metrics
    stopped: str | None = None  # why the loop ended
    in_step: bool = False  # True between drawing a batch and the end of the optimiser step
    loop_start: float = 0.0  # perf_counter() at the loop's start, minus the time of earlier sessions
    loss_sum: float = 0.0  # training loss summed since the last evaluation
    loss_count: int = 0
    tokens_mark: int = 0  # tokens at the last evaluation
    train_mark: float = 0.0  # train_seconds at the last evaluation
    last_eval_step: int = -1
    last_plot: float = field(default_factory=time.monotonic)
    plot_cost: float = 0.0  # seconds the last plot took
    last_checkpoint: float = field(default_factory=time.monotonic)
    log: MetricsLog | None = None
    board: Any = None  # a TensorBoard SummaryWriter, when available
    display: Any = None  # the ProgressDisplay


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

    # ------------------------------------------------------------------ checkpoints
    def _restore(self, resume: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        """Load the run at ``resume`` into this trainer, ``model`` and ``optimizer``; return the carried state."""
        return restore_run(self, resume, model, optimizer)

    def _save(self, run: _Run, final: dict | None) -> Path:
        return save_run(self, run.model, run.optimizer, run.carry, final)

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
        self.dist_info = self.dist or setup()
        self.run_dir = Path(self.config.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise bad_argument("out", "a folder (created if missing)", f"{str(self.run_dir)!r}, an existing file",
                               "pass a folder path, e.g. --out runs/my-run")
        threads = torch.get_num_threads()
        if not self.dist_info.distributed:  # torchrun ranks split the cores in setup()
            torch.set_num_threads(self.config.threads_for)
        try:
            return self._fit(resume, start)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: str | Path | None, start: float) -> TrainResult:
        c, info = self.config, self.dist_info
        self.step, self.sequences, self.tokens, self.elapsed, self.train_seconds = 0, 0, 0, 0.0, 0.0
        self.history, self._stop = [], None
        seed_everything(c.seed)
        self._task = self.task or make_task(c, info.rank, info.world_size)
        model = self._task.build_model()
        optimizer = build_optimizer(c, model)
        self._best, self._since_best = None, 0
        if info.distributed:  # the same initial weights everywhere (DDP broadcasts them too), per-rank dropout
            torch.manual_seed(step_seed("dropout", c.seed, info.rank, 0))
        carry = self._restore(resume, model, optimizer) if resume is not None else None
        run = _Run(model=model, net=wrap(model, info), optimizer=optimizer, carry=carry,
                   schedule=LRSchedule.from_config(c, self._task.steps_per_epoch()),
                   metrics={k: v for k, v in self.history[-1].items()} if self.history else {})
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            run.log = MetricsLog(self.run_dir / "metrics.jsonl", self.history)
            run.board = tensorboard_writer(self.run_dir / "tensorboard") if c.tensorboard else None
        run.display = ProgressDisplay(total_steps=c.steps, time_budget=c.time_budget, headline=self._task.headline,
                                      enabled=self.show_progress and info.is_main, file=self.progress_file,
                                      description=f"{c.task} {c.cell}")
        run.display.start()
        run.loop_start = time.perf_counter() - self.elapsed
        try:
            with graceful_sigint(self.request_stop):
                self._loop(run)
        except KeyboardInterrupt:
            if run.in_step:  # mid-step: the weights may be half-updated; keep the last checkpoint as it is
                run.display.stop()
                raise
            run.stopped = "interrupted"
        self.elapsed = time.perf_counter() - run.loop_start
        if run.stopped != "interrupted" and (run.last_eval_step != self.step or self._task.final_differs):
            self._evaluate(run, final=True)
        elif info.is_main and c.plot and self.history:
            self._plot()
        run.display.stop()
        stopped = run.stopped or "steps"
        solved = self._task.solved(run.metrics) if run.metrics and stopped != "interrupted" else None
        summary = self._summary(run.metrics, stopped, solved, start, model)
        checkpoint = None
        if info.is_main:
            checkpoint = self._save(run, summary)
            summary["wall_seconds"] = round(time.perf_counter() - start, 3)
            write_json_atomic(self.run_dir / "summary.json", summary)
            if run.board is not None:
                run.board.close()
        teardown(info)
        model.eval()
        return TrainResult(summary=summary, metrics=run.metrics, history=self.history, model=model,
                           checkpoint=checkpoint, stopped=stopped, solved=solved)

    def _loop(self, run: _Run) -> None:
        """Optimiser steps until a budget, a stop request or an evaluation ends the run."""
        c, world = self.config, self.dist_info.world_size
        while True:
            self.elapsed = time.perf_counter() - run.loop_start
            reason = run.stopped or self._stop or self._budget_reason()
            if agree_stop(reason is not None, self.dist_info):
                run.stopped = reason or "interrupted"  # another rank stopped (e.g. its Ctrl-C)
                return
            t0 = time.perf_counter()
            run.in_step = True
            batch = self._task.batch(self.step)
            lr = run.schedule.lr_at(self.step, self.elapsed)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            run.net.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.precision_for == "bf16"):
                loss, carry = self._task.loss(run.net, batch, run.carry)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.clip_norm is not None:
                nn.utils.clip_grad_norm_(run.model.parameters(), c.clip_norm)
            value = float(loss.detach())
            if not math.isfinite(value):  # skip the update: the weights stay those of the last good step
                run.stopped, run.in_step = "diverged", False
                return
            run.optimizer.step()
            run.carry = carry
            self.step += 1
            self.sequences += batch.sequences * world  # every rank's batch has batch_size sequences
            self.tokens += all_sum(batch.tokens, self.dist_info)
            run.in_step = False
            run.loss_sum += value
            run.loss_count += 1
            now = time.perf_counter()
            self.train_seconds += now - t0
            self.elapsed = now - run.loop_start
            spent = self.train_seconds - run.train_mark
            run.display.update(step=self.step, elapsed=self.elapsed, train_loss=run.loss_sum / run.loss_count, lr=lr,
                               tokens_per_second=(self.tokens - run.tokens_mark) / spent if spent > 0 else 0.0)
            if self.callback is not None:
                self.callback(self)
            if c.eval_every and self.step % c.eval_every == 0:
                self._evaluate(run, final=False)

    def _evaluate(self, run: _Run, final: bool) -> None:
        """Score the held-out data, record it everywhere, and decide on solved / patience stops."""
        c, main = self.config, self.dist_info.is_main
        wall = time.perf_counter() - run.loop_start  # up to this evaluation, not including it
        values = self._task.evaluate(run.net, final=final)
        solved = self._task.solved(values)
        spent = self.train_seconds - run.train_mark
        record: dict[str, Any] = {
            "step": self.step, "epoch": self._epoch(), "sequences": self.sequences, "tokens": self.tokens,
            "wall_seconds": round(wall, 3), "train_seconds": round(self.train_seconds, 3),
            "lr": run.optimizer.param_groups[0]["lr"],
            "train_loss": run.loss_sum / run.loss_count if run.loss_count else None,
            "tokens_per_second": (self.tokens - run.tokens_mark) / spent if spent > 0 else None, **values}
        if solved is not None:
            record["solved"] = solved
        if final:
            record["final"] = True
        self.history.append(record)
        run.metrics = values
        run.loss_sum, run.loss_count, run.tokens_mark, run.train_mark = 0.0, 0, self.tokens, self.train_seconds
        run.last_eval_step = self.step
        headline = values.get(self._task.headline)
        if headline is not None and self._task.better(headline, self._best):
            self._best, self._since_best = headline, 0
        else:
            self._since_best += 1
        if main:
            run.log.append(record)
            if run.board is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                        run.board.add_scalar(key, value, self.step)
            wait = max(PLOT_INTERVAL, run.plot_cost / PLOT_SHARE)
            if c.plot and (final or time.monotonic() - run.last_plot >= wait):
                before = time.monotonic()
                self._plot()
                run.last_plot = time.monotonic()
                run.plot_cost = run.last_plot - before
        run.display.evaluated(values, final=final)
        if c.stop_when_solved and solved and run.stopped is None:
            run.stopped = "solved"
        if c.patience is not None and self._since_best >= c.patience and run.stopped is None:
            run.stopped = "patience"
        if main and not final and time.monotonic() - run.last_checkpoint >= c.checkpoint_interval:
            self._save(run, None)
            run.last_checkpoint = time.monotonic()

    def _plot(self) -> None:
        task = self.config.task
        label = {"text": "training characters", "reber": "training words", "embedded-reber": "training words"}
        plot_curves(self.history, self.run_dir / "curve.png", title=f"{task}, {self.config.cell}",
                    x_key="tokens" if task == "text" else "sequences", x_label=label.get(task, "training sequences"))

    def _summary(self, metrics: dict[str, float], stopped: str, solved: bool | None, start: float,
                 model: nn.Module) -> dict[str, Any]:
        from rnnkit.models.registry import config_to_json

        c = self.config
        skip = {"step", "epoch", "sequences", "tokens", "wall_seconds", "train_seconds", "lr", "train_loss",
                "tokens_per_second", "solved"}
        return {
            "task": c.task, "cell": c.cell, "checkpoint": str(self.run_dir / CHECKPOINT_DIR),
            "train_sequences": self.sequences, "train_tokens": self.tokens,
            "wall_seconds": round(time.perf_counter() - start, 3), "world_size": self.dist_info.world_size,
            "metrics": {k: v for k, v in metrics.items() if k not in skip}, "solved": solved, "stopped": stopped,
            "steps": self.step, "epochs": self._epoch(), "train_seconds": round(self.train_seconds, 3),
            "tokens_per_second": round(self.tokens / self.train_seconds, 1) if self.train_seconds else None,
            "precision": c.precision_for,
            "parameters": sum(p.numel() for p in model.parameters()), "baseline": self._task.baseline(),
            "data": self._task.describe(), "run_dir": str(self.run_dir), "config": config_to_json(c),
        }

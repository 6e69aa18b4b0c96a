"""The ``Trainer``: seeded, resumable training of any task, with records, plots and checkpoints.

One loop serves every task: draw the step's batch, set the scheduled learning rate, forward,
backward, check for non-finite values, clip, step; evaluate every ``eval_every`` steps; stop at
the first budget reached (steps, epochs, time), when solved, or out of patience. Everything the
run depends on is a function of the config's seed and the step number, never of wall time (the
learning-rate schedule runs over a length in steps fixed once, see ``schedule.py``), so two runs
with the same config end with bitwise-identical weights on one machine, and a run resumed from
any of its checkpoints ends exactly where the uninterrupted run would (the checkpoint stores
weights, optimizer moments, the ``RunState``, the RNG states and the carried TBPTT state; the
data of step k is a pure function of k).

A new run never replaces another (see ``run_dir.py``); a checkpoint is written when the run
starts, at evaluations (at most every ``checkpoint_interval`` seconds), at the end, and when
SIGINT or SIGTERM stop the run at the next step boundary (``stopped == "interrupted"``). A
NaN or Inf loss or gradient stops the run (keeping the last good checkpoint) or skips the step,
as ``on_nonfinite`` says.

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
from rnnkit.training.device import resolve_device, to_device
from rnnkit.training.distributed import DistInfo, agree_stop, all_sum, setup, teardown, wrap
from rnnkit.training.interrupt import SIGNAL_NAMES, StopFlag, stop_signals
from rnnkit.training.progress import ProgressDisplay
from rnnkit.training.records import TENSORBOARD_MISSING, MetricsLog, plot_curves, tensorboard_writer, write_json_atomic
from rnnkit.training.run_dir import claim_run_dir
from rnnkit.training.run_state import CHECKPOINT_DIR, RunState, restore_run, save_run
from rnnkit.training.schedule import LRSchedule, plan_steps, replan_due, replan_steps, schedule_length
from rnnkit.training.tasks import Task, make_task, step_seed

__all__ = ["TrainResult", "Trainer", "build_optimizer", "nonfinite_gradient"]

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
    extra: dict[str, Any] = field(default_factory=dict)  # "signal": the signal number that stopped the run


@dataclass
class _Run:
    """The mutable state of one ``fit`` call that is not saved (the saved part is the ``RunState``)."""

    model: nn.Module  # the model itself
    net: nn.Module  # what is called: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    device: torch.device
    flag: StopFlag = field(default_factory=StopFlag)  # set by SIGINT / SIGTERM
    metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation's metrics
    stopped: str | None = None  # why the loop ended
    nonfinite: str | None = None  # what was not finite, and at which step
    in_step: bool = False  # True between drawing a batch and the end of the optimiser step
    session_start: float = 0.0  # perf_counter() when fit() began
    wall_before: float = 0.0  # wall seconds of earlier sessions
    loop_start: float = 0.0  # perf_counter() at the loop's start, minus the loop time of earlier sessions
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


def nonfinite_gradient(model: nn.Module) -> str | None:
    """``"the gradient of <name>"`` for the first parameter whose gradient holds a NaN or Inf, else None."""
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all()):
            return f"the gradient of {name}"
    return None


class Trainer:
    """Train ``config.task`` as ``config`` says; see the module docstring.

    ``task`` replaces the task ``config.task`` names (e.g. a ``TextTask`` on an in-memory text);
    ``callback(trainer)`` runs after every optimiser step (it may call ``request_stop``);
    ``overwrite=True`` lets a new run replace the run its folder holds (else that is refused).
    """

    def __init__(self, config: TrainConfig, *, task: Task | None = None, progress: bool = True,
                 progress_file: IO[str] | None = None, callback: Callable[[Trainer], None] | None = None,
                 dist: DistInfo | None = None, overwrite: bool = False) -> None:
        if not isinstance(config, TrainConfig):
            raise bad_argument("config", "a TrainConfig", config, "build one with make_config(task, ...)")
        self.config = config
        self.task = task
        self.show_progress = progress
        self.progress_file = progress_file
        self.callback = callback
        self.dist = dist
        self.overwrite = overwrite
        self.state = RunState()  # the run's counters and records, owned here, saved by run_state.save_run
        self._stop: str | None = None
        self.last_lr: float | None = None  # the learning rate of the last step taken
        self.model: nn.Module | None = None  # the model being trained (unwrapped), once fit() has built it

    # the run state, read by callbacks
    step = property(lambda self: self.state.step, doc="Optimiser steps taken.")
    sequences = property(lambda self: self.state.sequences, doc="Training sequences seen, all ranks.")
    tokens = property(lambda self: self.state.tokens, doc="Training tokens seen, all ranks.")
    elapsed = property(lambda self: self.state.elapsed, doc="Seconds in the training loop, all sessions.")
    train_seconds = property(lambda self: self.state.train_seconds, doc="Seconds in training steps, all sessions.")
    history = property(lambda self: self.state.history, doc="One record per evaluation.")

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop at the next step boundary (what SIGINT / SIGTERM do); a checkpoint is written."""
        self._stop = reason

    # ------------------------------------------------------------------ checkpoints
    def _save(self, run: _Run, final: dict | None) -> Path:
        self.state.wall_seconds = run.wall_before + time.perf_counter() - run.session_start
        return save_run(self.state, self.config, self._task, run.model, run.optimizer, final)

    def _epoch(self) -> int:
        return self.state.epoch(self._task.steps_per_epoch())

    def _budget_reason(self) -> str | None:
        c, step = self.config, self.state.step
        if c.steps is not None and step >= c.steps:
            return "steps"
        per = self._task.steps_per_epoch()
        if c.epochs is not None and per and step >= math.ceil(c.epochs * per):
            return "epochs"
        if c.time_budget is not None and self.state.elapsed >= c.time_budget:
            return "time_budget"
        return None

    # ------------------------------------------------------------------ the run
    def fit(self, resume: str | Path | None = None) -> TrainResult:
        """Run the training; ``resume`` is a run folder (or its checkpoint) to continue from."""
        start = time.perf_counter()
        self.dist_info = self.dist or setup(device=self.config.device)
        self.run_dir = Path(self.config.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise bad_argument("out", "a folder (created if missing)", f"{str(self.run_dir)!r}, an existing file",
                               "pass a folder path, e.g. --out runs/my-run")
        self._note = None
        if self.dist_info.is_main and (resume is None or Path(resume).resolve() not in
                                       (self.run_dir.resolve(), (self.run_dir / CHECKPOINT_DIR).resolve())):
            self.config, self._note = claim_run_dir(self.config, overwrite=self.overwrite)
            self.run_dir = Path(self.config.run_dir)
        threads = torch.get_num_threads()
        if not self.dist_info.distributed:  # torchrun ranks split the cores in setup()
            torch.set_num_threads(self.config.threads_for)
        try:
            return self._fit(resume, start)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, resume: str | Path | None, start: float) -> TrainResult:
        c, info = self.config, self.dist_info
        device = resolve_device(c.device, info.local_rank)
        self.device = device
        self.state, self._stop = RunState(), None
        seed_everything(c.seed)
        self._task = self.task or make_task(c, info.rank, info.world_size)
        model = self.model = self._task.build_model().to(device)
        optimizer = build_optimizer(c, model)
        if info.distributed:  # the same initial weights everywhere (DDP broadcasts them too), per-rank dropout
            torch.manual_seed(step_seed("dropout", c.seed, info.rank, 0))
        if resume is not None:
            self.state = restore_run(c, resume, model, optimizer, info.rank)
        per_epoch = self._task.steps_per_epoch()
        if self.state.schedule_steps is None:
            self.state.schedule_steps = schedule_length(c, per_epoch)
        state = self.state
        run = _Run(model=model, net=wrap(model, info, device), optimizer=optimizer, device=device,
                   schedule=(LRSchedule.from_plans(c, state.schedule_plans) if state.schedule_plans else
                             LRSchedule.from_config(c, state.schedule_steps, state.decay_start)),
                   metrics=dict(state.history[-1]) if state.history else {}, session_start=start,
                   wall_before=state.wall_seconds)
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if resume is None:  # from now on a kill at any moment leaves a loadable checkpoint
                self._save(run, None)
            run.log = MetricsLog(self.run_dir / "metrics.jsonl", state.history)
            run.board = tensorboard_writer(self.run_dir / "tensorboard") if c.tensorboard else None
        run.display = ProgressDisplay(total_steps=c.steps, time_budget=c.time_budget, headline=self._task.headline,
                                      enabled=self.show_progress and info.is_main, file=self.progress_file,
                                      description=f"{c.task} {c.cell}")
        run.display.start()
        if self._note:
            run.display.message(self._note)
        if info.is_main and c.tensorboard and run.board is None:
            run.display.message(TENSORBOARD_MISSING)
        run.loop_start = time.perf_counter() - state.elapsed
        with stop_signals() as flag:
            run.flag = flag
            try:
                self._loop(run)
            except KeyboardInterrupt:
                if run.in_step:  # mid-step: the weights may be half-updated; keep the last checkpoint as it is
                    run.display.stop()
                    raise
                run.stopped = "interrupted"
            state.elapsed = time.perf_counter() - run.loop_start
            if run.stopped not in ("interrupted", "diverged") and self._final_evaluation_due():
                self._evaluate(run, final=True)
            elif info.is_main and c.plot and state.history:
                self._plot()
            run.display.stop()
            return self._finish(run, model)

    def _final_evaluation_due(self) -> bool:
        """False when the last record already scores this step as a final evaluation would (no duplicates)."""
        last = self.state.history[-1] if self.state.history else None
        if last is None or last["step"] != self.state.step:
            return True
        return not (last.get("final") or not self._task.final_differs)

    def _finish(self, run: _Run, model: nn.Module) -> TrainResult:
        info, state = self.dist_info, self.state
        stopped = run.stopped or "steps"
        solved = self._task.solved(run.metrics) if run.metrics and stopped not in ("interrupted", "diverged") else None
        summary = self._summary(run.metrics, stopped, solved, run, model)
        checkpoint = None
        if info.is_main:
            if stopped == "diverged":  # keep the last good checkpoint as it is
                checkpoint = self.run_dir / CHECKPOINT_DIR
            else:
                checkpoint = self._save(run, summary)
            summary["wall_seconds"] = round(run.wall_before + time.perf_counter() - run.session_start, 3)
            summary["session_wall_seconds"] = round(time.perf_counter() - run.session_start, 3)
            write_json_atomic(self.run_dir / "summary.json", summary)
            if run.board is not None:
                run.board.close()
        teardown(info)
        model.eval()
        extra = {"signal": run.flag.signum} if run.flag.signum is not None and stopped == "interrupted" else {}
        if run.nonfinite:
            extra["nonfinite"] = run.nonfinite
        return TrainResult(summary=summary, metrics=run.metrics, history=state.history, model=model,
                           checkpoint=checkpoint, stopped=stopped, solved=solved, extra=extra)

    def _plan(self, run: _Run, at_evaluation: bool) -> None:
        """A time-only run plans its schedule's length, then re-plans it as it goes (see schedule.py)."""
        c, state = self.config, self.state
        plans = state.schedule_plans
        if not replan_due(c, plans, state.schedule_steps is not None and not plans, state.step, at_evaluation):
            return
        state.elapsed = time.perf_counter() - run.loop_start  # an evaluation's own time counts
        if plans:
            was = state.schedule_steps
            length = replan_steps(c.time_budget, state.step, state.elapsed, plans[-1][0], state.plan_elapsed)
        else:
            was, length = None, plan_steps(c.time_budget, state.step, state.elapsed)
            state.decay_start = state.step
        plans.append([state.step, length])
        state.schedule_steps, state.plan_elapsed = length, state.elapsed
        run.schedule = LRSchedule.from_plans(c, plans)
        if was is None:
            run.display.message(f"{c.task}: {state.step} steps took {state.elapsed:.1f}s; the learning rate decays "
                                f"over {length} steps in all (the steps that fit in the time budget; re-planned "
                                "at each evaluation)")
        elif abs(length - was) > 0.02 * was:
            run.display.message(f"{c.task}: step {state.step}: the time budget now fits {length} steps (planned "
                                f"{was}); the rest of the learning-rate decay is spread over them")

    def _loop(self, run: _Run) -> None:
        """Optimiser steps until a budget, a stop request or an evaluation ends the run."""
        c, world, state = self.config, self.dist_info.world_size, self.state
        while True:
            state.elapsed = time.perf_counter() - run.loop_start
            signalled = "interrupted" if run.flag.signum is not None else None
            reason = run.stopped or self._stop or signalled or self._budget_reason()
            if agree_stop(reason is not None, self.dist_info):
                run.stopped = reason or "interrupted"  # another rank stopped (e.g. its SIGTERM)
                return
            t0 = time.perf_counter()
            run.in_step = True
            batch = to_device(self._task.batch(state.step), run.device)
            lr = self.last_lr = run.schedule.lr_at(state.step)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            run.net.train()
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=c.precision_for == "bf16"):
                loss, carry = self._task.loss(run.net, batch, state.carry)
            value = float(loss.detach())
            run.optimizer.zero_grad(set_to_none=True)
            bad = None if math.isfinite(value) else f"the loss is {value}"
            if bad is None or self.dist_info.distributed:  # under DDP every rank joins the gradient all-reduce
                loss.backward()
                norm = (nn.utils.clip_grad_norm_(run.model.parameters(), c.clip_norm) if c.clip_norm is not None
                        else nn.utils.get_total_norm([p.grad for p in run.model.parameters() if p.grad is not None]))
                if bad is None and not bool(torch.isfinite(norm)):
                    bad = nonfinite_gradient(run.model) or "the gradient norm"
            if bad is not None:
                run.nonfinite = f"step {state.step + 1}: {bad}"
                run.optimizer.zero_grad(set_to_none=True)
                if c.on_nonfinite == "stop":  # the weights stay those of the last good step
                    run.stopped, run.in_step = "diverged", False
                    run.display.message(f"{run.nonfinite}; stopping (--on-nonfinite stop), the last good checkpoint "
                                        "is kept")
                    return
                run.display.message(f"{run.nonfinite}; step skipped (--on-nonfinite skip)")
                state.skipped_steps += 1
                state.carry = None  # the state after a non-finite forward pass is not worth carrying
            else:
                run.optimizer.step()
                state.carry = carry
                run.loss_sum += value
                run.loss_count += 1
            state.step += 1
            state.sequences += batch.sequences * world  # every rank's batch has batch_size sequences
            state.tokens += all_sum(batch.tokens, self.dist_info)
            run.in_step = False
            now = time.perf_counter()
            state.train_seconds += now - t0
            state.elapsed = now - run.loop_start
            spent = state.train_seconds - run.train_mark
            run.display.update(step=state.step, elapsed=state.elapsed, lr=lr,
                               train_loss=run.loss_sum / run.loss_count if run.loss_count else None,
                               tokens_per_second=(state.tokens - run.tokens_mark) / spent if spent > 0 else 0.0)
            if self.callback is not None:
                self.callback(self)
            if c.eval_every and state.step % c.eval_every == 0:
                self._evaluate(run, final=False)
            else:
                self._plan(run, at_evaluation=False)

    def _evaluate(self, run: _Run, final: bool) -> None:
        """Score the held-out data, record it everywhere, and decide on solved / patience stops."""
        c, main, state = self.config, self.dist_info.is_main, self.state
        wall = time.perf_counter() - run.loop_start  # loop time up to this evaluation, not including it
        values = self._task.evaluate(run.net, final=final)
        if not final:
            self._plan(run, at_evaluation=True)
        solved = self._task.solved(values)
        spent = state.train_seconds - run.train_mark
        record: dict[str, Any] = {
            "step": state.step, "epoch": self._epoch(), "sequences": state.sequences, "tokens": state.tokens,
            "wall_seconds": round(wall, 3), "train_seconds": round(state.train_seconds, 3),
            "lr": run.optimizer.param_groups[0]["lr"],
            "train_loss": run.loss_sum / run.loss_count if run.loss_count else None,
            "tokens_per_second": (state.tokens - run.tokens_mark) / spent if spent > 0 else None,
            "schedule_steps": state.schedule_steps, **values}
        if solved is not None:
            record["solved"] = solved
        if final:
            record["final"] = True
        state.history.append(record)
        run.metrics = values
        run.loss_sum, run.loss_count, run.tokens_mark, run.train_mark = 0.0, 0, state.tokens, state.train_seconds
        run.last_eval_step = state.step
        headline = values.get(self._task.headline)
        if headline is not None and self._task.better(headline, state.best):
            state.best, state.since_best = headline, 0
        else:
            state.since_best += 1
        if main:
            run.log.append(record)
            if run.board is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                        run.board.add_scalar(key, value, state.step)
            wait = max(PLOT_INTERVAL, run.plot_cost / PLOT_SHARE)
            if c.plot and (final or time.monotonic() - run.last_plot >= wait):
                before = time.monotonic()
                self._plot()
                run.last_plot = time.monotonic()
                run.plot_cost = run.last_plot - before
        run.display.evaluated(values, final=final)
        if c.stop_when_solved and solved and run.stopped is None:
            run.stopped = "solved"
        if c.patience is not None and state.since_best >= c.patience and run.stopped is None:
            run.stopped = "patience"
        if main and not final and time.monotonic() - run.last_checkpoint >= c.checkpoint_interval:
            self._save(run, None)
            run.last_checkpoint = time.monotonic()

    def _plot(self) -> None:
        task = self.config.task
        label = {"text": "training characters", "reber": "training words", "embedded-reber": "training words"}
        plot_curves(self.state.history, self.run_dir / "curve.png", title=f"{task}, {self.config.cell}",
                    x_key="tokens" if task == "text" else "sequences", x_label=label.get(task, "training sequences"),
                    references=self._loss_references())

    def _loss_references(self) -> dict[str, float]:
        """The task's baseline scores (curve.png draws those in loss units), computed once."""
        if getattr(self, "_references", None) is None:
            self._references = self._task.baseline()
        return self._references

    def _summary(self, metrics: dict[str, float], stopped: str, solved: bool | None, run: _Run,
                 model: nn.Module) -> dict[str, Any]:
        from rnnkit.checkpoint import config_to_json

        c, state = self.config, self.state
        skip = {"step", "epoch", "sequences", "tokens", "wall_seconds", "train_seconds", "lr", "train_loss",
                "tokens_per_second", "solved", "schedule_steps"}
        summary = {
            "task": c.task, "cell": c.cell, "checkpoint": str(self.run_dir / CHECKPOINT_DIR),
            "train_sequences": state.sequences, "train_tokens": state.tokens,
            "wall_seconds": round(run.wall_before + time.perf_counter() - run.session_start, 3),
            "world_size": self.dist_info.world_size,
            "metrics": {k: v for k, v in metrics.items() if k not in skip}, "solved": solved, "stopped": stopped,
            "steps": state.step, "epochs": self._epoch(), "train_seconds": round(state.train_seconds, 3),
            "loop_seconds": round(state.elapsed, 3), "schedule_steps": state.schedule_steps,
            "schedule_plans": [list(p) for p in state.schedule_plans],
            "tokens_per_second": round(state.tokens / state.train_seconds, 1) if state.train_seconds else None,
            "precision": c.precision_for, "device": str(run.device),
            "parameters": sum(p.numel() for p in model.parameters()), "baseline": self._task.baseline(),
            "data": self._task.describe(), "run_dir": str(self.run_dir), "config": config_to_json(c),
        }
        if c.sized_for_budget is not None:
            from rnnkit.training.budget import describe_budget_choice

            summary["budget_defaults"] = describe_budget_choice(c)
        if state.skipped_steps:
            summary["skipped_steps"] = state.skipped_steps
        if run.nonfinite:
            summary["nonfinite"] = run.nonfinite
        if run.flag.signum is not None and stopped == "interrupted":
            summary["signal"] = SIGNAL_NAMES.get(run.flag.signum, str(run.flag.signum))
        return summary

"""The synthetic tasks: sine/cosine regression, the adding problem and the copy task.

Each step draws a fresh batch from a ``torch.Generator`` seeded by ``step_seed(task, seed, rank,
step)``; the held-out set (``eval_size`` sequences) is drawn once from ``EVAL_SEED``.
``seq_len`` sets the difficulty: the sine length, the adding problem's length, the copy lag.

- ``sine``: predict the next point of a rotating (sin, cos) pair at every step (seed 001's
  exercise). Metric: ``val_mse``.
- ``adding``: read T (value, marker) pairs, output the sum of the two marked values at the end
  (many-to-one). Metrics: ``val_mse``; answering 1 whatever the input scores ``baseline_mse``
  = 1/6. Solved: ``val_mse`` <= 0.01, a 94% cut of the baseline's error.
- ``copy``: recall 10 symbols (of 8) after a lag of T blanks (Arjovsky et al. 2016).
  Metrics: ``val_loss`` (cross-entropy per step, all steps), ``recall_accuracy`` (the share of
  the recalled symbols predicted exactly, by argmax); the memoryless strategy scores
  ``baseline_loss`` = 10 log 8 / (T + 20). Solved: ``recall_accuracy`` >= 0.99.

Example:
    >>> from rnnkit.training.config import make_config
    >>> task = CopyTask(make_config("copy", overrides={"seq_len": 5, "eval_size": 4}))
    >>> tuple(task.batch(0).inputs.shape)   # (B, T) ids, T = lag + 2 * 10
    (64, 25)
"""
from __future__ import annotations

import torch
from torch import nn

from rnnkit.data import synthetic
from rnnkit.models import RegressorConfig, RNNConfig, SequenceRegressor, SequenceTagger, TaggerConfig
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_base import EVAL_SEED, SOLVED, Batch, Task, model_device, step_seed, unwrap

__all__ = ["ADDING_SOLVED_MSE", "AddingTask", "COPY_SYMBOLS", "COPY_LENGTH", "CopyTask", "SYNTHETIC", "SineTask"]

ADDING_SOLVED_MSE = 0.01  # the adding problem counts as solved at or below this validation MSE
COPY_SYMBOLS = 8  # data symbols of the copy task (ids 1..8; 0 is blank, 9 the delimiter)
COPY_LENGTH = 10  # symbols to recall


def _rnn(config: TrainConfig) -> RNNConfig:
    return RNNConfig(cell=config.cell, hidden_size=config.hidden_size, num_layers=config.num_layers,
                     bidirectional=config.bidirectional, dropout=config.dropout, engine=config.engine)


class _Synthetic(Task):
    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, rank, world_size)
        self._held_out: tuple[torch.Tensor, torch.Tensor] | None = None

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(step_seed(self.name, self.config.seed, self.rank, step))

    @property
    def held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._held_out is None:
            self._held_out = self.draw(self.config.eval_size, torch.Generator().manual_seed(EVAL_SEED))
        return self._held_out

    def batch(self, step: int) -> Batch:
        x, y = self.draw(self.config.batch_size, self.generator(step))
        return Batch(inputs=x, targets=y, mask=None, sequences=x.shape[0], tokens=x.shape[0] * x.shape[1])

    def predict(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(outputs, inputs, targets) of the held-out set, in eval mode without gradients."""
        net = unwrap(model)
        was_training = net.training
        net.eval()
        x, y = self.held_out
        with torch.no_grad():
            out = net(x.to(model_device(net)))
        net.train(was_training)
        return (out[0] if isinstance(out, tuple) else out).cpu(), x, y

    def describe(self) -> str:
        return (f"{self.name}: seq_len {self.config.seq_len}, {self.config.batch_size} fresh sequences per step, "
                f"{self.config.eval_size} held-out sequences (seed {EVAL_SEED})")


class SineTask(_Synthetic):
    """Next-step prediction of (sin, cos) of a rotating point."""

    name = "sine"
    headline = "val_mse"
    higher_is_better = False

    def build_model(self) -> nn.Module:
        return SequenceRegressor(RegressorConfig(input_size=2, output_size=2, rnn=_rnn(self.config)))

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return synthetic.sine_cosine(batch_size, self.config.seq_len, shift=1, generator=generator)

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        pred, _, y = self.predict(model)
        return {"val_mse": float(((pred - y) ** 2).mean())}

    def baseline(self) -> dict[str, float]:
        _, x, y = self.predict(nn.Identity())  # echo the input: the best answer with no model of rotation
        return {"repeat_input_mse": float(((x - y) ** 2).mean())}


class AddingTask(_Synthetic):
    """The adding problem (many-to-one regression)."""

    name = "adding"
    headline = "val_mse"
    higher_is_better = False

    def build_model(self) -> nn.Module:
        return SequenceRegressor(RegressorConfig(input_size=2, output_size=1, rnn=_rnn(self.config), many_to_one=True))

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return synthetic.adding_problem(batch_size, self.config.seq_len, generator=generator)

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        pred, _, y = self.predict(model)
        return {"val_mse": float(((pred - y) ** 2).mean())}

    def baseline(self) -> dict[str, float]:
        return {"baseline_mse": synthetic.ADDING_BASELINE_MSE}

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["val_mse"] <= ADDING_SOLVED_MSE


class CopyTask(_Synthetic):
    """The copy (delayed recall) task, many-to-many classification."""

    name = "copy"
    headline = "recall_accuracy"
    higher_is_better = True

    def build_model(self) -> nn.Module:
        return SequenceTagger(TaggerConfig(vocab_size=COPY_SYMBOLS + 2, rnn=_rnn(self.config), target="class",
                                           num_outputs=COPY_SYMBOLS + 1))

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return synthetic.copy_task(batch_size, self.config.seq_len, n_copy=COPY_LENGTH, n_symbols=COPY_SYMBOLS,
                                   one_hot=False, generator=generator)

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        logits, _, y = self.predict(model)  # (B, T, 9), (B, T)
        loss = float(unwrap(model).loss(logits, y))
        recalled = logits[:, -COPY_LENGTH:].argmax(-1) == y[:, -COPY_LENGTH:]  # (B, K)
        return {"val_loss": loss, "recall_accuracy": float(recalled.float().mean())}

    def baseline(self) -> dict[str, float]:
        return {"baseline_loss": synthetic.copy_baseline(self.config.seq_len, COPY_LENGTH, COPY_SYMBOLS),
                "chance_recall_accuracy": 1.0 / COPY_SYMBOLS}

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["recall_accuracy"] >= SOLVED


SYNTHETIC: dict[str, type[_Synthetic]] = {"sine": SineTask, "adding": AddingTask, "copy": CopyTask}

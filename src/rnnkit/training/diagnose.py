"""Gradient flow through time, made visible: the lesson of seeds 001 and 002 as a picture.

For each cell, at initialisation and after training, ``diagnose`` measures the norm of the
gradient that one late loss sends back to each earlier step's recurrent state, against the
distance back in time. A plain (Elman) network's curve falls off exponentially, so it cannot
learn a dependency across many steps; a gated cell's curve stays flat much longer.

The probe loss is the task's long-range prediction:

* ``embedded-reber``: the prediction of the second-to-last symbol, which must repeat the second
  one; the symbol it depends on was read ``length - 3`` steps earlier. Words are grouped by
  length, so every row of a batch has its probe at the same step.
* ``reber``: the prediction of the final ``E``.
* ``adding``: the regression target read from the final state.

The gradients are recorded by :class:`rnnkit.GradientTap` on the hidden state h of the first
recurrent layer (the state every cell has, and the one the next step's matmul reads); each
figure is the root mean square over the held-out sequences of the per-sequence norm of dL/dh_t.

Example:
    >>> import tempfile
    >>> from rnnkit.training.diagnose import DiagnoseConfig, diagnose
    >>> result = diagnose(DiagnoseConfig(cells=("elman",), steps=2, sequences=20, out=tempfile.mkdtemp()),
    ...                   progress=False)
    >>> sorted(result["curves"][0])[:3]
    ['cell', 'distance', 'moment']
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.engine import BPTT, GradientTap
from rnnkit.errors import bad_argument

__all__ = ["TASKS", "DiagnoseConfig", "diagnose", "format_table", "gradient_flow", "plot_flow"]

TASKS = ("embedded-reber", "reber", "adding")
PROBE_SEED = 20_260_101  # the held-out probe sequences, the same for every cell and moment


@dataclass(frozen=True)
class DiagnoseConfig:
    """What ``rnnkit diagnose`` measures."""

    task: str = "embedded-reber"  # one of TASKS
    cells: tuple[str, ...] = ("elman", "lstm", "gru")  # cells to train and measure
    seed: int = 0  # training seed of every cell
    steps: int | None = None  # training budget per cell; None: the task's default (stops when solved)
    sequences: int = 200  # held-out probe sequences
    seq_len: int = 50  # adding only: sequence length of the probe and the training task
    out: str = "runs/diagnose"  # folder for the runs, gradient_flow.png and gradient_flow.json

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise bad_argument("task", f"one of {', '.join(TASKS)}", self.task, "use e.g. task='embedded-reber'")
        if not self.cells:
            raise bad_argument("cells", "at least one cell", self.cells, "use e.g. cells=('elman', 'lstm')")
        if self.sequences < 1:
            raise bad_argument("sequences", "a positive int", self.sequences, "use e.g. sequences=200")


def _probe_batches(task: str, sequences: int, seq_len: int) -> list[tuple[Any, int, Any]]:
    """(inputs, probe step, targets) batches; all rows of a batch probe the same step."""
    if task == "adding":
        from rnnkit.data.synthetic import adding_problem

        x, y = adding_problem(sequences, seq_len, generator=PROBE_SEED)  # (N, T, 2), (N, 1)
        return [(x, seq_len - 1, y)]
    from rnnkit.data import reber

    embedded = task == "embedded-reber"
    words = reber.dataset(sequences, seed=PROBE_SEED, embedded=embedded)
    by_length: dict[int, list[str]] = defaultdict(list)
    for word in words:
        by_length[len(word)].append(word)
    batches = []
    for length in sorted(by_length):
        enc = reber.encode(by_length[length], embedded)
        T = length - 1  # steps: every symbol but the last is read
        probe = T - 2 if embedded else T - 1  # embedded: predicts the second-to-last symbol
        batches.append((enc.input_ids, probe, enc.targets[:, probe]))
    return batches


def gradient_flow(model: nn.Module, task: str, sequences: int = 200, seq_len: int = 50) -> dict[int, float]:
    """{distance back in time: RMS over sequences of ||dL/d(state)||} for ``model``'s first layer.

    ``model`` is a ``SequenceTagger`` (Reber tasks) or a many-to-one ``SequenceRegressor``
    (adding). Distance 0 is the probe step itself. The probe starts from the model's own
    initial state (a tagger's learned h0, ``initial_state``), else from zeros.
    """
    was_training = model.training
    model.eval()
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, int] = defaultdict(int)
    weight = next(model.parameters())
    for inputs, probe, targets in _probe_batches(task, sequences, seq_len):
        tap = GradientTap()
        model.zero_grad(set_to_none=True)
        if task == "adding":
            y, state = model.rnn(inputs.to(weight), None, bptt=BPTT(tap=tap))
            h_n = state[0] if isinstance(state, tuple) else state  # (L, B, H)
            loss = F.mse_loss(model.head(h_n[-1]), targets.to(weight), reduction="sum")
        else:
            x = F.one_hot(inputs, model.config.vocab_size).to(weight)  # (B, T, V)
            start = model.initial_state(x.shape[0]) if hasattr(model, "initial_state") else None
            y, _ = model.rnn(x, start, bptt=BPTT(tap=tap))  # (B, T, H)
            logits = model.head(y[:, probe])  # (B, V)
            loss = F.binary_cross_entropy_with_logits(logits, targets.to(weight), reduction="sum")
        loss.backward()
        squared = tap.norms(tap.keys()[0].split("/")[0] + "/h") ** 2  # (T,) first layer, summed over the batch
        rows = inputs.shape[0]
        for t in range(probe + 1):
            sums[probe - t] += float(squared[t])  # the batch's sum of per-row squared norms
            counts[probe - t] += rows
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {d: math.sqrt(sums[d] / counts[d]) for d in sorted(sums)}


def _ratio(flow: dict[int, float], far: int = 10, near: int = 1) -> float | None:
    if far not in flow or near not in flow or flow[near] == 0.0:
        return None
    return flow[far] / flow[near]


def diagnose(config: DiagnoseConfig, progress: bool = True) -> dict[str, Any]:
    """Train each cell on the task and record its gradient flow before and after; write PNG + JSON."""
    from rnnkit.training.config import make_config
    from rnnkit.training.records import write_json_atomic
    from rnnkit.training.tasks import make_task
    from rnnkit.training.trainer import Trainer

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    curves, runs = [], []
    for cell in config.cells:
        overrides: dict[str, Any] = {"cell": cell, "seed": config.seed, "out": str(out / cell), "plot": False,
                                     "tensorboard": False}
        if config.steps is not None:
            overrides["steps"] = config.steps
        if config.task == "adding":
            overrides["seq_len"] = config.seq_len
        run_config = make_config(config.task, "modern", overrides)
        task = make_task(run_config)
        torch.manual_seed(config.seed)
        model = task.build_model()
        before = gradient_flow(model, config.task, config.sequences, config.seq_len)
        result = Trainer(run_config, task=task, progress=progress).fit()
        after = gradient_flow(result.model, config.task, config.sequences, config.seq_len)
        summary = result.summary
        runs.append({"cell": cell, "run_dir": str(out / cell), "steps": summary.get("steps"),
                     "train_sequences": summary.get("train_sequences"), "stopped": summary.get("stopped"),
                     "metrics": summary.get("metrics")})
        for moment, flow in (("init", before), ("trained", after)):
            curves.append({"cell": cell, "moment": moment, "distance": list(flow), "norm": list(flow.values()),
                           "ratio_10_to_1": _ratio(flow)})
    plot = plot_flow(curves, out / "gradient_flow.png", config.task)
    result = {"config": asdict(config), "curves": curves, "runs": runs, "plot": str(plot),
              "json": str(out / "gradient_flow.json")}
    write_json_atomic(out / "gradient_flow.json", result)
    return result


def plot_flow(curves: list[dict[str, Any]], path: Path, task: str) -> Path:
    """One line per (cell, moment): gradient norm (log scale) against distance back in time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"elman": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for curve in curves:
        pairs = [(d, n) for d, n in zip(curve["distance"], curve["norm"]) if n > 0]
        if not pairs:
            continue
        xs, ys = zip(*pairs)
        ax.plot(xs, ys, color=colors.get(curve["cell"], None), linestyle="--" if curve["moment"] == "init" else "-",
                marker="o" if len(xs) < 4 else None, label=f"{curve['cell']} ({curve['moment']})")
    ax.set_yscale("log")
    ax.set_xlabel("distance back in time from the probe loss (steps)")
    ax.set_ylabel("RMS gradient norm reaching the state")
    ax.set_title(f"Gradient flow through time, {task}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table: norms at distances 1 and 10 and their ratio, per cell and moment."""
    lines = ["| cell | moment | norm at distance 1 | norm at distance 10 | ratio 10 / 1 |", "|---|---|---|---|---|"]
    for c in result["curves"]:
        flow = dict(zip(c["distance"], c["norm"]))
        near = f"{flow[1]:.3g}" if 1 in flow else "-"
        far = f"{flow[10]:.3g}" if 10 in flow else "-"
        ratio = f"{c['ratio_10_to_1']:.3g}" if c["ratio_10_to_1"] is not None else "-"
        lines.append(f"| {c['cell']} | {c['moment']} | {near} | {far} | {ratio} |")
    return "\n".join(lines)

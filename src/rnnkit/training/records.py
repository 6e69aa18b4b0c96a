"""Run records: ``metrics.jsonl``, the learning-curve PNG and (optionally) TensorBoard.

- :class:`MetricsLog` appends one JSON object per evaluation to ``<run>/metrics.jsonl`` and
  flushes it at once, so ``tail -f`` follows a run. On resume it is rewritten from the
  checkpoint's history first, so records written after the checkpoint (by a run that then
  crashed) do not appear twice.
- :func:`plot_curves` draws training loss and validation metrics against training sequences
  (or tokens) into a PNG, written atomically (a viewer never sees half a file). It uses the
  Agg canvas directly: no pyplot, no display needed, and matplotlib is imported only here.
- :func:`tensorboard_writer` returns a ``SummaryWriter`` when the ``tensorboard`` package is
  installed, else None: TensorBoard is optional, never required, and a run without it says so
  in one line (``TENSORBOARD_MISSING``).

Example:
    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> log = MetricsLog(run / "metrics.jsonl")
    >>> log.append({"step": 10, "train_loss": 0.5})
    >>> read_metrics(run / "metrics.jsonl")
    [{'step': 10, 'train_loss': 0.5}]
"""
from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TENSORBOARD_MISSING", "MetricsLog", "curve_series", "plot_comparison", "plot_curves", "read_metrics", "tensorboard_writer",
           "write_json_atomic"]

_LOSS_KEYS = ("val_loss", "val_mse")  # validation metrics in the training loss's units
_SKIP = {"step", "epoch", "sequences", "tokens", "wall_seconds", "train_seconds", "lr", "train_loss",
         "tokens_per_second", "final", "solved", "val_bpc"}


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` through a temp file and a rename."""
    _write_atomic(path, (json.dumps(value, indent=2, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


class MetricsLog:
    """Append-only JSON-lines log of a run's evaluations."""

    def __init__(self, path: str | os.PathLike[str], history: Sequence[dict] | None = None) -> None:
        """Open ``path``; ``history`` (on resume) replaces whatever the file held, else it starts empty."""
        self.path = Path(path)
        lines = "".join(json.dumps(r, allow_nan=True) + "\n" for r in (history or ()))
        _write_atomic(self.path, lines.encode("utf-8"))

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (a JSON object) as one line, flushed."""
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a torn last line, from a crash mid-write, is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def curve_series(history: Sequence[dict[str, Any]], x_key: str) -> dict[str, tuple[list[float], list[float]]]:
    """``{metric: (xs, ys)}`` of every numeric metric in ``history`` (non-finite values dropped)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for record in history:
        x = record.get(x_key)
        for key, value in record.items():
            if key in _SKIP - {"train_loss"} or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if x is None or not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(x)
            ys.append(value)
    return series


def _new_figure(panels: int, width: float = 5.0) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.8 / (width * panels), right=1 - 0.15 / (width * panels), bottom=0.14, top=0.86,
                        wspace=0.3)  # fixed margins: tight_layout would cost more than the drawing
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    return fig, axes


def _style_x(ax: Any) -> None:
    """Few x ticks, large counts written as 20k / 1.5M so the labels never run together."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    def short(value: float, _: Any) -> str:
        for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                return f"{value / size:g}{suffix}"
        return f"{value:g}"

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.xaxis.set_major_formatter(FuncFormatter(short))


def _save(fig: Any, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _write_atomic(path, buffer.getvalue())


def _loss_axis(ax: Any, values: list[float]) -> None:
    """A loss axis a person reads at a glance: log scale only when the losses span 10x or more,
    about six plain-number ticks either way, and no labels on minor ticks (they ran together)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    low, high = min(values), max(values)
    if low > 0 and high / low >= 10:
        ax.set_yscale("log")
        subs = (1.0, 2.0, 5.0) if high / low <= 300 else (1.0,)  # at most ~8 labels
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.002, 0.5, 2
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))


def _style(points: int) -> dict[str, Any]:
    """Line style for a series of ``points``: markers when there are few, so one point is visible."""
    if points == 1:
        return {"marker": "o", "markersize": 7}
    return {"marker": "o", "markersize": 3.5} if points < 30 else {}


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, title: str = "",
                x_key: str = "sequences", x_label: str = "training sequences",
                references: dict[str, float] | None = None) -> Path:
    """Draw the learning curves of ``history`` (records as in ``metrics.jsonl``) into the PNG ``path``.

    Left: the training loss and, in the same units, ``val_loss``/``val_mse``, with ``references``
    (e.g. a task's ``baseline()``, ``{"unigram_val_loss": 3.3}``; keys ending in ``_loss`` or
    ``_mse``, the others are not in loss units and are left out) as dashed horizontal lines.
    Right (when the task has any): the other validation metrics, e.g. the Reber accuracies, with
    the "solved" threshold (``rnnkit.training.tasks.SOLVED``) when there are accuracies.
    """
    from rnnkit.training.task_base import SOLVED

    series = curve_series(history, x_key)
    losses = [k for k in ("train_loss", *_LOSS_KEYS) if k in series]
    others = [k for k in series if k not in losses]
    fig, axes = _new_figure(2 if others else 1)
    for key in losses:
        axes[0].plot(*series[key], label=key, **_style(len(series[key][0])))
    lines = {k: v for k, v in (references or {}).items()  # only scores in the loss's units: *_loss, *_mse
             if k.endswith(("_loss", "_mse")) and isinstance(v, (int, float)) and math.isfinite(v)}
    for key, value in lines.items():
        axes[0].axhline(value, color="0.45", linestyle="--", linewidth=1.0, label=f"{key} {value:.3g}")
    axes[0].set_xlabel(x_label)
    axes[0].set_ylabel("loss")
    _style_x(axes[0])
    values = [v for k in losses for v in series[k][1]] + list(lines.values())
    if values:
        _loss_axis(axes[0], values)
    if losses or lines:
        axes[0].legend(loc="best", fontsize="small")
    axes[0].grid(True, alpha=0.3)
    if others:
        for key in others:
            axes[1].plot(*series[key], label=key, **_style(len(series[key][0])))
        if any(k.endswith("accuracy") or k == "sample_validity" for k in others):
            axes[1].axhline(SOLVED, color="0.3", linestyle="--", linewidth=1.0, label=f"solved ({SOLVED:g})")
        axes[1].set_xlabel(x_label)
        axes[1].set_ylabel("held-out metric")
        _style_x(axes[1])
        axes[1].legend(loc="best", fontsize="small")
        axes[1].grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize="medium")
    out = Path(path)
    _save(fig, out)
    return out


def plot_comparison(groups: dict[str, dict[str, list[Sequence[dict[str, Any]]]]], metric: dict[str, str],
                    path: str | os.PathLike[str], *, x_key: str = "sequences",
                    x_label: dict[str, str] | None = None) -> Path:
    """One PNG with a panel per group (e.g. a recipe or task): ``groups[group][label]`` is a list of
    histories (one per seed) drawn in one colour; ``metric[group]`` names the metric to draw."""
    fig, axes = _new_figure(max(1, len(groups)), width=4.8)
    colours = {}
    for ax, (group, runs) in zip(axes, groups.items()):
        key = metric[group]
        for label, histories in runs.items():
            colour = colours.setdefault(label, f"C{len(colours)}")
            for i, history in enumerate(histories):
                series = curve_series(history, x_key).get(key)
                if series:
                    ax.plot(*series, color=colour, alpha=0.8, linewidth=1.2, label=label if i == 0 else None)
        ax.set_title(group, fontsize="medium")
        ax.set_xlabel((x_label or {}).get(group, "training sequences"))
        ax.set_ylabel(key, fontsize="small")
        _style_x(ax)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    out = Path(path)
    _save(fig, out)
    return out


TENSORBOARD_MISSING = ("note: TensorBoard logging is off: the tensorboard package is not installed "
                       "(pip install tensorboard turns it on; --no-tensorboard silences this note)")


def tensorboard_writer(log_dir: str | os.PathLike[str]) -> Any | None:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or None when tensorboard is not installed
    (the trainer then shows ``TENSORBOARD_MISSING`` once)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))

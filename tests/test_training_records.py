"""Records: metrics.jsonl, the learning-curve PNGs, and the progress display on and off a terminal."""
from __future__ import annotations

import io

import pytest
import json
from pathlib import Path

from rnnkit.training.progress import ProgressDisplay, format_duration
from rnnkit.training.records import MetricsLog, curve_series, plot_comparison, plot_curves, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = [{"step": 10 * k, "sequences": 160 * k, "train_loss": 1.0 / k, "next_symbol_set_accuracy": k / 5,
            "long_range_accuracy": k / 6, "lr": 0.01, "solved": False} for k in range(1, 6)]


def test_metrics_log_appends_lines_and_rewrites_history_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for record in HISTORY:
        log.append(record)
    assert read_metrics(path) == HISTORY
    with open(path, "a") as handle:  # a crash mid-write leaves a torn last line
        handle.write('{"step": 60, "train_lo')
    assert read_metrics(path) == HISTORY
    MetricsLog(path, history=HISTORY[:2])  # resuming from the checkpoint of step 20
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]


def test_curve_series_keeps_numeric_metrics_only() -> None:
    series = curve_series(HISTORY + [{"step": 60, "sequences": 960, "train_loss": float("nan")}], "sequences")
    assert set(series) == {"train_loss", "next_symbol_set_accuracy", "long_range_accuracy"}
    assert series["train_loss"] == ([160, 320, 480, 640, 800], [1.0, 0.5, 1 / 3, 0.25, 0.2])


def test_plots_are_png_files(tmp_path: Path) -> None:
    assert plot_curves(HISTORY, tmp_path / "curve.png", title="t").read_bytes()[:8] == PNG
    text = [{"step": k, "tokens": 1000 * k, "train_loss": 2.0 / k, "val_loss": 2.1 / k, "val_bpc": 3.0 / k}
            for k in range(1, 4)]
    assert plot_curves(text, tmp_path / "lm.png", x_key="tokens").read_bytes()[:8] == PNG
    groups = {"reber": {"lstm": [HISTORY, HISTORY[:3]], "gru": [HISTORY]}, "adding": {"lstm": [text]}}
    metric = {"reber": "long_range_accuracy", "adding": "val_loss"}
    assert plot_comparison(groups, metric, tmp_path / "all.png").read_bytes()[:8] == PNG
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_prints_few_plain_lines() -> None:
    stream = io.StringIO()
    bar = ProgressDisplay(total_steps=1000, time_budget=None, headline="val_loss", file=stream, interval=3600)
    bar.start()
    for step in range(1, 1001):
        bar.update(step=step, elapsed=step / 100, train_loss=1.0, tokens_per_second=5000.0, lr=1e-3)
        if step % 10 == 0:
            bar.evaluated({"val_loss": 1.5}, final=step == 1000)
    bar.stop()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the first evaluation, then the final one; nothing in between
    assert "step 1000/1000" in lines[-1] and "val_loss 1.5" in lines[-1] and "5,000 tok/s" in lines[-1]


def test_progress_on_a_terminal_draws_a_bar_and_quiet_prints_nothing() -> None:
    terminal = FakeTerminal()
    bar = ProgressDisplay(total_steps=None, time_budget=10.0, headline="long_range_accuracy", file=terminal)
    bar.start()
    bar.update(step=5, elapsed=5.0, train_loss=0.25, tokens_per_second=100.0, lr=0.01)
    bar.evaluated({"long_range_accuracy": 0.5})
    assert bar.fraction(5, 5.0) == 0.5
    bar.stop()
    assert "long_range_accuracy 0.5" in terminal.getvalue() and "ETA 5.0s" in terminal.getvalue()
    silent = io.StringIO()
    quiet = ProgressDisplay(total_steps=10, time_budget=None, headline="x", file=silent, enabled=False)
    quiet.start()
    quiet.update(step=1, elapsed=0.1, train_loss=1.0, tokens_per_second=1.0, lr=1.0)
    quiet.evaluated({"x": 1.0}, final=True)
    quiet.stop()
    assert silent.getvalue() == ""


def test_format_duration() -> None:
    assert [format_duration(s) for s in (4.25, 42, 185, 3720)] == ["4.2s", "42s", "3m05s", "1h02m"]


def test_progress_warns_once_when_throughput_falls_far_below_its_start() -> None:
    import io

    from rnnkit.training.progress import ProgressDisplay

    stream = io.StringIO()
    bar = ProgressDisplay(total_steps=100, time_budget=None, headline="val_loss", file=stream, interval=0.0)
    for step, rate in ((10, 30_000.0), (20, 28_000.0), (30, 6_000.0), (40, 5_000.0)):
        bar.update(step=step, elapsed=step / 10, train_loss=2.0, tokens_per_second=rate, lr=1e-3)
        bar.evaluated({"val_loss": 2.0})
    warnings = [line for line in stream.getvalue().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "6,000 tok/s, 20% of this run's start (30,000)" in warnings[0]
    assert "--threads 1" in warnings[0]


@pytest.mark.parametrize("values", [[0.0002, 0.6], [1.38, 4.2], [0.9, 1.1], [0.01, 3000.0]])
def test_loss_axis_tick_labels_never_overlap(values: list[float]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rnnkit.training.records import _loss_axis

    fig = Figure(figsize=(5, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], values)
    _loss_axis(ax, values)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels(which="both") if t.get_visible() and t.get_text()]
    low, high = ax.get_ylim()
    assert 3 <= len(boxes) <= 12
    boxes.sort(key=lambda b: b.y0)
    assert all(a.y1 <= b.y0 for a, b in zip(boxes, boxes[1:]))  # no two labels share a pixel row


def test_curve_draws_references_and_the_solved_line(tmp_path: Path) -> None:
    history = [{"step": 10, "sequences": 160, "train_loss": 0.4, "val_loss": 0.5, "next_symbol_set_accuracy": 0.5}]
    out = plot_curves(history, tmp_path / "c.png", references={"unigram_val_loss": 3.2, "copy_bleu": 40.0})
    assert out.stat().st_size > 0

"""The one-screen summary ``rnnkit train`` ends with, and the tables ``eval`` and ``info`` print."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnkit.training.progress import format_duration

__all__ = ["console", "metrics_table", "print_summary"]

_STOPPED = {"steps": "step budget reached", "epochs": "epoch budget reached", "time_budget": "time budget used up",
            "solved": "solved (stopped at the first evaluation that solved it)",
            "patience": "no improvement for --patience evaluations",
            "diverged": "a loss or gradient became NaN or infinite",
            "interrupted": "interrupted (checkpoint written; continue with --resume)"}


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def metrics_table(metrics: dict[str, Any], title: str = "held-out metrics") -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, _fmt(value))
    return table


def _stopped_line(summary: dict[str, Any]) -> str:
    """Why the run stopped; a divergence names what was not finite (the loss, or which gradient) and where."""
    stopped = summary["stopped"]
    what = summary.get("nonfinite")
    if stopped != "diverged" or not what:
        return _STOPPED.get(stopped, stopped)
    what = what if "the loss is" in what else f"{what} was not finite"
    return f"{what}; stopped, the last good checkpoint is kept"


def _schedule_line(summary: dict[str, Any]) -> str:
    """A time-only run's learning-rate plan against the steps it took (the plan is re-made at each evaluation)."""
    plans = summary["schedule_plans"]
    (at, first), again = plans[0], len(plans) - 1
    return (f"the learning-rate decay was planned to end at step {summary['schedule_steps']:,} and the run took "
            f"{summary['steps']:,} steps (first planned at step {at:,} for {first:,}, re-planned {again} "
            f"time{'s' if again != 1 else ''})")


def print_summary(summary: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Print what ran, how it ended, the metrics, and where the files are."""
    from rich.table import Table

    out = console()
    config = summary.get("config", {})
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    model = f"{summary['cell']} x {config.get('num_layers', 1)} layer(s) of {config.get('hidden_size')}"
    if summary.get("precision", "fp32") != "fp32":
        model += f", {summary['precision']} autocast"
    if config.get("bidirectional"):
        model += ", bidirectional"
    facts.add_row("task", f"{summary['task']}: {summary.get('data', '')}")
    facts.add_row("model", f"{model}, {summary['parameters']:,} parameters")
    if summary.get("budget_defaults"):
        facts.add_row("defaults", summary["budget_defaults"])
    optimizer = f"{config.get('optimizer')} lr {config.get('lr')}, batch {config.get('batch_size')}"
    facts.add_row("training", f"{optimizer}; {summary['steps']:,} steps, {summary['train_sequences']:,} sequences, "
                              f"{summary['train_tokens']:,} tokens, world size {summary['world_size']}")
    speed = summary.get("tokens_per_second")
    facts.add_row("time", f"{format_duration(summary['wall_seconds'])} wall, {format_duration(summary['train_seconds'])} "
                          f"training" + (f", {speed:,.0f} tokens/s" if speed else ""))
    if summary.get("schedule_plans"):
        facts.add_row("schedule", _schedule_line(summary))
    facts.add_row("stopped", _stopped_line(summary))
    if summary.get("solved") is not None:
        facts.add_row("solved", "yes" if summary["solved"] else "no")
    out.print(facts)
    metrics = dict(summary["metrics"])
    for key, value in summary.get("baseline", {}).items():
        metrics[f"{key} (reference)"] = value
    if metrics:
        out.print(metrics_table(metrics))
    run = Path(summary["run_dir"])
    files = [p for p in ("checkpoint", "metrics.jsonl", "curve.png", "summary.json") if (run / p).exists()]
    out.print(f"[bold]files[/bold]  {run}/: " + ", ".join(files) + f"  ({len(history)} evaluations)")

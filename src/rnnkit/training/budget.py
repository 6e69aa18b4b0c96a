"""Budget-aware defaults of the character language model: the model and schedule that suit a time budget.

A text run budgeted only by time (``--time-budget``, or the task's default 5 minutes) and given no model flag
(``--cell``, ``--hidden``, ``--layers``, ``--embedding``) takes its model size, dropout, warm-up, learning
rate, batch size and evaluation cadence from the first row of ``LM_BUDGET_TABLE`` whose ``up_to`` covers the
budget. A flag the user gives still wins over the row (``--lr 1e-3`` keeps the row's model); a model flag
turns the table off (the run keeps the task's defaults, ``TASK_DEFAULTS["text"]``). A run with a step or epoch
budget never uses the table, so it is bitwise reproducible from its flags alone.

The rows were measured on this project's 2-core CPU with native bf16 (BENCHMARKS.md, "Budget-aware
language-model defaults"): a short budget needs a model that sees many characters per second and takes many
updates (a smaller batch), a longer one pays back a wider model and more dropout. The chosen budget is stored in the
config (``sized_for_budget``) and so in every checkpoint: ``--resume`` continues the same model on the same
learning-rate curve (its remaining decay re-planned to the new end when it adds time).

Example:
    >>> row = budget_row(120.0)
    >>> row.name, row.values["hidden_size"], row.values["num_layers"]
    ('short', 256, 2)
    >>> budget_row(300.0).name, budget_row(300.0).values["batch_size"]
    ('medium', 32)
    >>> budget_row(600.0).values["hidden_size"]
    384
    >>> budget_defaults("text", {"time_budget": 120.0, "steps": None, "epochs": None}, given=set())["hidden_size"]
    256
    >>> budget_defaults("text", {"time_budget": 120.0, "steps": None}, given={"hidden_size"})
    {}
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LM_BUDGET_TABLE", "MODEL_FIELDS", "BudgetRow", "budget_defaults", "budget_row", "describe_budget_choice"]

MODEL_FIELDS = frozenset({"cell", "hidden_size", "num_layers", "embedding_size"})  # any of these turns the table off


@dataclass(frozen=True)
class BudgetRow:
    """One row of the table: the values a time-only text run takes when its budget is at most ``up_to`` seconds."""

    name: str
    up_to: float  # seconds (inclusive); math.inf for the last row
    values: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields


LM_BUDGET_TABLE: tuple[BudgetRow, ...] = (
    # A short budget is short of updates, not of characters: on one core, 2 x 256 bf16 at batch 32 took 1.9x the
    # steps of batch 64 in the same 2 minutes for 0.96x the characters and scored 1.568 against 1.663
    # (side by side, one core each; BENCHMARKS.md, "How the table was chosen").
    BudgetRow("short", 240.0, dict(hidden_size=256, num_layers=2, embedding_size=128, dropout=0.0, lr=3e-3,
                                   warmup_steps=50, batch_size=32, eval_every=300)),
    # up to 6 minutes the same model reads the text ~10 times: dropout 0.1. At 5 minutes, side by side: 1.512,
    # against 1.587 for the 2 x 384 batch-64 row below
    BudgetRow("medium", 360.0, dict(hidden_size=256, num_layers=2, embedding_size=128, dropout=0.1, lr=3e-3,
                                    warmup_steps=50, batch_size=32, eval_every=300)),
    # longer: the 2 x 384 model the task defaults hold (tuned at 10 minutes)
    BudgetRow("standard", math.inf, dict(hidden_size=384, num_layers=2, embedding_size=128, dropout=0.2, lr=3e-3,
                                         warmup_steps=100, batch_size=64, eval_every=250)),
)


def budget_row(time_budget: float) -> BudgetRow:
    """The table's row for a budget of ``time_budget`` seconds."""
    return next(row for row in LM_BUDGET_TABLE if time_budget <= row.up_to)


def budget_defaults(task: str, values: Mapping[str, Any], given: Set[str]) -> dict[str, Any]:
    """The fields the table sets for a run of ``task`` whose merged settings are ``values`` and whose caller gave
    the fields ``given``; ``{}`` when the table does not apply (not text, a step or epoch budget, no time
    budget, or a model field given). The caller's own fields are left out: they win."""
    time_budget = values.get("time_budget")
    if task != "text" or time_budget is None or values.get("steps") is not None or values.get("epochs") is not None:
        return {}
    if MODEL_FIELDS & set(given):
        return {}
    row = budget_row(float(time_budget))
    chosen = {k: v for k, v in row.values.items() if k not in given}
    chosen["sized_for_budget"] = float(time_budget)
    return chosen


def describe_budget_choice(config: Any) -> str | None:
    """One line naming what the table chose for ``config`` (a TrainConfig), or None when it chose nothing."""
    if getattr(config, "sized_for_budget", None) is None:
        return None
    from rnnkit.training.progress import format_duration

    row = budget_row(config.sized_for_budget)
    c = config
    return (f"time budget {format_duration(c.sized_for_budget)} and no model flags: the {row.name!r} row of the "
            f"budget table: {c.num_layers} x {c.hidden_size} {c.cell.upper()}, embedding {c.embedding_size}, "
            f"dropout {c.dropout:g}, batch {c.batch_size}, Adam {c.lr:g} with {c.warmup_steps} warm-up steps and "
            f"{c.decay} decay, evaluating every {c.eval_every} steps (model flags such as --hidden override it)")

"""Cost of each recurrent regulariser: fwd+bwd time as a ratio to the same model without it.

Generic engine, training mode, the middle regime (B=32, T=256, I=128, H=256) by default, for
rnnkit.LSTM, rnnkit.GRU and a user's MGU cell (``rnnkit.Structured``, compiled). Every variant
of a cell is timed round-robin with its plain baseline in the same run (``_harness``), and the
ratio is median / median. The mask draws are inside the timed call, as in training.

    python benchmarks/bench_regularisers.py                 # the middle regime, 5 repeats
    python benchmarks/bench_regularisers.py --quick         # tiny sizes, every path once (CI)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.cells.examples import MGU  # noqa: E402  (Zhou et al. 2016: a user's cell, compiled)

VARIANTS = {  # one sensible setting each (AWD-LSTM / Krueger et al. values)
    "plain": {},
    "input_dropout=0.25": dict(input_dropout=0.25),
    "recurrent_dropout=0.25": dict(recurrent_dropout=0.25),
    "zoneout=0.1": dict(zoneout=0.1),
    "weight_drop=0.5": dict(weight_drop=0.5),
    "all four": dict(input_dropout=0.25, recurrent_dropout=0.25, zoneout=0.1, weight_drop=0.5),
}


class UserLayer(torch.nn.Module):
    """Input projection + a custom cell scanned with ``regularisers=`` (what a user writes)."""

    def __init__(self, I: int, H: int, **reg: float) -> None:
        super().__init__()
        self.cell = MGU(H)
        self.proj = torch.nn.Linear(I, self.cell.input_width)
        self.reg = rnnkit.Regularisers(**reg)
        self.input_dropout = reg.get("input_dropout", 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.reg.input_mask(x.shape[0], (x.shape[2],), x, self.training)
        xp = self.proj(x if m is None else x * m.unsqueeze(1))  # (B, T, G)
        return self.cell(xp, engine="generic", regularisers=self.reg)


def _model(kind: str, I: int, H: int, reg: dict) -> torch.nn.Module:
    if kind == "mgu":
        return UserLayer(I, H, **reg)
    return getattr(rnnkit, kind.upper())(I, H, engine="generic", **reg)


def _call(model: torch.nn.Module, x: torch.Tensor):  # type: ignore[no-untyped-def]
    def run() -> None:
        out = model(x)
        y = out[0] if isinstance(out, tuple) else out
        y.sum().backward()
    return run


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (checks every path)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cells", default="lstm,gru,mgu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    B, T, I, H = (4, 16, 16, 32) if args.quick else (32, 256, 128, 256)
    repeats = 1 if args.quick else args.repeats
    print(f"regulariser cost, generic engine, fwd+bwd, training mode, B={B} T={T} I={I} H={H}, "
          f"{args.threads} threads, median of {repeats}", flush=True)
    results: dict = {"machine": harness.machine_info(), "size": dict(B=B, T=T, I=I, H=H), "cells": {}}
    rows = []
    for kind in args.cells.split(","):
        torch.manual_seed(0)
        x = torch.randn(B, T, I)
        models = {}
        for name, reg in VARIANTS.items():
            torch.manual_seed(0)
            models[name] = _model(kind, I, H, reg)
        plan = str(models["all four"].plan(x)).splitlines()[0] if kind != "mgu" else "structured cell scan"
        timings = harness.time_interleaved({n: _call(m, x) for n, m in models.items()}, repeats=repeats, warmup=1)
        base = timings["plain"].median
        results["cells"][kind] = {n: {"median_s": t.median, "ratio": t.median / base, "timing": t}
                                  for n, t in timings.items()}
        for n, t in timings.items():
            rows.append([kind, n, f"{t.median * 1e3:.1f}", f"{t.median / base:.2f}x", plan if n == "all four" else ""])
    print(harness.format_table(["cell", "variant", "ms", "ratio", "plan (all four)"], rows), flush=True)
    if args.json:
        harness.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()

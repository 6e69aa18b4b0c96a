"""Cost of per-row resets (``layer(x, reset=...)``, issue 13), fp32 forward+backward.

An ``rnnkit.LSTM`` on each engine, the same call with:
  none     no reset (the baseline of its engine)
  rows     a (B,) reset: rows restart at step 0 (no segment)
  sparse   a (B, T) reset in 2 columns (3 segments)
  episodes a (B, T) reset in 16 columns (17 segments; episodes of ~T/16 steps)
  dense    every row resets with probability 0.05 at every step (nearly one segment per step)
Ratios divide by ``none`` on the same engine, measured in the same run. Calls are interleaved
round-robin; medians of --repeats calls after one warm-up each.

Usage:
    python benchmarks/bench_reset.py [--repeats 5] [--threads 2] [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402

import rnnkit  # noqa: E402

MIDDLE = (32, 256, 128, 256)  # B, T, F, H
QUICK = (4, 32, 8, 16)


def resets(B: int, T: int) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    sparse = torch.zeros(B, T, dtype=torch.bool)
    sparse[: B // 4 + 1, T // 3] = True
    sparse[B // 2, 2 * T // 3] = True
    episodes = torch.zeros(B, T, dtype=torch.bool)
    for k, col in enumerate(torch.linspace(T / 17, T - T / 17, 16).long().tolist()):
        episodes[k % B, col] = True
    return {"none": None, "rows": torch.rand(B, generator=g) < 0.5, "sparse": sparse, "episodes": episodes,
            "dense": torch.rand(B, T, generator=g) < 0.05}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    B, T, F, H = QUICK if args.quick else MIDDLE
    repeats = 1 if args.quick else args.repeats
    cases = resets(B, T)
    rows, results = [], {}
    for engine in ("fused", "generic"):
        torch.manual_seed(0)
        layer = rnnkit.LSTM(F, H, engine=engine)
        x = torch.randn(B, T, F, requires_grad=True)

        def call(reset: torch.Tensor | None) -> None:
            y, _ = layer(x, reset=reset)
            y.sum().backward()

        fns = {name: (lambda r=r: call(r)) for name, r in cases.items()}
        timings = harness.time_interleaved(fns, repeats=repeats)
        base = timings["none"].median
        for name, timing in timings.items():
            r = cases[name]
            segments = 1 if r is None or r.dim() == 1 else 1 + int(r[:, 1:].any(0).sum())
            rows.append([engine, name, segments, f"{timing.median * 1e3:.1f}", f"{timing.median / base:.2f}x"])
            results[f"{engine}/{name}"] = {**timing.summary(), "segments": segments, "ratio": timing.median / base}
    print(f"resets, LSTM fwd+bwd, B={B} T={T} F={F} H={H}, {args.threads} threads, median of {repeats}")
    print(harness.format_table(["engine", "reset", "segments", "ms", "vs none"], rows))
    if args.json:
        harness.write_json(args.json, {"machine": harness.machine_info(), "size": [B, T, F, H], "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

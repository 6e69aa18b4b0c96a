"""User-written cells on the cell compiler (issue 9 acceptance 3), fp32 forward+backward.

Each cell is a plain ``rnnkit.Structured`` subclass, written as a user would. Each runs two
ways a user runs a cell: ``rnnkit.CellLayer(cell, I)`` (rnnkit's layer for a user's cell: the
projection computed and handed to the engine as the built-in layers do; the rows named by the
cell) and ``torch.nn.Linear`` + ``cell(...)`` (the rows ending in ``/linear``), against:
  torch    torch.nn.LSTM (oneDNN), the same B, T, I, H
  loop     a Python loop over torch.nn.LSTMCell
  builtin  rnnkit.LSTM(engine="generic"), the built-in cell on the generic engine
"per work" divides a cell's time by torch.nn.LSTM's, scaled by 4 / (the cell's gate blocks):
an MGU (2 blocks) does half an LSTM's matmul work per step.
Calls are interleaved round-robin; medians of --repeats calls after one warm-up each.

Usage:
    python benchmarks/bench_user_cells.py [--repeats 3] [--regimes latency,middle,throughput]
        [--threads 2] [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch
from torch import nn

import rnnkit
from rnnkit.cells.examples import CIFG, LNLSTM, MGU, UserGRU, UserLSTM

REGIMES = {"latency": (1, 1024, 64, 128), "middle": (32, 256, 128, 256), "throughput": (16, 256, 768, 768)}
QUICK = {"latency": (1, 48, 8, 16), "middle": (4, 24, 8, 16), "throughput": (3, 16, 24, 24)}  # every path, tiny


CELLS = {"user-lstm": UserLSTM, "cifg": CIFG, "mgu": MGU, "ln-lstm": LNLSTM, "user-gru": UserGRU}


class UserLayer(nn.Module):
    def __init__(self, cell: rnnkit.Structured, input_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_size, cell.input_width)
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.cell(self.proj(x))
        return out[0] if isinstance(out, tuple) else out  # (B, T, H)


class LoopLSTM(nn.Module):
    def __init__(self, I: int, H: int) -> None:  # noqa: E741
        super().__init__()
        self.cell = nn.LSTMCell(I, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], self.cell.hidden_size)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, 1)


def _call(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        y = module(x)
        y = y[0] if isinstance(y, tuple) else y
        y.sum().backward()
    return run


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--regimes", default="latency,middle,throughput")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks every path runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict = {}
    sizes, repeats = (QUICK, 1) if args.quick else (REGIMES, args.repeats)
    for regime in args.regimes.split(","):
        B, T, I, H = sizes[regime]  # noqa: E741
        torch.manual_seed(0)
        x = torch.randn(B, T, I)
        builtin = rnnkit.LSTM(I, H, engine="generic")
        impls: dict[str, nn.Module] = {"torch": nn.LSTM(I, H, batch_first=True), "loop": LoopLSTM(I, H),
                                       "builtin": builtin}
        for name, kind in CELLS.items():
            impls[name] = rnnkit.CellLayer(kind(H), I)
            impls[name + "/linear"] = UserLayer(kind(H), I)
        calls = {k: _call(m, x) for k, m in impls.items()}
        times: dict[str, list[float]] = {k: [] for k in calls}
        for run in calls.values():
            run()  # warm-up: compiles, caches
        for _ in range(repeats):
            for k, run in calls.items():
                t = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[regime] = med
        base, loop, blt = med["torch"], med["loop"], med["builtin"]
        print(f"\n{regime} (B, T, I, H) = {(B, T, I, H)}: torch.nn.LSTM {base * 1e3:.1f} ms, LSTMCell loop "
              f"{loop * 1e3:.1f} ms, built-in {blt * 1e3:.1f} ms", flush=True)
        for name, kind in CELLS.items():
            for row in (name, name + "/linear"):
                t = med[row]
                print(f"  {row:16s} {t * 1e3:8.1f} ms  /torch {t / base:5.2f}x  per work "
                      f"{t / base * 4 / kind.gates:5.2f}x  /builtin {t / blt:5.2f}x  loop/this {loop / t:5.1f}x",
                      flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()

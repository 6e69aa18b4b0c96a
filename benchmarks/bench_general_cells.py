"""General cells (issue 9 build item 5): a ``Recurrent`` step with matmuls, compiled vs autograd.

Two cells a user writes as plain ``rnnkit.Recurrent`` subclasses, fp32 forward+backward:
  feedback   the README's FeedbackRNN with tanh Elman layers (two matmuls per step)
  two-layer  h1 = tanh(x W + h1 U), h2 = tanh(h1 V + h2 R) (four matmuls per step)
each run three ways in the same process, timed round-robin (``_harness.time_interleaved``):
  compiled   ``cell(x)``: the plan's path (the whole-sequence C loop for B <= 16, the hybrid loop
             beyond: per step torch.mm for the matmuls between C pointwise segments)
  other      the other compiled loop on the same call, forced (the hybrid for B <= 16 and for
             B > 16 when the plan is autograd, else the C loop): checks the plan's choice
  autograd   the step-wise autograd engine on the same cell (what ran before the compiler took it)
  loop       a plain PyTorch loop of the same math (torch.nn.RNNCell for the two-layer cell; the
             FeedbackRNN as F.linear calls), under autograd
Medians of --repeats calls after one warm-up each; ratios are against ``compiled``.

Usage:
    python benchmarks/bench_general_cells.py [--repeats 5] [--regimes latency,middle] [--threads 2]
        [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

import rnnkit
from rnnkit.cells import ElmanCell
from rnnkit.engine.general import MAX_BATCH, scan_general
from rnnkit.engine.generic import scan_stepwise

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402

REGIMES = {"latency": (1, 1024, 128), "middle": (8, 256, 256), "wide": (32, 256, 256)}  # B, T, H (= I)
QUICK = {"latency": (1, 24, 8), "middle": (3, 12, 8), "wide": (20, 8, 8)}


class FeedbackRNN(rnnkit.Recurrent):
    """The README's FeedbackRNN, tanh layers."""
    states = ("first", "second")

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.first_layer = ElmanCell(dim)
        self.second_layer = ElmanCell(dim)

    def state_shape(self, name):  # type: ignore[no-untyped-def]
        return (self.dim,)

    def step(self, inputs, first, second):  # type: ignore[no-untyped-def]
        first_h = self.first_layer.step(inputs, first + second)
        return first_h, self.second_layer.step(first_h, second)


class TwoLayer(rnnkit.Recurrent):
    """Two stacked tanh RNN layers in one step, as two torch.nn.RNNCell's weights."""
    states = ("h1", "h2")

    def __init__(self, i: int, h: int) -> None:
        super().__init__()
        self.h = h
        self.l1, self.l2 = nn.RNNCell(i, h), nn.RNNCell(h, h)

    def state_shape(self, name):  # type: ignore[no-untyped-def]
        return (self.h,)

    def step(self, inputs, h1, h2):  # type: ignore[no-untyped-def]
        a, b = self.l1, self.l2
        h1 = torch.tanh(F.linear(inputs, a.weight_ih, a.bias_ih) + F.linear(h1, a.weight_hh, a.bias_hh))
        return h1, torch.tanh(F.linear(h1, b.weight_ih, b.bias_ih) + F.linear(h2, b.weight_hh, b.bias_hh))


def plain_loop(cell: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The same math as a plain PyTorch loop under autograd. (B, T, H) -> two (B, T, H)."""
    B, T, _ = x.shape
    s1 = s2 = x.new_zeros(B, x.shape[2] if isinstance(cell, FeedbackRNN) else cell.h)
    o1, o2 = [], []
    for t in range(T):
        if isinstance(cell, FeedbackRNN):
            f, s = cell.first_layer, cell.second_layer
            s1, s2 = torch.tanh(x[:, t] + F.linear(s1 + s2, f.weight, f.bias)), s2
            s2 = torch.tanh(s1 + F.linear(s2, s.weight, s.bias))
        else:
            s1 = cell.l1(x[:, t], s1)
            s2 = cell.l2(s1, s2)
        o1.append(s1)
        o2.append(s2)
    return [torch.stack(o1, 1), torch.stack(o2, 1)]


def _runner(kind: str, cell: rnnkit.Recurrent, x: torch.Tensor) -> Callable[[], None]:
    zeros = {s: x.new_zeros(x.shape[0], cell.state_shape(s)[0]) for s in cell.states}

    def run() -> None:
        if kind == "compiled":
            outs = list(cell(x))
        elif kind == "other":
            hybrid = x.shape[0] <= MAX_BATCH or cell.plan(x).loop != "hybrid"
            res = scan_general(cell, {"inputs": x}, zeros, None, False, False, None, "", hybrid=hybrid)
            outs = [res.outputs[s] for s in cell.states]
        elif kind == "autograd":
            res = scan_stepwise(cell, {"inputs": x}, zeros, {})
            outs = [res.outputs[s] for s in cell.states]
        else:
            outs = plain_loop(cell, x)
        sum(o.sum() for o in outs).backward()
        x.grad = None
        cell.zero_grad(set_to_none=True)
    return run


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--regimes", default="latency,middle,wide")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks every path runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = QUICK if args.quick else REGIMES
    repeats = 1 if args.quick else args.repeats
    results: dict = {"threads": args.threads, "repeats": repeats, "rows": []}
    print(f"{'cell':10} {'regime':8} {'B,T,H':14} {'plan':28} {'compiled ms':>11} {'other':>16} {'autograd':>16} "
          f"{'loop':>16}")
    for regime in args.regimes.split(","):
        B, T, H = sizes[regime]
        for name, cell in (("feedback", FeedbackRNN(H)), ("two-layer", TwoLayer(H, H))):
            x = torch.randn(B, T, H, requires_grad=True)
            plan = cell.plan(x)
            fns = {k: _runner(k, cell, x) for k in ("compiled", "other", "autograd", "loop")}
            t = harness.time_interleaved(fns, repeats=repeats, warmup=1)
            ms = {k: v.median * 1e3 for k, v in t.items()}
            row = {"cell": name, "regime": regime, "B": B, "T": T, "H": H, "plan": f"{plan.backend}/{plan.loop}",
                   "ms": ms, "ratio": {k: ms[k] / ms["compiled"] for k in ms}}
            results["rows"].append(row)
            cols = " ".join(f"{ms[k]:8.1f} ({row['ratio'][k]:4.2f}x)" for k in ("other", "autograd", "loop"))
            print(f"{name:10} {regime:8} {f'{B},{T},{H}':14} {row['plan']:28} {ms['compiled']:11.1f} {cols}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()

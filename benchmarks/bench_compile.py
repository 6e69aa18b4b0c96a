"""Compile cost of the cell compiler (issue 9 acceptance 5): a new cell's first use, and a
second process that finds it in the cache.

Each measurement runs in a fresh Python process with its own empty ``RNNKIT_CACHE`` (first
compile) or the cache the first process filled (second process). What is timed, inside the
process, is ``compile_cell(cell, float32, cpu)`` for a cell whose math is new to the cache:
trace + backward + printing + (first time) the C compiler + dlopen. Imports are not counted.

Usage:
    python benchmarks/bench_compile.py [--repeats 3] [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import sys, time, torch, rnnkit, torch.nn.functional as F
from rnnkit.engine.compiler import compile_cell
salt = float(sys.argv[1])
class MGU(rnnkit.Structured):
    gates = 2
    states = ("h",)
    def pointwise(self, inputs, hw, h):
        xf, xn = inputs.chunk(2, dim=1)
        hf, hn = hw.chunk(2, dim=1)
        f = torch.sigmoid(xf + hf)
        return (1 - f) * h + f * torch.tanh(xn + f * hn) * salt
class LNLSTM(rnnkit.Structured):
    gates = 4
    states = ("h", "c")
    def __init__(self, n):
        super().__init__(n)
        self.g = torch.nn.Parameter(torch.ones(4 * n))
    def pointwise(self, inputs, hw, h, c):
        z = F.layer_norm(inputs + hw, (inputs.shape[1],), self.g, None) * salt
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
cell = {"mgu": MGU, "lnlstm": LNLSTM}[sys.argv[2]](128)
t = time.perf_counter()
cc = compile_cell(cell, torch.float32, "cpu")
dt = time.perf_counter() - t
assert cc is not None and cc.lib is not None
print(dt)
"""


def _time(salt: float, kind: str, cache: str) -> float:
    env = {**os.environ, "RNNKIT_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(salt), kind], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="the MGU only, once (a smoke test: both measurements, "
                                                         "first use and cache hit, each in a fresh process)")
    args = ap.parse_args(argv)
    results = {}
    for kind in ("mgu",) if args.quick else ("mgu", "lnlstm"):
        first, second = [], []
        for r in range(1 if args.quick else args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                salt = 1.0 + 1e-6 * (r + 1) + (0.5 if kind == "lnlstm" else 0.0)
                first.append(_time(salt, kind, cache))
                second.append(_time(salt, kind, cache))
        results[kind] = {"first_s": statistics.median(first), "second_s": statistics.median(second),
                         "first_all": first, "second_all": second}
        print(f"{kind:7s} first use {results[kind]['first_s'] * 1e3:7.1f} ms (compile + load)   "
              f"second process {results[kind]['second_s'] * 1e3:6.1f} ms (cache hit)", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()

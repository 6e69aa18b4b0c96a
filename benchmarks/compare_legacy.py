"""The built-in cells compiled from their ``pointwise`` against the hand-written kernels, in ONE run.

Each call flips ``rnnkit.engine.structured.LEGACY`` in-process, so both sides share the process,
the allocator and the machine's state; calls are interleaved in a rotating order, and the figure
is the median of per-round ratios compiled / hand-written (medians of times are printed too).
Not a ``bench_*.py``: it exists only while the hand-written kernels do (issue 9 acceptance 2).

Usage:
    python benchmarks/compare_legacy.py [--repeats 7] [--cells lstm,gru,rnn]
        [--regimes latency,middle,throughput] [--modes fwd+bwd,fwd] [--dtypes fp32,fp64]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnkit
import rnnkit.engine.structured as structured

REGIMES = {"latency": (1, 1024, 64, 128), "middle": (32, 256, 128, 256), "throughput": (16, 256, 768, 768)}
LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}
DTYPES = {"fp32": torch.float32, "fp64": torch.float64}


def _call(layer: torch.nn.Module, x: torch.Tensor, legacy: bool, backward: bool, clock=time.perf_counter):  # type: ignore[no-untyped-def]
    def run() -> float:
        structured.LEGACY = legacy
        try:
            layer.zero_grad(set_to_none=True)
            t = clock()
            if backward:
                layer(x)[0].sum().backward()
            else:
                with torch.no_grad():
                    layer(x)
            return clock() - t
        finally:
            structured.LEGACY = True
    return run


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--regimes", default="latency,middle,throughput")
    ap.add_argument("--modes", default="fwd+bwd")
    ap.add_argument("--dtypes", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time (with --threads 1, steadier on a busy machine; for development)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print("| cell | regime | dtype | mode | compiled ms | hand-written ms | compiled / hand-written |")
    print("|---|---|---|---|---|---|---|")
    for dname in args.dtypes.split(","):
        for mode in args.modes.split(","):
            for regime in args.regimes.split(","):
                B, T, I, H = REGIMES[regime]  # noqa: E741
                for cell in args.cells.split(","):
                    torch.manual_seed(0)
                    layer = LAYERS[cell](I, H, engine="generic").to(DTYPES[dname])
                    x = torch.randn(B, T, I, dtype=DTYPES[dname])
                    calls = {"compiled": _call(layer, x, False, mode == "fwd+bwd", clock),
                             "legacy": _call(layer, x, True, mode == "fwd+bwd", clock)}
                    for run in calls.values():
                        run()  # warm-up: compiles, caches
                    times: dict[str, list[float]] = {k: [] for k in calls}
                    ratios = []
                    for r in range(args.repeats):
                        order = list(calls) if r % 2 == 0 else list(calls)[::-1]
                        got = {k: calls[k]() for k in order}
                        for k, v in got.items():
                            times[k].append(v)
                        ratios.append(got["compiled"] / got["legacy"])
                    med = {k: statistics.median(v) for k, v in times.items()}
                    ratio = statistics.median(ratios)
                    rows.append(dict(cell=cell, regime=regime, dtype=dname, mode=mode, ratio=ratio,
                                     **{k + "_s": v for k, v in med.items()}))
                    print(f"| {cell} | {regime} | {dname} | {mode} | {med['compiled'] * 1e3:.1f} | "
                          f"{med['legacy'] * 1e3:.1f} | {ratio:.3f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()

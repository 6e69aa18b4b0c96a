"""Measure the cost table behind engine="auto", and check auto against the faster backend.

For each case (regime x cell x dtype x lengths x mode, the RNN suite's grid plus two batch sizes
the suite lacks; dtype ``amp`` is float32 input under a CPU bfloat16 autocast) it times,
interleaved round-robin with the same weights and inputs:
  fused    rnnkit.<Cell>(engine="fused")    PyTorch's native kernels (with lengths: packed)
  generic  rnnkit.<Cell>(engine="generic")  the generic engine
  auto     rnnkit.<Cell>(engine="auto")     with --check: whatever the shipped table picks

``--write-table`` writes src/rnnkit/engine/auto_costs.json from the fused and generic medians,
keyed by (cell, dtype, device, batch-size bucket, lengths, fwd or fwd+bwd) (rnnkit.engine.costs).
``--passes N`` sweeps the whole grid N times and keeps each pass's medians, and ``--from a.json
b.json`` writes the table from earlier runs' JSON (their passes pooled), so that a near-tie whose
order flips between runs is seen flipping: auto then takes the backend that is never far behind
(rnnkit.engine.costs.Measured.faster).
``--check`` reports auto / min(fused, generic) per case: the target is <= 1.05 everywhere.

Usage:
    python benchmarks/calibrate_auto.py --write-table --passes 2  # measure, then write the table
    python benchmarks/calibrate_auto.py --write-table --from run1.json run2.json   # pool runs
    python benchmarks/calibrate_auto.py --check --json auto.json  # the acceptance run
    python benchmarks/calibrate_auto.py --quick                   # every path at tiny sizes
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402
import bench_rnn  # noqa: E402
import torch  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.engine.costs import TABLE_PATH, cost_key  # noqa: E402

__all__ = ["EXTRA_REGIMES", "main"]

# Batch buckets the suite does not reach: 2-4 (the C loop's) and 65+.
EXTRA_REGIMES = (bench_rnn.Regime("small", 4, 256, 64, 128), bench_rnn.Regime("large", 128, 64, 128, 256))
QUICK_EXTRA = (bench_rnn.Regime("small", 2, 16, 8, 16),)
KINDS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}
DTYPES = {**bench_rnn.DTYPES, "amp": torch.float32}  # amp: float32 input under a CPU bfloat16 autocast
TABLE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "amp": "autocast-bfloat16"}


def precision(dtype_name: str) -> contextlib.AbstractContextManager:
    """The context a case's calls run in (a CPU bfloat16 autocast for ``amp``)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype_name == "amp" else contextlib.nullcontext()


def build(cell: str, regime: bench_rnn.Regime, dtype: torch.dtype, seed: int, check: bool) -> dict:
    layer_cls = bench_rnn.CELLS[cell][0]
    torch.manual_seed(seed)
    ref = layer_cls(regime.I, regime.H, batch_first=True).to(dtype)
    engines = ("fused", "generic", "auto") if check else ("fused", "generic")
    return {name: rnnkit.from_torch(ref, engine=name) for name in engines}


def run_case(layers: dict, regime: bench_rnn.Regime, cell: str, dtype_name: str, use_lengths: bool, mode: str,
             repeats: int, warmup: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dtype_name]
    x = torch.randn(regime.B, regime.T, regime.I, generator=gen).to(dtype)  # (B, T, I)
    g = torch.randn(regime.B, regime.T, regime.H, generator=gen).to(dtype)  # (B, T, H)
    lengths = bench_rnn.padded_lengths(regime.B, regime.T, seed) if use_lengths else None
    calls = {}
    for name, layer in layers.items():
        layer.train(mode != "fwd")
        call = bench_rnn.make_call(bench_rnn.rnnkit_forward(layer), layer, x, lengths, g, mode)
        calls[name] = call if dtype_name != "amp" else _in_autocast(call)
    first = {}
    for name, call in calls.items():  # warm-up, and how long one call takes
        start = time.perf_counter()
        call()
        first[name] = time.perf_counter() - start
    for name, call in calls.items():
        for _ in range(0 if first[name] > 1.0 else max(warmup - 1, 0)):
            call()
    rounds = rotated_rounds(calls, repeats)
    timings = {name: [r[name] for r in rounds] for name in calls}
    backward = mode != "fwd"
    short = lengths is not None and int(lengths.min()) < regime.T
    with torch.set_grad_enabled(backward), precision(dtype_name):
        plan = layers["fused"].plan(x.requires_grad_(False), lengths=lengths)  # fused can serve: key only
    case = {"regime": regime.name, "B": regime.B, "T": regime.T, "I": regime.I, "H": regime.H, "cell": cell,
            "dtype": dtype_name, "lengths": use_lengths, "mode": mode, "plan_fused": plan.backend,
            "key": cost_key(KINDS[cell], TABLE_DTYPES[dtype_name], "cpu", regime.B, short, backward),
            "median_s": {name: statistics.median(t) for name, t in timings.items()}, "times_s": timings}
    if "auto" in layers:
        with torch.set_grad_enabled(backward), precision(dtype_name):
            auto = layers["auto"].plan(x, lengths=lengths)
        case["auto_backend"] = auto.backend
        # per round: auto against the faster of the two in the same round (drift cancels)
        case["auto_over_best"] = statistics.median(r["auto"] / min(r["fused"], r["generic"]) for r in rounds)
    return case


def _in_autocast(call):  # type: ignore[no-untyped-def]
    def run():  # type: ignore[no-untyped-def]
        with precision("amp"):
            return call()
    return run


def rotated_rounds(calls: dict, repeats: int) -> list[dict[str, float]]:
    """``repeats`` rounds, each timing every call once; the order rotates from round to round, so
    no implementation always follows the same neighbour (an allocator or cache left cold by the
    previous call would otherwise bias one of them)."""
    names = list(calls)
    rounds = []
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        times = {}
        for name in order:
            start = time.perf_counter()
            calls[name]()
            times[name] = time.perf_counter() - start
        rounds.append(times)
    return rounds


def write_table(cases: list[dict], path: Path, command: str) -> Path:
    """One row per key: the median over passes of each pass's medians, and every pass's pair."""
    passes: dict[str, list[tuple[float, float]]] = {}
    sizes = {}
    for c in cases:
        passes.setdefault(c["key"], []).append((c["median_s"]["fused"], c["median_s"]["generic"]))
        sizes[c["key"]] = f"B={c['B']} T={c['T']} I={c['I']} H={c['H']}"
    rows = {}
    for key, pairs in passes.items():
        rows[key] = {"fused_s": statistics.median(f for f, _ in pairs),
                     "generic_s": statistics.median(g for _, g in pairs), "size": sizes[key]}
        if len(pairs) > 1:
            rows[key]["passes"] = [list(p) for p in pairs]
    meta = {"machine": harness.machine_info(), "command": command, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "note": "medians of interleaved calls, per pass; fused = PyTorch's native kernels (packed with "
                    "lengths); auto takes the smaller worst-pass regret (rnnkit.engine.costs.Measured)"}
    path.write_text(json.dumps({"meta": meta, "rows": dict(sorted(rows.items()))}, indent=1) + "\n")
    return path


def print_report(cases: list[dict], check: bool) -> None:
    passes = len({c.get("pass", 0) for c in cases}) > 1
    headers = ["regime", "cell", "dtype", "lens", "mode"] + (["pass"] if passes else []) + [
        "fused ms", "generic ms", "faster"]
    if check:
        headers += ["auto ms", "auto picks", "auto/best"]
    rows = []
    for c in cases:
        m = c["median_s"]
        row = [c["regime"], c["cell"], c["dtype"], "30%" if c["lengths"] else "-", c["mode"]] + (
            [str(c.get("pass", 0))] if passes else []) + [
            f"{m['fused'] * 1e3:.3g}", f"{m['generic'] * 1e3:.3g}", "generic" if m["generic"] < m["fused"] else "fused"]
        if check:
            row += [f"{m['auto'] * 1e3:.3g}", c["auto_backend"], f"{c['auto_over_best']:.3f}"]
        rows.append(row)
    print(harness.format_table(headers, rows, "<<<<<" + (">" if passes else "") + ">><" + (">><>" if check else "")))
    if check:
        for label, group in (("the RNN suite's fp32 and bf16 cells", [c for c in cases if c["dtype"] != "amp"]),
                             ("float32 under CPU bf16 autocast", [c for c in cases if c["dtype"] == "amp"])):
            if not group:
                continue
            worst = max(group, key=lambda c: c["auto_over_best"])
            over = sum(c["auto_over_best"] > 1.05 for c in group)
            print(f"\nauto <= 1.05x the faster of fused and generic, {label} (median over rounds of auto / "
                  f"min(fused, generic)): {'PASS' if not over else 'MISS'}; worst {worst['auto_over_best']:.3f}x "
                  f"({worst['regime']} {worst['cell']} {worst['dtype']} {'lengths' if worst['lengths'] else 'full'} "
                  f"{worst['mode']}); {over} of {len(group)} over")


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats; never writes the table")
    p.add_argument("--check", action="store_true", help="also time engine='auto' and report auto/best")
    p.add_argument("--write-table", action="store_true", help=f"write {TABLE_PATH.name} from this run")
    p.add_argument("--suite-only", action="store_true", help="only the RNN suite's regimes (no extra sizes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None, help="timed calls per implementation (default 5)")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--dtypes", default="fp32,bf16,amp", help="fp32, bf16, amp (float32 under bf16 autocast)")
    p.add_argument("--passes", type=int, default=1, help="sweeps of the whole grid (each keeps its medians)")
    p.add_argument("--from", dest="sources", type=Path, nargs="+", default=None,
                   help="with --write-table: pool the cases of these earlier --json runs instead of measuring")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/calibrate_auto.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.sources:
        pooled = [c for src in args.sources for c in json.loads(src.read_text())["cases"]]
        print(f"wrote {write_table(pooled, TABLE_PATH, command)} from {len(pooled)} cases")
        return {"cases": pooled}
    regimes = list(bench_rnn.QUICK_REGIMES if args.quick else bench_rnn.REGIMES)
    if not args.suite_only:
        regimes += list(QUICK_EXTRA if args.quick else EXTRA_REGIMES)
    repeats = args.repeats or (2 if args.quick else 5)
    dtypes = [d for d in args.dtypes.split(",") if d == "fp32" or harness.bf16_support()[0]]
    cases = []
    start = time.perf_counter()
    for sweep in range(args.passes):
        for regime in regimes:
            for dtype_name in dtypes:
                for cell in args.cells.split(","):
                    layers = build(cell, regime, DTYPES[dtype_name], args.seed, args.check)
                    for use_lengths in (False, True):
                        for mode in bench_rnn.MODES:
                            case = run_case(layers, regime, cell, dtype_name, use_lengths, mode, repeats, 2,
                                            args.seed)
                            case["pass"] = sweep
                            cases.append(case)
                            print(f"[{len(cases)}] {regime.name} {cell} {dtype_name} {case['key']}: " + " ".join(
                                f"{n} {v * 1e3:.1f}" for n, v in case["median_s"].items()) + " ms",
                                file=sys.stderr, flush=True)
    results = {"machine": harness.machine_info(), "repeats": repeats, "quick": args.quick, "cases": cases,
               "wall_s": time.perf_counter() - start, "command": command}
    print_report(cases, args.check)
    print(f"wall time {results['wall_s']:.0f} s")
    if args.write_table and not args.quick:
        print(f"wrote {write_table(cases, TABLE_PATH, command)}")
    if args.json is not None:
        harness.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()

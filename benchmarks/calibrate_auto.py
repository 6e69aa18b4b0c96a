"""Measure the cost table behind engine="auto", and check auto against the faster backend.

For each case (regime x cell x dtype x lengths x mode, the RNN suite's grid plus two batch sizes
the suite lacks; dtype ``amp`` is float32 input under a CPU bfloat16 autocast) it times,
interleaved in rounds with the same weights and inputs, on ONE layer whose engine each call sets:
  fused     engine="fused"    PyTorch's native kernels (with lengths: packed)
  generic   engine="generic"  the generic engine
  auto      engine="auto"     with --check: whatever the shipped table picks
  auto_own  with --check, a second layer built with engine="auto" from the same weights
The order of the calls changes from round to round so that each follows every other equally
often (a call after its own backend runs faster: warm caches).

Each case runs at least ``--repeats`` rounds (default 9), then more until its timed calls add up
to ``--target-s`` (3 s), at most ``--max-repeats`` (61): the median is stable at B=1, and the
throughput rows stay affordable (``--regimes`` splits the grid across runs).

``--write-table`` writes src/rnnkit/engine/auto_costs.json from the fused and generic medians and
spreads (interquartile range / median of the calls), keyed by (cell, dtype, device, batch-size
bucket, lengths, fwd or fwd+bwd) (rnnkit.engine.costs). ``--passes N`` sweeps the whole grid N
times and keeps each pass's medians, and ``--from a.json b.json`` writes the table from earlier
runs' JSON (their passes pooled), so that a near-tie whose order flips between runs is seen
flipping (rnnkit.engine.costs.Measured.faster: the steadier backend at a near-tie, else the
smaller mean regret over the passes).
``--check`` reports auto / the faster backend per case, the median over rounds of the ratio in
one round (``auto/best``; ``own/best`` for the auto layer of its own): the target is <= 1.05
everywhere. A backend far behind the other (beyond 1.5x in every one of the first rounds)
leaves the check's rounds. ``--check --from a.json b.json`` pools the rounds of check runs made
in separate processes and judges each case on all of them.

Usage:
    python benchmarks/calibrate_auto.py --write-table --passes 2  # measure, then write the table
    python benchmarks/calibrate_auto.py --write-table --from run1.json run2.json   # pool runs
    python benchmarks/calibrate_auto.py --check --json auto.json  # the acceptance run
    python benchmarks/calibrate_auto.py --check --from auto1.json auto2.json    # pool check runs
    python benchmarks/calibrate_auto.py --quick                   # every path at tiny sizes
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402
from _auto_rounds import AUTOS, Rounds, compare, pool, rotated_rounds, spread  # noqa: E402
import bench_rnn  # noqa: E402
import torch  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.engine.costs import TABLE_PATH, cost_key  # noqa: E402

__all__ = ["EXTRA_REGIMES", "Rounds", "build", "compare", "main", "pool", "rotated_rounds", "spread", "write_table"]

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
    """The layers a case times: ``shared``, one layer whose engine each call sets (fused, generic
    and, with ``check``, auto run on the same object and weights), and with ``check`` ``own``, an
    ``engine="auto"`` layer of its own built from the same weights (what a user builds)."""
    layer_cls = bench_rnn.CELLS[cell][0]
    torch.manual_seed(seed)
    ref = layer_cls(regime.I, regime.H, batch_first=True).to(dtype)
    layers = {"shared": rnnkit.from_torch(ref, engine="auto")}
    if check:
        layers["own"] = rnnkit.from_torch(ref, engine="auto")
    return layers


def switched(layer: torch.nn.Module, engine: str, call):  # type: ignore[no-untyped-def]
    """``call`` run with ``layer.engine = engine`` (the same object serves every backend)."""
    def run():  # type: ignore[no-untyped-def]
        layer.engine = engine
        return call()
    return run


def _plan(layer: torch.nn.Module, engine: str, x: torch.Tensor, lengths: torch.Tensor | None, backward: bool,
          dtype_name: str) -> rnnkit.engine.Plan:
    layer.engine = engine
    with torch.set_grad_enabled(backward), precision(dtype_name):
        return layer.plan(x, lengths=lengths)


def run_case(layers: dict, regime: bench_rnn.Regime, cell: str, dtype_name: str, use_lengths: bool, mode: str,
             rounds: Rounds, warmup: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dtype_name]
    x = torch.randn(regime.B, regime.T, regime.I, generator=gen).to(dtype)  # (B, T, I)
    g = torch.randn(regime.B, regime.T, regime.H, generator=gen).to(dtype)  # (B, T, H)
    lengths = bench_rnn.padded_lengths(regime.B, regime.T, seed) if use_lengths else None
    shared = layers["shared"]
    for layer in layers.values():
        layer.train(mode != "fwd")
    call = bench_rnn.make_call(bench_rnn.rnnkit_forward(shared), shared, x, lengths, g, mode)
    names = ("fused", "generic", "auto") if "own" in layers else ("fused", "generic")
    calls = {name: switched(shared, name, call) for name in names}
    if "own" in layers:
        calls["auto_own"] = bench_rnn.make_call(bench_rnn.rnnkit_forward(layers["own"]), layers["own"], x, lengths,
                                                g, mode)
    calls = calls if dtype_name != "amp" else {name: _in_autocast(c) for name, c in calls.items()}
    first = {}
    for name, c in calls.items():  # warm-up, and how long one call takes
        start = time.perf_counter()
        c()
        first[name] = time.perf_counter() - start
    for name, c in calls.items():
        for _ in range(0 if first[name] > 1.0 else max(warmup - 1, 0)):
            c()
    timed = rotated_rounds(calls, rounds)
    timings = {name: [r[name] for r in timed if name in r] for name in calls}
    backward = mode != "fwd"
    short = lengths is not None and int(lengths.min()) < regime.T
    plan = _plan(shared, "fused", x, lengths, backward, dtype_name)  # fused can serve: the key only
    case = {"regime": regime.name, "B": regime.B, "T": regime.T, "I": regime.I, "H": regime.H, "cell": cell,
            "dtype": dtype_name, "lengths": use_lengths, "mode": mode, "plan_fused": plan.backend,
            "key": cost_key(KINDS[cell], TABLE_DTYPES[dtype_name], "cpu", regime.B, short, backward),
            "median_s": {name: statistics.median(t) for name, t in timings.items()},
            "spread": {name: spread(t) for name, t in timings.items()}, "times_s": timings, "round_s": timed,
            "rounds": len(timed), "load_1min": os.getloadavg()[0]}
    case.update(compare(timed))
    if "own" in layers:
        case["auto_backend"] = _plan(shared, "auto", x, lengths, backward, dtype_name).backend
        own = layers["own"]
        with torch.set_grad_enabled(backward), precision(dtype_name):
            case["auto_own_backend"] = own.plan(x, lengths=lengths).backend
    return case


def _in_autocast(call):  # type: ignore[no-untyped-def]
    def run():  # type: ignore[no-untyped-def]
        with precision("amp"):
            return call()
    return run



def write_table(cases: list[dict], path: Path, command: str, loads: Sequence[float] = ()) -> Path:
    """One row per key: the median over passes of each pass's medians, every pass's pair, and each
    backend's spread (its worst pass's). ``loads``: the 1-minute load averages seen while measuring."""
    passes: dict[str, list[tuple[float, float]]] = {}
    spreads: dict[str, list[tuple[float, float]]] = {}
    sizes = {}
    for c in cases:
        passes.setdefault(c["key"], []).append((c["median_s"]["fused"], c["median_s"]["generic"]))
        if "spread" in c:
            spreads.setdefault(c["key"], []).append((c["spread"]["fused"], c["spread"]["generic"]))
        sizes[c["key"]] = f"B={c['B']} T={c['T']} I={c['I']} H={c['H']}"
    rows = {}
    for key, pairs in passes.items():
        rows[key] = {"fused_s": statistics.median(f for f, _ in pairs),
                     "generic_s": statistics.median(g for _, g in pairs), "size": sizes[key]}
        if len(pairs) > 1:
            rows[key]["passes"] = [list(p) for p in pairs]
        if key in spreads:
            rows[key]["spread"] = {"fused": round(max(f for f, _ in spreads[key]), 4),
                                   "generic": round(max(g for _, g in spreads[key]), 4)}
    machine = harness.machine_info()
    machine.pop("load_average", None)  # the load at write time says nothing about the measurement
    meta = {"machine": machine, "command": command, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_1min_while_measuring": (
                {"min": min(loads), "median": statistics.median(loads), "max": max(loads)} if loads else None),
            "note": "medians of interleaved calls after warm-up, per pass; fused = PyTorch's native kernels "
                    "(packed with lengths); spread = interquartile range / median of the per-call times; auto "
                    "takes the smaller mean regret over the passes, or at a near-tie the smaller spread "
                    "(rnnkit.engine.costs.Measured)"}
    path.write_text(json.dumps({"meta": meta, "rows": dict(sorted(rows.items()))}, indent=1) + "\n")
    return path


def repo_relative(arg: str) -> str:
    """``arg`` as a path relative to the repository when it names a file inside it, else as given."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(Path(arg).resolve().relative_to(root)) if Path(arg).exists() else arg
    except ValueError:
        return arg


def print_report(cases: list[dict], check: bool) -> None:
    passes = len({c.get("pass", 0) for c in cases}) > 1
    pooled = any("runs" in c for c in cases)
    headers = ["regime", "cell", "dtype", "lens", "mode"] + (["pass"] if passes else []) + (
        ["runs"] if pooled else []) + ["n", "fused ms", "generic ms", "f/g", "spread f/g"]
    if check:
        headers += ["auto ms", "auto picks", "auto/best", "auto/min", "own/best"] + (["per run"] if pooled else [])
    rows = []
    for c in cases:
        m, sp = c["median_s"], c["spread"]
        row = [c["regime"], c["cell"], c["dtype"], "30%" if c["lengths"] else "-", c["mode"]] + (
            [str(c.get("pass", 0))] if passes else []) + ([str(c["runs"])] if pooled else []) + [
            str(c["rounds"]), f"{m['fused'] * 1e3:.3g}", f"{m['generic'] * 1e3:.3g}",
            f"{c['fused_over_generic']:.3f}", f"{sp['fused']:.2f}/{sp['generic']:.2f}"]
        if check:
            row += [f"{m['auto'] * 1e3:.3g}", c["auto_backend"], f"{c['auto_over_best']:.3f}",
                    f"{c['auto_over_round_min']:.3f}", f"{c.get('auto_own_over_best', float('nan')):.3f}"] + (
                [" ".join(f"{r:.3f}" for r in c["per_run"])] if pooled else [])
        rows.append(row)
    align = "<<<<<" + (">" if passes else "") + (">" if pooled else "") + ">>>>>" + (
        ">>>>>" + (">" if pooled else "") if check else "")
    print(harness.format_table(headers, rows, align))
    if not check:
        return
    for label, group in (("the RNN suite's fp32 and bf16 cells", [c for c in cases if c["dtype"] != "amp"]),
                         ("float32 under CPU bf16 autocast", [c for c in cases if c["dtype"] == "amp"])):
        for stat, what in (("auto_over_best", "auto on the layer that timed both backends"),
                           ("auto_own_over_best", "auto on a layer of its own")):
            group_s = [c for c in group if stat in c]
            if not group_s:
                continue
            worst = max(group_s, key=lambda c: c[stat])
            over = sum(c[stat] > 1.05 for c in group_s)
            print(f"\nauto <= 1.05x the faster of fused and generic, {label}, {what} (median over "
                  f"{'the pooled ' if pooled else ''}rounds of auto / the faster backend in the same round; "
                  f"faster: median of fused / generic < 1): {'PASS' if not over else 'MISS'}; worst "
                  f"{worst[stat]:.3f}x ({worst['regime']} {worst['cell']} {worst['dtype']} "
                  f"{'lengths' if worst['lengths'] else 'full'} {worst['mode']}); {over} of {len(group_s)} over")


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds; never writes the table")
    p.add_argument("--check", action="store_true", help="also time engine='auto' and report auto/best")
    p.add_argument("--write-table", action="store_true", help=f"write {TABLE_PATH.name} from this run")
    p.add_argument("--suite-only", action="store_true", help="only the RNN suite's regimes (no extra sizes)")
    p.add_argument("--regimes", default=None,
                   help="comma-separated regime names to run (latency, middle, throughput, small, large)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None,
                   help="least rounds per case (default 9); more until --target-s, up to --max-repeats")
    p.add_argument("--max-repeats", type=int, default=61)
    p.add_argument("--target-s", type=float, default=3.0, help="timed seconds per case that end its rounds")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--dtypes", default="fp32,bf16,amp", help="fp32, bf16, amp (float32 under bf16 autocast)")
    p.add_argument("--passes", type=int, default=1, help="sweeps of the whole grid (each keeps its medians)")
    p.add_argument("--from", dest="sources", type=Path, nargs="+", default=None,
                   help="pool the cases of these earlier --json runs instead of measuring: with --write-table "
                        "into the table, with --check into one check (each case's rounds from every run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/calibrate_auto.py " + " ".join(
        repo_relative(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.sources:
        if args.check == args.write_table:
            p.error("--from: expected exactly one of --check (pool check runs) or --write-table (pool "
                    "calibration runs)")
        runs = [json.loads(src.read_text())["cases"] for src in args.sources]
        if args.check:
            checked = pool(runs)
            print_report(checked, True)
            if args.json is not None:
                harness.write_json(args.json, {"command": command, "cases": checked, "sources": [
                    repo_relative(str(src)) for src in args.sources]})
            return {"cases": checked}
        pooled = [c for run in runs for c in run]
        loads = [c["load_1min"] for c in pooled if "load_1min" in c]
        print(f"wrote {write_table(pooled, TABLE_PATH, command, loads)} from {len(pooled)} cases")
        return {"cases": pooled}
    regimes = list(bench_rnn.QUICK_REGIMES if args.quick else bench_rnn.REGIMES)
    if not args.suite_only:
        regimes += list(QUICK_EXTRA if args.quick else EXTRA_REGIMES)
    if args.regimes:
        wanted = args.regimes.split(",")
        unknown = sorted(set(wanted) - {r.name for r in regimes})
        if unknown:
            p.error(f"--regimes: expected names from {sorted({r.name for r in regimes})}, got {unknown}")
        regimes = [r for r in regimes if r.name in wanted]
    least = args.repeats or (2 if args.quick else 9)
    rounds = Rounds(least, least if args.quick else max(least, args.max_repeats), 0.0 if args.quick else args.target_s)
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
                            case = run_case(layers, regime, cell, dtype_name, use_lengths, mode, rounds, 2,
                                            args.seed)
                            case["pass"] = sweep
                            cases.append(case)
                            print(f"[{len(cases)}] {regime.name} {cell} {dtype_name} {case['key']}: " + " ".join(
                                f"{n} {v * 1e3:.1f}" for n, v in case["median_s"].items()) + " ms"
                                f" ({case['rounds']} rounds)", file=sys.stderr, flush=True)
    results = {"machine": harness.machine_info(), "rounds": rounds, "quick": args.quick, "cases": cases,
               "wall_s": time.perf_counter() - start, "command": command,
               "utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print_report(cases, args.check)
    print(f"wall time {results['wall_s']:.0f} s")
    if args.write_table and not args.quick:
        print(f"wrote {write_table(cases, TABLE_PATH, command, [c['load_1min'] for c in cases])}")
    if args.json is not None:
        harness.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()

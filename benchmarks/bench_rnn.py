"""RNN speed and memory: rnnkit (engine "auto" and "generic") against torch.nn and a plain cell loop.

For each case (regime x cell x dtype x lengths x mode) four implementations run with the same
weights and inputs, interleaved round-robin:
  auto     rnnkit.<Cell>(engine="auto")      built from the torch module with rnnkit.from_torch
  generic  rnnkit.<Cell>(engine="generic")   the same weights
  torch    torch.nn.<Cell>(batch_first=True) with lengths: pack_padded_sequence(enforce_sorted=False)
                                             -> module -> pad_packed_sequence(total_length=T)
  loop     a Python loop over torch.nn.<Cell>Cell; with lengths it masks each step with torch.where
                                             (the state carries over, the output is zero)
Regimes (B, T, I, H): latency (1, 1024, 64, 128), middle (32, 256, 128, 256), throughput
(16, 256, 768, 768). Modes: "fwd" (eval mode, torch.no_grad) and "fwd+bwd" (train mode; loss
(y * g).sum() with a fixed random g; parameter gradients, none for the input). benchmarks/README.md
states the full methodology.

Usage:
    python benchmarks/bench_rnn.py [--quick] [--threads 2] [--repeats 5] [--json PATH]
        [--regimes latency,middle,throughput] [--cells lstm,gru,rnn] [--dtypes fp32,bf16]
        [--lengths off,on] [--modes fwd,fwd+bwd] [--memory all|latency|none]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import rnnkit  # noqa: E402

__all__ = ["REGIMES", "QUICK_REGIMES", "Regime", "main", "padded_lengths", "run_case"]


@dataclass(frozen=True)
class Regime:
    """One problem size of issue 6 (no defaults: every regime states all four sizes)."""

    name: str  # "latency" | "middle" | "throughput"
    B: int  # batch
    T: int  # time steps
    I: int  # input features  # noqa: E741
    H: int  # hidden size


REGIMES = (Regime("latency", 1, 1024, 64, 128), Regime("middle", 32, 256, 128, 256),
           Regime("throughput", 16, 256, 768, 768))
QUICK_REGIMES = (Regime("latency", 1, 48, 8, 16), Regime("middle", 4, 24, 8, 16),
                 Regime("throughput", 3, 16, 24, 24))
CELLS: dict[str, tuple[type[nn.RNNBase], type[nn.Module], int]] = {  # torch layer, torch cell, gates G
    "lstm": (nn.LSTM, nn.LSTMCell, 4), "gru": (nn.GRU, nn.GRUCell, 3), "rnn": (nn.RNN, nn.RNNCell, 1)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
IMPLS = ("auto", "generic", "torch", "loop")
MODES = ("fwd", "fwd+bwd")
PAD_FRACTION = 0.30
# Agreement with torch.nn: (max |y - y_torch|, max |dW_hh - dW_hh_torch| / max |dW_hh_torch|). A loop
# that sums T bf16 gradients in bf16 drifts ~10% from oneDNN's fp32 sum at T = 1024: the bf16
# bounds catch wrong wiring (wrong weights, masks, gates), not rounding.
TOLERANCE = {"fp32": (1e-3, 1e-3), "bf16": (0.1, 0.25)}
Forward = Callable[[Tensor, "Tensor | None"], Tensor]


def padded_lengths(B: int, T: int, seed: int = 0) -> Tensor:
    """(B,) int64 lengths with a mean padded fraction of 0.30 and the longest equal to T.

    B >= 2: evenly spaced from T down to 0.4*T (mean 0.7*T), then shuffled so the batch is not
    sorted. B == 1: the one sequence has length round(0.7*T); it cannot both be T and be padded.
    """
    if B == 1:
        return torch.tensor([max(1, round((1 - PAD_FRACTION) * T))])
    low = (1 - 2 * PAD_FRACTION) * T
    lengths = torch.tensor([round(T - (T - low) * k / (B - 1)) for k in range(B)], dtype=torch.int64)
    return lengths[torch.randperm(B, generator=torch.Generator().manual_seed(seed))]  # (B,)


def torch_forward(module: nn.RNNBase) -> Forward:
    def forward(x: Tensor, lengths: Tensor | None) -> Tensor:
        if lengths is None:
            return module(x)[0]  # (B, T, H)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(module(packed)[0], batch_first=True, total_length=x.shape[1])[0]  # (B, T, H)
    return forward


def rnnkit_forward(layer: rnnkit.RNN) -> Forward:
    return lambda x, lengths: layer(x, lengths=lengths)[0]  # (B, T, H)


def loop_forward(cell: nn.Module, hidden: int, is_lstm: bool) -> Forward:
    """What a user writes: one cell call per step; with lengths, torch.where keeps padded steps out."""
    def forward(x: Tensor, lengths: Tensor | None) -> Tensor:
        B, T, _ = x.shape
        h = x.new_zeros(B, hidden)
        c = x.new_zeros(B, hidden) if is_lstm else None
        steps = None if lengths is None else (torch.arange(T) < lengths[:, None]).unbind(1)  # T x (B,)
        outs = []
        for t in range(T):
            if is_lstm:
                h_new, c_new = cell(x[:, t], (h, c))
            else:
                h_new = cell(x[:, t], h)
            if steps is None:
                h, c = h_new, (c_new if is_lstm else None)
                outs.append(h)
                continue
            m = steps[t].unsqueeze(1)  # (B, 1)
            h = torch.where(m, h_new, h)  # padded step: the state carries over
            if is_lstm:
                c = torch.where(m, c_new, c)
            outs.append(torch.where(m, h_new, 0.0))  # and the output is zero
        return torch.stack(outs, dim=1)  # (B, T, H)
    return forward


def build(cell: str, regime: Regime, dtype: torch.dtype, seed: int) -> dict[str, tuple[Forward, nn.Module, Tensor]]:
    """The four implementations with identical weights: name -> (forward, module, recurrent weight)."""
    layer_cls, cell_cls, _ = CELLS[cell]
    torch.manual_seed(seed)
    ref = layer_cls(regime.I, regime.H, batch_first=True).to(dtype)
    auto = rnnkit.from_torch(ref, engine="auto")
    generic = rnnkit.from_torch(ref, engine="generic")
    loop = cell_cls(regime.I, regime.H).to(dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(loop, name).copy_(getattr(ref, f"{name}_l0"))
    return {
        "auto": (rnnkit_forward(auto), auto, auto.flat_weights()[1]),
        "generic": (rnnkit_forward(generic), generic, generic.flat_weights()[1]),
        "torch": (torch_forward(ref), ref, ref.weight_hh_l0),
        "loop": (loop_forward(loop, regime.H, cell == "lstm"), loop, loop.weight_hh),
    }


def make_call(forward: Forward, module: nn.Module, x: Tensor, lengths: Tensor | None, g: Tensor,
              mode: str) -> Callable[[], Tensor]:
    """One timed call. fwd: no autograd. fwd+bwd: a training step without the optimizer."""
    params = list(module.parameters())
    if mode == "fwd":
        def call() -> Tensor:
            with torch.no_grad():
                return forward(x, lengths)
        return call

    def call_bwd() -> Tensor:
        for p in params:
            p.grad = None  # what optimizer.zero_grad() does: backward allocates fresh gradients
        y = forward(x, lengths)
        (y * g).sum().backward()
        return y.detach()
    return call_bwd


def useful_flops(regime: Regime, gates: int, lengths: Tensor | None, mode: str) -> float:
    """Matmul FLOPs of the cell's math over real steps: 2*N*(I+H)*G*H, x3 with the backward."""
    steps = regime.B * regime.T if lengths is None else int(lengths.sum())
    fwd = 2.0 * steps * (regime.I + regime.H) * gates * regime.H
    return fwd if mode == "fwd" else 3.0 * fwd


def run_case(impls: dict[str, tuple[Forward, nn.Module, Tensor]], regime: Regime, cell: str, dtype_name: str,
             use_lengths: bool, mode: str, repeats: int, warmup: int, slow_call: float, memory: bool,
             seed: int) -> dict[str, object]:
    """Check that the four agree, time them interleaved, and (fwd+bwd) meter their peak memory."""
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dtype_name]
    x = torch.randn(regime.B, regime.T, regime.I, generator=gen).to(dtype)  # (B, T, I)
    g = torch.randn(regime.B, regime.T, regime.H, generator=gen).to(dtype)  # (B, T, H)
    lengths = padded_lengths(regime.B, regime.T, seed) if use_lengths else None
    for _, module, _ in impls.values():
        module.train(mode != "fwd")
    calls = {name: make_call(fwd, module, x, lengths, g, mode) for name, (fwd, module, _) in impls.items()}

    # The first call of each implementation is a warm-up and the agreement check; for fwd+bwd
    # it also runs under the memory meter (slower, never timed), with the last call's gradients
    # released first. Calls that take longer than ``slow_call`` get no further warm-up.
    first: dict[str, float] = {}
    outputs: dict[str, Tensor] = {}
    grads: dict[str, Tensor] = {}
    peaks: dict[str, int] = {}
    for name, call in calls.items():
        start = time.perf_counter()
        if memory and mode != "fwd":
            impls[name][1].zero_grad(set_to_none=True)
            box: list[Tensor] = []
            peaks[name] = harness.peak_memory(lambda: box.append(call()))
            outputs[name] = box[0].float()
        else:
            outputs[name] = call().float()
        first[name] = time.perf_counter() - start
        if mode != "fwd":
            grads[name] = impls[name][2].grad.detach().float().clone()
    extra = {name: 0 if first[name] > slow_call else max(warmup - 1, 0) for name in calls}
    timings = harness.time_interleaved(calls, repeats=repeats, warmup=extra)

    ref_time = timings["torch"].median
    with torch.set_grad_enabled(mode != "fwd"):  # the plan reads whether gradients will be taken, as the call does
        plan = impls["auto"][1].plan(x, lengths=lengths)
    flops = useful_flops(regime, CELLS[cell][2], lengths, mode)
    result: dict[str, object] = {
        "regime": regime.name, "B": regime.B, "T": regime.T, "I": regime.I, "H": regime.H, "cell": cell,
        "dtype": dtype_name, "lengths": use_lengths, "mode": mode, "flops": flops,
        "lengths_list": None if lengths is None else lengths.tolist(),
        "padded_fraction": 0.0 if lengths is None else 1.0 - float(lengths.sum()) / (regime.B * regime.T),
        "auto_backend": plan.backend, "auto_loop": plan.loop,  # what auto ran: the layer's dispatch plan
        "impls": {},
    }
    for name in calls:
        t = timings[name]
        entry: dict[str, object] = {**t.summary(), "first_call_s": first[name], "warmup": 1 + extra[name],
                                    "ratio_vs_torch": t.median / ref_time, "gflops": flops / t.median / 1e9,
                                    "max_abs_diff_vs_torch": float((outputs[name] - outputs["torch"]).abs().max())}
        entry["round_ratio_vs_torch"] = statistics.median(  # per-round ratios: drift within a round cancels
            a / b for a, b in zip(t.times, timings["torch"].times))
        if grads:
            scale = float(grads["torch"].abs().max()) or 1.0
            entry["grad_whh_rel_diff_vs_torch"] = float((grads[name] - grads["torch"]).abs().max()) / scale
        result["impls"][name] = entry  # type: ignore[index]
    y_tol, grad_tol = TOLERANCE[dtype_name]
    result["agree"] = all(e["max_abs_diff_vs_torch"] <= y_tol and e.get("grad_whh_rel_diff_vs_torch", 0.0) <= grad_tol
                          for e in result["impls"].values())  # type: ignore[union-attr]
    for name, peak in peaks.items():
        result["impls"][name]["peak_bytes"] = peak  # type: ignore[index]
    return result


def _find(cases: list[dict], **match: object) -> list[dict]:
    return [c for c in cases if all(c[k] == v for k, v in match.items())]


def _label(case: dict) -> str:
    return f"{case['cell']} {case['dtype']} {'lengths' if case['lengths'] else 'full'} {case['mode']}"


def acceptance(results: dict) -> list[dict[str, str]]:
    """Issue 6's targets, each PASS or MISS with the measured figure (N/A when not measured)."""
    cases: list[dict] = results["cases"]
    rows: list[dict[str, str]] = []

    def add(target: str, ok: bool | None, figure: str) -> None:
        rows.append({"target": target, "status": "N/A" if ok is None else "PASS" if ok else "MISS",
                     "figure": figure or "not measured"})

    for regime in [r["name"] for r in results["regimes"]]:
        for mode in MODES:
            group = _find(cases, regime=regime, mode=mode)
            ratios = [(c["impls"]["auto"]["ratio_vs_torch"], _label(c)) for c in group]
            worst = max(ratios, default=None)
            misses = sum(r > 1.05 for r, _ in ratios)
            add(f"auto <= 1.05x torch.nn, {regime} {mode} (all cells, dtypes, with/without lengths)",
                None if worst is None else misses == 0,
                "" if worst is None else f"worst {worst[0]:.3f}x ({worst[1]}); {misses} of {len(ratios)} over")
    for regime in [r["name"] for r in results["regimes"]]:
        group = _find(cases, regime=regime, cell="lstm", mode="fwd+bwd")
        limit = 4.0 if regime == "latency" else 1.5
        figs = [(c["impls"]["generic"]["ratio_vs_torch"], _label(c)) for c in group]
        add(f"generic LSTM fwd+bwd <= {limit}x torch.nn.LSTM, {regime}", None if not figs else all(
            r <= limit for r, _ in figs), "; ".join(f"{r:.2f}x {lab.split(' fwd')[0]}" for r, lab in figs))
        need = 2.0 if group and group[0]["B"] == 1 else 1.0
        speed = [(c["impls"]["loop"]["median_s"] / c["impls"]["generic"]["median_s"], _label(c)) for c in group]
        add(f"generic LSTM fwd+bwd {'>= 2x faster than' if need > 1 else 'faster than'} the LSTMCell loop, "
            f"{regime}", None if not speed else all(s >= need if need > 1 else s > 1.0 for s, _ in speed),
            "; ".join(f"{s:.2f}x {lab.split(' fwd')[0]}" for s, lab in speed))
    mem = [c for c in _find(cases, regime="latency", cell="lstm", mode="fwd+bwd") if "peak_bytes" in c["impls"]["loop"]]
    figures = []
    for c in mem:
        generic, loop = (c["impls"][n]["peak_bytes"] / 2**20 for n in ("generic", "loop"))
        figures.append(f"{generic:.2f} MB vs {loop:.2f} MB ({c['dtype']} {'lengths' if c['lengths'] else 'full'})")
    add(f"peak memory, generic LSTM fwd+bwd <= the LSTMCell loop's, latency regime (T={mem[0]['T'] if mem else 1024})",
        None if not mem else all(c["impls"]["generic"]["peak_bytes"] <= c["impls"]["loop"]["peak_bytes"] for c in mem),
        "; ".join(figures))
    bad = [_label(c) + f" ({c['regime']})" for c in cases if not c["agree"]]
    add("the four implementations agree with torch.nn (y and dW_hh; fp32 1e-3, bf16 0.1 / 0.25)",
        not bad if cases else None,
        f"{len(cases) - len(bad)} of {len(cases)} cases" + (f"; disagree: {', '.join(bad[:4])}" if bad else ""))
    limit = 60.0 if results["quick"] else 600.0
    add(f"the RNN suite runs in under {limit:.0f} s", results["wall_s"] < limit, f"{results['wall_s']:.0f} s")
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 1e-2 else f"{seconds * 1e3:.1f}"


def print_report(results: dict) -> None:
    """One table per regime, then the acceptance summary."""
    m = results["machine"]
    print(f"\nrnnkit RNN suite: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, median of "
          f"{results['repeats']} interleaved calls after warm-up" + (" [QUICK: tiny sizes]" if results["quick"] else ""))
    for note in results["notes"]:
        print(f"note: {note}")
    headers = ["cell", "dtype", "lens", "mode", "auto ms", "generic", "torch", "loop", "a/t", "g/t", "l/t",
               "loop/gen", "GF/s auto", "GF/s gen", "MB auto", "MB gen", "MB torch", "MB loop", "IQR"]
    for regime in results["regimes"]:
        group = _find(results["cases"], regime=regime["name"])
        if not group:
            continue
        gemms = "; ".join(f"{g['dtype']} " + ", ".join(f"{k} {v:.0f}" for k, v in g["by_library"].items())
                          for g in results["gemm"] if g["regime"] == regime["name"])
        print(f"\n{regime['name']}: B={regime['B']} T={regime['T']} I={regime['I']} H={regime['H']}   "
              f"GEMM (B*T, I+H) x (I+H, 4H) GFLOP/s (the faster is 100%): {gemms}")
        rows = []
        for c in group:
            e = c["impls"]
            mb = [f"{e[n]['peak_bytes'] / 2**20:.1f}" if "peak_bytes" in e[n] else "" for n in IMPLS]
            spread = max((e[n]["q3_s"] - e[n]["q1_s"]) / e[n]["median_s"] for n in IMPLS)
            rows.append([c["cell"], c["dtype"], f"{c['padded_fraction']:.0%}" if c["lengths"] else "-", c["mode"],
                         *(_ms(e[n]["median_s"]) for n in IMPLS),
                         *(f"{e[n]['ratio_vs_torch']:.2f}" for n in ("auto", "generic", "loop")),
                         f"{e['loop']['median_s'] / e['generic']['median_s']:.2f}x",
                         *(f"{e[n]['gflops']:.1f} ({e[n]['pct_gemm']:.0f}%)" for n in ("auto", "generic")),
                         *mb, f"{spread:.0%}" + ("" if c["agree"] else " DIFF")])
        print(harness.format_table(headers, rows, "<<<<" + ">" * (len(headers) - 4)))
    print("\nacceptance (issue 6)" + (" - quick mode: sizes are not the issue's, figures not meaningful"
                                      if results["quick"] else ""))
    for row in results["acceptance"]:
        print(f"  {row['status']:<4}  {row['target']}: {row['figure']}")
    print(f"RNN suite wall time {results['wall_s']:.1f} s")


def _busy(before: list[float] | None, after: list[float] | None, threads: int) -> str | None:
    """A warning when other work shared the cores (1-minute load averages, ours excluded)."""
    cores = os.cpu_count() or 1
    if before is None or after is None or (before[0] <= 0.5 * cores and after[0] - threads <= 0.5 * cores):
        return None
    return (f"the machine was busy (1-min load average {before[0]:.1f} before, {after[0]:.1f} after, on "
            f"{cores} cores; this run's own {threads} thread(s) count in the second): other processes took "
            "cores, so the times are inflated and noisy (OpenMP spin-waiting makes multi-thread runs far "
            "worse; see benchmarks/README.md); rerun on a quiet machine for figures to keep")


def _pick(value: str, allowed: Sequence[str], flag: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        raise SystemExit(f"{flag}: expected a comma-separated subset of {','.join(allowed)}, "
                         f"but got {value!r}. Fix: e.g. {flag} {','.join(allowed)}")
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: checks that every path runs")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per implementation (default 5, quick 2)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up calls per implementation and case, the checked first call included "
                        "(default 2, quick 1)")
    p.add_argument("--slow-call", type=float, default=1.0,
                   help="an implementation whose first call takes longer (s) gets only that warm-up (default 1.0)")
    p.add_argument("--regimes", default="latency,middle,throughput")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--dtypes", default="fp32,bf16", help="bf16 is skipped, with a note, where the CPU lacks it")
    p.add_argument("--lengths", default="off,on", help="off: full sequences; on: 30%% padding")
    p.add_argument("--modes", default="fwd,fwd+bwd")
    p.add_argument("--memory", choices=("all", "latency", "none"), default="all",
                   help="which fwd+bwd cases get the peak-memory meter (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write every raw timing here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Run the suite, print the tables and the acceptance summary, return (and write) the results."""
    args = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    regimes = [r for r in (QUICK_REGIMES if args.quick else REGIMES)
               if r.name in _pick(args.regimes, [r.name for r in REGIMES], "--regimes")]
    cells = _pick(args.cells, list(CELLS), "--cells")
    dtypes = _pick(args.dtypes, list(DTYPES), "--dtypes")
    lengths_opts = [v == "on" for v in _pick(args.lengths, ["off", "on"], "--lengths")]
    modes = _pick(args.modes, list(MODES), "--modes")
    repeats = args.repeats or (2 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    bf16_ok, bf16_note = harness.bf16_support()
    notes = [bf16_note]
    if "bf16" in dtypes and not bf16_ok:
        dtypes.remove("bf16")
    results: dict[str, object] = {
        "suite": "rnn", "quick": args.quick, "repeats": repeats, "warmup": warmup,
        "slow_call_s": args.slow_call, "machine": harness.machine_info(), "bf16_supported": bf16_ok, "notes": notes,
        "regimes": [asdict(r) for r in regimes], "gemm": [], "cases": [], "complete": False,
    }
    total = len(regimes) * len(cells) * len(dtypes) * len(lengths_opts) * len(modes)
    done = 0
    for regime in regimes:
        for dtype_name in dtypes:
            # The yardstick: an LSTM's projection of all T steps, (B*T, I+H) x (I+H, 4H).
            shape = (regime.B * regime.T, regime.I + regime.H, 4 * regime.H)
            by_library = harness.gemm_gflops(*shape, dtype=DTYPES[dtype_name], repeats=repeats)
            rate = max(by_library.values())  # the faster library is the machine's matrix speed
            results["gemm"].append({"regime": regime.name, "dtype": dtype_name, "shape": shape, "gflops": rate,
                                    "by_library": by_library})
            for cell in cells:
                impls = build(cell, regime, DTYPES[dtype_name], args.seed)
                for use_lengths in lengths_opts:
                    for mode in modes:
                        t0 = time.perf_counter()
                        memory = args.memory == "all" or (args.memory == "latency" and regime.name == "latency")
                        case = run_case(impls, regime, cell, dtype_name, use_lengths, mode, repeats, warmup,
                                        args.slow_call, memory, args.seed)
                        for entry in case["impls"].values():
                            entry["pct_gemm"] = 100.0 * entry["gflops"] / rate
                        case["wall_s"] = time.perf_counter() - t0
                        results["cases"].append(case)
                        if args.json is not None:  # a killed or interrupted run keeps its finished cases
                            harness.write_json(args.json, results)
                        done += 1
                        med = " ".join(f"{n} {e['median_s'] * 1e3:.1f}" for n, e in case["impls"].items())
                        print(f"[{done:3d}/{total}] {regime.name} {cell} {dtype_name} "
                              f"{'lengths' if use_lengths else 'full'} {mode}: {med} ms "
                              f"({case['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    results["wall_s"] = time.perf_counter() - start
    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    busy = _busy(results["machine"]["load_average"], results["load_average_end"], args.threads)
    if busy:
        notes.append(busy)
    results["acceptance"] = acceptance(results)
    print_report(results)
    if args.json is not None:
        results["complete"] = True
        print(f"wrote {harness.write_json(args.json, results)}")
    return results


if __name__ == "__main__":
    main()

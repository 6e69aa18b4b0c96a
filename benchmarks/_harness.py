"""Measurement helpers shared by the benchmark scripts: timing, peak memory, GEMM rate, bf16, output.

* :func:`time_interleaved` times several implementations of one case round-robin
  (A B C D A B C D ...), so slow drift in the machine's load hits them all alike.
* :func:`peak_memory` is the peak of live bytes in PyTorch's CPU allocator during one call,
  rebuilt from the profiler's allocation and free events (CPU PyTorch has no allocator stats).
* :func:`gemm_gflops` measures the rate of a matrix product (``torch.mm`` and oneDNN's linear)
  in the current run, the yardstick for the GFLOP/s that the RNN benchmarks achieve.

    >>> t = time_interleaved({"noop": lambda: None}, repeats=5, warmup=1)
    >>> len(t["noop"].times), t["noop"].median >= 0.0
    (5, True)
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = [
    "Timing", "bf16_support", "format_table", "gemm_gflops", "machine_info", "peak_memory",
    "time_interleaved", "write_json",
]


@dataclass(frozen=True)
class Timing:
    """Wall seconds of the timed calls of one implementation, in the order they ran."""

    times: tuple[float, ...]  # one entry per timed call, warm-ups excluded
    warmup: int  # warm-up calls run before the first timed call (not in ``times``)
    cpu_times: tuple[float, ...] = ()  # process CPU seconds (all threads) of each timed call

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def iqr(self) -> tuple[float, float]:
        """(first quartile, third quartile), inclusive method; equals (min, max) for n <= 2."""
        if len(self.times) < 3:
            return self.min, self.max
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[0], q[2]

    def summary(self) -> dict[str, object]:
        q1, q3 = self.iqr
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "q1_s": q1, "q3_s": q3,
                "warmup": self.warmup, "times_s": list(self.times), "cpu_s": list(self.cpu_times)}


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int | Mapping[str, int] = 1,
) -> dict[str, Timing]:
    """Time each callable ``repeats`` times, round-robin, after its own warm-up calls.

    ``warmup`` is a count for all, or a count per name (a slow baseline may take fewer). The
    warm-ups run first, per implementation; then round ``r`` times every implementation once,
    in the given order. The medians are therefore taken over calls spread evenly in time.
    Process CPU time is kept beside wall time: on a shared machine, wall >> CPU / threads shows
    that the run waited for cores.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, but got {repeats}. Fix: pass repeats=5.")
    counts = {name: warmup if isinstance(warmup, int) else warmup.get(name, 1) for name in fns}
    for name, fn in fns.items():
        for _ in range(counts[name]):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            cpu_start, start = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return {name: Timing(tuple(ts), counts[name], tuple(cpu[name])) for name, ts in times.items()}


@contextlib.contextmanager
def _silent_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler prints start/stop lines from C++."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], object], quiet: bool = True) -> int:
    """Peak bytes live in PyTorch's CPU allocator during ``fn()``, above what was live before it.

    Method: the autograd profiler with ``profile_memory=True`` reports every allocation (+bytes)
    and free (-bytes) of the CPU allocator with a timestamp; sorting them by time and taking the
    running sum gives live bytes over time, whose maximum is the peak. Tensors alive before the
    call (inputs, weights) are the baseline 0; free anything the call would free (old gradients)
    before calling this. Memory that bypasses the allocator (Python objects, autograd's graph
    nodes, a library's private malloc) is not counted. The events are read raw, without the
    profiler's (slow) per-op tables.
    """
    from torch.autograd.profiler import profile

    collecting = gc.isenabled()
    gc.disable()  # no cyclic garbage (allocated earlier) is freed inside the window
    try:
        with _silent_stderr() if quiet else contextlib.nullcontext():
            with profile(profile_memory=True, use_kineto=True) as prof:
                fn()
    finally:
        if collecting:
            gc.enable()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def gemm_gflops(m: int, k: int, n: int, dtype: torch.dtype = torch.float32, repeats: int = 5,
                seed: int = 0) -> dict[str, float]:
    """Achieved GFLOP/s of (m, k) x (k, n) products: 2*m*k*n FLOPs / median seconds, per library.

    Keys: ``"torch.mm"`` (MKL or oneDNN, as PyTorch dispatches the dtype) and, where the build
    has it, ``"oneDNN"`` (``torch.ops.mkldnn._linear_pointwise``, the primitive PyTorch's CPU
    linear fusion calls). They differ a lot on some CPUs (MKL is not tuned for AMD), so a
    yardstick should take the faster. The two are timed interleaved.
    """
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    bt = b.t().contiguous()  # (n, k), the weight layout of a linear layer
    out = torch.empty(m, n, dtype=dtype)
    fns: dict[str, Callable[[], object]] = {"torch.mm": lambda: torch.mm(a, b, out=out)}
    onednn = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if onednn is not None and torch.backends.mkldnn.is_available():
        try:
            onednn(a, bt, None, "none", [], "")
            fns["oneDNN"] = lambda: onednn(a, bt, None, "none", [], "")
        except RuntimeError:
            pass  # this build or dtype has no oneDNN linear: torch.mm only
    # Short products are timed in batches so that one timed call lasts >= ~2 ms and the timer's
    # resolution and Python's overhead do not count.
    start = time.perf_counter()
    fns["torch.mm"]()
    inner = max(1, min(1000, int(2e-3 / max(time.perf_counter() - start, 1e-7))))

    def batched(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(inner):
                fn()
        return run

    timings = time_interleaved({name: batched(fn) for name, fn in fns.items()}, repeats=repeats, warmup=1)
    return {name: 2.0 * m * k * n * inner / t.median / 1e9 for name, t in timings.items()}


def bf16_support() -> tuple[bool, str]:
    """(supported, note): whether bf16 runs natively enough on this CPU to be worth measuring.

    Supported means oneDNN reports bf16 support (what torch.nn's fused kernels need) and a
    bf16 matmul runs. The note names the CPU's native bf16 instructions, if /proc/cpuinfo
    lists any (without them oneDNN emulates bf16 with AVX-512 conversions).
    """
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    native = sorted(flags & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        onednn = bool(torch.backends.mkldnn.is_available() and checker is not None and checker())
    except RuntimeError:
        onednn = False
    if not onednn:
        return False, "oneDNN reports no bf16 support on this CPU: bf16 cases skipped"
    try:
        torch.ones(4, 4, dtype=torch.bfloat16) @ torch.ones(4, 4, dtype=torch.bfloat16)
    except RuntimeError as error:
        return False, f"a bf16 matmul failed ({error}): bf16 cases skipped"
    how = f"native {'/'.join(native)}" if native else "no native bf16 instructions (emulated by oneDNN)"
    return True, f"bf16 supported by oneDNN; {how}"


def machine_info() -> dict[str, object]:
    """What a reader needs to compare two runs: CPU, core and thread counts, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
            "torch": torch.__version__, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A plain-text table; ``align`` has one of '<' or '>' per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "<" + ">" * (len(headers) - 1)
    lines = ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str | Path, data: object) -> Path:
    """Write ``data`` as JSON atomically (a temporary file renamed over the target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{random.randrange(1 << 30)}")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _jsonable(value: object) -> object:
    if isinstance(value, Timing):
        return value.summary()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[arg-type]
    if isinstance(value, (torch.dtype, Path)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")

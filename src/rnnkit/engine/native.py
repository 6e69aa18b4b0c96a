"""The native loops: ``native_loops.c`` compiled once on this machine and called through ctypes.

At small batch sizes the eager loop is bound by the cost of dispatching each ATen op, not by
arithmetic; the C loops run the whole recurrence of a built-in cell (matvec + pointwise, forward
and backward) in one call. They serve float32 Elman/LSTM/GRU scans on the CPU with at most
``MAX_BATCH`` rows and no per-step BPTT options; everything else stays on the eager kernels.

The library is built with the system C compiler (``$CC``, else ``cc``/``gcc``) the first time it
is needed, in about a second, and cached under ``$RNNKIT_CACHE`` (default
``~/.cache/rnnkit``) by a hash of the source, the flags, the compiler and the CPU. The build
writes to a temporary file and renames it into place, so concurrent processes never load a
half-written library. No compiler, a failed build or ``RNNKIT_NATIVE=0`` simply means the
eager kernels run instead (said once, at debug level).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MAX_BATCH", "library", "make_hybrid_kernel", "make_native_kernel", "native_available"]

MAX_BATCH = 4  # rows up to which the C matvec beats a BLAS call per step
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC", "-shared"]
log = logging.getLogger("rnnkit.engine")


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded native library, building it if needed; None if it cannot be had."""
    if os.environ.get("RNNKIT_NATIVE", "1") == "0":
        return None
    cc = _compiler()
    if cc is None:
        log.debug("native loops off: no C compiler found ($CC, cc, gcc, clang)")
        return None
    source = Path(__file__).with_name("native_loops.c").read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + cc.encode() + _cpu_id().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("RNNKIT_CACHE", Path.home() / ".cache" / "rnnkit")) / "native"
    target = cache / f"rnnkit_loops-{key}.so"
    try:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                src = Path(tmp) / "native_loops.c"
                src.write_bytes(source)
                out = Path(tmp) / target.name
                subprocess.run([cc, *FLAGS, "-o", str(out), str(src), "-lm"], check=True,
                               capture_output=True, timeout=120)
                os.replace(out, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("native loops off: building or loading %s failed: %s", target, err)
        return None
    _declare(lib)
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    L, P, I = ctypes.c_long, ctypes.c_void_p, ctypes.c_int
    lib.elman_fwd.argtypes = [L, L, L, I, I, P, P, P, P]
    lib.elman_bwd.argtypes = [L, L, L, I, I, P, P, P, P, P, P]
    lib.lstm_fwd.argtypes = [L, L, L, I, P, P, P, P, P, P]
    lib.lstm_bwd.argtypes = [L, L, L, I, P, P, P, P, P, P, P, P, P]
    lib.gru_fwd.argtypes = [L, L, L, I, P, P, P, P, P, P]
    lib.gru_bwd.argtypes = [L, L, L, I, P, P, P, P, P, P, P, P, P]
    lib.lstm_pw_fwd.argtypes = [L, L, P, P, P, P, P, P]
    lib.lstm_pw_bwd.argtypes = [L, L, P, P, P, P, P, P]
    lib.gru_pw_fwd.argtypes = [L, L, P, P, P, P, P]
    lib.gru_pw_bwd.argtypes = [L, L, P, P, P, P, P, P]
    for fn in (lib.elman_fwd, lib.elman_bwd, lib.lstm_fwd, lib.lstm_bwd, lib.gru_fwd, lib.gru_bwd,
               lib.lstm_pw_fwd, lib.lstm_pw_bwd, lib.gru_pw_fwd, lib.gru_pw_bwd):
        fn.restype = None


def native_available() -> bool:
    return library() is not None


def ptr(t: Tensor | None) -> int | None:
    """The data pointer of a contiguous float32 CPU tensor (None passes as NULL)."""
    if t is None:
        return None
    if not (t.is_contiguous() and t.dtype == torch.float32 and t.device.type == "cpu"):
        raise ValueError("native loops need contiguous float32 CPU buffers")  # internal invariant
    return t.data_ptr()


# ---------------------------------------------------------------------------- kernels
from rnnkit.engine.kinds import builtin_step  # noqa: E402  (after the loader, on purpose)
from rnnkit.steps import ElmanStep, GRUStep, LSTMStep  # noqa: E402
from rnnkit.engine.gemm import mm_nt  # noqa: E402
from rnnkit.engine.kernels import ElmanKernel, GRUKernel, Kernel, LSTMKernel  # noqa: E402

_ACT = {"tanh": 0, "relu": 1, "identity": 2}


class _Native:
    """Mixin: the whole forward and backward loops in one C call each."""

    native = True
    lib: ctypes.CDLL

    def run_backward(self, gys: list[Tensor | None], d: list[Tensor], m: Tensor | None,
                     reuse: bool = False) -> list[Tensor]:
        raise NotImplementedError  # every concrete native kernel overrides it


class NativeElmanKernel(_Native, ElmanKernel):
    def run_forward(self, m: Tensor | None) -> None:
        T, B, H = self.X.shape
        self.Wc = self.W.contiguous()
        self.lib.elman_fwd(T, B, H, int(self.reverse), _ACT[self.act], ptr(self.X), ptr(self.Wc),
                           ptr(self.states[0]), ptr(m))

    def run_backward(self, gys: list[Tensor | None], d: list[Tensor], m: Tensor | None,
                     reuse: bool = False) -> list[Tensor]:
        T, B, H = self.X.shape
        self.begin_backward(reuse)
        dh = d[0].contiguous()
        self.lib.elman_bwd(T, B, H, int(self.reverse), _ACT[self.act], ptr(self.Wc), ptr(self.states[0]),
                           ptr(gys[0]), ptr(dh), ptr(self.D), ptr(m))
        return [dh]


class NativeLSTMKernel(_Native, Kernel):
    """The C loop keeps torch's gate order, so no reordering copies are made."""

    def __init__(self, cell: LSTMStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool) -> None:
        if b is not None:
            X.add_(b)  # fold the recurrent bias into the inputs once
        super().__init__(cell, X, W.contiguous(), b, states, reverse)

    def run_forward(self, m: Tensor | None) -> None:
        T, B, G = self.X.shape
        scratch = self.X.new_empty(B, G)  # h W^T of one step
        self.lib.lstm_fwd(T, B, G // 4, int(self.reverse), ptr(self.X), ptr(scratch), ptr(self.W),
                          ptr(self.states[0]), ptr(self.states[1]), ptr(m))

    def run_backward(self, gys: list[Tensor | None], d: list[Tensor], m: Tensor | None,
                     reuse: bool = False) -> list[Tensor]:
        T, B, G = self.X.shape
        self.begin_backward(reuse)
        dh, dc = d[0].contiguous(), d[1].contiguous()
        self.lib.lstm_bwd(T, B, G // 4, int(self.reverse), ptr(self.X), ptr(self.W), ptr(self.states[1]),
                          ptr(gys[0]), ptr(gys[1]), ptr(dh), ptr(dc), ptr(self.D), ptr(m))
        return [dh, dc]


class NativeGRUKernel(_Native, GRUKernel):
    def run_forward(self, m: Tensor | None) -> None:
        T, B, G = self.X.shape
        self.Wc = self.W.contiguous()
        self.bc = None if self.b is None else self.b.contiguous()
        self.lib.gru_fwd(T, B, G // 3, int(self.reverse), ptr(self.X), ptr(self.HW), ptr(self.Wc), ptr(self.bc),
                         ptr(self.states[0]), ptr(m))

    def run_backward(self, gys: list[Tensor | None], d: list[Tensor], m: Tensor | None,
                     reuse: bool = False) -> list[Tensor]:
        T, B, G = self.X.shape
        self.begin_backward(reuse)
        dh = d[0].contiguous()
        self.lib.gru_bwd(T, B, G // 3, int(self.reverse), ptr(self.X), ptr(self.HW), ptr(self.Wc),
                         ptr(self.states[0]), ptr(gys[0]), ptr(dh), ptr(self.D), ptr(self.dHW), ptr(m))
        return [dh]


def make_native_kernel(cell: object, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                       reverse: bool, plain_bptt: bool) -> Kernel | None:
    """A native kernel for ``cell`` if this call qualifies, else None."""
    if not plain_bptt or X.dtype != torch.float32 or X.device.type != "cpu" or X.shape[1] > MAX_BATCH:
        return None
    kind = builtin_step(cell)
    if kind not in (ElmanStep, LSTMStep, GRUStep) or (kind is LSTMStep and cell.peepholes):  # type: ignore[attr-defined]
        return None
    lib = library()
    if lib is None:
        return None
    W = W.detach()
    b = None if b is None else b.detach()
    if kind is LSTMStep:
        kernel: Kernel = NativeLSTMKernel(cell, X, W, b, states, reverse)  # type: ignore[arg-type]
    elif kind is GRUStep:
        kernel = NativeGRUKernel(cell, X, W, b, states, reverse)  # type: ignore[arg-type]
    else:
        kernel = NativeElmanKernel(cell, X, W, b, states, reverse)  # type: ignore[arg-type]
    kernel.lib = lib  # type: ignore[attr-defined]
    return kernel


# ---------------------------------------------------------------------------- hybrid kernels
def _rows(buf: Tensor, kernel: Kernel) -> list[int]:
    """Data pointers of a time-ordered buffer's rows, in processing order."""
    return [r.data_ptr() for r in kernel.steps(buf)]


def _bounds(buf: Tensor, kernel: Kernel) -> list[int]:
    return [r.data_ptr() for r in kernel.bounds(buf)]


class HybridLSTMKernel(Kernel):
    """Batches above MAX_BATCH: per step, oneDNN for h W^T and d(hw) W, one C call between them.

    The Python driver keeps everything else (masks, taps, clipping, truncation), so this kernel
    serves every BPTT option. Gates stay in torch's (i, f, g, o) order."""

    reads_after = True  # bwd recomputes tanh(c') from the state after the step

    def __init__(self, cell: LSTMStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool, mm_dtype: torch.dtype | None = None) -> None:
        if b is not None:
            X.add_(b)  # fold the recurrent bias into the inputs once
        super().__init__(cell, X, W.contiguous(), b, states, reverse)
        self.B, self.H = X.shape[1], X.shape[2] // 4
        self.x = _rows(X, self)
        self.h = self.bounds(states[0])
        self.hp = _bounds(states[0], self)
        self.cp = _bounds(states[1], self)
        self.mm = _StepMatmul(self.W, None, mm_dtype)

    def fwd(self, k: int) -> None:
        hw = self.mm.forward(self.mm_in(self.h[k]))  # (B, 4H) float32
        self.lib.lstm_pw_fwd(self.B, self.H, self.x[k], hw.data_ptr(), self.x[k], self.cp[k], self.cp[k + 1],
                             self.hp[k + 1])

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        self.d = _rows(self.D, self)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        dh, dc = d[0].contiguous(), d[1].contiguous()
        self.lib.lstm_pw_bwd(self.B, self.H, self.x[k], self.cp[k], self.cp[k + 1], dh.data_ptr(), dc.data_ptr(),
                             self.d[k])
        return [None, dc]

    def back_mm(self, k: int, dHW: Tensor, direct: Tensor | None) -> Tensor:
        p = self.mm.backward(dHW)  # d(hw) W, (B, H)
        return p if direct is None else p.add_(direct)


class _StepMatmul:
    """The per-step recurrent matmuls of a hybrid kernel: h W^T (+ b) and d(hw) W, on oneDNN.

    With ``dtype=torch.bfloat16`` (a bf16 call whose recurrence runs in float32) the operands are
    rounded to bf16 and multiplied with float32 accumulation, as oneDNN's own bf16 LSTM does;
    results come back in float32 for the C pointwise code."""

    def __init__(self, W: Tensor, b: Tensor | None, dtype: torch.dtype | None) -> None:
        self.dtype = dtype
        self.W = W if dtype is None else W.to(dtype)
        self.Wt = self.W.t()
        self.b = b if b is None or dtype is None else b.to(dtype)

    def forward(self, h: Tensor) -> Tensor:
        if self.dtype is None:
            return mm_nt(h, self.W, self.b)
        return mm_nt(h.to(self.dtype), self.W, self.b).float()

    def backward(self, d: Tensor) -> Tensor:
        if self.dtype is None:
            return mm_nt(d, self.Wt)
        return mm_nt(d.to(self.dtype), self.Wt).float()


class HybridGRUKernel(GRUKernel):
    """The GRU counterpart of HybridLSTMKernel (reset-after; hw_n is kept for the backward)."""

    def __init__(self, cell: GRUStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool, mm_dtype: torch.dtype | None = None) -> None:
        super().__init__(cell, X, W.contiguous(), b, states, reverse)
        self.B = X.shape[1]
        self.xr, self.hwr = _rows(X, self), _rows(self.HW, self)
        self.hp = _bounds(states[0], self)
        self.mm = _StepMatmul(self.W, None if b is None else b.contiguous(), mm_dtype)

    def fwd(self, k: int) -> None:
        hw = self.mm.forward(self.mm_in(self.h[k]))  # h W^T + b_hh, (B, 3H) float32
        self.lib.gru_pw_fwd(self.B, self.H, self.xr[k], hw.data_ptr(), self.hwr[k], self.hp[k], self.hp[k + 1])

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        self.dr, self.dhwr = _rows(self.D, self), _rows(self.dHW, self)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        dh = d[0].contiguous()
        self.lib.gru_pw_bwd(self.B, self.H, self.xr[k], self.hwr[k], self.hp[k], dh.data_ptr(), self.dr[k],
                            self.dhwr[k])
        return [dh]

    def back_mm(self, k: int, dHW: Tensor, direct: Tensor | None) -> Tensor:
        p = self.mm.backward(dHW)
        return p if direct is None else p.add_(direct)


def make_hybrid_kernel(cell: object, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                       reverse: bool, mm_dtype: torch.dtype | None = None) -> Kernel | None:
    """A hybrid (oneDNN matmul + C pointwise) kernel for float32 LSTM/GRU on CPU, else None.
    ``mm_dtype=torch.bfloat16`` runs the per-step matmuls in bf16 (see _StepMatmul)."""
    if X.dtype != torch.float32 or X.device.type != "cpu":
        return None
    kind = builtin_step(cell)
    if kind not in (LSTMStep, GRUStep) or (kind is LSTMStep and cell.peepholes):  # type: ignore[attr-defined]
        return None
    lib = library()
    if lib is None:
        return None
    W = W.detach()
    b = None if b is None else b.detach()
    kernel: Kernel = (HybridLSTMKernel if kind is LSTMStep else HybridGRUKernel)(  # type: ignore[operator]
        cell, X, W, b, states, reverse, mm_dtype)
    kernel.lib = lib  # type: ignore[attr-defined]
    return kernel

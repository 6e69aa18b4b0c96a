"""The one dispatch plan: which backend runs a call, in which loop form, in which dtype, and why.

:func:`make_plan` is the only place that decides. Layers call it in ``forward`` and ``step``
(``layer.plan(x, lengths=...)`` shows the plan), ``rnnkit.engine.run_cell`` calls it for a
cell's scan, and the engine obeys the plan it is handed instead of deciding again.

* **backend**: ``"fused"`` (PyTorch's native RNN kernels), ``"generic-compiled"`` (the structured
  loop on a cell's kernels: native C or eager torch ops, no per-step graph) or
  ``"generic-autograd"`` (the cell's own torch code differentiated by autograd).
* **loop**: ``"fused"``; ``"native"`` (the whole sequence in one C loop), ``"hybrid"`` (oneDNN for
  each step's matmul, one C call for the pointwise part), ``"eager"`` (a few torch ops per step,
  no graph); ``"autograd"`` (one ``cell.step`` per step under autograd); ``"step"`` (one step of
  ``layer.step``).
* **compute_dtype**: the dtype of the recurrence (float32 for a bfloat16 CPU call that the float32
  C kernels serve; the results are rounded back).

``engine="fused"`` raises when the fused backend cannot serve (in ``step`` exactly as in
``forward``); ``"generic"`` never takes it; ``"auto"`` takes the faster of the two as measured on
this machine (``rnnkit.engine.costs``), and fused on CUDA. The plan logs its reasons once per
distinct plan, at debug level, on the ``rnnkit.engine`` logger.

    >>> import torch, rnnkit
    >>> plan = rnnkit.GRU(8, 16, engine="generic").plan(torch.randn(2, 5, 8))
    >>> plan.backend, plan.loop
    ('generic-compiled', 'native')
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from rnnkit.engine.costs import cost_key, lookup
from rnnkit.engine.kinds import fused_kind
from rnnkit.errors import bad_argument

__all__ = ["BACKENDS", "ENGINES", "LOOPS", "Plan", "check_engine", "choose", "make_plan"]

ENGINES = ("auto", "fused", "generic")
BACKENDS = ("fused", "generic-compiled", "generic-autograd")
LOOPS = ("fused", "native", "hybrid", "eager", "autograd", "step")
log = logging.getLogger("rnnkit.engine")
_said: set[str] = set()


@dataclass(frozen=True)
class Plan:
    """What runs a call and why. ``reasons`` pairs each decision with its cause."""

    engine: str  # what was asked: "auto" | "fused" | "generic"
    backend: str  # one of BACKENDS
    loop: str  # one of LOOPS
    dtype: torch.dtype  # the call's dtype
    compute_dtype: torch.dtype  # the recurrence's dtype (float32 for an upcast bfloat16 call)
    reasons: tuple[tuple[str, str], ...]  # (("backend", why), ("loop", why), ("dtype", why))

    @property
    def fused(self) -> bool:
        return self.backend == "fused"

    def reason(self, decision: str) -> str:
        """Why ``decision`` ("backend", "loop" or "dtype") came out as it did."""
        return dict(self.reasons).get(decision, "")

    def __str__(self) -> str:
        head = f"{self.backend} / {self.loop} / {str(self.compute_dtype).removeprefix('torch.')}"
        return head + "".join(f"\n  {k}: {v}" for k, v in self.reasons)


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise bad_argument("engine", f"one of {ENGINES}", engine,
                           "use 'auto' unless you need to force a backend")
    return engine


def choose(engine: str, why_not_fused: str | None, where: str) -> str:
    """``"fused"`` or ``"generic"`` for a request that has no cell plan (e.g. a single-cell scan).

    ``engine="fused"`` raises with ``why_not_fused``; ``"auto"`` falls back to ``generic``.
    """
    check_engine(engine)
    if engine == "generic":
        return "generic"
    if why_not_fused is None:
        return "fused"
    if engine == "fused":
        raise _fused_error(where, why_not_fused)
    return "generic"


def _fused_error(where: str, why: str) -> ValueError:
    return ValueError(f"engine: expected a configuration the fused backend can run, but {where} has "
                      f"{why}. Fix: use engine='auto' or engine='generic'.")


def make_plan(
    engine: str,
    cell: Any,
    *,
    why_not_fused: str | None,
    dtype: torch.dtype,
    device: torch.device | str,
    batch: int,
    lengths: bool = False,
    backward: bool = False,
    plain_bptt: bool = True,
    structured: bool = True,
    step: bool = False,
    where: str = "",
    regularised: str | None = None,
    cost_dtype: torch.dtype | None = None,
) -> Plan:
    """Decide backend, loop form and dtype handling for one call. See the module docstring.

    ``cell``: the cell that runs (for a layer, its first direction's; all are alike).
    ``why_not_fused``: None when the fused backend can serve the call, else why not.
    ``lengths``: some sequence is shorter than T. ``backward``: gradients will be taken.
    ``plain_bptt``: no truncation, per-step clipping or gradient taps. ``structured``: the
    structured loop can run the cell (one input sequence, outputs = states, no contexts).
    ``step``: a single step of ``layer.step``. ``regularised``: what acts between the steps of
    the recurrence (recurrent dropout, zoneout; ``Regularisers.inside``), or None; it keeps the
    call off the whole-sequence C loop.
    ``cost_dtype``: the dtype ``auto`` looks up in the cost table when it differs from ``dtype``
    (a float32 call under a CPU bf16 autocast runs as bfloat16).
    """
    check_engine(engine)
    if engine == "fused" and why_not_fused is not None:
        raise _fused_error(where or type(cell).__name__, why_not_fused)
    sig = (type(cell), bool(getattr(cell, "peepholes", False)), fused_kind(cell) or "",
           getattr(cell, "hidden_size", 1) == 0, *(_compiles(cell, dtype, device) if structured else (None, None, False)))
    device = torch.device(device)
    return _plan(engine, sig, why_not_fused, dtype, device, batch, lengths, backward, plain_bptt,
                 structured, step, where or type(cell).__name__, regularised, cost_dtype or dtype,
                 _autocast(dtype, device))


def _autocast(dtype: torch.dtype, device: torch.device) -> str | None:
    """The cost-table dtype of a float32 call under an autocast of ``device``'s type (e.g.
    ``"autocast-bfloat16"``), else None."""
    if dtype != torch.float32 or device.type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device.type):
        return None
    return "autocast-" + str(torch.get_autocast_dtype(device.type)).removeprefix("torch.")


@lru_cache(maxsize=4096)
def _plan(engine: str, sig: tuple, why_not_fused: str | None, dtype: torch.dtype, device: torch.device,
          batch: int, lengths: bool, backward: bool, plain_bptt: bool, structured: bool, step: bool,
          where: str, regularised: str | None = None,
          cost_dtype: torch.dtype | None = None, autocast: str | None = None) -> Plan:
    """make_plan's decision, cached: a call pays a dictionary lookup (the decode loop calls it per
    token). ``sig``: (cell type, peepholes, fused kind, empty cell), what the decision reads.
    ``autocast``: the autocast a float32 call runs under (its cost-table rows are its own)."""
    if engine == "generic":
        use_fused, why = False, "engine='generic' was requested"
    elif why_not_fused is not None:
        use_fused, why = False, f"the fused kernels cannot run it: {why_not_fused}"
    elif engine == "fused":
        use_fused, why = True, "engine='fused' was requested"
    else:
        use_fused, why = _auto(sig[2], autocast or str(cost_dtype or dtype).removeprefix("torch."), device, batch,
                               lengths, backward, step)
    if use_fused:
        plan = Plan(engine, "fused", "fused", dtype, dtype,
                    (("backend", why), ("loop", "PyTorch's multi-layer kernel runs the whole call"),
                     ("dtype", "the call's own")))
    else:
        plan = _generic(engine, sig, dtype, device, batch, plain_bptt, structured, step, why, regularised)
    _log_once(where, plan)
    return plan


def _auto(kind: str, dtype: str, device: torch.device, batch: int, lengths: bool, backward: bool,
          step: bool) -> tuple[bool, str]:
    """auto between two backends that can both serve: the faster one as measured here. ``dtype``:
    the table's name for the call's dtype ("float32", "bfloat16", "autocast-bfloat16", ...)."""
    if device.type != "cpu":
        return True, (f"auto on {device.type}: fused (cuDNN on CUDA); the generic engine was not measured "
                      "on a GPU here")
    if step:
        return True, "auto for a single step: fused (one kernel call; single steps are not in the cost table)"
    key = cost_key(kind, dtype, device.type, batch, lengths, backward)
    row = lookup(key)
    if row is None and dtype.startswith("autocast-"):  # a table without autocast rows: the dtype it computes in
        row = lookup(cost_key(kind, dtype.removeprefix("autocast-"), device.type, batch, lengths, backward))
    if row is None:
        return True, f"auto: no measurement for {key}; fused, torch.nn's own kernels"
    near = "" if row.exact else " (nearest measured batch size)"
    figures = (f"measured {row.generic_s * 1e3:.3g} ms generic vs {row.fused_s * 1e3:.3g} ms fused at "
               f"{row.size}{near}, key {row.key}")
    if len(row.passes) > 1:
        r, med, mean = row.regret, row.median_regret, row.mean_regret
        figures += (f"; over {len(row.passes)} passes typically (median) {med['fused']:.2f}x (fused) vs "
                    f"{med['generic']:.2f}x (generic) the faster, on average {mean['fused']:.2f}x vs "
                    f"{mean['generic']:.2f}x, at worst {r['fused']:.2f}x vs {r['generic']:.2f}x")
    if row.spread:
        figures += f"; spread {row.spread[0]:.0%} (fused) vs {row.spread[1]:.0%} (generic)"
    return row.faster == "fused", f"auto: {row.faster} is faster here ({figures})"


def _generic(engine: str, sig: tuple, dtype: torch.dtype, device: torch.device, batch: int, plain_bptt: bool,
             structured: bool, step: bool, why: str, regularised: str | None = None) -> Plan:
    if step:
        return Plan(engine, "generic-autograd", "step", dtype, dtype,
                    (("backend", why), ("loop", "one cell.step per layer, under autograd"),
                     ("dtype", "the call's own")))
    if not structured:
        return Plan(engine, "generic-autograd", "autograd", dtype, dtype,
                    (("backend", why + "; the cell is not a single-input Structured cell (contexts, extra "
                      "outputs or a custom step), so autograd runs its step"),
                     ("loop", "one cell.step per time step under autograd"), ("dtype", "the call's own")))
    if batch == 0 or sig[3]:
        return Plan(engine, "generic-autograd", "autograd", dtype, dtype,
                    (("backend", why + "; empty tensors run on the step-wise engine"),
                     ("loop", "one cell.step per time step under autograd"), ("dtype", "the call's own")))
    compiled, has_c, not_compiled = _compiled(sig, dtype, device)
    if not compiled:
        return Plan(engine, "generic-autograd", "eager", dtype, dtype,
                    (("backend", f"{why}; no kernel for this cell ({not_compiled}): its pointwise re-runs "
                      "under autograd in the backward"),
                     ("loop", "structured loop: one matmul and the cell's pointwise per step, no graph"),
                     ("dtype", "the call's own")))
    compute, dtype_why = dtype, "the call's own"
    if dtype == torch.bfloat16 and device.type == "cpu" and has_c:
        compute = torch.float32
        dtype_why = ("bfloat16 on CPU: the recurrence runs in float32 in the C kernels (as oneDNN's bf16 LSTM "
                     "does inside its kernel) and the results are rounded to bfloat16")
    if not has_c or compute not in (torch.float32, torch.float64) or device.type != "cpu":
        loop, loop_why = "eager", ("eager kernel: compiled C serves float32/float64 CPU calls with a C compiler "
                                   f"(this call: {dtype}, {device.type})")
    elif plain_bptt and not regularised and batch <= _max_native_batch():
        loop, loop_why = "native", f"whole-sequence C loop (B = {batch} <= {_max_native_batch()}, plain BPTT)"
    elif _has_hybrid(sig):
        loop, loop_why = "hybrid", (f"hybrid: oneDNN per-step matmul + one C pointwise call (B = {batch}"
                                    + ("" if plain_bptt else ", BPTT options")
                                    + (f"; {regularised} acts between steps" if regularised else "") + ")")
        if compute != dtype:
            dtype_why += "; the per-step matmuls run in bf16 with float32 accumulation"
    else:
        loop, loop_why = "eager", "eager kernel (no hybrid kernel for this cell)"
    return Plan(engine, "generic-compiled", loop, dtype, compute,
                (("backend", why), ("loop", loop_why), ("dtype", dtype_why)))


# ---------------------------------------------------------------- what the kernels can run
def _compiles(cell: Any, dtype: torch.dtype, device: torch.device | str) -> tuple[str | None, str | None, bool]:
    """(compiled unit or None, why it does not compile, has C for this call) from the cell
    compiler (``rnnkit.engine.compiler``)."""
    from rnnkit.engine.compiler import compile_cell, explain

    compute = torch.float32 if dtype == torch.bfloat16 else dtype
    cc = compile_cell(cell, compute, device)
    if cc is None:
        return None, explain(cell), False
    return cc.unit, None, cc.c("fwd_seq", compute) is not None and torch.device(device).type == "cpu"


def _compiled(sig: tuple, dtype: torch.dtype, device: torch.device) -> tuple[bool, bool, str | None]:
    """(has a compiled kernel, has C code for this call, why not compiled), read from ``sig``."""
    return sig[4] is not None, bool(sig[6]), sig[5]


def _has_hybrid(sig: tuple) -> bool:
    return bool(sig[6])  # every compiled cell with C has the per-step entry points


def _max_native_batch() -> int:
    from rnnkit.engine.native import MAX_BATCH

    return MAX_BATCH


def _log_once(where: str, plan: Plan) -> None:
    key = f"{where}|{plan.engine}|{plan}"
    if key not in _said:
        _said.add(key)
        log.debug("%s runs %s", where, plan)

"""The generic engine's fast loop for ``Structured`` cells (recurrent matmul, then pointwise).

How it works (the FlashRNN / haste organisation):

* The layer projects the inputs of all T steps in one GEMM before the engine runs; the engine
  takes them as one buffer ``X`` (T, B, G) that the kernel reuses in place (a layer donates its
  time-major projection, so no copy is made; the C kernels also read a batch-first one in place).
* Forward runs inside one ``torch.autograd.Function`` with no autograd graph, on the kernels the
  cell compiler generated from the cell's ``pointwise`` (``rnnkit.engine.compiler``): small
  float32/float64 CPU batches run the whole loop in C; otherwise each step is one oneDNN matmul
  plus one C call (or a few eager torch ops: GPUs, other dtypes, no C compiler) writing into
  preallocated state buffers (T+1, B, H); a cell the compiler cannot take runs on the autograd
  kernel (``rnnkit.engine.kernels``). Masks carry the state over at padded steps. Running
  backwards in time only reverses the lists of views the kernel walks: no buffer is flipped.
* Backward walks the steps in reverse: the kernel turns d(state) into d(pre-activations) from
  stored activations (custom cells re-run their pointwise under autograd), the driver adds
  ``d(hw) @ W`` to d(h_{t-1}), and the BPTT options act on d(state) at every step: gradient
  taps, clipping, truncation.
* The recurrent weight gradient is ONE GEMM over all T*B rows at the end
  (``dHW^T @ H_prev``) instead of T small ones; the input projection's gradient flows back
  through autograd from ``d(xp)``.
* The returned sequences are views of the state buffers (copies only where a mask zeroes the
  padding), and nothing but the buffers is kept for backward. Unless the graph is retained,
  backward writes d(xp) over the activations it has consumed, so training allocates no
  (T, B, G) gradient buffer of its own.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor

from rnnkit.engine.bptt import BPTT
from rnnkit.engine.double import recompute_backward
from rnnkit.engine.gemm import mm_tn
from rnnkit.engine.compiler import compile_cell
from rnnkit.engine.compiler.kernels import EagerKernel, SeqKernel, StepKernel, make_compiled_kernel
from rnnkit.engine.compiler.trace import extra_params as pointwise_params
from rnnkit.engine.kernels import AutogradKernel, Kernel
from rnnkit.engine.regularise import Masks
from rnnkit.engine.result import Scan
from rnnkit.steps import StructuredStep

__all__ = ["can_run_structured", "scan_structured"]


def _upcast(cell: StructuredStep, xp: Tensor) -> bool:
    """True for a bfloat16 CPU call of a cell that the float32 C code serves."""
    if xp.dtype != torch.bfloat16 or xp.device.type != "cpu":
        return False
    cc = compile_cell(cell, torch.float32, xp.device)
    return cc is not None and cc.c("fwd_seq", torch.float32) is not None


def _keep_graph() -> bool:
    """True when autograd keeps this graph for another backward (``retain_graph``/``create_graph``).

    Reads the running graph task's flag (a private torch binding, present since torch 1.x); if a
    build lacks it, the answer is True, the safe side: buffers are then never recycled.
    """
    probe = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if probe is None else bool(probe())


def can_run_structured(cell: Any, contexts: dict[str, Tensor]) -> bool:
    """True when the fast loop computes exactly what ``cell.step`` does."""
    return (
        isinstance(cell, StructuredStep)
        and not contexts
        and tuple(cell.sequences) == ("inputs",)
        and cell.output_names == tuple(cell.states)
    )


class _Setup:
    """The per-call constants the forward hands to the backward."""

    def __init__(self, cell: StructuredStep, reverse: bool, bptt: BPTT, scope: str, donate: bool,
                 rebuild: Any = None) -> None:
        self.cell, self.reverse, self.bptt, self.scope, self.donate = cell, reverse, bptt, scope, donate
        self.rebuild = rebuild  # () -> xp's values once the kernel overwrote them (double backward)
        self.param_names: tuple[str, ...] = ()
        self.plan: Any = None  # rnnkit.engine.dispatch.Plan: the loop form to run (None: decide here)
        self.kernel: Kernel | None = None
        self.mm_dtype: torch.dtype | None = None  # bf16: a bf16 call's per-step matmuls (hybrid kernels)
        self.reg: Masks | None = None  # regulariser masks (rnnkit.engine.regularise)
        self.zl: list[Any] | None = None  # per state: zoneout/padding weights per step (_zone_weights)


def _choose_kernel(setup: _Setup, X: Tensor, W: Tensor, b: Tensor | None, bufs: list[Tensor],
                 params: tuple[Tensor, ...]) -> Kernel:
    """The kernel of this call, in the plan's loop form (``setup.plan``; None: the fastest that
    serves): compiled code for a cell the compiler takes (whole-sequence C, per-step C between
    oneDNN matmuls, or eager torch ops), else the autograd kernel."""
    cell, loop = setup.cell, None if setup.plan is None else setup.plan.loop
    masked = setup.reg is not None and setup.reg.step_loop
    if masked and loop is None:
        loop = "hybrid"  # masks between steps: the per-step loop, unless a plan asks for the C loop
    cc = compile_cell(cell, X.dtype, X.device)
    if cc is None:
        return AutogradKernel(cell, X, W, b, bufs, setup.reverse, pointwise_params(cell))
    args = (cc, cell, X, W, b, bufs, setup.reverse, params)
    has_c = cc.c("fwd_seq", X.dtype) is not None and X.device.type == "cpu"
    if loop == "native" and has_c and setup.bptt.is_default:  # a bf16 call too: float32 throughout in C
        return SeqKernel(*args)
    if loop == "hybrid" and has_c:
        return StepKernel(*args, mm_dtype=setup.mm_dtype)
    if loop in ("eager", "autograd"):
        return EagerKernel(*args)
    return make_compiled_kernel(*args, setup.bptt.is_default and not masked, setup.mm_dtype)


def _reads_batch_major(setup: _Setup, xp: Tensor) -> bool:
    """True when this call's kernel is compiled C that can read X in xp's own batch-first layout
    (xp contiguous (B, T, G)), so neither a transposing copy nor, for a donated xp, any copy is
    made; d(xp) then comes back batch-first and contiguous too."""
    if not xp.is_contiguous() or xp.transpose(0, 1).is_contiguous():
        return False
    loop = None if setup.plan is None else setup.plan.loop
    if loop not in (None, "native", "hybrid") or xp.device.type != "cpu":
        return False
    cc = compile_cell(setup.cell, xp.dtype, xp.device)
    return cc is not None and cc.c("fwd_seq", xp.dtype) is not None


def _run_forward(setup: _Setup, xp: Tensor, W: Tensor, b: Tensor | None, mask: Tensor | None,
                 states0: tuple[Tensor, ...], params: tuple[Tensor, ...]) -> tuple[Kernel, Tensor | None]:
    """Fill the kernel's buffers; returns it and the time-major mask (T, B, 1) or None."""
    B, T = xp.shape[0], xp.shape[1]
    X = xp.transpose(0, 1)  # (T, B, G)
    if _reads_batch_major(setup, xp):  # the C kernels walk a batch-first (B, T, G) buffer in place
        if not setup.donate:
            X = xp.clone().transpose(0, 1)  # a plain copy, not a transposing one: the kernel writes into X
    elif not (setup.donate and X.is_contiguous()):
        X = X.clone(memory_format=torch.contiguous_format)  # the kernel writes into X
    first = T if setup.reverse else 0
    bufs = []
    for s in states0:
        buf = s.new_empty(T + 1, *s.shape)  # (T+1, B, H)
        buf[first] = s
        bufs.append(buf)
    m = None if mask is None else mask.t().unsqueeze(-1)  # (T, B, 1) bool, time order
    kernel = _choose_kernel(setup, X, W, b, bufs, params)
    mf = None if m is None else m.squeeze(-1).float().contiguous()  # (T, B) 1/0
    if setup.reg is not None and setup.reg.state is not None:
        kernel.hmask = setup.reg.state.to(X.dtype)  # recurrent dropout: the matmul reads h * mask
    folded = setup.reg is not None and setup.reg.zoned and _fold_zone(setup.reg, kernel, mf)
    if getattr(kernel, "native", False):
        kernel.run_forward(mf)  # type: ignore[attr-defined]
        return kernel, m
    fwd = kernel.fwd
    if folded:  # zoneout (and padding) inside the compiled step
        for k in range(T):
            fwd(k)
        return kernel, m
    if setup.reg is not None:
        setup.zl = _zone_weights(setup.reg, kernel, m, X.dtype)
    if setup.zl is not None:  # zoneout: s' = s + a (s_new - s), a = 0 at padded steps
        rows = [kernel.bounds(buf) for buf in bufs]
        for k in range(T):
            fwd(k)
            for r, w in zip(rows, setup.zl):
                if w is not None:
                    torch.lerp(r[k], r[k + 1], w[k], out=r[k + 1])
        return kernel, m
    if m is None:
        for k in range(T):
            fwd(k)
        return kernel, m
    ml = kernel.steps(m)
    rows = [kernel.bounds(buf) for buf in bufs]
    for k in range(T):
        fwd(k)
        for r in rows:  # padded step: the state carries over
            torch.where(ml[k], r[k + 1], r[k], out=r[k + 1])
    return kernel, m


def _fold_zone(reg: Masks, kernel: Kernel, mf: Tensor | None) -> bool:
    """Hand the zoneout weights (and the padding) to a compiled C kernel that mixes the states
    inside its step (``compiler/czone.py``, ``compiler/cloops.py``); False for any other kernel (the driver mixes)."""
    zone = getattr(kernel, "zone", None)
    if zone is None or not hasattr(kernel, "cc"):
        return False
    H = kernel.H  # type: ignore[attr-defined]
    X = kernel.X
    weights = [X.new_ones(H) if z is None else X.new_full((H,), z) if isinstance(z, float) else z for z in reg.zone]
    return bool(zone(weights, mf))


def _zone_weights(reg: Masks, kernel: Kernel, m: Tensor | None, dtype: torch.dtype) -> list[Any] | None:
    """Per state, the weight of the new value at each step in processing order (zoneout's a,
    times the padding mask), or None for a state that simply takes it; None when no zoneout."""
    if not reg.zoned:
        return None
    out: list[Any] = []
    for z in reg.zone:
        if z is None:
            w = None if m is None else m.to(dtype)  # (T, B, 1): the padding alone
        elif isinstance(z, float):
            w = [z] * len(kernel.X) if m is None else m.to(dtype) * z  # (T, B, 1)
        else:
            w = z.to(dtype) if m is None else z.to(dtype) * m  # (T, B, H)
        out.append(w if w is None or isinstance(w, list) else kernel.steps(w))
    return out


def _outputs(kernel: Kernel, mask: Tensor | None) -> list[Tensor]:
    """The state sequences (B, T, H) in time order: views, or masked copies."""
    outs = []
    for s in range(len(kernel.states)):
        seq = kernel.following(s).transpose(0, 1)  # (B, T, H) view
        outs.append(seq * mask.unsqueeze(-1) if mask is not None else seq)
    return outs


class _StructuredScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, setup: _Setup, xp: Tensor, W: Tensor, b: Tensor | None, mask: Tensor | None,
                n_states: int, *rest: Tensor) -> tuple[Tensor, ...]:
        states0, params = rest[:n_states], rest[n_states:]
        kernel, m = _run_forward(setup, xp, W, b, mask, states0, params)
        setup.kernel = kernel
        ctx.set_materialize_grads(False)  # unused outputs (often the cell-state sequence) get None, not zeros
        ctx.setup, ctx.m, ctx.n_params, ctx.has_b = setup, m, len(params), b is not None
        ctx.T, ctx.B = xp.shape[1], xp.shape[0]
        ctx.inputs = (setup, xp, W, b, mask, n_states, *rest)  # for a double backward only
        finals = [kernel.last(buf).clone() for buf in kernel.states]  # (B, H)
        return (*_outputs(kernel, mask), *finals)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: differentiate a step-wise recomputation
            return recompute_backward(ctx.setup, ctx.inputs, ctx.needs_input_grad, grads)
        setup: _Setup = ctx.setup
        kernel = setup.kernel
        S = len(kernel.states)
        d_seq, d_final = grads[:S], grads[S:]
        T, B = ctx.T, ctx.B
        bptt, m = setup.bptt, ctx.m
        native = getattr(kernel, "native", False)
        gys: list[Tensor | None] = []
        for g in d_seq:  # time-major (T, B, H), padding zeroed (the C loops skip it themselves)
            if g is None:
                gys.append(None)
            else:
                g = g.transpose(0, 1)
                gys.append((g * m).contiguous() if m is not None and not native else g.contiguous())
        d = [torch.zeros_like(s[0]) if g is None else g.clone() for g, s in zip(d_final, kernel.states)]  # (B, H)
        rec = setup.cell.states.index(setup.cell.recurrent_state)
        reuse = not _keep_graph()  # d(xp) may overwrite the activations (Kernel.begin_backward)
        if native:
            mf = None if m is None else m.squeeze(-1).float().contiguous()
            d = kernel.run_backward(gys, d, mf, reuse)  # type: ignore[attr-defined]
            return _finish(ctx, kernel, d, rec)
        kernel.begin_backward(reuse)
        W = kernel.W
        dHW = kernel.steps(kernel.dHW)
        ml = kernel.steps(m) if m is not None else None
        gyl = [None if g is None else kernel.steps(g) for g in gys]
        cut = _truncation_cuts(bptt.truncate, None if m is None else torch.stack(ml), T, B, W.device) \
            if bptt.truncate else None
        taps, clip = bptt.tap is not None, bptt.clip_value is not None or bptt.clip_norm is not None
        back_mm = kernel.back_mm
        zl, hm = setup.zl, kernel.hmask
        if getattr(kernel, "zoned", False):
            ml = None  # the compiled step mixes and handles the padding itself
        for k in range(T - 1, -1, -1):
            for s in range(S):
                if gyl[s] is not None:
                    d[s].add_(gyl[s][k])
            if taps:
                t = T - 1 - k if setup.reverse else k
                for s, name in enumerate(setup.cell.states):
                    bptt.tap._record(f"{setup.scope}/{name}", t, d[s])
            if clip:
                d = [bptt.clip(x) for x in d]
            if zl is not None:  # zoneout (and padding): the kept share passes to step k-1
                skip = [None if w is None else d[s] * (1 - w[k]) for s, w in enumerate(zl)]
                d = [x if w is None else x.mul_(w[k]) for x, w in zip(d, zl)]
            elif ml is not None:
                skip = [x * ~ml[k] for x in d]  # padded rows: the gradient passes to step k-1
                d = [x.mul_(ml[k]) for x in d]
            direct = kernel.bwd(k, d)  # reads only the states before step k, not the zoned ones after it
            prev = []
            for s in range(S):
                if s == rec and hm is not None:  # recurrent dropout: d(h) += (d(hw) W) * mask
                    p = back_mm(k, dHW[k], None).mul_(hm)
                    if direct[s] is not None:
                        p.add_(direct[s])
                elif s == rec:
                    p = back_mm(k, dHW[k], direct[s])
                else:
                    p = direct[s] if direct[s] is not None else torch.zeros_like(d[s])
                prev.append(p)
            if zl is not None or ml is not None:
                prev = [p if sk is None else p.add_(sk) for p, sk in zip(prev, skip)]
            if cut is not None and bool(cut[k].any()):
                keep = ~cut[k].unsqueeze(-1)
                prev = [p.mul_(keep) for p in prev]
            d = prev
        return _finish(ctx, kernel, d, rec)


def _finish(ctx: Any, kernel: Kernel, d: list[Tensor], rec: int) -> tuple[Tensor | None, ...]:
    """The gradients that need the whole sequence: one GEMM for W over all T*B rows."""
    T, B = ctx.T, ctx.B
    G = kernel.W.shape[0]
    h_prev = kernel.previous(rec)  # (T, B, H)
    if kernel.hmask is not None:
        h_prev = h_prev * kernel.hmask  # recurrent dropout: the matmul read h * mask
    if kernel.dHW.is_contiguous():  # time-major
        dHW_all = kernel.dHW.view(T * B, G)  # (T*B, G)
        h_prev = h_prev.reshape(T * B, -1)  # (T*B, H)
    else:  # batch-major (_reads_batch_major): the rows in (b, t) order, the narrow h_prev copied
        dHW_all = kernel.dHW.transpose(0, 1).reshape(B * T, G)  # (B*T, G), a view
        h_prev = h_prev.transpose(0, 1).reshape(B * T, -1)  # (B*T, H)
    dW = mm_tn(dHW_all, h_prev)  # (G, H), one GEMM over all T*B rows
    db = dHW_all.sum(0) if ctx.has_b else None
    dW, db, extra = kernel.finish_grads(dW, db)
    dxp = kernel.dx_layout().transpose(0, 1)  # (B, T, G)
    extra = extra + [None] * (ctx.n_params - len(extra))
    return (None, dxp, dW, db, None, None, *d, *extra)


def _truncation_cuts(k: int, m: Tensor | None, T: int, B: int, device: torch.device) -> Tensor:
    """(T, B) bool in processing order: rows whose state is detached before step k.

    ``m`` is the mask in processing order, (T, B, 1), or None. A row is cut before its real step
    number j (counting from 0) when j > 0 and j % k == 0, exactly as the step-wise engine does.
    """
    if m is None:
        steps = torch.arange(T, device=device).unsqueeze(1).expand(T, B)  # (T, B)
        real = torch.ones(T, B, dtype=torch.bool, device=device)
    else:
        real = m.squeeze(-1)
        steps = real.long().cumsum(0) - real.long()  # real steps done before step k
    return real & (steps > 0) & (steps % k == 0)


def scan_structured(
    cell: StructuredStep,
    xp: Tensor,
    states0: dict[str, Tensor],
    mask: Tensor | None,
    reverse: bool,
    return_initial_states: bool,
    bptt: BPTT,
    scope: str,
    donate: bool = False,
    rebuild: Any = None,
    plan: Any = None,
    weight: Tensor | None = None,
    reg: Masks | None = None,
) -> Scan:
    """Run a structured cell over xp (B, T, G) with the fast loop. See the module docstring.

    ``donate=True`` lets the engine overwrite ``xp`` (layers pass their own projection);
    ``rebuild()`` then recomputes its values, for a double backward (``rnnkit.engine.double``).
    ``plan`` (``rnnkit.engine.dispatch.Plan``) fixes the loop form and the dtype handling.
    ``weight`` replaces the recurrent matrix (a weight-dropped one); ``reg`` holds the call's
    recurrent-dropout and zoneout masks (``rnnkit.engine.regularise``).
    """
    init = tuple(states0[name] for name in cell.states)
    named = pointwise_params(cell)
    params = tuple(p for _, p in named)
    if bptt.tap is not None:
        for name in cell.states:
            bptt.tap._start(f"{scope}/{name}", xp.shape[1])
    W, b = cell.weight if weight is None else weight, cell.bias
    io_dtype = xp.dtype
    if _upcast(cell, xp) if plan is None else plan.compute_dtype != xp.dtype:
        # bfloat16 on CPU: eager bf16 ops are slow and the C loops are float32, so the recurrence
        # runs in float32 (as oneDNN's bf16 LSTM does inside its kernel) and the results are
        # rounded to bfloat16; the casts are differentiable, so gradients come back in bf16.
        rebuild = xp.float if rebuild is None else (lambda r=rebuild: r().float())
        xp, donate = xp.float(), True  # the copy is the engine's own
        W, b = W.float(), None if b is None else b.float()
        init = tuple(s.float() for s in init)
    setup = _Setup(cell, reverse, bptt, scope, donate, rebuild)
    setup.param_names = tuple(n for n, _ in named)
    setup.plan = plan
    setup.reg = reg
    if io_dtype != xp.dtype:
        setup.mm_dtype = io_dtype
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xp, W, b, *init, *params))
    # float32 compute stays float32 under a CPU bf16 autocast (the upcast case above)
    with torch.autocast("cpu", enabled=False) if io_dtype != xp.dtype else contextlib.nullcontext():
        if needs_grad:
            outs = list(_StructuredScan.apply(setup, xp, W, b, mask, len(init), *init, *params))
        else:
            with torch.no_grad():
                kernel, _ = _run_forward(setup, xp, W.detach(), None if b is None else b.detach(), mask, init,
                                            tuple(p.detach() for p in params))
            outs = _outputs(kernel, mask) + [kernel.last(buf) for buf in kernel.states]
    if io_dtype != xp.dtype:
        outs = [o.to(io_dtype) for o in outs]
        init = tuple(s.to(io_dtype) for s in init)
    S = len(init)
    outputs: dict[str, Tensor] = {}
    for s, name in enumerate(cell.states):
        seq = outs[s]
        if return_initial_states:
            first = init[s].unsqueeze(1)  # (B, 1, H)
            seq = torch.cat([seq, first] if reverse else [first, seq], dim=1)  # (B, T+1, H)
        outputs[name] = seq
    return Scan(outputs=outputs, final={name: outs[S + s] for s, name in enumerate(cell.states)})

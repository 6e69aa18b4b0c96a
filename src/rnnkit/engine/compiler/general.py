"""General cells: a ``Recurrent`` cell whose ``step`` holds matmuls against its own parameters.

``compile_general(cell, widths, dtype, device)`` traces ``step`` for sequences of these feature
widths (``gtrace.py``), derives its backward (``ggrad.py``) and prints both as C (``gprint.py``),
built and cached like every other unit (``build.py``). The engine runs the result in
``rnnkit.engine.general``: the whole recurrence in one C call each way, the weight gradients as
one GEMM per matmul at the end. ``general_explain(cell, widths)`` names what keeps a cell off it.

    >>> import torch, rnnkit
    >>> from rnnkit.engine.compiler.general import compile_general
    >>> class TwoLayer(rnnkit.Recurrent):
    ...     states = ("h1", "h2")
    ...     def __init__(self, n):
    ...         super().__init__()
    ...         self.n = n
    ...         self.W, self.U = torch.nn.Linear(n, n), torch.nn.Linear(n, n, bias=False)
    ...         self.V, self.R = torch.nn.Linear(n, n), torch.nn.Linear(n, n, bias=False)
    ...     def state_shape(self, name):
    ...         return (self.n,)
    ...     def step(self, inputs, h1, h2):
    ...         h1 = torch.tanh(self.W(inputs) + self.U(h1))
    ...         return h1, torch.tanh(self.V(h1) + self.R(h2))
    >>> cg = compile_general(TwoLayer(4), (4,), torch.float32, "cpu")
    >>> len(cg.mm), len(cg.hoisted), cg.lib is not None   # W(inputs) runs as one GEMM before the loop
    (3, 1, True)
"""
from __future__ import annotations

import ctypes
import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from rnnkit.engine.compiler.build import C_DTYPES, c_function, load_units, native_enabled
from rnnkit.engine.compiler.ggrad import general_backward, matmuls, node_widths
from rnnkit.engine.compiler.ghybrid import HybridPlan, hybrid_plan, hybrid_source
from rnnkit.engine.compiler.gprint import general_source
from rnnkit.engine.compiler.gtrace import trace_general
from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.trace import Unsupported

__all__ = ["CompiledGeneral", "compile_general", "compile_generals", "general_explain"]

L, P, I = ctypes.c_long, ctypes.c_void_p, ctypes.c_int
_ARGTYPES = {
    "fwd_seq": [L, L, I, P, P, P, P, P, P],
    "bwd_seq": [L, L, I, P, P, P, P, P, P, P, P, P, P],
    "step_bwd": [L, L, I, L, P, P, P, P, P, P, P, P, P, P],
    "hf": [L, L, I, L, P, P, P, P, P, P, P],  # hybrid segments (ghybrid.py): hf<k>, hb<k>
    "hb": [L, L, I, L, P, P, P, P, P, P, P, P, P, P, P, P],
}


@dataclass
class CompiledGeneral:
    """A general cell's step as compiled code for sequences of widths ``seqs``.

    ``mm``: per matmul m, (parameter index, lin, O, K): y_m = x_m W^T (lin, W stored (O, K)) or
    x_m W (W stored (K, O)). ``vectors``: indices of the parameters the step reads elementwise.
    ``hoisted``: matmuls of an input sequence itself, (sequence, parameter index, lin, O, K):
    the engine computes them as one GEMM over all steps before the loop, and the step reads
    their outputs as the extra sequences ``seqs[n:]``. ``libs``: dtype -> the shared library holding ``<unit>_*_<f32|f64>``.
    """

    unit: str
    fwd: Graph
    bwd: Graph
    seqs: tuple[int, ...]
    states: tuple[int, ...]
    mm: tuple[tuple[int, bool, int, int], ...]
    vectors: tuple[int, ...]
    vector_widths: tuple[int, ...]
    hoisted: tuple[tuple[int, int, bool, int, int], ...] = ()
    libs: dict[torch.dtype, ctypes.CDLL] = field(default_factory=dict)
    fns: dict[str, Any] = field(default_factory=dict)
    _src: dict[str, str] = field(default_factory=dict)

    @property
    def lib(self) -> ctypes.CDLL | None:
        """A library holding this cell's C (None: no C for any dtype yet)."""
        return next(iter(self.libs.values()), None)

    def source(self, dtype: torch.dtype) -> str:
        """This cell's C for one dtype (float32 or float64)."""
        ctype = "float" if dtype == torch.float32 else "double"
        if ctype not in self._src:
            loads = _loads(self)
            mms = matmuls(self.fwd)
            hsrc, self.fns[f"scratch_{ctype}"] = hybrid_source(
                self.unit, self.hybrid, loads, self.seqs, self.states, self.mm,
                dict(zip(self.vectors, self.vector_widths)), ctype)
            self._src[ctype] = general_source(self.unit, self.fwd, self.bwd, node_widths(self.fwd, loads),
                                              node_widths(self.bwd, loads), self.seqs, self.states, mms, ctype) + hsrc
        return self._src[ctype]

    def hybrid_scratch(self, dtype: torch.dtype) -> int:
        """Scratch elements per batch row the hybrid segments take (their ``wk`` argument)."""
        ctype = "float" if dtype == torch.float32 else "double"
        if f"scratch_{ctype}" not in self.fns:
            self._src.pop(ctype, None)
            self.source(dtype)
        return self.fns[f"scratch_{ctype}"]

    @property
    def hybrid(self) -> HybridPlan:
        """The step split at its matmuls for the hybrid loop (``ghybrid.py``)."""
        if "hybrid" not in self.fns:
            self.fns["hybrid"] = hybrid_plan(self.fwd, self.bwd, matmuls(self.fwd))
        return self.fns["hybrid"]

    @property
    def grads_vectors(self) -> set[int]:
        """Indices of the vector parameters that get a gradient."""
        return {k[1] for k in self.bwd.outputs if k[0] == "dp"}

    def c(self, name: str, dtype: torch.dtype) -> Any:
        """The C function ``<unit>_<name>_<f32|f64>`` (argument types declared), or None."""
        return c_function(self.libs, self.fns, self.unit, name, dtype, _ARGTYPES.get(name) or _ARGTYPES[name[:2]])


def _loads(cg: CompiledGeneral) -> dict[tuple, int]:
    """Widths of every load: sequences, states (and their gradients), vector parameters, matmul outputs."""
    loads: dict[tuple, int] = {}
    for i, w in enumerate(cg.seqs):
        loads[("x", i)] = w
    for i, h in enumerate(cg.states):
        loads[("s", i)] = loads[("gy", i)] = h
    for m, (_, _, O, _) in enumerate(cg.mm):
        loads[("y", m)] = O
    for i, w in zip(cg.vectors, cg.vector_widths):
        loads[("p", i)] = w
    return loads


_traced: "weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], tuple[CompiledGeneral | None, str | None]]]" = \
    weakref.WeakKeyDictionary()
_units: dict[str, CompiledGeneral] = {}


def _lower(cell: Any, widths: tuple[int, ...]) -> tuple[CompiledGeneral | None, str | None]:
    """Trace, differentiate and name a general cell for these sequence widths (cached per cell)."""
    per_cell = _traced.setdefault(cell, {})
    key_widths = widths
    hit = per_cell.get(widths)
    if hit is not None:
        return hit
    try:
        fwd, sizes = trace_general(cell, widths)
    except Unsupported as err:
        per_cell[widths] = (None, str(err))
        return per_cell[widths]
    fwd, hoisted = _hoist(fwd, len(widths))
    widths = tuple(widths) + tuple(h[3] for h in hoisted)
    params = [p for _, p in cell.named_parameters()]
    pw = {i: int(p.shape[-1]) for i, p in enumerate(params) if p.dim() == 1 or (p.dim() == 2 and p.shape[0] == 1)}
    mms = matmuls(fwd)
    mm = tuple(tuple(fwd.nodes[n].attr) for n in mms)
    vectors = tuple(sorted({fwd.nodes[n].attr[0] for n in fwd.live() if fwd.nodes[n].op == "p"}))
    draft = CompiledGeneral("", fwd, Graph(), tuple(widths), sizes, mm, vectors,  # type: ignore[arg-type]
                            tuple(pw[i] for i in vectors))
    bwd = general_backward(fwd, _loads(draft), len(widths), len(sizes))
    key = f"general|{widths}|{sizes}|{mm}|{hoisted}|{vectors}|{draft.vector_widths}\n{fwd.signature()}\n--\n{bwd.signature()}"
    unit = "g" + hashlib.sha256(key.encode()).hexdigest()[:16]
    done = _units.get(unit)
    if done is None:
        done = CompiledGeneral(unit, fwd, bwd, draft.seqs, sizes, mm, vectors, draft.vector_widths,  # type: ignore[arg-type]
                               hoisted)
        _units[unit] = done
    per_cell[key_widths] = (done, None)
    return per_cell[key_widths]


def _hoist(fwd: Graph, n_seqs: int) -> tuple[Graph, tuple[tuple[int, int, bool, int, int], ...]]:
    """Move every matmul of an input sequence itself (``F.linear(inputs, W)``) out of the step:
    the step reads its output as the extra sequence ("x", n_seqs + j) instead."""
    hoisted: list[tuple[int, int, bool, int, int]] = []
    moved: dict[int, int] = {}
    for n in matmuls(fwd):
        node = fwd.nodes[n]
        arg = fwd.nodes[node.args[0]]
        if arg.op == "x":
            key = (arg.attr[0], *node.attr)
            if key not in hoisted:
                hoisted.append(key)  # type: ignore[arg-type]
            moved[n] = n_seqs + hoisted.index(key)  # type: ignore[arg-type]
    if not moved:
        return fwd, ()
    out = Graph()
    mapping: dict[int, int] = {}
    for n in fwd.live():
        node = fwd.nodes[n]
        if n in moved:
            mapping[n] = out.load("x", moved[n])
        else:
            mapping[n] = out.add(node.op, tuple(mapping[a] for a in node.args), node.attr,
                                 None if node.args else node.row)
    out.outputs = {k: mapping[v] for k, v in fwd.outputs.items()}
    return out, tuple(hoisted)


def compile_generals(pairs: Sequence[tuple[Any, tuple[int, ...]]],
                     dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64)) -> list[CompiledGeneral | None]:
    """Compile several (cell, sequence widths) at once: every C unit not built yet goes into ONE
    library (a test run's many cells pay one compiler call)."""
    lowered = [_lower(cell, tuple(int(w) for w in widths))[0] for cell, widths in pairs]
    wanted = {}
    for cg in lowered:
        for dt in dtypes:
            if cg is not None and dt in C_DTYPES and dt not in cg.libs:
                wanted[f"{cg.unit}_{C_DTYPES[dt]}"] = (cg, dt)
    if wanted and native_enabled():
        libs = load_units({name: (lambda cg=cg, dt=dt: cg.source(dt)) for name, (cg, dt) in wanted.items()})
        for name, (cg, dt) in wanted.items():
            if name in libs:
                cg.libs[dt] = libs[name]
    return lowered


def compile_general(cell: Any, widths: tuple[int, ...], dtype: torch.dtype,
                    device: torch.device | str) -> CompiledGeneral | None:
    """The compiled form of a general cell for sequences of feature ``widths``, with C for this
    dtype when the device is a CPU with a C compiler; None when the cell does not compile (see
    :func:`general_explain`)."""
    cg, _ = _lower(cell, tuple(int(w) for w in widths))
    if cg is not None and torch.device(device).type == "cpu" and dtype in C_DTYPES and dtype not in cg.libs:
        compile_generals([(cell, widths)], (dtype,))
    return cg


def general_explain(cell: Any, widths: tuple[int, ...] | None = None) -> str | None:
    """Why a general cell does not compile for sequences of these widths, naming the op; None when it
    does. Default widths: each sequence's declared one (``sequence_shape``, else the ``input_size``
    attribute of a one-sequence cell, as torch's cells have); a cell that declares none gets the first
    state's width, a guess, and a trace that fails under a guess says so (an op's name does not
    depend on the width)."""
    if widths is not None:
        return _lower(cell, tuple(widths))[1]
    widths, guessed = _declared_widths(cell)
    why = _lower(cell, widths)[1]
    if why is not None and guessed and why.startswith("tracing raised"):
        why += (f" (traced with input widths {widths}: {', '.join(guessed)} guessed from the first state's width; "
                "declare sequence_shape or input_size on the cell, or call general_explain(cell, widths))")
    return why


def _declared_widths(cell: Any) -> tuple[tuple[int, ...], list[str]]:
    """Each sequence's width as the cell declares it, and the names of the sequences whose width was guessed."""
    first = tuple(cell.state_shape(cell.states[0])) if cell.states else ()
    guess = int(first[0]) if len(first) == 1 else 1
    size = getattr(cell, "input_size", None)
    widths, guessed = [], []
    for name in cell.sequences:
        shape = cell.sequence_shape(name)
        if shape:
            widths.append(int(shape[0]))
        elif len(cell.sequences) == 1 and isinstance(size, int) and not isinstance(size, bool):
            widths.append(size)
        else:
            widths.append(guess)
            guessed.append(repr(name))
    return tuple(widths), guessed

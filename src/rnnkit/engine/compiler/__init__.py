"""The cell compiler: a Structured cell's ``pointwise`` becomes native code.

``compile_cell(cell, dtype, device)`` traces ``pointwise`` into the block IR (``trace.py``,
``ir.py``), derives its backward (``grad.py``) and prints it as C (``cprint.py``; float32 and
float64 CPU, built and cached by ``build.py``) and as eager torch ops (``eprint.py``; every
other device and dtype, and machines without a C compiler). ``explain(cell)`` names what kept a
cell from compiling (it then runs on the autograd kernel). docs/compiler.md tells the story.

    >>> import torch, rnnkit
    >>> from rnnkit.engine.compiler import compile_cell, explain
    >>> class MGU(rnnkit.Structured):
    ...     gates = 2
    ...     states = ("h",)
    ...     def pointwise(self, inputs, hw, h):
    ...         xf, xn = inputs.chunk(2, dim=1)
    ...         hf, hn = hw.chunk(2, dim=1)
    ...         f = torch.sigmoid(xf + hf)
    ...         return (1 - f) * h + f * torch.tanh(xn + f * hn)
    >>> compile_cell(MGU(8), torch.float32, torch.device("cpu")) is not None, explain(MGU(8))
    (True, None)
"""
from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from rnnkit.engine.compiler.build import load_units, native_enabled
from rnnkit.engine.compiler.cprint import unit_source
from rnnkit.engine.compiler.eprint import eager_functions
from rnnkit.engine.compiler.grad import backward, sum_inputs
from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.trace import Unsupported, extra_params, trace

__all__ = ["CompiledCell", "compile_cell", "compile_cells", "explain", "extra_params"]

C_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


@dataclass
class CompiledCell:
    """A cell's pointwise step as compiled code.

    ``summed``: the cell only ever adds x and hw (one buffer stores their sum, one their
    gradient). ``param_names``: the cell's extra parameters, in the order kernels take them.
    ``lib``: the shared library holding ``<unit>_*`` (None: the eager functions serve).
    """

    unit: str
    fwd: Graph
    bwd: Graph
    gates: int
    n_states: int
    rec: int
    summed: bool
    param_names: tuple[str, ...]
    source: str
    eager_fwd: Callable[..., None]
    eager_bwd: Callable[..., None]
    lib: ctypes.CDLL | None = None
    fns: dict[str, Any] = field(default_factory=dict)

    @property
    def grads_params(self) -> set[int]:
        """Indices of the extra parameters that get a gradient."""
        return {k[1] for k in self.bwd.outputs if k[0] == "dp"}

    def c(self, name: str, dtype: torch.dtype) -> Any:
        """The C function ``<unit>_<name>_<f32|f64>`` (argument types declared), or None."""
        if self.lib is None or dtype not in C_DTYPES:
            return None
        key = f"{name}_{C_DTYPES[dtype]}"
        fn = self.fns.get(key)
        if fn is None:
            fn = getattr(self.lib, f"{self.unit}_{key}")
            fn.argtypes = _ARGTYPES[name]
            fn.restype = None
            self.fns[key] = fn
        return fn


L, P, I = ctypes.c_long, ctypes.c_void_p, ctypes.c_int
_ARGTYPES = {
    "fwd_seq": [L, L, L, I, P, P, P, P, P, P, P],
    "bwd_seq": [L, L, L, I, P, P, P, P, P, P, P, P, P, P, P],
    "step_fwd": [L, L, L, I, L, P, P, P, P, P],
    "step_bwd": [L, L, L, I, L, P, P, P, P, P, P, P, P],
}

_traced: "weakref.WeakKeyDictionary[Any, tuple[CompiledCell | None, str | None]]" = weakref.WeakKeyDictionary()
_units: dict[str, CompiledCell] = {}


def _lower(cell: Any) -> tuple[CompiledCell | None, str | None]:
    """Trace, rewrite, differentiate and print a cell (cached per cell object)."""
    hit = _traced.get(cell)
    if hit is not None:
        return hit
    try:
        if not hasattr(cell, "pointwise") or not hasattr(cell, "gates"):
            raise Unsupported("the cell is not a Structured cell (no pointwise)")
        graph, names = trace(cell)
    except Unsupported as err:
        result: tuple[CompiledCell | None, str | None] = (None, str(err))
        _traced[cell] = result
        return result
    G, S = cell.gates, len(cell.states)
    rec = tuple(cell.states).index(cell.recurrent_state)
    summed_graph = sum_inputs(graph, G)
    summed = summed_graph is not None
    fwd = summed_graph if summed_graph is not None else graph
    bwd = backward(fwd, G, S, summed)
    key = f"{G}|{S}|{rec}|{int(summed)}|{len(names)}\n{fwd.signature()}\n--\n{bwd.signature()}"
    import hashlib

    unit = "c" + hashlib.sha256(key.encode()).hexdigest()[:16]
    done = _units.get(unit)
    if done is None:
        source = unit_source(unit, fwd, bwd, G, S, len(names), rec, summed)
        efwd, ebwd = eager_functions(fwd, bwd, summed)
        done = CompiledCell(unit, fwd, bwd, G, S, rec, summed, names, source, efwd, ebwd)
        _units[unit] = done
    if done.param_names != names:  # same math, other parameter names
        done = CompiledCell(**{**done.__dict__, "param_names": names, "fns": {}})
    result = (done, None)
    _traced[cell] = result
    return result


def compile_cells(cells: Sequence[Any]) -> list[CompiledCell | None]:
    """Compile several cells at once: every C unit not built yet goes into ONE library (so a
    test run or a model with many cell types pays one compiler call)."""
    lowered = [_lower(c)[0] for c in cells]
    units = {cc.unit: cc.source for cc in lowered if cc is not None}
    libs = load_units(units) if units else {}
    for cc in lowered:
        if cc is not None and cc.unit in libs and cc.lib is None:
            cc.lib = libs[cc.unit]
            shared = _units.get(cc.unit)
            if shared is not None and shared.lib is None:
                shared.lib = cc.lib
    return lowered


def compile_cell(cell: Any, dtype: torch.dtype, device: torch.device | str) -> CompiledCell | None:
    """The compiled form of ``cell`` for this dtype and device, or None (see :func:`explain`).

    The result always has eager torch functions; on a CPU with a C compiler, float32 and float64
    also get C (``.lib``). Tracing is cached per cell object, libraries per process and on disk.
    """
    cc, _ = _lower(cell)
    if cc is None:
        return None
    if torch.device(device).type == "cpu" and dtype in C_DTYPES and cc.lib is None and native_enabled():
        compile_cells([cell])
    return cc


def explain(cell_or_layer: Any) -> str | None:
    """Why a cell (or the first of a layer's cells that does not compile) cannot compile, naming
    the op or value; None when everything compiles. Such a cell runs on the autograd kernel."""
    if not hasattr(cell_or_layer, "pointwise") and hasattr(cell_or_layer, "modules"):
        from rnnkit.cells.base import Recurrent

        cells = [m for m in cell_or_layer.modules() if isinstance(m, Recurrent)]
        reasons = [r for r in (_lower(c)[1] for c in cells) if r is not None]
        return reasons[0] if reasons else None
    return _lower(cell_or_layer)[1]

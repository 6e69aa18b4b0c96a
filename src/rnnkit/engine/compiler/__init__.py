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

from rnnkit.engine.compiler.build import C_DTYPES, c_function, load_units, native_enabled
from rnnkit.engine.compiler.cprint import unit_source
from rnnkit.engine.compiler.czone import zoned_source
from rnnkit.engine.compiler.eprint import eager_functions
from rnnkit.engine.compiler.grad import backward, sum_inputs
from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.trace import Unsupported, extra_params, trace

__all__ = ["CompiledCell", "compile_cell", "compile_cells", "explain", "extra_params"]



@dataclass
class CompiledCell:
    """A cell's pointwise step as compiled code.

    ``summed``: the cell only ever adds x and hw (one buffer stores their sum, one their
    gradient). ``param_names``: the cell's extra parameters, in the order kernels take them.
    ``libs``: dtype -> the shared library holding ``<unit>_*_<f32|f64>`` (absent: the eager
    functions serve that dtype).
    """

    unit: str
    fwd: Graph
    bwd: Graph
    gates: int
    n_states: int
    rec: int
    summed: bool
    param_names: tuple[str, ...]
    libs: dict[torch.dtype, ctypes.CDLL] = field(default_factory=dict)
    fns: dict[str, Any] = field(default_factory=dict)
    zlibs: dict[torch.dtype, ctypes.CDLL | None] = field(default_factory=dict)
    _eager: tuple[Callable[..., None], Callable[..., None]] | None = None

    @property
    def lib(self) -> ctypes.CDLL | None:
        """A library holding this cell's C (None: no C for any dtype yet)."""
        return next(iter(self.libs.values()), None)

    @property
    def eager_fwd(self) -> Callable[..., None]:
        return self._eager_pair()[0]

    @property
    def eager_bwd(self) -> Callable[..., None]:
        return self._eager_pair()[1]

    def _eager_pair(self) -> tuple[Callable[..., None], Callable[..., None]]:
        if self._eager is None:  # printed on first use: most CPU calls never need it
            self._eager = eager_functions(self.fwd, self.bwd, self.summed)
        return self._eager

    def source(self, dtype: torch.dtype) -> str:
        """This cell's C for one dtype (float32 or float64)."""
        ctype = "float" if dtype == torch.float32 else "double"
        return unit_source(self.unit, self.fwd, self.bwd, self.gates, self.n_states, len(self.param_names),
                           self.rec, self.summed, ctype)

    def zoned_source(self, dtype: torch.dtype) -> str:
        """This cell's regularised loops in C for one dtype (``czone.py``)."""
        ctype = "float" if dtype == torch.float32 else "double"
        return zoned_source(self.unit, self.fwd, self.bwd, self.gates, self.n_states, len(self.param_names),
                            self.rec, self.summed, ctype)

    @property
    def grads_params(self) -> set[int]:
        """Indices of the extra parameters that get a gradient."""
        return {k[1] for k in self.bwd.outputs if k[0] == "dp"}

    def c(self, name: str, dtype: torch.dtype) -> Any:
        """The C function ``<unit>_<name>_<f32|f64>`` (argument types declared), or None."""
        return c_function(self.libs, self.fns, self.unit, name, dtype, _ARGTYPES[name])

    def cz(self, name: str, dtype: torch.dtype) -> Any:
        """A regularised loop ``<unit>_z<name>_<f32|f64>`` (``czone.py``; built on first use),
        or None when this dtype has no C."""
        if self.libs.get(dtype) is None:
            return None
        if dtype not in self.zlibs:
            tag = f"{self.unit}z_{C_DTYPES[dtype]}"
            self.zlibs[dtype] = load_units({tag: lambda: self.zoned_source(dtype)}).get(tag)
        lib = self.zlibs[dtype]
        if lib is None:
            return None
        key = f"z{name}_{C_DTYPES[dtype]}"
        fn = self.fns.get(key)
        if fn is None:
            fn = getattr(lib, f"{self.unit}_{key}")
            fn.argtypes = _ARGTYPES[name] + _ZARGS[name]
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

# the regularised loops' extra arguments: the per-step ones add the padding mask M, the zoneout
# weights Z and their strides Zs; the whole-sequence ones (which take M already) add Z, Zs and
# the recurrent-dropout mask HM
_ZARGS = {name: [P, P, P] for name in _ARGTYPES}

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
        done = CompiledCell(unit, fwd, bwd, G, S, rec, summed, names)
        _units[unit] = done
    if done.param_names != names:  # same math, other parameter names: shares the libraries
        done = CompiledCell(**{**done.__dict__, "param_names": names})
    result = (done, None)
    _traced[cell] = result
    return result


def compile_cells(cells: Sequence[Any], dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64)
                  ) -> list[CompiledCell | None]:
    """Compile several cells at once, for float32 and/or float64: every C unit not built yet
    goes into ONE library (a test run or a model with many cell types pays one compiler call)."""
    lowered = [_lower(c)[0] for c in cells]
    wanted = {}
    for cc in lowered:
        for dt in dtypes:
            if cc is not None and dt in C_DTYPES and dt not in cc.libs:
                wanted[f"{cc.unit}_{C_DTYPES[dt]}"] = (cc, dt)
    libs = load_units({name: (lambda cc=cc, dt=dt: cc.source(dt)) for name, (cc, dt) in wanted.items()}) \
        if wanted else {}
    for name, (cc, dt) in wanted.items():
        if name in libs:
            cc.libs[dt] = libs[name]
            shared = _units.get(cc.unit)
            if shared is not None and shared is not cc:
                shared.libs.setdefault(dt, libs[name])
    return lowered


def compile_cell(cell: Any, dtype: torch.dtype, device: torch.device | str) -> CompiledCell | None:
    """The compiled form of ``cell`` for this dtype and device, or None (see :func:`explain`).

    The result always has eager torch functions; on a CPU with a C compiler, float32 and float64
    also get C (``.lib``). Tracing is cached per cell object, libraries per process and on disk.
    """
    cc, _ = _lower(cell)
    if cc is None:
        return None
    if torch.device(device).type == "cpu" and dtype in C_DTYPES and dtype not in cc.libs and native_enabled():
        compile_cells([cell], (dtype,))
    return cc


def explain(cell_or_layer: Any) -> str | None:
    """Why a cell (or the first of a layer's cells that does not compile) cannot compile, naming
    the op or value; None when everything compiles. Such a cell runs on the autograd kernel."""
    from rnnkit.steps.base import RecurrentStep

    if isinstance(cell_or_layer, RecurrentStep) and not hasattr(cell_or_layer, "pointwise"):
        from rnnkit.engine.compiler.general import general_explain

        return general_explain(cell_or_layer)  # a general cell: its whole step, matmuls included
    if not hasattr(cell_or_layer, "pointwise") and hasattr(cell_or_layer, "modules"):
        cells = [m for m in cell_or_layer.modules() if isinstance(m, RecurrentStep)]
        reasons = [r for r in (explain(c) for c in cells) if r is not None]
        return reasons[0] if reasons else None
    return _lower(cell_or_layer)[1]

"""Build and cache the C of compiled cells: one shared library per set of cells.

The source is the prelude plus every unit's functions; the library is cached under
``$RNNKIT_CACHE/native`` (default ``~/.cache/rnnkit``) by a hash of the source, the flags, the
compiler and the CPU, written to a temporary file and renamed into place (concurrent processes
never load a half-written library). A second process finds it and only loads it.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from rnnkit.engine.compiler.cprint import prelude
from rnnkit.engine.native import _compiler, _cpu_id

__all__ = ["C_DTYPES", "c_function", "load_units", "native_enabled"]

C_DTYPES = {torch.float32: "f32", torch.float64: "f64"}  # the C suffix of each dtype a unit is built for


def c_function(libs: dict, fns: dict, unit: str, name: str, dtype: torch.dtype, argtypes: list) -> Any:
    """The C function ``<unit>_<name>_<f32|f64>`` of ``libs[dtype]``, its argument types declared once
    and cached in ``fns``; None when no library was built for ``dtype``."""
    lib = libs.get(dtype)
    if lib is None:
        return None
    key = f"{name}_{C_DTYPES[dtype]}"
    fn = fns.get(key)
    if fn is None:
        fn = getattr(lib, f"{unit}_{key}")
        fn.argtypes = argtypes
        fn.restype = None
        fns[key] = fn
    return fn

log = logging.getLogger("rnnkit.engine")
_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL] = {}  # unit name -> the library holding it
_failed: set[str] = set()
_said: list[str] = []
FLAGS = ["-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC"]
# -O3 for the few cells a model uses (the B=1 matvec loops: 1.26x slower at -O2, measured
# against the hand-written loops); -O2 for a big batch of cells (the property test's hundreds),
# where -O3 costs 1.7x the compile time.
MANY = 16  # units from which a library is built at -O2


def opt_level(n_units: int) -> str:
    return "-O2" if n_units >= MANY else "-O3"
CHUNK = 8  # units per object file when many cells build at once (compiled in parallel, linked once)


def _say_once(message: str) -> None:
    if not _said:
        _said.append(message)
        log.warning(message)


def native_enabled() -> bool:
    """True when C may be built here: RNNKIT_NATIVE is not 0 and a C compiler exists."""
    if os.environ.get("RNNKIT_NATIVE", "1") == "0":
        _say_once("rnnkit: RNNKIT_NATIVE=0, so compiled cells run as eager torch ops (slower on CPU)")
        return False
    if _compiler() is None:
        _say_once("rnnkit: no C compiler found ($CC, cc, gcc, clang), so compiled cells run as eager torch "
                  "ops (slower on CPU); install gcc or clang, or set CC, for native speed")
        return False
    return True


def load_units(units: dict[str, Callable[[], str]]) -> dict[str, ctypes.CDLL]:
    """Libraries for ``units`` (name -> a function printing its C): units not loaded yet go into
    ONE library, found in the cache or built. Returns name -> library for the units had."""
    with _lock:
        missing = {n: s for n, s in units.items() if n not in _libs and n not in _failed}
        if missing and native_enabled():
            lib = _build(sorted(missing), missing)
            for n in missing:
                if lib is None:
                    _failed.add(n)
                else:
                    _libs[n] = lib
        return {n: _libs[n] for n in units if n in _libs}


def printer_files() -> list[Path]:
    """The files the library cache key hashes: every module of this package, in name order."""
    return sorted(Path(__file__).parent.glob("*.py"))


@lru_cache(maxsize=1)
def _fingerprint() -> bytes:
    """The printers' and the machine's identity: a unit's name hashes its math, this the rest.
    Every module of the compiler is hashed, so a new or changed printer file can never load a
    stale library (a change to a module that prints no C only costs one rebuild)."""
    code = b"".join(f.read_bytes() for f in printer_files())
    cc = _compiler() or ""
    return hashlib.sha256(code + " ".join(FLAGS).encode() + cc.encode() + _cpu_id().encode()).digest()


def _build(names: list[str], printers: dict[str, Callable[[], str]]) -> ctypes.CDLL | None:
    """The library holding ``names``: from the cache (keyed by the unit names, which hash their
    math, and the fingerprint: no C is printed on a hit), else compiled."""
    cc = _compiler()
    if cc is None:
        return None
    opt = opt_level(len(names))
    key = hashlib.sha256(_fingerprint() + opt.encode() + "\n".join(names).encode()).hexdigest()[:20]
    cache = Path(os.environ.get("RNNKIT_CACHE", Path.home() / ".cache" / "rnnkit")) / "native"
    target = cache / f"rnnkit_cells-{key}.so"
    try:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                out = Path(tmp) / target.name
                _compile(cc, prelude(), [printers[n]() for n in names], Path(tmp), out, [opt, *FLAGS])
                os.replace(out, target)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        _say_once(f"rnnkit: building compiled cells failed ({err}; {detail[-300:].decode(errors='replace')}); "
                  "they run as eager torch ops")
        return None


def _compile(cc: str, head: str, units: list[str], tmp: Path, out: Path, flags: list[str]) -> None:
    """One shared library from the units: a few object files compiled in parallel, one link."""
    parts = max(1, min(os.cpu_count() or 1, 8, -(-len(units) // CHUNK)))
    objs, procs = [], []
    for i in range(parts):
        src = tmp / f"cells{i}.c"
        src.write_text(head + "".join(units[i::parts]))
        obj = tmp / f"cells{i}.o"
        objs.append(str(obj))
        procs.append(subprocess.Popen([cc, *flags, "-c", "-o", str(obj), str(src)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode:
            raise subprocess.CalledProcessError(p.returncode, p.args, stderr=err)
    subprocess.run([cc, "-shared", "-o", str(out), *objs, "-lm"], check=True, capture_output=True, timeout=120)

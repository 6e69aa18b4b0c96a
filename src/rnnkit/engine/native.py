"""What the native (C) kernels need from the machine: a C compiler, the CPU's identity, and the
batch size up to which a C matvec beats a BLAS call per step.

The C itself is generated per cell by the cell compiler (``rnnkit.engine.compiler``: printed by
``cprint.py``, built and cached by ``build.py``), for the built-in cells and the user's alike.
No compiler, a failed build or ``RNNKIT_NATIVE=0`` means the compiled cells run as eager torch
ops instead (said once, at warning level, on the ``rnnkit.engine`` logger).

    >>> from rnnkit.engine.native import MAX_BATCH, native_available
    >>> MAX_BATCH, isinstance(native_available(), bool)
    (4, True)
"""
from __future__ import annotations

import os
import platform
import shutil

__all__ = ["MAX_BATCH", "native_available"]

MAX_BATCH = 4  # rows up to which the C matvec beats a BLAS call per step (the whole-sequence C loop)


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


def native_available() -> bool:
    """True when compiled cells get C here: RNNKIT_NATIVE is not 0 and a C compiler exists."""
    return os.environ.get("RNNKIT_NATIVE", "1") != "0" and _compiler() is not None

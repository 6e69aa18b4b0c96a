"""The one place that chooses a backend: ``fused`` (PyTorch's native kernels) or ``generic``."""
from __future__ import annotations

import logging

from rnnkit.errors import bad_argument

__all__ = ["ENGINES", "check_engine", "choose"]

ENGINES = ("auto", "fused", "generic")
log = logging.getLogger("rnnkit.engine")
_said: set[str] = set()


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise bad_argument("engine", f"one of {ENGINES}", engine,
                           "use 'auto' unless you need to force a backend")
    return engine


def choose(engine: str, why_not_fused: str | None, where: str) -> str:
    """Return ``"fused"`` or ``"generic"`` for a request.

    ``why_not_fused`` is None when the fused backend can serve, else the reason it cannot.
    ``engine="fused"`` raises with that reason; ``"auto"`` falls back to ``generic`` and says
    why once, at debug level.
    """
    check_engine(engine)
    if engine == "generic":
        return "generic"
    if why_not_fused is None:
        return "fused"
    if engine == "fused":
        raise ValueError(
            f"engine: expected a configuration the fused backend can run, but {where} has "
            f"{why_not_fused}. Fix: use engine='auto' or engine='generic'."
        )
    if why_not_fused not in _said:
        _said.add(why_not_fused)
        log.debug("%s runs on the generic engine: %s", where, why_not_fused)
    return "generic"

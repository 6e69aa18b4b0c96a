"""The C printer's regularised loops: zoneout and recurrent dropout inside the compiled step.

Zoneout (``rnnkit.engine.regularise``) mixes every state after every step,
``s_t = lerp(s_{t-1}, s_new, a)``, with a the weight of the new value (0/1 per unit in
training, 1 - p in eval). Done as torch ops between the steps, that mix is one more pass over
every state per step, and its backward a few more. Here the row functions do it in the pass
that computes the step (``row_functions(..., zoned=True)``): the forward stores the mix, the
backward hands ``a * g`` to the cell's own derivative and adds ``(1 - a) * g`` to the gradient
of the state before the step. The loops around them are the plain loops' printer
(``cloops.py``) with ``zoned=True``: the same skeleton, taking per state the zoneout weights,
the padding mask and (whole-sequence loops) the recurrent-dropout mask.

These functions live in a unit of their own (``<unit>z``), built the first time a call needs
them: a model without zoneout never compiles them.
"""
from __future__ import annotations

from rnnkit.engine.compiler.cprint import unit_source
from rnnkit.engine.compiler.ir import Graph

__all__ = ["zoned_source"]


def zoned_source(unit: str, fwd: Graph, bwd: Graph, G: int, S: int, P: int, rec: int, summed: bool,
                 ctype: str) -> str:
    """C source of one compiled cell's regularised loops for one C type ("float" or "double")."""
    return unit_source(unit, fwd, bwd, G, S, P, rec, summed, ctype, zoned=True)

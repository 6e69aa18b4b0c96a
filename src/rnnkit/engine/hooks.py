"""Forward pre-hooks of modules whose parameters the engine reads without calling them.

The engine reads ``cell.weight`` (and a layer's projections) directly instead of calling the
modules, so ``nn.Module.__call__`` never runs their forward pre-hooks. Reparametrisations that
live in such hooks (``torch.nn.utils.weight_norm`` old style, ``spectral_norm``,
``torch.nn.utils.prune``) recompute the weight there; without them the weight computed once at
wrap time is reused, and the second backward fails. The layers and scans call
:func:`run_pre_hooks` once per call, before reading any parameter, as torch.nn does once per
``forward``.

    >>> import torch, rnnkit
    >>> cell = rnnkit.cells.ElmanCell(3)
    >>> calls = []
    >>> _ = cell.register_forward_pre_hook(lambda module, args: calls.append(1))
    >>> run_pre_hooks(cell)
    >>> len(calls)
    1
"""
from __future__ import annotations

from torch import nn

__all__ = ["run_pre_hooks"]


def run_pre_hooks(*modules: nn.Module) -> None:
    """Run each module's own forward pre-hooks once, as a call would (arguments empty).

    Return values are ignored: the engine passes no positional arguments a hook could rewrite.
    Global hooks (``register_module_forward_pre_hook``) are not run.
    """
    for module in modules:
        hooks = module._forward_pre_hooks
        if not hooks:
            continue
        with_kwargs = module._forward_pre_hooks_with_kwargs
        for hook_id, hook in list(hooks.items()):
            if hook_id in with_kwargs:
                hook(module, (), {})
            else:
                hook(module, ())

"""``rnnkit.accelerate(model)``: swap every torch.nn.RNN/LSTM/GRU inside a model for rnnkit's.

The counterpart (an ``rnnkit.nn`` layer) holds the very same Parameter objects under the same
``state_dict`` keys, keeps the module's layout, settings and train/eval mode, so an optimiser
built before the call keeps training the model and checkpoints load either way. Undo it with
``rnnkit.accelerate(model, undo=True)``, which puts the original modules back (still holding
those parameters, with any dropout/batch_first change made meanwhile).

A module the swap cannot reproduce exactly stays as it is, with a warning: a subclass of
torch.nn.RNN/LSTM/GRU (its own forward), or a module carrying hooks or parametrizations.

    >>> import torch, rnnkit
    >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    >>> model.append(torch.nn.GRU(4, 8, batch_first=True))               # doctest: +ELLIPSIS
    Sequential(...)
    >>> before = dict(model.state_dict())
    >>> model = rnnkit.accelerate(model)
    >>> type(model[1]).__module__, list(model.state_dict()) == list(before)
    ('rnnkit.nn', True)
    >>> type(rnnkit.accelerate(model, undo=True)[1]).__module__
    'torch.nn.modules.rnn'
"""
from __future__ import annotations

import warnings

from torch import nn

from rnnkit.engine.dispatch import check_engine
from rnnkit.errors import bad_argument

__all__ = ["accelerate"]

_ORIGINAL = "_rnnkit_original"  # where a counterpart remembers the module it replaced (not a submodule)


def _why_not(module: nn.Module) -> str | None:
    if type(module) not in (nn.RNN, nn.LSTM, nn.GRU):
        return f"{type(module).__qualname__} subclasses {type(module).__mro__[1].__name__} (its own forward)"
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
             "_load_state_dict_post_hooks")
    if any(getattr(module, h, None) for h in hooks):
        return "hooks on the module (e.g. the old-style weight_norm)"
    if getattr(module, "parametrizations", None) is not None:
        return "parametrizations on its weights"
    if set(module._flat_weights_names) != set(module._parameters):
        return "parameters other than torch's own"
    return None


def _counterpart(module: nn.RNNBase, engine: str) -> nn.Module:
    from rnnkit import nn as rnn_nn

    common = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  dropout=module.dropout, bidirectional=module.bidirectional, engine=engine)
    if isinstance(module, nn.LSTM):
        layer: nn.Module = rnn_nn.LSTM(module.input_size, module.hidden_size, proj_size=module.proj_size, **common)
    elif isinstance(module, nn.GRU):
        layer = rnn_nn.GRU(module.input_size, module.hidden_size, **common)
    else:
        layer = rnn_nn.RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity, **common)
    for name in module._flat_weights_names:
        setattr(layer, name, module._parameters[name])  # the same Parameter object
    layer.train(module.training)
    object.__setattr__(layer, _ORIGINAL, module)
    return layer


def _restore(layer: nn.Module) -> nn.Module:
    module = layer.__dict__[_ORIGINAL]
    for name in module._flat_weights_names:
        setattr(module, name, getattr(layer, name))  # parameters replaced meanwhile follow
    module.dropout, module.batch_first = layer.dropout, layer.batch_first
    module._init_flat_weights()
    module.train(layer.training)
    return module


def accelerate(model: nn.Module, engine: str = "auto", *, undo: bool = False) -> nn.Module:
    """Replace every torch.nn.RNN/LSTM/GRU inside ``model`` (at any depth) by its rnnkit counterpart.

    Returns ``model`` changed in place, or the counterpart if ``model`` itself is one of those
    modules (so write ``model = rnnkit.accelerate(model)``). ``engine`` is "auto", "fused" or
    "generic". ``undo=True`` puts the original torch modules back.
    """
    if not isinstance(model, nn.Module):
        raise bad_argument("model", "a torch.nn.Module", model, "pass the model to accelerate")
    if not isinstance(undo, bool):
        raise bad_argument("undo", "a bool", repr(undo), "pass undo=True to put the torch modules back")
    check_engine(engine)
    memo: dict[int, nn.Module] = {}

    def swap(child: nn.Module) -> nn.Module:
        if id(child) not in memo:
            if undo:
                memo[id(child)] = _restore(child) if _ORIGINAL in child.__dict__ else child
            elif isinstance(child, nn.RNNBase) and not hasattr(child, _ORIGINAL):
                why = _why_not(child)
                if why is not None:
                    warnings.warn(f"rnnkit.accelerate: left a {type(child).__name__} unchanged: it has {why}.",
                                  UserWarning, stacklevel=3)
                memo[id(child)] = child if why is not None else _counterpart(child, engine)
            else:
                memo[id(child)] = child
        return memo[id(child)]

    root = swap(model)
    if root is not model:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                parent._modules[name] = swap(child)
    return model

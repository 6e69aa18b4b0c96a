"""torch.nn.RNN/LSTM/GRU's parameter names on rnnkit layers, without giving up real submodules.

Inside, a layer keeps an ``nn.ModuleList`` of (layer, direction) submodules, each an input
projection and a cell (``layers.0.bwd.cell.weight``). Outside, it speaks torch's names:

* ``state_dict()`` keys are torch's (``weight_ih_l0``, ``weight_hh_l0_reverse``, ``bias_ih_l1``,
  ``weight_hr_l0``, ...), in torch's order, so a checkpoint of a ``torch.nn.LSTM`` loads into
  an ``rnnkit.LSTM`` and back. ``load_state_dict`` accepts torch's keys and the submodule keys
  written by rnnkit before 0.2 (:func:`upgrade_legacy_keys` does the same for whole models).
* ``layer.weight_ih_l0`` reads (and assigning a Parameter replaces) the submodule's parameter;
  ``all_weights``, ``_flat_weights``, ``_flat_weights_names`` and ``flatten_parameters()``
  exist as in torch (the latter is a no-op: rnnkit's kernels take the separate tensors).

``named_parameters()`` still lists the submodule names (torch walks submodules itself).

    >>> import torch, rnnkit
    >>> ref = torch.nn.LSTM(3, 4, bidirectional=True)
    >>> ours = rnnkit.LSTM(3, 4, bidirectional=True, batch_first=False)
    >>> ours.load_state_dict(ref.state_dict())
    <All keys matched successfully>
    >>> list(ours.state_dict())[:3]
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0']
    >>> torch.equal(ours.weight_hh_l0_reverse, ref.weight_hh_l0_reverse)
    True
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Mapping

from torch import Tensor, nn

from rnnkit.engine.dispatch import check_engine
from rnnkit.errors import bad_argument

__all__ = ["TorchNames", "legacy_renames", "upgrade_legacy_keys"]

# submodule attribute path -> torch's base name; torch's order within one direction
_BASES = {"input.weight": "weight_ih", "cell.weight": "weight_hh", "input.bias": "bias_ih",
          "cell.bias": "bias_hh", "cell.weight_hr": "weight_hr",
          "cell.peep_i": "peep_i", "cell.peep_f": "peep_f", "cell.peep_o": "peep_o"}
_TORCH_NAME = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|peep_[ifo])_l(\d+)(_reverse)?$")


def _key_map(layer: nn.Module) -> dict[str, str]:
    """torch name -> submodule path (relative to ``layer``) of every existing parameter, torch's order."""
    names: dict[str, str] = {}
    for index, pair in enumerate(layer._modules["layers"]):  # type: ignore[union-attr]
        for d, side in enumerate(("fwd", "bwd")):
            direction = pair._modules.get(side)
            if direction is None:
                continue
            for path, base in _BASES.items():
                sub, attr = path.split(".")
                owner = direction._modules[sub]
                if attr in owner._parameters and owner._parameters[attr] is not None:
                    names[f"{base}_l{index}{'_reverse' if d else ''}"] = f"layers.{index}.{side}.{path}"
    return names


def _state_dict_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """Rename the submodule keys under ``prefix`` to torch's, in torch's order (in place)."""
    ours = [k for k in state_dict if k.startswith(prefix + "layers.")]
    popped = {k: state_dict.pop(k) for k in ours}
    for torch_name, path in _key_map(module).items():
        if prefix + path in popped:
            state_dict[prefix + torch_name] = popped.pop(prefix + path)
    state_dict.update(popped)  # anything torch has no name for (e.g. parametrizations) keeps its path


def _load_pre_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Accept torch's keys (and rnnkit's old submodule keys, unchanged) before loading."""
    for torch_name, path in _key_map(module).items():
        if prefix + torch_name in state_dict:
            state_dict[prefix + path] = state_dict.pop(prefix + torch_name)


def legacy_renames(model: nn.Module) -> dict[str, str]:
    """Old submodule key -> current key (``rnn.layers.0.fwd.cell.weight`` -> ``rnn.weight_hh_l0``)
    for every rnnkit layer inside ``model``: what checkpoints written by rnnkit < 0.2 need."""
    renames: dict[str, str] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, TorchNames):
            dot = prefix + "." if prefix else ""
            renames.update({dot + old: dot + new for old, new in module.legacy_state_dict_keys().items()})
    return renames


def upgrade_legacy_keys(model: nn.Module, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` with the old submodule keys of ``model``'s rnnkit layers renamed (see :func:`legacy_renames`);
    every tensor keeps its shape, e.g. a layer's input weight (G*H, F)."""
    renames = legacy_renames(model)
    return {renames.get(key, key): value for key, value in tensors.items()}


def _read_only(name: str, value: object) -> AttributeError:
    return AttributeError(f"{name}: expected no assignment (it fixes the shapes of the layer's parameters), but "
                          f"received {value!r:.80}. Fix: build a new layer with {name}={value!r:.80}")


class TorchNames(nn.Module):
    """Mixin of :class:`rnnkit.layers.RecurrentLayer`: torch.nn.RNNBase's names and attributes.

    ``dropout``, ``batch_first`` and ``engine`` are live (assigning changes the next call);
    the attributes that fix the parameters' shapes are read-only and raise on assignment.
    """

    config: Any

    # ------------------------------------------------------------------ config attributes
    @property
    def input_size(self) -> int:
        return self.config.input_size

    @input_size.setter
    def input_size(self, value: object) -> None:
        raise _read_only("input_size", value)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @hidden_size.setter
    def hidden_size(self, value: object) -> None:
        raise _read_only("hidden_size", value)

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @num_layers.setter
    def num_layers(self, value: object) -> None:
        raise _read_only("num_layers", value)

    @property
    def bidirectional(self) -> bool:
        return self.config.bidirectional

    @bidirectional.setter
    def bidirectional(self, value: object) -> None:
        raise _read_only("bidirectional", value)

    @property
    def bias(self) -> bool:
        return self.config.bias

    @bias.setter
    def bias(self, value: object) -> None:
        raise _read_only("bias", value)

    @property
    def proj_size(self) -> int:
        return self.config.proj_size

    @proj_size.setter
    def proj_size(self, value: object) -> None:
        raise _read_only("proj_size", value)

    @property
    def nonlinearity(self) -> str:
        return self.config.nonlinearity

    @nonlinearity.setter
    def nonlinearity(self, value: object) -> None:
        raise _read_only("nonlinearity", value)

    @property
    def mode(self) -> str:
        """torch's mode string: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU" ("RNN_IDENTITY" for rnnkit's identity)."""
        kind = self.config.kind
        return kind.upper() if kind != "rnn" else f"RNN_{self.config.nonlinearity.upper()}"

    @property
    def dropout(self) -> float:
        """Dropout between stacked layers (training only); assignable, as in torch.nn."""
        return self.config.dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise bad_argument("dropout", "a probability in [0, 1]", value, "use e.g. layer.dropout = 0.2")
        self.config = replace(self.config, dropout=float(value))

    @property
    def batch_first(self) -> bool:
        """True: x (B, T, F); False: x (T, B, F). Assignable."""
        return self.config.batch_first

    @batch_first.setter
    def batch_first(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise bad_argument("batch_first", "a bool", value, "assign True or False")
        self.config = replace(self.config, batch_first=value)

    @property
    def engine(self) -> str:
        """The requested backend; assign "auto", "fused" or "generic" to change it."""
        return self.config.engine

    @engine.setter
    def engine(self, value: str) -> None:
        self.config = replace(self.config, engine=check_engine(value))

    @property
    def num_directions(self) -> int:
        return 2 if self.config.bidirectional else 1

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.config.kind == "lstm" else ("h",)

    # ------------------------------------------------------------------ parameter names

    def legacy_state_dict_keys(self) -> dict[str, str]:
        """Old submodule key -> torch key of each parameter (the checkpoint loader reads it)."""
        return {path: name for name, path in _key_map(self).items()}

    def _install_torch_names(self) -> None:
        self.register_state_dict_post_hook(_state_dict_hook)
        self.register_load_state_dict_pre_hook(_load_pre_hook)

    def _torch_target(self, name: str) -> tuple[nn.Module, str] | None:
        match = _TORCH_NAME.match(name)
        layers = self.__dict__.get("_modules", {}).get("layers")
        if match is None or layers is None:
            return None
        base, index, reverse = match.group(1), int(match.group(2)), match.group(3) is not None
        if index >= len(layers):
            return None
        direction = layers[index]._modules.get("bwd" if reverse else "fwd")
        if direction is None:
            return None
        path = next(p for p, b in _BASES.items() if b == base)
        sub, attr = path.split(".")
        owner = direction._modules[sub]
        if getattr(owner, attr, None) is None:
            return None
        return owner, attr

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            target = self._torch_target(name)
            if target is None:
                raise
            return getattr(*target)

    def __setattr__(self, name: str, value: Any) -> None:
        target = self._torch_target(name) if _TORCH_NAME.match(name) else None
        if target is not None:
            setattr(*target, value)  # the submodule's own checks apply (a Parameter or a tensor)
            return
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ torch.nn.RNNBase's lists
    @property
    def _all_weights(self) -> list[list[str]]:
        """torch's parameter names, one list per (layer, direction)."""
        groups: dict[str, list[str]] = {}
        for name in _key_map(self):
            if not name.startswith("peep_"):
                groups.setdefault(name.split("_l", 1)[1], []).append(name)
        return list(groups.values())

    @property
    def _flat_weights_names(self) -> list[str]:
        return [name for group in self._all_weights for name in group]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters per (layer, direction), in torch's order: [W_ih, W_hh, b_ih, b_hh, (W_hr)]."""
        return [[getattr(self, name) for name in group] for group in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op, kept for torch code: rnnkit's kernels take the separate weight tensors."""

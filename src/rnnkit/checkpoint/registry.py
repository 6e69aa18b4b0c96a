"""The model registry: how a checkpoint rebuilds a model with no code from the user.

Protocol of a registered model
------------------------------
1. The class is a ``torch.nn.Module`` decorated with ``@register_model``. Its name in
   checkpoints is ``name=`` if given, else ``cls.__name__``; pass ``name=`` to keep old
   checkpoints loading after a rename. Two different classes may not share a name.
2. The class has a class attribute ``config_class``: a frozen dataclass type.
3. Each instance keeps its config as ``self.config`` (an instance of ``config_class``).
4. The model is rebuilt by ``cls.from_config(config)`` if the class defines ``from_config``,
   else by ``cls(config)``. That call must create every parameter and buffer with its final
   shape, tying weights the same way; the checkpoint then fills in the values.

Config values and their JSON form (see ``encode_json`` / ``decode_json``)
-------------------------------------------------------------------------
``None``, ``bool``, ``int``, ``str`` and finite ``float`` are stored as themselves; a list is a
JSON array; a dict with ``str`` keys is a JSON object. Everything that JSON cannot hold
exactly is a one-key marker object:

* tuple: ``{"__tuple__": [...]}``; NaN and infinities: ``{"__float__": "nan" | "inf" | "-inf"}``;
* a dict with non-``str`` keys (or a marker key): ``{"__dict__": [[key, value], ...]}``;
* a dataclass instance: ``{"__dataclass__": "<name>", "<field>": value, ...}``, where the name
  is the one given to ``@register_config(name=...)``, else ``cls.__qualname__``
  (fields declared with ``init=False`` are not stored: ``__post_init__`` recomputes them).

Finding a nested dataclass by name on load (the one rule): the stored name is looked up among
``config_class`` itself and every dataclass named in its field annotations (recursively,
through ``Optional``, unions, ``tuple[...]``, ``list[...]``), by ``__qualname__``, and every
class decorated with ``@register_config``, by its registered name. Use ``@register_config``
only for types the annotations cannot reveal (e.g. a field annotated with a base class that holds a subclass instance).

Example:
    >>> import dataclasses, torch
    >>> @dataclasses.dataclass(frozen=True)
    ... class DocNetConfig:
    ...     size: int = 4  # width of the single linear layer
    >>> @register_model
    ... class DocNet(torch.nn.Module):
    ...     config_class = DocNetConfig
    ...     def __init__(self, config: DocNetConfig) -> None:
    ...         super().__init__()
    ...         self.config = config
    ...         self.linear = torch.nn.Linear(config.size, config.size)
    >>> model_class("DocNet") is DocNet
    True
    >>> config_to_json(DocNetConfig(size=3))
    {'__dataclass__': 'DocNetConfig', 'size': 3}
"""
from __future__ import annotations

import dataclasses
import logging
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from rnnkit.errors import bad_argument

__all__ = [
    "build_model",
    "config_from_json",
    "config_to_json",
    "decode_json",
    "encode_json",
    "model_class",
    "model_name",
    "register_config",
    "register_model",
    "registered_models",
]

_log = logging.getLogger(__name__)
M = TypeVar("M", bound=type)

_MODELS: dict[str, type[nn.Module]] = {}
_CONFIGS: dict[str, type] = {}
_MARKERS = frozenset({"__tuple__", "__float__", "__dict__", "__dataclass__", "__tensor__", "__ndarray__"})


def _add(table: dict[str, type], kind: str, name: str, cls: type) -> None:
    old = table.get(name)
    same_definition = old is not None and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
    if old is not None and old is not cls and not same_definition:
        raise bad_argument(
            "name", f"a {kind} name not used yet", f"{name!r}, already taken by {old.__module__}.{old.__qualname__}",
            f"pass a distinct name, e.g. @register_{kind}(name='{cls.__module__}.{cls.__qualname__}')",
        )
    if same_definition and old is not cls:
        _log.debug("re-registering %s %r (module reloaded)", kind, name)
    table[name] = cls


def register_model(cls: M | None = None, *, name: str | None = None) -> M | Callable[[M], M]:
    """Register a model class so checkpoints can rebuild it: ``@register_model`` or ``@register_model(name=...)``."""

    def decorate(model_cls: M) -> M:
        if not (isinstance(model_cls, type) and issubclass(model_cls, nn.Module)):
            raise bad_argument("cls", "a torch.nn.Module subclass", repr(model_cls), "decorate the model class itself")
        config_cls = getattr(model_cls, "config_class", None)
        if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
            raise bad_argument(
                f"{model_cls.__qualname__}.config_class", "a dataclass type", repr(config_cls),
                "add a class attribute `config_class = MyConfig` naming a @dataclass(frozen=True) type",
            )
        if not config_cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise bad_argument(
                f"{model_cls.__qualname__}.config_class", "a frozen dataclass",
                f"{config_cls.__qualname__} (not frozen)",
                "declare it with @dataclass(frozen=True)",
            )
        key = model_cls.__name__ if name is None else name
        if not isinstance(key, str) or not key:
            raise bad_argument("name", "a non-empty str", key, "pass name='MyModel' or leave it out")
        _add(_MODELS, "model", key, model_cls)
        return model_cls

    return decorate if cls is None else decorate(cls)


def register_config(cls: M | None = None, *, name: str | None = None) -> M | Callable[[M], M]:
    """Make a config dataclass findable by name when the annotations of ``config_class`` cannot reveal it."""

    def decorate(config_cls: M) -> M:
        if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
            raise bad_argument("cls", "a dataclass type", repr(config_cls), "decorate a @dataclass(frozen=True) class")
        _add(_CONFIGS, "config", config_cls.__qualname__ if name is None else name, config_cls)
        return config_cls

    return decorate if cls is None else decorate(cls)


def registered_models() -> dict[str, type[nn.Module]]:
    """A copy of the registry: name -> model class."""
    return dict(_MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The model class registered under ``name``; ValueError listing the known names otherwise."""
    if name not in _MODELS:
        known = ", ".join(sorted(_MODELS)) or "none"
        raise bad_argument(
            "name", f"a registered model name (known: {known})", repr(name),
            "import the module that defines the model before loading (registration happens at import), "
            "and decorate its class with @rnnkit.checkpoint.register_model",
        )
    return _MODELS[name]


def model_name(model: nn.Module | type) -> str:
    """The registered name of a model (instance or class); ValueError if its exact class is not registered."""
    cls = model if isinstance(model, type) else type(model)
    for key, registered in _MODELS.items():
        if registered is cls:
            return key
    raise bad_argument(
        "model", "an instance of a class registered with @register_model",
        f"an instance of {cls.__module__}.{cls.__qualname__}",
        "decorate the class with @rnnkit.checkpoint.register_model and give it a frozen-dataclass `config_class`",
    )


def build_model(model_cls: type[nn.Module], config: Any) -> nn.Module:
    """Rebuild a registered model from its config: ``cls.from_config(config)`` if defined, else ``cls(config)``."""
    from_config = getattr(model_cls, "from_config", None)
    return from_config(config) if callable(from_config) else model_cls(config)


def _config_name(cls: type) -> str:
    """The name a dataclass is stored under: its @register_config name if it has one, else its __qualname__."""
    return next((name for name, registered in _CONFIGS.items() if registered is cls), cls.__qualname__)


def _dataclasses_in(annotation: Any) -> list[type]:
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return [annotation]
    return [found for arg in typing.get_args(annotation) for found in _dataclasses_in(arg)]


def _known_configs(root: type) -> dict[str, type]:
    """Dataclasses a config of type ``root`` may contain, by ``__qualname__``, plus the registered ones."""
    known: dict[str, type] = dict(_CONFIGS)
    seen: set[type] = set()
    stack = [root]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        known[cls.__qualname__] = cls
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # annotations naming local classes cannot be resolved: use the unresolved ones
            hints = {f.name: f.type for f in dataclasses.fields(cls)}
        for f in dataclasses.fields(cls):
            stack.extend(_dataclasses_in(hints.get(f.name)))
    return known


def encode_json(value: Any, *, where: str, tensors: dict[str, torch.Tensor] | None = None) -> Any:
    """Turn ``value`` into plain JSON data by the rules in the module docstring.

    Tensors and NumPy arrays are allowed only when ``tensors`` is given: each is put in it
    under a fresh key and replaced by ``{"__tensor__": key}`` / ``{"__ndarray__": key}``.
    ``where`` names the value in error messages, e.g. ``"config"``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):  # NumPy scalars are stored as the Python number they hold
        return encode_json(value.item(), where=where, tensors=tensors)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"__float__": repr(float(value))}
    if isinstance(value, tuple):
        return {"__tuple__": [encode_json(v, where=f"{where}[{i}]", tensors=tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode_json(v, where=f"{where}[{i}]", tensors=tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and not _MARKERS.intersection(value):
            return {k: encode_json(v, where=f"{where}[{k!r}]", tensors=tensors) for k, v in value.items()}
        return {"__dict__": [[encode_json(k, where=f"{where} key {k!r}"),
                              encode_json(v, where=f"{where}[{k!r}]", tensors=tensors)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"__dataclass__": _config_name(type(value))}
        for f in dataclasses.fields(value):
            if f.init:
                out[f.name] = encode_json(getattr(value, f.name), where=f"{where}.{f.name}", tensors=tensors)
        return out
    if isinstance(value, (torch.Tensor, np.ndarray)) and tensors is not None:
        marker = "__tensor__" if isinstance(value, torch.Tensor) else "__ndarray__"
        key, n = where, 1
        while key in tensors:
            n += 1
            key = f"{where}#{n}"
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise bad_argument(where, "a numeric NumPy array", f"an array of dtype {value.dtype}",
                                   "store numbers only")
            value = torch.from_numpy(np.ascontiguousarray(value))
        tensors[key] = value.detach()
        return {marker: key}
    storable = "None, bool, int, float, str, list, tuple, dict, a dataclass"
    raise bad_argument(
        where, storable + (", a tensor or an array" if tensors is not None else ""), value,
        "store plain values here (tensors belong in the model's weights or the training state)",
    )


def decode_json(data: Any, *, where: str, tensors: Mapping[str, torch.Tensor] | None = None,
                config_classes: Mapping[str, type] | None = None) -> Any:
    """Invert ``encode_json``; ValueError (naming ``where``) on data it could not have written."""
    if isinstance(data, list):
        return [decode_json(v, where=f"{where}[{i}]", tensors=tensors, config_classes=config_classes)
                for i, v in enumerate(data)]
    if not isinstance(data, dict):
        return data

    def sub(v: Any, w: str) -> Any:
        return decode_json(v, where=w, tensors=tensors, config_classes=config_classes)

    markers = _MARKERS.intersection(data)
    if not markers:
        return {k: sub(v, f"{where}[{k!r}]") for k, v in data.items()}
    if "__dataclass__" in markers:
        return _decode_dataclass(data, where, sub, config_classes)
    key = next(iter(markers))
    if len(data) != 1:
        raise ValueError(f"{where}: a {key} marker object must have exactly one key, found {sorted(data)}")
    body = data[key]
    if key == "__tuple__" and isinstance(body, list):
        return tuple(sub(v, f"{where}[{i}]") for i, v in enumerate(body))
    if key == "__float__" and body in ("nan", "inf", "-inf"):
        return float(body)
    if key == "__dict__" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        return {sub(k, f"{where} key"): sub(v, f"{where}[{k!r}]") for k, v in body}
    if key in ("__tensor__", "__ndarray__") and isinstance(body, str):
        if tensors is None or body not in tensors:
            raise ValueError(f"{where}: refers to tensor {body!r}, which the tensor file does not hold")
        return tensors[body] if key == "__tensor__" else tensors[body].numpy()
    raise ValueError(f"{where}: malformed {key} marker: {body!r}")


def _decode_dataclass(data: dict, where: str, sub: Callable[[Any, str], Any],
                      config_classes: Mapping[str, type] | None) -> Any:
    name = data["__dataclass__"]
    cls = (config_classes or {}).get(name)
    if cls is None:
        known = ", ".join(sorted(config_classes or {})) or "none"
        raise ValueError(f"{where}: unknown config dataclass {name!r} (known here: {known})")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields) - {"__dataclass__"})
    if unknown:
        raise ValueError(f"{where}: {name} has no field(s) {unknown}; its fields are {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: {name} field(s) {missing} are missing and have no default")
    kwargs = {n: sub(v, f"{where}.{n}") for n, v in data.items() if n != "__dataclass__"}
    hints = _hints(cls)
    for n, v in kwargs.items():
        problem = _type_problem(v, hints.get(n, Any))
        if problem:
            raise ValueError(f"{where}.{n}: expected {problem}, found {str(v)[:60]!r} ({type(v).__name__})")
    try:
        return cls(**kwargs)
    except Exception as error:
        raise ValueError(f"{where}: {name}(**stored fields) failed: {error}") from error


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # annotations naming local classes cannot be resolved: check nothing
        return {}


def _type_problem(value: Any, hint: Any) -> str | None:
    """What ``hint`` expects, if ``value`` does not fit it; None if it fits or the hint is not checked.

    Checks what a forged config could get wrong in a way the model's code would trip over:
    plain scalars (an int is no bool, a float may be an int), dataclasses, ``Literal``,
    ``Optional``/unions, and the element types of tuples and lists. Other hints pass.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return None
    if origin is typing.Union or (origin is not None and origin.__class__.__name__ == "UnionType") \
            or hint.__class__.__name__ == "UnionType":
        problems = [_type_problem(value, arg) for arg in args]
        return None if any(p is None for p in problems) else " or ".join(p for p in problems if p)
    if origin is typing.Literal:
        return None if value in args else "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if not isinstance(value, origin):
            return origin.__name__
        items = args[:1] if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if origin is tuple and items is args and args and len(value) != len(args):
            return f"a tuple of {len(args)}"
        for i, item in enumerate(value):
            problem = _type_problem(item, items[min(i, len(items) - 1)]) if items else None
            if problem:
                return f"{origin.__name__} of {problem}"
        return None
    if hint is bool:
        return None if isinstance(value, bool) else "bool"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "int"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "float"
    if hint is str:
        return None if isinstance(value, str) else "str"
    if hint is type(None):
        return None if value is None else "None"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else f"a {hint.__qualname__}"
    return None


def config_to_json(config: Any) -> dict[str, Any]:
    """The JSON form of a config dataclass; ValueError if it holds a value JSON cannot store exactly."""
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        raise bad_argument("config", "a dataclass instance", config,
                           "give the model a frozen-dataclass `config` attribute")
    return encode_json(config, where="config")


def config_from_json(data: Any, config_class: type) -> Any:
    """Rebuild a config of type ``config_class`` from ``config_to_json`` output; ValueError if it does not fit."""
    value = decode_json(data, where="config", config_classes=_known_configs(config_class))
    if not isinstance(value, config_class):
        raise ValueError(f"config: expected a {config_class.__qualname__}, found {type(value).__qualname__}")
    return value

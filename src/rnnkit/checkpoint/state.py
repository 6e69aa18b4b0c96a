"""What exact resume needs besides the weights: optimizer, scheduler, RNGs, counters, data position, metrics.

``TrainingState`` is the record a trainer hands to ``save(..., training_state=...)``; its
tensors (optimizer moments, RNG states) go to a safetensors file and the rest to JSON, both
through ``rnnkit.checkpoint.registry.encode_json``, so tuples, int keys and NaN survive exactly.

Example:
    >>> import random
    >>> random.seed(1)
    >>> state = capture_rng_state()
    >>> first = random.random()
    >>> restore_rng_state(state)
    >>> random.random() == first
    True
"""
from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rnnkit.errors import bad_argument
from rnnkit.checkpoint.registry import decode_json, encode_json

__all__ = ["RNGState", "TrainingState", "capture_rng_state", "restore_rng_state",
           "training_state_from_json", "training_state_to_json"]

Generator = random.Random | np.random.Generator | np.random.RandomState | torch.Generator
_COUNTERS = ("step", "epoch", "tokens", "sequences")


@dataclass(frozen=True, eq=False)
class RNGState:
    """The states of the global random generators, plus any named generators a trainer owns."""

    python: tuple  # random.getstate() of Python's global generator
    numpy: dict  # np.random.get_state(legacy=False) of NumPy's global generator
    torch: torch.Tensor  # torch.get_rng_state(): the CPU generator, a uint8 tensor
    torch_cuda: tuple[torch.Tensor, ...] = ()  # torch.cuda.get_rng_state_all(); () when CUDA is unavailable
    named: dict[str, dict] = field(default_factory=dict)  # name -> {"kind", "state"} of generators passed by name


@dataclass(frozen=True, eq=False)
class TrainingState:
    """Everything a trainer needs to resume bit-exactly; every field is optional.

    Example:
        >>> TrainingState(step=3, metrics=[{"step": 3, "loss": 2.5}]).step
        3
    """

    step: int = 0  # optimizer steps taken so far
    epoch: int = 0  # epochs completed so far
    tokens: int = 0  # training tokens consumed so far
    sequences: int = 0  # training sequences consumed so far
    optimizer: dict | None = None  # optimizer.state_dict(); None when no optimizer is saved
    scheduler: dict | None = None  # lr_scheduler.state_dict(); None when there is no scheduler
    rng: RNGState | None = None  # capture_rng_state(); None leaves the generators alone on resume
    data_position: dict = field(default_factory=dict)  # where the data stream stands (JSON-able), e.g. {"offset": 4096}
    metrics: list = field(default_factory=list)  # metrics history, one dict per logging point
    extra: dict = field(default_factory=dict)  # anything else the trainer needs (JSON-able values or tensors)

    def __post_init__(self) -> None:
        for name in _COUNTERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad_argument(f"TrainingState.{name}", "an int >= 0", value, f"pass a count, e.g. {name}=0")
        for name, kinds, text in (("optimizer", (dict, type(None)), "a dict (optimizer.state_dict()) or None"),
                                  ("scheduler", (dict, type(None)), "a dict (scheduler.state_dict()) or None"),
                                  ("rng", (RNGState, type(None)), "an RNGState (capture_rng_state()) or None"),
                                  ("data_position", (dict,), "a dict"), ("metrics", (list,), "a list of dicts"),
                                  ("extra", (dict,), "a dict")):
            if not isinstance(getattr(self, name), kinds):
                raise bad_argument(f"TrainingState.{name}", text, getattr(self, name), f"pass {text}")


def _kind(generator: object) -> str:
    for kind, cls in (("random.Random", random.Random), ("numpy.Generator", np.random.Generator),
                      ("numpy.RandomState", np.random.RandomState), ("torch.Generator", torch.Generator)):
        if isinstance(generator, cls):
            return kind
    raise bad_argument("generators", "random.Random, numpy Generator/RandomState or torch.Generator values", generator,
                       "pass only random number generators")


def capture_rng_state(generators: Mapping[str, Generator] | None = None) -> RNGState:
    """Snapshot the global Python, NumPy and torch generators, and the ``generators`` passed by name.

    Example:
        >>> import random
        >>> data_rng = random.Random(0)
        >>> state = capture_rng_state({"data": data_rng})
        >>> x = data_rng.random(); restore_rng_state(state, {"data": data_rng}); data_rng.random() == x
        True
    """
    named: dict[str, dict] = {}
    for name, generator in (generators or {}).items():
        kind = _kind(generator)
        if kind == "random.Random":
            state: Any = generator.getstate()
        elif kind == "numpy.Generator":
            state = generator.bit_generator.state
        elif kind == "numpy.RandomState":
            state = generator.get_state(legacy=False)
        else:
            state = generator.get_state()
        named[name] = {"kind": kind, "state": state}
    cuda = tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else ()
    return RNGState(python=random.getstate(), numpy=np.random.get_state(legacy=False), torch=torch.get_rng_state(),
                    torch_cuda=cuda, named=named)


def restore_rng_state(state: RNGState, generators: Mapping[str, Generator] | None = None) -> None:
    """Put the global generators, and each of ``generators`` (by name), back into the captured ``state``."""
    if not isinstance(state, RNGState):
        raise bad_argument("state", "an RNGState from capture_rng_state()", state, "pass training_state.rng")
    for name, generator in (generators or {}).items():
        saved = state.named.get(name)
        if saved is None:
            raise bad_argument("generators", f"names captured in the state ({sorted(state.named)})", repr(name),
                               "pass the same names to capture_rng_state and restore_rng_state")
        if saved["kind"] != _kind(generator):
            raise bad_argument(f"generators[{name!r}]", f"a {saved['kind']}", generator,
                               "pass a generator of the captured kind")
        if saved["kind"] == "random.Random":
            generator.setstate(saved["state"])
        elif saved["kind"] == "numpy.Generator":
            generator.bit_generator.state = saved["state"]
        elif saved["kind"] == "numpy.RandomState":
            generator.set_state(saved["state"])
        else:
            generator.set_state(saved["state"])
    random.setstate(state.python)
    np.random.set_state(state.numpy)
    torch.set_rng_state(state.torch)
    if state.torch_cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(state.torch_cuda):
            torch.cuda.set_rng_state_all(list(state.torch_cuda))
        else:
            warnings.warn(f"the state holds {len(state.torch_cuda)} CUDA generator state(s) but this machine has "
                          f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA device(s); "
                          "CUDA random streams are not restored, so a resumed run will not repeat the original exactly",
                          stacklevel=2)


def training_state_to_json(state: TrainingState) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split a TrainingState into JSON data and the tensors it refers to by key."""
    if not isinstance(state, TrainingState):
        raise bad_argument("training_state", "a TrainingState", state,
                           "build one: TrainingState(step=..., optimizer=opt.state_dict())")
    tensors: dict[str, torch.Tensor] = {}
    doc: dict[str, Any] = {name: getattr(state, name) for name in _COUNTERS}
    for name in ("optimizer", "scheduler", "data_position", "metrics", "extra"):
        doc[name] = encode_json(getattr(state, name), where=f"training_state.{name}", tensors=tensors)
    rng = None if state.rng is None else {f.name: getattr(state.rng, f.name) for f in dataclasses.fields(RNGState)}
    doc["rng"] = encode_json(rng, where="training_state.rng", tensors=tensors)
    return doc, tensors


def training_state_from_json(doc: Any, tensors: Mapping[str, torch.Tensor]) -> TrainingState:
    """Invert ``training_state_to_json``; ValueError naming the field if ``doc`` does not fit."""
    if not isinstance(doc, dict):
        raise ValueError(f"training_state: expected a JSON object, found {type(doc).__name__}")
    names = {f.name for f in dataclasses.fields(TrainingState)}
    unknown = sorted(set(doc) - names)
    if unknown:
        raise ValueError(f"training_state: unknown field(s) {unknown}; expected a subset of {sorted(names)}")
    values = {name: decode_json(value, where=f"training_state.{name}", tensors=tensors) for name, value in doc.items()}
    rng = values.pop("rng", None)
    if rng is not None:
        rng_fields = {f.name for f in dataclasses.fields(RNGState)}
        if not isinstance(rng, dict) or not {"python", "numpy", "torch"} <= set(rng) <= rng_fields:
            raise ValueError(f"training_state.rng: expected an object with fields {sorted(rng_fields)}, "
                             f"found {rng!r:.200}")
        values["rng"] = RNGState(**rng)
    return TrainingState(**values)

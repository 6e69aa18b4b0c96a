"""Rebuild a model from checkpoint files that may have been crafted: shapes first, then data, never init.

The manifest's hashes prove that the files are whole, not that their author meant well: anyone
can write a consistent checkpoint whose config asks for a huge model. So ``rebuild``

1. reads the names, dtypes and shapes of the stored tensors from the safetensors header (the
   first bytes of the file; no tensor data is touched);
2. builds the model on the meta device (no memory, no initialisation), and stops the build as
   soon as it registers far more modules and tensors than the file could fill;
3. compares the model's tensors with the header: names, shapes, dtypes and ties;
4. only then decodes the tensor data and hands it to the model (``load_state_dict(assign=True)``).

A crafted config thus fails in milliseconds with a ``CheckpointError``, using no more memory
than the file. The expected shapes come from the model itself (on the meta device), so they
follow whatever names ``model.state_dict()`` produces.

Example:
    >>> import safetensors.torch
    >>> blob = safetensors.torch.save({"w": torch.zeros(2, 3)})
    >>> read_header(blob, Path("weights.safetensors"))
    {'w': StoredTensor(dtype=torch.float32, shape=(2, 3))}
"""
from __future__ import annotations

import json
import math
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import safetensors
import safetensors.torch
import torch
from torch import nn

from rnnkit.checkpoint.registry import build_model
from rnnkit.checkpoint.weights import split_tied
from rnnkit.errors import CheckpointError

__all__ = ["StoredTensor", "read_header", "rebuild"]

_FIX_CODE = "load it with the model code it was saved with, or save the model again with this code"
_FIX_DAMAGED = "the file was damaged or crafted; restore it from a copy or save the checkpoint again"
_DTYPES = {  # safetensors dtype names -> torch dtypes (the ones this torch has)
    name: getattr(torch, attr) for name, attr in (
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"), ("I64", "int64"),
        ("I32", "int32"), ("I16", "int16"), ("I8", "int8"), ("U8", "uint8"), ("U16", "uint16"), ("U32", "uint32"),
        ("U64", "uint64"), ("BOOL", "bool"), ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"))
    if hasattr(torch, attr)
}
_OBJECTS_PER_TENSOR = 8  # modules + tensors a model may register per stored tensor (built-ins: at most 3)
_OBJECTS_SLACK = 64  # plus this many, for wrappers, dropout and other modules without tensors


class StoredTensor(NamedTuple):
    """What the safetensors header says about one tensor."""

    dtype: torch.dtype
    shape: tuple[int, ...]


def read_header(blob: bytes, where: Path) -> dict[str, StoredTensor]:
    """Names, dtypes and shapes of the tensors in safetensors ``blob``, checked against its length.

    Reads only the header (the length prefix and its JSON); CheckpointError naming ``where`` if
    the header is malformed or promises more bytes than the file holds.
    """
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: expected a safetensors file, found {what}. Fix: {_FIX_DAMAGED}")

    if len(blob) < 8:
        raise bad(f"{len(blob)} bytes (a header takes at least 8)")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise bad(f"a header length of {size:,} bytes in a file of {len(blob):,}")
    try:
        header = json.loads(blob[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise bad(f"a header that is not JSON ({str(error)[:100]})") from None
    if not isinstance(header, dict):
        raise bad(f"a header that is a JSON {type(header).__name__}, not an object")
    data_bytes = len(blob) - 8 - size
    stored: dict[str, StoredTensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and entry.get("dtype") in _DTYPES and _int_list(entry.get("shape"))
                and _int_list(entry.get("data_offsets")) and len(entry["data_offsets"]) == 2):
            raise bad(f"an entry for {name[:80]!r} without a known dtype, a shape and two data offsets: "
                      f"{str(entry)[:120]}")
        dtype, shape = _DTYPES[entry["dtype"]], tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if not begin <= end <= data_bytes or (end - begin) * 8 != math.prod(shape) * dtype.itemsize * 8:
            raise bad(f"tensor {name[:80]!r} of shape {shape} {entry['dtype']} at bytes [{begin}, {end}) "
                      f"of {data_bytes:,} data bytes")
        stored[name] = StoredTensor(dtype, shape)
    return stored


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


class _TooBig(Exception):
    """Raised inside a model's constructor when it registers more than the file could fill."""


@contextmanager
def _registration_limit(limit: int) -> Iterator[None]:
    """Abort model construction (with _TooBig) in this thread once it registers more than ``limit`` objects."""
    thread, count = threading.get_ident(), [0]

    def hook(*_: Any) -> None:
        if threading.get_ident() == thread:
            count[0] += 1
            if count[0] > limit:
                raise _TooBig(f"more than {limit:,} modules and tensors")

    module_api = torch.nn.modules.module
    handles = [module_api.register_module_parameter_registration_hook(hook),
               module_api.register_module_buffer_registration_hook(hook),
               module_api.register_module_module_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _build_on_meta(cls: type[nn.Module], config: Any, stored: dict[str, StoredTensor], tied: dict,
                   where: Path) -> nn.Module:
    limit = _OBJECTS_PER_TENSOR * (len(stored) + len(tied)) + _OBJECTS_SLACK
    try:
        with _registration_limit(limit), torch.device("meta"):
            return build_model(cls, config)
    except _TooBig as error:
        raise CheckpointError(f"{where}: the stored config asks for a {cls.__qualname__} with {error}, but the weights "
                              f"file holds {len(stored)} tensors. Fix: {_FIX_DAMAGED}") from None
    except Exception as error:
        raise CheckpointError(f"{where}: building {cls.__qualname__} from the stored config failed: "
                              f"{type(error).__name__}: {str(error)[:200]}. Fix: {_FIX_CODE}") from None


def _compare(model: nn.Module, stored: dict[str, StoredTensor], tied: dict[str, str], where: Path) -> None:
    """CheckpointError unless the stored names, shapes, dtypes and ties are exactly the model's."""
    target = model.state_dict(keep_vars=True)
    target_tied = split_tied(target)[1]
    names = set(stored) | set(tied)
    missing, unexpected = sorted(set(target) - names), sorted(names - set(target))
    misshaped = [f"{n} (file {s.shape}, model {tuple(target[n].shape)})"
                 for n, s in stored.items() if n in target and s.shape != tuple(target[n].shape)]
    dangling = sorted(alias for alias, source in tied.items() if source not in stored)
    if missing or unexpected or misshaped or dangling:
        found = {"missing tensors": missing, "unexpected tensors": unexpected, "mis-shaped tensors": misshaped,
                 "tied to absent tensors": dangling}
        problems = "; ".join(f"{label} {str(items)[:300]}" for label, items in found.items() if items)
        raise CheckpointError(f"{where}: the weights do not match a {type(model).__qualname__} built from the stored "
                              f"config: {problems}. Fix: {_FIX_CODE}")
    if tied != target_tied:
        raise CheckpointError(f"{where}: tied weights differ: the checkpoint ties {str(tied)[:200]}, a "
                              f"{type(model).__qualname__} built from the stored config ties {target_tied}. "
                              f"Fix: {_FIX_CODE}")
    for n, s in stored.items():
        expected = target[n].dtype
        if s.dtype != expected and not (s.dtype.is_floating_point and expected.is_floating_point):
            raise CheckpointError(f"{where}: tensor {n} has dtype {s.dtype}, the model expects {expected}. "
                                  f"Fix: {_FIX_CODE}")


def _legacy_renames(model: nn.Module) -> dict[str, str]:
    """Old stored name -> current name, from every submodule that defines ``legacy_state_dict_keys()``
    (rnnkit's RNN/LSTM/GRU saved before 0.2 used submodule keys such as ``layers.0.fwd.cell.weight``)."""
    renames: dict[str, str] = {}
    for prefix, module in model.named_modules():
        legacy = getattr(module, "legacy_state_dict_keys", None)
        if callable(legacy):
            dot = prefix + "." if prefix else ""
            renames.update({dot + old: dot + new for old, new in legacy().items()})
    return renames


def rebuild(cls: type[nn.Module], config: Any, blob: bytes, tied: dict[str, str], where: Path) -> nn.Module:
    """A ``cls`` built from ``config`` holding the tensors of safetensors ``blob`` bit for bit, on the CPU.

    ``tied`` maps alias names to the stored names they share a tensor with. CheckpointError
    naming ``where`` (the weights file) if the file does not fit the model exactly. Floating
    tensors keep the dtype they were stored in (a model saved after ``.to(bfloat16)`` comes back so).
    """
    stored = read_header(blob, where)
    model = _build_on_meta(cls, config, stored, tied, where)
    renames = _legacy_renames(model)
    clashes = sorted(f"{old} and {new}" for old, new in renames.items() if old in stored and new in stored)
    if clashes:  # a forgery: an old name and its new name for one tensor; never keep one of them silently
        raise CheckpointError(f"{where}: the file holds a tensor under both its old and its new name: "
                              f"{'; '.join(clashes)[:300]}. Fix: {_FIX_DAMAGED}")
    stored = {renames.get(n, n): s for n, s in stored.items()}
    tied = {renames.get(a, a): renames.get(s, s) for a, s in tied.items()}
    _compare(model, stored, tied, where)
    try:
        tensors = safetensors.torch.load(blob)
    except safetensors.SafetensorError as error:
        raise CheckpointError(f"{where}: expected a safetensors file, found bytes that are not one ({error}). "
                              f"Fix: {_FIX_DAMAGED}") from None
    tensors = {renames.get(n, n): t for n, t in tensors.items()}
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    parameters |= {name for name, value in model.state_dict(keep_vars=True).items() if isinstance(value, nn.Parameter)}
    full: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():  # one Parameter per stored tensor, shared by its aliases: ties survive
        full[name] = nn.Parameter(tensor, requires_grad=tensor.is_floating_point()) if name in parameters else tensor
    full.update({alias: full[source] for alias, source in tied.items()})
    model.load_state_dict(full, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # state the file does not hold, e.g.
        model = build_model(cls, config)  # non-persistent buffers: build for real (sizes are checked by now)
        model.load_state_dict(full, strict=True)
    return model

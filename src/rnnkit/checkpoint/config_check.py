"""Limits on a stored config's JSON, checked before any of it is decoded or used to build a model.

A config from a file may have been crafted. Before it reaches the model's constructor it must
be plain, shallow and made of numbers a model can use: ints within int64 (a larger one would
overflow a tensor size), at most ``MAX_DEPTH`` levels and ``MAX_VALUES`` values. Sizes within
int64 are then checked against the weights file by building the model on the meta device.

Example:
    >>> check_config_json({"hidden_size": 2 ** 70}, Path("model.json"))
    Traceback (most recent call last):
    ...
    rnnkit.errors.CheckpointError: model.json: config.hidden_size is 1180591620717411303424, beyond the int64 range a size can take. Fix: the file was damaged or crafted; save the checkpoint again
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnkit.errors import CheckpointError

__all__ = ["INT64_MAX", "MAX_DEPTH", "MAX_VALUES", "check_config_json"]

INT64_MAX = 2 ** 63 - 1
MAX_DEPTH = 32  # nesting levels of lists and objects (configs nest two or three)
MAX_VALUES = 100_000  # numbers, strings and containers in all
_FIX = "the file was damaged or crafted; save the checkpoint again"


def check_config_json(data: Any, where: Path) -> None:
    """CheckpointError naming ``where`` and the field if ``data`` breaks the limits above."""
    count = 0
    stack: list[tuple[Any, str, int]] = [(data, "config", 0)]
    while stack:
        value, path, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise CheckpointError(f"{where}: the config holds more than {MAX_VALUES:,} values. Fix: {_FIX}")
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{where}: {path[:200]} nests deeper than {MAX_DEPTH} levels. Fix: {_FIX}")
        if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise CheckpointError(f"{where}: {path[:200]} is {value}, beyond the int64 range a size can take. "
                                  f"Fix: {_FIX}")
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if str(k).isidentifier() else f"{path}[{k!r}]", depth + 1)
                         for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))

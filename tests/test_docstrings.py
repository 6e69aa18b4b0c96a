"""Every public name has a docstring, and every public name that handles tensors states their shapes.

"Public" is what the user-facing packages list in ``__all__`` (the names the docs site's API
reference shows), their classes' public methods included (a docstring inherited from a base
class counts). "States shapes" means the class docstring, or that of its forward/step/scan/
pointwise, holds a shape in the DESIGN.md legend, e.g. ``(B, T, H)`` or ``(G*H,)``. The docs
build (``mkdocs build --strict`` in .ci/run) and the doctests (``--doctest-modules``) check the
rest.
"""
from __future__ import annotations

import importlib
import inspect
import re

import pytest
import torch

PUBLIC = ["rnnkit", "rnnkit.steps", "rnnkit.cells", "rnnkit.cells.examples", "rnnkit.layers", "rnnkit.models", "rnnkit.data", "rnnkit.data.reber", "rnnkit.engine",
          "rnnkit.generation", "rnnkit.training", "rnnkit.reference", "rnnkit.init", "rnnkit.checkpoint", "rnnkit.errors"]
SHAPE = re.compile(r"\((?:[A-Z]\w*|\d+|\.\.\.|\*\w*)(?:\s*[*+-]\s*\w+)*(?:, ?[^()]{0,30})?\)")  # (B, T, H), (G*H,), (T,)


def public_objects():
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "").startswith("rnnkit"):
                yield f"{module_name}.{name}", obj


def handles_tensors(obj) -> bool:
    if inspect.isclass(obj):
        return issubclass(obj, torch.nn.Module)
    signature = str(inspect.signature(obj))
    return "Tensor" in signature or "ndarray" in signature


def test_the_shape_pattern_reads_the_legend():
    assert SHAPE.search("x (B, T, F) -> y (B, T, D*H)") and SHAPE.search("biases (G*H,)")
    assert not SHAPE.search("returns a new dict (a copy)")


def test_public_names_are_found():
    names = dict(public_objects())
    assert {"rnnkit.LSTM", "rnnkit.Recurrent", "rnnkit.reference.sequence_forward"} <= set(names)


@pytest.mark.parametrize("name,obj", list(public_objects()), ids=lambda v: v if isinstance(v, str) else "")
def test_public_name_has_docstrings(name, obj):
    assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not inspect.isfunction(member):
                continue
            inherited = any(getattr(getattr(base, attr, None), "__doc__", None) for base in obj.__mro__[1:])
            assert member.__doc__ or inherited, f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name,obj", [(n, o) for n, o in public_objects() if handles_tensors(o)],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_tensor_names_state_shapes(name, obj):
    text = obj.__doc__ or ""
    if inspect.isclass(obj):
        text += "".join(getattr(obj, k).__doc__ or "" for k in ("forward", "step", "scan", "pointwise") if hasattr(obj, k))
    assert SHAPE.search(text), f"{name}: no shape such as (B, T, H) in its docstrings"

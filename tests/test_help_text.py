"""``help(rnnkit)`` and ``help()`` of the public classes lead with rnnkit's own documentation (issue 12).

pydoc always appends the torch.nn.Module methods a layer inherits (so ``help(rnnkit)`` stays long);
what a reader sees first must be rnnkit's: the package's guide, then each class's own docstring and
its own constructor documentation, never torch's "Initialize internal Module state".
"""
from __future__ import annotations

import inspect
import pydoc

import pytest
import torch

import rnnkit

PUBLIC_CLASSES = [name for name in rnnkit.__all__ if inspect.isclass(getattr(rnnkit, name))]


def render(obj: object) -> list[str]:
    return pydoc.render_doc(obj, renderer=pydoc.plaintext).splitlines()


def test_help_rnnkit_opens_with_a_concise_guide_naming_every_public_class() -> None:
    lines = render(rnnkit)
    start, end = lines.index("DESCRIPTION"), lines.index("PACKAGE CONTENTS")
    guide = "\n".join(lines[start:end])
    assert lines[3].strip() == "rnnkit - rnnkit: recurrent neural networks on PyTorch."
    assert start < 6 and end - start <= 40  # the package's own part: one screen
    for name in PUBLIC_CLASSES:
        assert f"``{name}``" in guide, name
    assert ">>> import torch, rnnkit" in guide


@pytest.mark.parametrize("name", PUBLIC_CLASSES)
def test_help_of_a_public_class_leads_with_its_own_docs(name: str) -> None:
    cls = getattr(rnnkit, name)
    lines = render(cls)
    first = inspect.getdoc(cls).splitlines()[0]
    lead = next(i for i, line in enumerate(lines) if first[:40] in line)
    assert lead <= 6, (name, lines[:10])
    own = "\n".join(lines).split("inherited from")[0]  # the class's own members, before any inherited ones
    assert "Initialize internal Module state" not in own, name
    if issubclass(cls, torch.nn.Module) and "__init__" in vars(cls):  # its own constructor documentation
        assert inspect.getdoc(vars(cls)["__init__"]) != inspect.getdoc(torch.nn.Module.__init__), name

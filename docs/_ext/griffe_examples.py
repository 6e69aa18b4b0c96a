"""A griffe extension for the docs build: every doctest in a docstring renders as code.

rnnkit's docstrings hold doctests in three shapes. Griffe's Google-style parser turns only an
``Examples:`` section into code; under ``Example:`` (an admonition for griffe) or as bare
``>>>`` lines at the left margin, Markdown would read the prompts as nested block quotes.
This extension rewrites the loaded docstrings only (the source files are untouched):
``Example:`` headings become ``Examples:``, and a bare doctest block (from its first ``>>>``
line to the next blank line) is fenced as ``pycon`` code.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


def fence_bare_doctests(text: str) -> str:
    out: list[str] = []
    in_fence = in_doctest = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and not in_doctest and line.startswith(">>>"):
            out.append("```pycon")
            in_doctest = True
        elif in_doctest and not line.strip():
            out.append("```")
            in_doctest = False
        out.append(line)
    if in_doctest:
        out.append("```")
    return "\n".join(out)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_bare_doctests(_HEADING.sub(r"\1Examples:", obj.docstring.value))

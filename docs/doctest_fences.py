"""A griffe extension for the docs: storelab's docstrings are reStructuredText-flavoured with
doctest examples (``>>>``), which Markdown would read as block quotes. Each run of doctest lines
(the prompt, its continuation lines and the expected output after them) becomes a ``pycon``
code block, and ``:func:`x``` style roles become code spans."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """``text`` with each doctest run in a ``pycon`` fence.

    >>> print(fence_doctests("Intro.\\n\\n>>> 1 + 1\\n2\\n\\nAfter."))
    Intro.
    <BLANKLINE>
    ```pycon
    >>> 1 + 1
    2
    ```
    <BLANKLINE>
    After.
    """
    out: list[str] = []
    inside = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(">>>") and not inside:
            out.append("```pycon")
            inside = True
        elif inside and not stripped:
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence doctests and turn Sphinx roles into code spans in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", fence_doctests(obj.docstring.value))

"""Package exports that load on first use (PEP 562).

Packages whose exports pull in heavy libraries (Arrow, numpy) name where each export lives;
a process that needs only a light corner of the package (a hashing worker, a command's
start-up) then never pays for the rest.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each export to its module.

    >>> getattr_, dir_ = lazy_exports("storelab.tables", {"TABLES": "storelab.tables.schema"})
    >>> getattr_("TABLES")[0], dir_()
    ('snapshots', ['TABLES'])
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__

"""``storelab datasets fetch NAME``: corpora prepared from public archives, reproducibly."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from storelab.errors import ConfigError

__all__ = ["FETCHABLE", "fetch_corpus"]


def _debian_closures(to: Path) -> Path:
    from storelab.datasets.debian_closures import fetch_debian_closures

    return fetch_debian_closures(to)


FETCHABLE: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "debian-closures": ("image closure graphs from Debian's package index (apt-cache), for `storelab layers`", _debian_closures),
}


def fetch_corpus(name: str, to: str | os.PathLike[str]) -> Path:
    """Prepare corpus ``name`` in ``to``; returns the folder."""
    if name not in FETCHABLE:
        raise ConfigError(f"unknown corpus {name!r} (fetchable: {', '.join(FETCHABLE)})")
    return FETCHABLE[name][1](Path(to))

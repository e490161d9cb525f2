"""Byte sizes: parse ``64KiB`` / ``1MiB`` / ``4096`` and print ``1.5 MiB``."""

from __future__ import annotations

import re

from storelab.errors import ConfigError

__all__ = ["parse_size", "format_bytes"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Parse a byte size; binary units (KiB, MiB, GiB) and decimal ones (KB, MB, GB).

    >>> parse_size("64KiB"), parse_size("1MiB"), parse_size("4096"), parse_size("1.5KB")
    (65536, 1048576, 4096, 1500)
    """
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(f"not a byte size: {text!r} (try 4096, 64KiB, 1MiB, 2GB)")
    value = float(match.group(1)) * _UNITS[unit]
    if value != int(value):
        raise ConfigError(f"not a whole number of bytes: {text!r}")
    return int(value)


def format_bytes(n: float | int | None) -> str:
    """Human-readable binary size.

    >>> format_bytes(0), format_bytes(1536), format_bytes(3 * 1024**3)
    ('0 B', '1.5 KiB', '3.0 GiB')
    """
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")

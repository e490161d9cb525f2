"""Byte sizes and figures as people read them: parse ``64KiB`` / ``1MiB`` / ``4096``, print
``1.5 MiB``, ``2.31×``, ``12.5 %`` — one place for the command line and the report alike, a
missing value (None, NaN, pandas' NA) shown as ``–``."""

from __future__ import annotations

import re

from storelab.errors import ConfigError

__all__ = ["parse_size", "format_bytes", "format_ratio", "format_share", "format_size", "is_missing"]

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


def is_missing(value: object) -> bool:
    """None, NaN and pandas' NA (whose comparisons answer NA, which has no truth value).

    >>> is_missing(None), is_missing(float("nan")), is_missing(0)
    (True, True, False)
    """
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:
        return True


def format_size(value: object) -> str:
    """A byte count, or ``–`` where none was measured.

    >>> format_size(2048), format_size(float("nan"))
    ('2.0 KiB', '–')
    """
    return "–" if is_missing(value) else format_bytes(int(value))  # type: ignore[call-overload]


def format_ratio(value: object) -> str:
    """A factor: ``2.31×`` (``–`` where missing).

    >>> format_ratio(2.3125), format_ratio(None)
    ('2.31×', '–')
    """
    return "–" if is_missing(value) else f"{float(value):.2f}×"  # type: ignore[arg-type]


def format_share(value: object) -> str:
    """A share of a whole as a percentage: ``12.5 %`` (``–`` where missing).

    >>> format_share(0.125), format_share(float("nan"))
    ('12.5 %', '–')
    """
    return "–" if is_missing(value) else f"{100 * float(value):.1f} %"  # type: ignore[arg-type]

"""Tables as people read them in a notebook: byte counts in binary units, ratios as ``2.31×``,
shares as percentages, counts with thousands separators, seconds to two places — decided from
the column's name, one place for the convention every analysis table follows.

The frame itself is left alone (its numbers stay numbers, for the next computation); only what
is displayed changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from storelab.units import format_ratio, format_share, format_size, is_missing

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

__all__ = ["column_format", "readable"]

_BYTES_NAMES = {"bytes", "mean_chunk", "threshold", "image_bytes", "bytes_pulled"}
_SHARE_WORDS = ("share", "savings", "hit_rate", "fraction")
_RATIO_WORDS = ("ratio", "speedup", "mean_over_avg")


def _count(value: Any) -> str:
    return "–" if is_missing(value) else f"{int(value):,}"


def _seconds(value: Any) -> str:
    return "–" if is_missing(value) else f"{float(value):.2f} s"


def _number(value: Any) -> str:
    return "–" if is_missing(value) else f"{float(value):,.3g}"


def column_format(name: str, dtype_kind: str) -> Callable[[Any], str] | None:
    """How to show a column called ``name`` whose numpy dtype kind is ``dtype_kind``; None for
    columns shown as they are (text, flags).

    >>> column_format("stored_bytes", "i")(1536), column_format("dedup_ratio", "f")(2.3125)
    ('1.5 KiB', '2.31×')
    >>> column_format("space_savings", "f")(0.125), column_format("objects", "i")(12345)
    ('12.5 %', '12,345')
    >>> column_format("wall_seconds", "f")(1.234), column_format("label", "O") is None
    ('1.23 s', True)
    """
    if dtype_kind not in "iuf":
        return None
    if name in _BYTES_NAMES or name.endswith(("_bytes", "_size")):
        return format_size
    if any(word in name for word in _SHARE_WORDS):
        return format_share
    if any(word in name for word in _RATIO_WORDS):
        return format_ratio
    if "seconds" in name or name.startswith("wall"):
        return _seconds
    return _count if dtype_kind in "iu" else _number


def readable(frame: pd.DataFrame) -> Styler:
    """``frame`` styled for display (see :func:`column_format`); index and values unchanged.

    >>> import pandas as pd
    >>> styled = readable(pd.DataFrame({"stored_bytes": [2048], "dedup_ratio": [1.5]}))
    >>> "2.0 KiB" in styled.to_html() and "1.50×" in styled.to_html()
    True
    """
    formats = {}
    for name in frame.columns:
        shown = column_format(str(name), frame[name].dtype.kind)
        if shown is not None:
            formats[name] = shown
    return frame.style.format(formats)

"""Words for an answer that cannot contradict the numbers beside it: the least of a measure,
named with every entry that ties for it, and an order that says where entries tie.

Two values tie when they differ by at most ``tolerance`` of the larger (default 0.1 %: less
than a figure printed to four digits can show). One place for this policy, so every notebook
and report calls ties the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Least", "TIE_TOLERANCE", "least", "ranked", "ties"]

TIE_TOLERANCE = 0.001
"""Values within this share of the larger one are a tie."""


def ties(a: float, b: float, tolerance: float = TIE_TOLERANCE) -> bool:
    """Whether ``a`` and ``b`` tie.

    >>> ties(658.80, 658.81), ties(529.6, 533.9), ties(0, 0)
    (True, False, True)
    """
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


@dataclass(frozen=True)
class Least:
    """The least value of a measure and every name that reaches it (within the tolerance)."""

    value: float
    names: tuple[str, ...]

    @property
    def tie(self) -> bool:
        """Whether more than one entry shares the least value."""
        return len(self.names) > 1

    def __str__(self) -> str:
        if not self.tie:
            return self.names[0]
        return ", ".join(self.names[:-1]) + f" and {self.names[-1]} (a tie)"


def least(values: Mapping[str, float], tolerance: float = TIE_TOLERANCE) -> Least:
    """The least of ``values`` (a mapping or a pandas Series: name → value), ties named.

    >>> str(least({"popularity": 690.8, "size-first": 690.8, "single": 912.0}))
    'popularity and size-first (a tie)'
    >>> least({"a": 3, "b": 2}).names
    ('b',)
    """
    items = dict(values)
    if not items:
        raise ValueError("least() of nothing")
    lowest = min(items.values())
    return Least(lowest, tuple(name for name, value in items.items() if ties(value, lowest, tolerance)))


def ranked(values: Mapping[str, float], tolerance: float = TIE_TOLERANCE) -> str:
    """``values``' names from least to most, ``=`` between ties and ``<`` between the rest.

    A name ties with the first of its group (so a slow drift is not one long tie).

    >>> ranked({"single": 9.0, "popularity": 4.0, "size-first": 4.0, "per-path": 5.0})
    'popularity = size-first < per-path < single'
    """
    order = sorted(dict(values).items(), key=lambda item: item[1])
    text, group_start = "", None
    for name, value in order:
        if group_start is None:
            text = name
        elif ties(value, group_start, tolerance):
            text += f" = {name}"
            continue
        else:
            text += f" < {name}"
        group_start = value
    return text

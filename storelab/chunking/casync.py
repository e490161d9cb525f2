"""casync's chunker (and desync's, which cuts identically): buzhash over a 48-byte window.

The rule, from systemd/casync ``src/cachunker.c`` (Debian's casync 2+20201210, and the current
source, which only skips hashing bytes that cannot matter):

* the window restarts at every cut and is first full (and tested) at ``max(min, 48)`` bytes into
  the chunk;
* a chunk ends after the byte where ``h % d == d - 1``, ``h`` the 32-bit buzhash of the last 48
  bytes and ``d`` the discriminator ``avg / (1.33237515 - 1.42888852e-7·avg)`` clamped to
  ``[min, max]`` (casync's correction for the skew of chunk sizes), or at ``max`` bytes;
* ``min == avg == max`` is casync's fixed-size chunker.

Chunk ids are SHA-512/256 of the chunk (``casync --digest=sha512-256``, the default).

>>> spec = casync_spec({})
>>> spec.id, spec.min_size, spec.max_size
('casync/min=16KiB,avg=64KiB,max=256KiB', 16384, 262144)
>>> CasyncChunker(spec).split(memoryview(bytes(600_000)), eof=True)
[262144, 262144, 75712]
"""

from __future__ import annotations

from collections.abc import Mapping

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.chunking.native import native, table_bytes
from storelab.chunking.tables import CASYNC_BUZHASH
from storelab.errors import ConfigError
from storelab.units import format_bytes

__all__ = ["CASYNC_DEFAULTS", "CasyncChunker", "casync_spec", "casync_scaled", "discriminator"]

CASYNC_DEFAULTS = {"min": 16 * 1024, "avg": 64 * 1024, "max": 256 * 1024}
"""casync's defaults (``CA_CHUNK_SIZE_AVG_DEFAULT``, min = avg/4, max = 4·avg)."""
_LIMIT_MAX = 128 * 1024 * 1024  # CA_CHUNK_SIZE_LIMIT_MAX
_WINDOW = 48
_TABLE = table_bytes(CASYNC_BUZHASH, 4)


def discriminator(min_size: int, avg_size: int, max_size: int) -> int:
    """casync's ``CA_CHUNKER_DISCRIMINATOR_FROM_AVG`` clamped to ``[min, max]``, in double
    precision as C computes it.

    >>> discriminator(16384, 65536, 262144)
    49535
    """
    d = int(avg_size / (-1.42888852e-7 * avg_size + 1.33237515))
    return min(max(d, min_size), max_size)


def casync_spec(params: Mapping[str, int]) -> ChunkerSpec:
    """A casync spec from ``min``/``avg``/``max`` (casync's ``--chunk-size=min:avg:max``); what
    is not given follows casync: avg 64 KiB, min avg/4, max 4·avg."""
    avg = params.get("avg", CASYNC_DEFAULTS["avg"])
    low = params.get("min", max(avg // 4, 1))
    high = params.get("max", min(avg * 4, _LIMIT_MAX))
    if not 1 <= low <= avg <= high <= _LIMIT_MAX:
        raise ConfigError(
            f"casync chunk sizes must satisfy 1 ≤ min ≤ avg ≤ max ≤ 128 MiB (got {format_bytes(low)}, {format_bytes(avg)}, {format_bytes(high)})"
        )
    return ChunkerSpec("casync", low, avg, high, 0, 0, (("min", low), ("avg", avg), ("max", high)))


def casync_scaled(avg: int) -> dict[str, int]:
    """The parameters for average ``avg`` in casync's own ratios (min avg/4, max 4·avg)."""
    return {"avg": avg}


class CasyncChunker(RestartingChunker):
    """casync's cut points, exactly (checked against ``casync make`` by the test suite)."""

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = casync_spec(dict(spec.params))
        self._d = discriminator(spec.min_size, spec.avg_size, spec.max_size)
        self._cut = native("casync").casync

    @property
    def lookahead(self) -> int:
        return max(self.spec.max_size, _WINDOW)

    @property
    def single_chunk_max(self) -> int:
        if self.spec.min_size == self.spec.max_size:
            return self.spec.max_size
        return max(self.spec.min_size, _WINDOW)

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        s = self.spec
        lengths: list[int] = self._cut(buf, s.min_size, s.avg_size, s.max_size, self._d, _TABLE, eof)
        return lengths

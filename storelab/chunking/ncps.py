"""ncps's chunker: kalbasit/fastcdc, a FastCDC of its own (not fastcdc-rs's, not the 2016 paper's).

The rule, from kalbasit/fastcdc v1.0.0 ``core.go`` and ``options.go`` (what ncps's
``pkg/chunker`` calls with its ``--cache-cdc-min/avg/max``, 16/64/256 KiB by default):

* a chunk's first ``min`` bytes are skipped; the gear hash ``fp = (fp << 1) + table[b]`` starts
  at 0 on the byte after them;
* up to ``norm = min + ((avg − min) >> nc)`` bytes (``nc`` 2 by default) a chunk ends after a
  byte whose hash has its low ``bits − 1`` bits zero (``bits = ⌊log2 avg⌋``), after that its low
  ``bits`` bits: the *easier* mask comes first, and both are low bits (fastcdc-rs and the paper
  use spread high-bit masks, harder first);
* at ``max`` bytes at the latest; ``seed`` XORs every table entry.

ncps names its chunks by BLAKE3 and stores each zstd-compressed.

>>> spec = ncps_spec({})
>>> spec.id
'ncps/min=16KiB,avg=64KiB,max=256KiB,nc=2'
>>> NcpsChunker(spec).split(memoryview(bytes(300_000)), eof=True)  # zeros never match: max
[262144, 37856]
"""

from __future__ import annotations

from collections.abc import Mapping

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.chunking.native import native, table_bytes
from storelab.chunking.tables import KALBASIT_GEAR
from storelab.errors import ConfigError
from storelab.units import format_bytes

__all__ = ["NCPS_DEFAULTS", "NcpsChunker", "ncps_masks", "ncps_scaled", "ncps_spec"]

NCPS_DEFAULTS = {"min": 16 * 1024, "avg": 64 * 1024, "max": 256 * 1024, "nc": 2, "seed": 0}
"""ncps's ``--cache-cdc-*`` defaults and kalbasit/fastcdc's normalisation level and seed."""
_U32 = (1 << 32) - 1


def ncps_masks(min_size: int, avg_size: int, nc: int) -> tuple[int, int, int]:
    """kalbasit/fastcdc's ``computeMasks``: (easier mask, harder mask, normalisation size).

    >>> [hex(m) for m in ncps_masks(16384, 65536, 2)[:2]], ncps_masks(16384, 65536, 2)[2]
    (['0x7fff', '0xffff'], 28672)
    """
    bits = avg_size.bit_length() - 1
    mask_l = (1 << bits) - 1
    mask_s = (1 << (bits - 1)) - 1 if bits > 0 else 0
    return mask_s, mask_l, min_size + ((avg_size - min_size) >> nc)


def ncps_spec(params: Mapping[str, int]) -> ChunkerSpec:
    """An ncps spec from ``min``, ``avg``, ``max``, ``nc`` and ``seed``, checked as
    kalbasit/fastcdc's ``validate`` checks them (strictly min < avg < max)."""
    merged = {**NCPS_DEFAULTS, **params}
    low, avg, high, nc, seed = (merged[k] for k in ("min", "avg", "max", "nc", "seed"))
    if not 0 < low < avg < high <= _U32:
        raise ConfigError(f"ncps chunk sizes must satisfy 0 < min < avg < max < 4 GiB (got {format_bytes(low)}, {format_bytes(avg)}, {format_bytes(high)})")
    if not 0 <= nc <= 8:
        raise ConfigError(f"ncps's normalisation level nc is 0–8 (got {nc})")
    if not 0 <= seed < 1 << 64:
        raise ConfigError(f"ncps's seed is a 64-bit unsigned integer (got {seed})")
    ordered = (("min", low), ("avg", avg), ("max", high), ("nc", nc)) + ((("seed", seed),) if seed else ())
    return ChunkerSpec("ncps", low, avg, high, nc, seed, ordered)


def ncps_scaled(avg: int) -> dict[str, int]:
    """The parameters for average ``avg`` in ncps's ratios (min avg/4, max 4·avg)."""
    return {"min": max(avg // 4, 1), "avg": avg, "max": avg * 4}


class NcpsChunker(RestartingChunker):
    """ncps's cut points (kalbasit/fastcdc ported line by line; see the chunkers page for how)."""

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = ncps_spec(dict(spec.params))
        s = self.spec
        self._mask_s, self._mask_l, self._norm = ncps_masks(s.min_size, s.avg_size, s.normalization)
        self._table = table_bytes((v ^ s.seed for v in KALBASIT_GEAR), 8)
        self._cut = native("ncps").ncps


    @property
    def single_chunk_max(self) -> int:
        return self.spec.min_size + 1

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        s = self.spec
        lengths: list[int] = self._cut(buf, s.min_size, self._norm, s.max_size, self._mask_s, self._mask_l, self._table, eof)
        return lengths

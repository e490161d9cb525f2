"""Xet's chunker (Hugging Face's xet-core, ``hf_xet``): gear hash with a high-bit mask.

The rule, from huggingface/xet-core ``xet_data/src/deduplication/chunking.rs`` with the gear
table of the ``gearhash`` crate:

* ``target`` a power of two (64 KiB), ``min = target / 8``, ``max = 2·target``;
* the hash ``h = (h << 1) + table[b]`` restarts at 0 at every cut, ``min − 65`` bytes in (the
  64-byte window plus one; bytes before cannot matter);
* a chunk ends after the first byte, ``min`` bytes in or later, where ``h`` masked with
  ``target − 1`` shifted to the top bits is zero; at ``max`` bytes at the latest.

Xet names a chunk by BLAKE3 keyed with its ``DATA_KEY`` and a file by a Merkle tree of its chunk
hashes (:func:`storelab.chunking.xet_hash.xet_file_hash`).

>>> spec = xet_spec({})
>>> spec.id, spec.min_size, spec.max_size
('xet/target=64KiB', 8192, 131072)
"""

from __future__ import annotations

from collections.abc import Mapping

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.chunking.native import native, table_bytes
from storelab.chunking.tables import XET_GEAR
from storelab.errors import ConfigError
from storelab.units import format_bytes

__all__ = ["XET_DEFAULTS", "XetChunker", "xet_mask", "xet_scaled", "xet_spec"]

XET_DEFAULTS = {"target": 64 * 1024}
"""xet-core's ``TARGET_CHUNK_SIZE``."""
_TABLE = table_bytes(XET_GEAR, 8)


def xet_mask(target: int) -> int:
    """``target − 1`` shifted all the way to the top of 64 bits.

    >>> hex(xet_mask(65536))
    '0xffff000000000000'
    """
    mask = target - 1
    return (mask << (64 - mask.bit_length())) & ((1 << 64) - 1)


def xet_spec(params: Mapping[str, int]) -> ChunkerSpec:
    """A Xet spec from ``target`` (a power of two above 64 B and below 2 GiB, as xet-core asserts)."""
    target = {**XET_DEFAULTS, **params}["target"]
    if target & (target - 1) or not 64 < target < 1 << 31:
        raise ConfigError(f"xet's target chunk size is a power of two above 64 B and below 2 GiB (got {format_bytes(target)})")
    return ChunkerSpec("xet", target // 8, target, target * 2, 0, 0, (("target", target),))


def xet_scaled(avg: int) -> dict[str, int]:
    """The parameters for average ``avg``: Xet's target."""
    return {"target": avg}


class XetChunker(RestartingChunker):
    """Xet's cut points (checked end to end against ``hf_xet.hash_files``)."""

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = xet_spec(dict(spec.params))
        self._mask = xet_mask(self.spec.avg_size)
        self._cut = native("xet").xet



    def split(self, buf: memoryview, eof: bool) -> list[int]:
        s = self.spec
        lengths: list[int] = self._cut(buf, s.min_size, s.max_size, self._mask, _TABLE, eof)
        return lengths

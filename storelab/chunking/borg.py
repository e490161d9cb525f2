"""borg 1.x's chunker: a seeded buzhash over a 4095-byte window that starts at the cut.

The rule, from borgbackup/borg 1.2.4 ``src/borg/_chunker.c`` (``chunker_process``):

* the table is borg's ``table_base`` XORed with the repository's 32-bit chunk seed (0 for an
  unencrypted repository, ``borg init -e none``);
* fewer than ``min + window + 1`` bytes left: they are the last chunk;
* otherwise the window starting ``min`` bytes into the chunk is hashed, then slid one byte at a
  time; the chunk ends where a window *starts* whose hash has its low ``mask_bits`` bits zero
  (the window's bytes begin the next chunk);
* a window that would reach the end of borg's ``2^max_exp``-byte buffer (or of the input) is
  not tested: without a cut the chunk is ``2^max_exp`` bytes, or the rest of the input.

Parameters as ``borg create --chunker-params buzhash,19,23,21,4095`` names them. Chunk ids are
SHA-256 of the chunk in an unencrypted repository (HMAC-SHA256 or keyed BLAKE2b under a key).

>>> spec = borg_spec({})
>>> spec.id, spec.min_size, spec.avg_size, spec.max_size
('borg/min_exp=19,max_exp=23,mask_bits=21,window=4095,seed=0', 524288, 2097152, 8388608)
"""

from __future__ import annotations

from collections.abc import Mapping

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.chunking.native import native, table_bytes
from storelab.chunking.tables import BORG_BUZHASH
from storelab.errors import ConfigError

__all__ = ["BORG_DEFAULTS", "BorgChunker", "borg_scaled", "borg_spec"]

BORG_DEFAULTS = {"min_exp": 19, "max_exp": 23, "mask_bits": 21, "window": 4095, "seed": 0}
"""borg 1.x's ``CHUNKER_PARAMS`` (buzhash, 19, 23, 21, 4095) and the seed of ``-e none``."""


def borg_spec(params: Mapping[str, int]) -> ChunkerSpec:
    """A borg spec from ``min_exp``, ``max_exp``, ``mask_bits``, ``window`` and ``seed``,
    checked as borg checks ``--chunker-params``."""
    merged = {**BORG_DEFAULTS, **params}
    low, high, bits, window, seed = (merged[k] for k in ("min_exp", "max_exp", "mask_bits", "window", "seed"))
    if not 6 <= low <= bits <= high <= 23:
        raise ConfigError(f"borg needs 6 ≤ min_exp ≤ mask_bits ≤ max_exp ≤ 23 (got {low}, {bits}, {high})")
    if not window >= 1 or window % 2 == 0 or window + (1 << low) + 1 > 1 << high:
        raise ConfigError(f"borg's window must be odd and fit between min and max: window + 2^min_exp + 1 ≤ 2^max_exp (got {window})")
    if not 0 <= seed < 1 << 32:
        raise ConfigError(f"borg's chunk seed is a 32-bit unsigned integer (got {seed})")
    ordered = tuple((k, merged[k]) for k in BORG_DEFAULTS)
    return ChunkerSpec("borg", 1 << low, 1 << bits, 1 << high, 0, seed, ordered)


def borg_scaled(avg: int) -> dict[str, int]:
    """The parameters for average ``avg`` (a power of two) in borg's ratios (min avg/4, max 4·avg)."""
    bits = avg.bit_length() - 1
    if avg & (avg - 1) or not 8 <= bits <= 21:
        raise ConfigError(f"borg's average is a power of two (2^mask_bits) between 256 B and 2 MiB; got {avg:,} B")
    window = min(BORG_DEFAULTS["window"], (1 << (bits + 2)) - (1 << (bits - 2)) - 1) | 1
    return {"mask_bits": bits, "min_exp": bits - 2, "max_exp": bits + 2, "window": window}


class BorgChunker(RestartingChunker):
    """borg's cut points, exactly (checked against borg's own ``borg.chunker`` and ``borg create``)."""

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = borg_spec(dict(spec.params))
        params = dict(self.spec.params)
        self._window = params["window"]
        self._mask = (1 << params["mask_bits"]) - 1
        seed = params["seed"]
        self._table = table_bytes((v ^ seed for v in BORG_BUZHASH), 4)
        self._cut = native("borg").borg


    @property
    def single_chunk_max(self) -> int:
        return self.spec.min_size + self._window

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        s = self.spec
        lengths: list[int] = self._cut(buf, s.min_size, s.max_size, self._window, self._mask, self._table, eof)
        return lengths

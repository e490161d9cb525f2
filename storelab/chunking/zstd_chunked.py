"""zstd:chunked's chunker (containers/storage, the OCI layer format of podman and CRI-O).

The rule, from containers/storage ``pkg/chunked/compressor`` (``rollsum.go``, ``compressor.go``):

* each regular file of a layer is chunked on its own, with bup's rolling checksum over a 64-byte
  window (``s1``, ``s2`` sums, character offset 31) that starts fresh at the file's start and
  is **not** restarted at cuts;
* a chunk ends after a byte where the low ``bits`` (16) bits of ``s2`` are all ones; there is no
  minimum and no maximum size;
* a run of at least ``hole`` (1 KiB) zero bytes is a chunk of its own (a "zeros" chunk), ending
  the data chunk before it; shorter runs are ordinary bytes.

Chunk digests are SHA-256. Memory per file being cut is bounded by its largest chunk (there is
no maximum), which on real files is rarely more than a few MiB.

>>> spec = zstd_chunked_spec({})
>>> spec.id
'zstd-chunked/bits=16,hole=1KiB'
>>> ZstdChunkedChunker(spec).split(memoryview(b"x" * 10 + bytes(2000) + b"y"), eof=True)
[10, 2000, 1]
"""

from __future__ import annotations

from collections.abc import Mapping

from storelab.chunking.base import ChunkerSpec
from storelab.chunking.native import native
from storelab.errors import ConfigError

__all__ = ["ZSTD_CHUNKED_DEFAULTS", "ZstdChunkedChunker", "zstd_chunked_scaled", "zstd_chunked_spec"]

ZSTD_CHUNKED_DEFAULTS = {"bits": 16, "hole": 1024}
"""containers/storage's ``RollsumBits`` and ``holesThreshold``."""
_WINDOW = 64


def zstd_chunked_spec(params: Mapping[str, int]) -> ChunkerSpec:
    """A zstd:chunked spec from ``bits`` and ``hole`` (containers/storage's values where not given)."""
    merged = {**ZSTD_CHUNKED_DEFAULTS, **params}
    bits, hole = merged["bits"], merged["hole"]
    if not 1 <= bits <= 31:
        raise ConfigError(f"zstd-chunked's bits must be between 1 and 31 (got {bits})")
    if hole < 1:
        raise ConfigError(f"zstd-chunked's hole threshold is at least 1 byte (got {hole})")
    # no min and no max: the size columns hold 1 and 0 (0 = unbounded)
    return ChunkerSpec("zstd-chunked", 1, 1 << bits, 0, 0, 0, (("bits", bits), ("hole", hole)))


def zstd_chunked_scaled(avg: int) -> dict[str, int]:
    """The parameters for average ``avg`` (a power of two): its bits."""
    if avg < 2 or avg & (avg - 1):
        raise ConfigError(f"zstd-chunked's average is a power of two (2^bits); got {avg:,} B")
    return {"bits": avg.bit_length() - 1}


class ZstdChunkedChunker:
    """zstd:chunked's cut points (containers/storage's reader ported line by line, see the chunkers page).

    The checksum runs across cuts, so the chunker keeps the last 64 bytes it cut; :meth:`begin`
    forgets them at each file's start.
    """

    def __init__(self, spec: ChunkerSpec) -> None:
        self.spec = zstd_chunked_spec(dict(spec.params))
        params = dict(self.spec.params)
        self._bits, self._hole = params["bits"], params["hole"]
        self._history = b""
        self._cut = native("zstd-chunked").zstd_chunked

    @property
    def lookahead(self) -> int:
        return 0  # no maximum: a chunk may be longer than any window (the reader then widens it)

    @property
    def single_chunk_max(self) -> int:
        return 1

    def begin(self) -> None:
        self._history = b""

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        lengths: list[int] = self._cut(buf, self._history, self._bits, self._hole, eof)
        if eof:
            self._history = b""
        else:
            cut = sum(lengths)
            self._history = (self._history + bytes(buf[max(0, cut - _WINDOW) : cut]))[-_WINDOW:] if cut else self._history
        return lengths

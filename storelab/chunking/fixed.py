"""Fixed-size blocks: the baseline every content-defined chunker is compared with."""

from __future__ import annotations

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.errors import ConfigError

__all__ = ["FixedSize", "MAX_FIXED_SIZE"]

MAX_FIXED_SIZE = 64 * 1024 * 1024
"""The largest block: a window of this many bytes is held per file being cut, and a store's
check refuses chunks past 64 MiB by default (``store verify --max-chunk-size``)."""


class FixedSize(RestartingChunker):
    """Blocks of ``spec.avg_size`` bytes; the last block of a blob may be shorter.

    >>> FixedSize(ChunkerSpec("fixed", 4, 4, 4)).split(memoryview(b"0123456789"), eof=True)
    [4, 4, 2]
    """

    def __init__(self, spec: ChunkerSpec) -> None:
        if not 0 < spec.avg_size <= MAX_FIXED_SIZE:
            raise ConfigError(f"fixed chunk size must be between 1 byte and 64 MiB (got {spec.avg_size:,} bytes)")
        self.spec = spec

    @property
    def lookahead(self) -> int:
        return self.spec.avg_size

    @property
    def single_chunk_max(self) -> int:
        return self.spec.avg_size

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        block = self.spec.avg_size
        full, rest = divmod(len(buf), block)
        return [block] * full + ([rest] if eof and rest else [])

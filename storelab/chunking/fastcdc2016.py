"""FastCDC as in the 2016 paper (the ``fastcdc`` package): the variant attic chunks with."""

from __future__ import annotations

from storelab.chunking.base import ChunkerSpec, RestartingChunker
from storelab.errors import ConfigError

__all__ = ["FastCDC2016"]

_READ_WINDOW = 64 * 1024


class FastCDC2016(RestartingChunker):
    """The 2016 ("ronomon") FastCDC; its boundaries differ from v2020 on the same data."""

    def __init__(self, spec: ChunkerSpec) -> None:
        # imported here: the package pulls in click, which snix-chunking workers never need
        from fastcdc import fastcdc  # the Cython build of the `fastcdc` package

        self._fastcdc = fastcdc
        self.spec = spec
        try:
            list(fastcdc(b"", spec.min_size, spec.avg_size, spec.max_size))
        except AssertionError:
            raise ConfigError(
                f"fastcdc2016 cannot use {spec.id}: sizes must satisfy 64 ≤ min, 256 ≤ avg, 1024 ≤ max"
            ) from None

    @property
    def lookahead(self) -> int:
        # the package looks at a window of max(64 KiB, max_size) bytes from each chunk start
        return max(_READ_WINDOW, self.spec.max_size)


    def split(self, buf: memoryview, eof: bool) -> list[int]:
        total = len(buf)
        window = self.lookahead
        lengths: list[int] = []
        for chunk in self._fastcdc(buf, self.spec.min_size, self.spec.avg_size, self.spec.max_size):
            if not eof and total - chunk.offset < window:
                break
            lengths.append(chunk.length)
        return lengths

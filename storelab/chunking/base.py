"""The chunker seam: a :class:`ChunkerSpec` value names a chunking, a :class:`Chunker` cuts.

Chunkers are fed a file as a sequence of buffers. Each call to :meth:`Chunker.split` gets the
bytes not yet cut (what the last call left over, followed by new bytes) and returns the
lengths of the chunks it can already decide; whatever those lengths do not cover is handed
back on the next call. At end of input (``eof=True``) the lengths cover everything. This
keeps memory bounded by the read buffer while cutting exactly where an in-memory cut of the
whole file would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from storelab.units import format_bytes

__all__ = ["ChunkerSpec", "Chunker"]


@dataclass(frozen=True, slots=True)
class ChunkerSpec:
    """Which chunker, with which sizes.

    >>> ChunkerSpec("fastcdc2020", 131072, 262144, 524288).id
    'fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1'
    >>> ChunkerSpec("fastcdc2020", 4096, 16384, 65535, seed=666).id
    'fastcdc2020/min=4KiB,avg=16KiB,max=65535,nc=1,seed=666'
    """

    name: str
    """``fastcdc2020`` (snix), ``fastcdc2016`` (attic) or ``fixed``."""
    min_size: int
    """Smallest chunk the chunker cuts (the last chunk of a blob may be shorter)."""
    avg_size: int
    """Target average chunk size (for ``fixed``: the block size)."""
    max_size: int
    """Largest chunk the chunker cuts."""
    normalization: int = 1
    """FastCDC 2020 normalisation level (0–3); ignored by the other chunkers."""
    seed: int = 0
    """FastCDC 2020 gear-table seed (fastcdc-rs ``with_level_and_seed``): every gear value
    XORed with it; 0 = unseeded, as snix chunks. Named in the id only when set."""

    @property
    def id(self) -> str:
        """A stable, readable identifier; the ``chunker_id`` column of the tables."""
        def size(n: int) -> str:
            return format_bytes(n).replace(".0 ", "").replace(" ", "") if n % 1024 == 0 else str(n)

        if self.name == "fixed":
            return f"fixed/size={size(self.avg_size)}"
        params = f"min={size(self.min_size)},avg={size(self.avg_size)},max={size(self.max_size)}"
        if self.name == "fastcdc2020":
            params += f",nc={self.normalization}"
            if self.seed:
                params += f",seed={self.seed}"
        return f"{self.name}/{params}"


@runtime_checkable
class Chunker(Protocol):
    """Cuts a stream of bytes into chunks (see the module docstring for the contract)."""

    spec: ChunkerSpec

    @property
    def lookahead(self) -> int:
        """Bytes past a chunk's start the chunker may look at to place its cut."""
        ...

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        """Lengths of the chunks decided in ``buf``; with ``eof`` they sum to ``len(buf)``."""
        ...

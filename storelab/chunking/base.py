"""The chunker seam: a :class:`ChunkerSpec` value names a chunking, a :class:`Chunker` cuts.

Chunkers are fed a file as a sequence of buffers. Each call to :meth:`Chunker.split` gets the
bytes not yet cut (what the last call left over, followed by new bytes) and returns the
lengths of the chunks it can already decide; whatever those lengths do not cover is handed
back on the next call. At end of input (``eof=True``) the lengths cover everything. This
keeps memory bounded by the read buffer while cutting exactly where an in-memory cut of the
whole file would. :meth:`Chunker.begin` comes before the first call for each stream: a chunker
whose hash runs across its cuts (``zstd-chunked``) forgets the last stream there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from storelab.units import format_bytes

__all__ = ["SCOPES", "STREAM_SCOPES", "ChunkerSpec", "Chunker", "RestartingChunker"]

STREAM_SCOPES = ("nar", "files-by-name", "files-by-size")
"""Scopes that cut one stream per snapshot: its NAR (``nar``, as attic, nix-casync and ncps
chunk), or its files' bytes concatenated in name order (``files-by-name``) or by size
(``files-by-size``, then by path)."""
SCOPES = ("file", "refs-zeroed", *STREAM_SCOPES)
"""What a chunking cuts: each file's blob on its own (``file``, as snix, restic and borg do),
each file with its store-path references blanked first (``refs-zeroed``, as hestia chunks: the
blob keeps the file's own digest, its chunks are of the blanked bytes), or a stream
(:data:`STREAM_SCOPES`)."""


@dataclass(frozen=True, slots=True)
class ChunkerSpec:
    """Which chunker, with which sizes.

    >>> ChunkerSpec("fastcdc2020", 131072, 262144, 524288).id
    'fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1'
    >>> ChunkerSpec("fastcdc2020", 4096, 16384, 65535, seed=666).id
    'fastcdc2020/min=4KiB,avg=16KiB,max=65535,nc=1,seed=666'
    >>> ChunkerSpec("fastcdc2016", 16384, 65536, 262144, 0, scope="nar").id
    'fastcdc2016/min=16KiB,avg=64KiB,max=256KiB@nar'
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
    """The gear or buzhash table's seed (fastcdc2020: fastcdc-rs ``with_level_and_seed``; borg:
    the repository's chunk seed; ncps: kalbasit/fastcdc ``WithSeed``); 0 = unseeded."""
    params: tuple[tuple[str, int], ...] = ()
    """The peer chunkers' own parameters, in their tool's words and order (empty for
    ``fastcdc2020``, ``fastcdc2016`` and ``fixed``, whose sizes say everything). For these the
    sizes above are derived: what the tables' size columns and the analyses read."""
    scope: str = "file"
    """What is cut (one of :data:`SCOPES`); the id ends in ``@scope`` unless it is ``file``.
    A stream chunking's one "blob" per snapshot is the stream (its digest BLAKE3 of the
    stream), its chunks' offsets are offsets into it."""

    @property
    def id(self) -> str:
        """A stable, readable identifier; the ``chunker_id`` column of the tables."""
        return self._cut_id if self.scope == "file" else f"{self._cut_id}@{self.scope}"

    @property
    def is_stream(self) -> bool:
        """Whether this chunking cuts one stream per snapshot rather than each file."""
        return self.scope in STREAM_SCOPES

    @property
    def _cut_id(self) -> str:
        if self.params:
            return f"{self.name}/" + ",".join(f"{key}={format_param(key, value)}" for key, value in self.params)
        size = format_size_param
        if self.name == "fixed":
            return f"fixed/size={size(self.avg_size)}"
        params = f"min={size(self.min_size)},avg={size(self.avg_size)},max={size(self.max_size)}"
        if self.name == "fastcdc2020":
            params += f",nc={self.normalization}"
            if self.seed:
                params += f",seed={self.seed}"
        return f"{self.name}/{params}"


SIZE_PARAMS = frozenset({"min", "avg", "max", "size", "target", "hole"})
"""Parameters that are byte sizes: written in the id as 64KiB where they are whole KiB."""
HEX_PARAMS = frozenset({"pol"})
"""Parameters written in hexadecimal (restic's polynomial, as ``restic cat config`` shows it)."""


def format_size_param(n: int) -> str:
    """A size as chunker ids write it.

    >>> format_size_param(65536), format_size_param(65535), format_size_param(3 * 1024**2)
    ('64KiB', '65535', '3MiB')
    """
    return format_bytes(n).replace(".0 ", "").replace(" ", "") if n % 1024 == 0 and n else str(n)


def format_param(key: str, value: int) -> str:
    """One parameter's value as chunker ids write it.

    >>> format_param("min", 524288), format_param("pol", 0x3DA3358B4DC173), format_param("window", 4095)
    ('512KiB', '0x3da3358b4dc173', '4095')
    """
    if key in SIZE_PARAMS:
        return format_size_param(value)
    if key in HEX_PARAMS:
        return hex(value)
    return str(value)


@runtime_checkable
class Chunker(Protocol):
    """Cuts a stream of bytes into chunks (see the module docstring for the contract)."""

    spec: ChunkerSpec

    @property
    def lookahead(self) -> int:
        """Bytes past a chunk's start the chunker may look at to place its cut."""
        ...

    @property
    def single_chunk_max(self) -> int:
        """Streams up to this many bytes are one chunk whatever their bytes (no cut is looked for)."""
        ...

    def begin(self) -> None:
        """A new stream starts (its first :meth:`split` call follows)."""
        ...

    def split(self, buf: memoryview, eof: bool) -> list[int]:
        """Lengths of the chunks decided in ``buf``; with ``eof`` they sum to ``len(buf)``."""
        ...


class RestartingChunker:
    """What most chunkers share: each chunk's cut depends on its own bytes only (the hash
    restarts at every cut, so :meth:`begin` has nothing to forget), a cut is decided within
    ``max_size`` bytes of the chunk's start, and a stream up to ``min_size`` is one chunk.
    A chunker that differs overrides the property."""

    spec: ChunkerSpec

    @property
    def lookahead(self) -> int:
        return self.spec.max_size

    @property
    def single_chunk_max(self) -> int:
        return self.spec.min_size

    def begin(self) -> None:
        pass

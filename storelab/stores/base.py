"""The blob store seam: what ingest writes and rendering reads, one small Protocol per
capability (obspec's model), and the blob index format they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from storelab.castore.protobuf import bytes_field, iter_fields, varint_field
from storelab.errors import DecodeError, StoreError
from storelab.stores.backends import StoreOps

__all__ = [
    "BlobIndexes",
    "BlobStore",
    "ChunkMeta",
    "ChunkReader",
    "ChunkWriter",
    "CountedStore",
    "DirectoryClosures",
    "StoreError",
    "decode_index",
    "encode_index",
]


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """One entry of a blob index: a chunk's digest and length."""

    digest: bytes
    size: int


def encode_index(chunks: list[ChunkMeta]) -> bytes:
    """``StatBlobResponse`` bytes for a blob's chunks; empty below two chunks (snix's rule).

    >>> encode_index([ChunkMeta(bytes(32), 5)])
    b''
    >>> len(encode_index([ChunkMeta(bytes(32), 5), ChunkMeta(bytes(32), 7)]))
    76
    """
    if len(chunks) < 2:
        return b""
    return b"".join(bytes_field(2, bytes_field(1, c.digest) + varint_field(2, c.size)) for c in chunks)


def decode_index(data: bytes) -> list[ChunkMeta]:
    """Parse a ``StatBlobResponse``; raises :class:`StoreError` if malformed."""
    chunks: list[ChunkMeta] = []
    try:
        for number, value in iter_fields(data):
            if number == 3:  # bao outboard: not used here
                continue
            if number != 2 or not isinstance(value, bytes):
                raise StoreError(f"unexpected field {number} in a blob index")
            fields = dict(iter_fields(value))
            digest, size = fields.get(1, b""), fields.get(2, 0)
            if not isinstance(digest, bytes) or len(digest) != 32 or not isinstance(size, int):
                raise StoreError("malformed ChunkMeta in a blob index")
            chunks.append(ChunkMeta(digest, size))
    except DecodeError as err:
        raise StoreError(f"malformed blob index: {err}") from None
    return chunks


class ChunkWriter(Protocol):
    """Writes chunks, each once (the uploader and the blob hasher use this)."""

    def has_chunk(self, digest: bytes) -> bool:
        """Whether the chunk is stored (one HEAD; a request failure raises :class:`StoreError`)."""
        ...

    def put_chunk(self, digest: bytes, data: bytes | memoryview, compressed: bytes | None = None) -> int:
        """Store a chunk under its BLAKE3 ``digest`` unless it is there already; returns its
        stored (compressed) size. ``compressed``: the bytes as the store keeps them, when the
        caller compressed them already (:meth:`compress`), so they are not compressed twice."""
        ...

    def compress(self, data: bytes | memoryview) -> bytes:
        """``data`` as this store keeps a chunk (snix: one unsized zstd frame, level 3)."""
        ...


class ChunkReader(Protocol):
    """Reads chunks back, checked."""

    def read_chunk(self, digest: bytes, size: int) -> bytes:
        """A chunk's bytes, checked against its digest and expected size; a missing, corrupt
        or oversized chunk raises :class:`StoreError`."""
        ...


class BlobIndexes(Protocol):
    """The blob → chunks map."""

    def has_blob(self, digest: bytes) -> bool:
        """Whether the blob's index is stored (a blob of one chunk: whether that chunk is)."""
        ...

    def put_index(self, blob_digest: bytes, chunks: Sequence[ChunkMeta]) -> None:
        """Store a blob's index; called only once every chunk of the blob is stored, so an
        index never names a missing chunk. Fewer than two chunks: nothing (snix's rule)."""
        ...

    def chunks(self, blob_digest: bytes, blob_size: int) -> list[ChunkMeta]:
        """The chunks a blob is made of (below two: one chunk, the blob itself); the empty
        blob has none. A malformed index, or one whose sizes do not add up to ``blob_size``,
        raises :class:`StoreError`."""
        ...


class DirectoryClosures(Protocol):
    """Root directories' closures, as snix's object store keeps them."""

    def put_directories(self, root_digest: bytes, encoded: Sequence[bytes]) -> None:
        """Store a root directory's closure: encoded ``Directory`` messages from the root to
        the leaves, each once."""
        ...

    def get_directories(self, root_digest: bytes) -> list[bytes]:
        """The closure stored under ``root_digest``, root first; missing or malformed raises
        :class:`StoreError`."""
        ...


class CountedStore(Protocol):
    """Where a store is, whether another process can reach it, and what it was asked."""

    url: str

    @property
    def shareable(self) -> bool:
        """True when another process can open the same objects from :attr:`url` (not ``memory://``)."""
        ...

    @property
    def ops(self) -> StoreOps:
        """Requests received so far (PUT, GET, HEAD, LIST, retries) and their bytes."""
        ...


@runtime_checkable
class BlobStore(ChunkWriter, ChunkReader, BlobIndexes, DirectoryClosures, CountedStore, Protocol):
    """Everything a snix-layout blob store offers: what ingest writes and rendering reads.
    Code that needs one capability takes the smaller Protocol."""

"""The blob store seam: what ingest writes and rendering reads."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from storelab.castore.protobuf import DecodeError, bytes_field, iter_fields, varint_field
from storelab.stores.backends import StoreError

__all__ = ["BlobStore", "ChunkMeta", "StoreError", "encode_index", "decode_index", "open_store"]


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


@runtime_checkable
class BlobStore(Protocol):
    """Blobs, their chunks and directory closures, addressed by BLAKE3 digest."""

    url: str

    def has_chunk(self, digest: bytes) -> bool: ...

    def put_chunk(self, digest: bytes, data: bytes | memoryview, compressed: bytes | None = None) -> int:
        """Store a chunk (if absent); returns its stored (compressed) size."""
        ...

    def read_chunk(self, digest: bytes, size: int) -> bytes:
        """A chunk's bytes, checked against its digest and expected size."""
        ...

    def has_blob(self, digest: bytes) -> bool: ...

    def put_index(self, blob_digest: bytes, chunks: Sequence[ChunkMeta]) -> None:
        """Store a blob's index; called only once every chunk of the blob is stored."""
        ...

    def chunks(self, blob_digest: bytes, blob_size: int) -> list[ChunkMeta]:
        """The chunks a blob is made of (one chunk, the blob itself, below two)."""
        ...

    def put_directories(self, root_digest: bytes, encoded: Sequence[bytes]) -> None:
        """Store a root directory's closure, encoded messages from the root to the leaves."""
        ...

    def get_directories(self, root_digest: bytes) -> list[bytes]: ...


def open_store(url: str, create: bool = True) -> BlobStore:
    """A store from a URL: ``file:///path`` (or a plain path), ``memory://``, ``s3://bucket/prefix``;
    without ``create`` a local store must exist already (for reading).

    >>> open_store("memory://").url
    'memory://'
    """
    from storelab.stores.snix import SnixStore

    return SnixStore.open(url, create)


def store_target(url: str) -> str | BlobStore:
    """What an ingest is told to write to, checked now (a bad URL fails before any work): a
    store other processes can open is passed on by its URL (worker processes open their own);
    a ``memory://`` store, which lives in this process only, as the opened object.

    >>> store_target("memory://").url, store_target("file:///tmp/storelab-doctest-store")
    ('memory://', 'file:///tmp/storelab-doctest-store')
    """
    opened = open_store(url)
    return url if opened.shareable else opened

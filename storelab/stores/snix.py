"""Blobs, chunks and directories laid out exactly as snix's object-store backends lay them out.

- ``blobs/b3/<first 4 hex>/<hex>``: the blob index, ``StatBlobResponse{repeated ChunkMeta
  chunks = 2}``; empty (0 bytes) for a blob of fewer than two chunks;
- ``chunks/b3/<first 4 hex>/<hex>``: a chunk, zstd level 3 (a frame without a content-size
  header, as snix's streaming encoder writes it); a blob of one chunk is stored as that chunk
  under the blob's own digest; the empty blob has no chunk object;
- ``dirs/b3/<first 4 hex>/<hex of the root>``: a root directory's whole closure, zstd, as
  length-delimited (u32 big-endian) ``Directory`` messages from the root to the leaves.

Existence is checked before every write; reads check every digest; decompression is bounded.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence

import blake3
import zstandard

from storelab.stores.backends import (
    CountingBackend,
    ObjectBackend,
    StoreError,
    StoreOps,
    open_backend,
)
from storelab.stores.base import ChunkMeta, decode_index, encode_index

__all__ = ["MAX_DIRECTORY_CLOSURE", "SnixStore", "ZSTD_LEVEL", "closure_bound", "object_key", "open_store", "store_target"]

ZSTD_LEVEL = 3
MAX_DIRECTORY_CLOSURE = 1 << 30
"""A directory closure object never decompresses past this many bytes (a bomb is refused)."""
CLOSURE_EXPANSION = 1000
"""Directory messages are mostly names and 32-byte digests, which zstd barely shrinks: a
closure that expands more than this many times its stored size is a bomb, not a tree."""
_CLOSURE_FLOOR = 16 * 1024 * 1024


def closure_bound(stored: int) -> int:
    """How far a directory closure stored in ``stored`` bytes may expand.

    >>> closure_bound(32 * 1024) // 2**20, closure_bound(10**6) // 2**20, closure_bound(10**9) == MAX_DIRECTORY_CLOSURE
    (31, 953, True)
    """
    return min(MAX_DIRECTORY_CLOSURE, max(_CLOSURE_FLOOR, CLOSURE_EXPANSION * stored))
_MAX_FRAME = 1024 * 1024 * 1000  # snix's limit on one directory message


def object_key(kind: str, digest: bytes) -> str:
    """Where snix keeps an object.

    >>> object_key("chunks", bytes.fromhex("ab12" + "00" * 30))
    'chunks/b3/ab12/ab12000000000000000000000000000000000000000000000000000000000000'
    """
    text = digest.hex()
    return f"{kind}/b3/{text[:4]}/{text}"


class SnixStore:
    """A castore (blobs, chunks, directory closures) over any :class:`ObjectBackend`.

    >>> store = SnixStore.open("memory://")
    >>> digest = blake3.blake3(b"hi").digest()
    >>> store.put_chunk(digest, b"hi") > 0, store.read_chunk(digest, 2), store.has_chunk(digest)
    (True, b'hi', True)
    """

    def __init__(self, backend: ObjectBackend) -> None:
        self.backend = backend
        self.url = backend.url
        self._local = threading.local()  # zstd contexts must not be shared between threads

    @classmethod
    def open(cls, url: str, create: bool = True) -> SnixStore:
        return cls(open_backend(url, create))

    def __getstate__(self) -> dict:
        if not self.backend.shareable:
            raise StoreError(f"{self.url}: this store cannot be shared with another process")
        return {"url": self.url}

    def __setstate__(self, state: dict) -> None:
        self.__init__(open_backend(state["url"]))  # type: ignore[misc]

    @property
    def shareable(self) -> bool:
        return self.backend.shareable

    @property
    def ops(self) -> StoreOps:
        """Requests made so far (when the backend counts them)."""
        return self.backend.ops if isinstance(self.backend, CountingBackend) else StoreOps()

    def _compressor(self) -> zstandard.ZstdCompressor:
        zstd = getattr(self._local, "zstd", None)
        if zstd is None:
            zstd = self._local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        return zstd

    def compress(self, data: bytes | memoryview) -> bytes:
        """A chunk as the store holds it (:func:`zstd_stream`)."""
        return zstd_stream(self._compressor(), data)

    # chunks -------------------------------------------------------------------------------

    def has_chunk(self, digest: bytes) -> bool:
        return self.backend.head(object_key("chunks", digest)) is not None

    def put_chunk(self, digest: bytes, data: bytes | memoryview, compressed: bytes | None = None) -> int:
        """Store a chunk unless it is there; returns its stored (compressed) size.

        ``compressed`` saves compressing again when the caller already did (at level 3).
        """
        key = object_key("chunks", digest)
        size = self.backend.head(key)
        if size is not None:
            return size
        payload = compressed if compressed is not None else self.compress(data)
        self.backend.put(key, payload)
        return len(payload)

    def read_chunk(self, digest: bytes, size: int) -> bytes:
        """A chunk's bytes, checked against its digest and expected size."""
        key = object_key("chunks", digest)
        # bounded: a chunk never expands past its recorded size (a zstd bomb is refused)
        data = decompress_bounded(self.backend.get(key), size, f"{self.url}: chunk {key}")
        if len(data) != size or blake3.blake3(data).digest() != digest:
            raise StoreError(f"{self.url}: chunk {key} does not match its digest")
        return data

    # blobs --------------------------------------------------------------------------------

    def has_blob(self, digest: bytes) -> bool:
        return self.backend.head(object_key("blobs", digest)) is not None

    def put_index(self, blob_digest: bytes, chunks: Sequence[ChunkMeta]) -> None:
        """Store a blob's index; call only once every chunk of the blob is stored."""
        key = object_key("blobs", blob_digest)
        if self.backend.head(key) is None:
            self.backend.put(key, encode_index(list(chunks)))

    def chunks(self, blob_digest: bytes, blob_size: int) -> list[ChunkMeta]:
        """The chunks a blob is made of (one chunk, the blob itself, below two)."""
        key = object_key("blobs", blob_digest)
        if self.backend.head(key) == 0:  # most blobs are one chunk: their index is empty
            return [ChunkMeta(blob_digest, blob_size)] if blob_size else []
        chunks = decode_index(self.backend.get(key))
        if not chunks:
            return [ChunkMeta(blob_digest, blob_size)] if blob_size else []
        if sum(c.size for c in chunks) != blob_size:
            raise StoreError(f"{self.url}: blob index {key} does not add up to the blob's {blob_size} bytes")
        return chunks

    # directories --------------------------------------------------------------------------

    def put_directories(self, root_digest: bytes, encoded: Sequence[bytes]) -> None:
        """Store a root directory's closure: ``encoded`` from the root to the leaves."""
        key = object_key("dirs", root_digest)
        if self.backend.head(key) is not None:
            return
        frames = b"".join(struct.pack(">I", len(e)) + e for e in encoded)
        self.backend.put(key, zstd_stream(self._compressor(), frames))

    def has_directories(self, root_digest: bytes) -> bool:
        return self.backend.head(object_key("dirs", root_digest)) is not None

    def get_directories(self, root_digest: bytes) -> list[bytes]:
        """The closure of ``root_digest``, root first; the root's digest is checked."""
        key = object_key("dirs", root_digest)
        raw = self.backend.get(key)
        frames = decompress_bounded(raw, closure_bound(len(raw)), f"{self.url}: {key}")
        encoded = split_frames(frames, f"{self.url}: {key}")
        if not encoded or blake3.blake3(encoded[0]).digest() != root_digest:
            raise StoreError(f"{self.url}: {key} does not start with its root directory")
        return encoded


def zstd_stream(compressor: zstandard.ZstdCompressor, data: bytes | memoryview) -> bytes:
    """``data`` compressed as snix compresses chunks and directory closures: through a
    streaming encoder that is never told the size (zstd-rs ``encode_all``, async-compression's
    ``ZstdEncoder``), so the frame has no content size and libzstd picks the parameters of an
    unknown-size stream; no checksum. The bytes equal ``zstd -3 --no-check -c < data`` where
    the zstd command links the same libzstd (how the input is fed does not change them). A
    one-shot ``compress()`` pledges the size instead: other parameters, other bytes.

    >>> import zstandard
    >>> frame = zstd_stream(zstandard.ZstdCompressor(level=3), b"x" * 1000)
    >>> frame[:6].hex()  # magic, frame header descriptor (no content size), window descriptor
    '28b52ffd0058'
    """
    stream = compressor.compressobj()
    return stream.compress(data) + stream.flush()


def decompress_bounded(data: bytes, limit: int, name: str) -> bytes:
    """Decompress a zstd stream, refusing to produce more than ``limit`` bytes."""
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    try:
        out = reader.read(limit + 1)
        while len(out) <= limit:
            more = reader.read(limit + 1 - len(out))
            if not more:
                break
            out += more
    except zstandard.ZstdError as err:
        raise StoreError(f"{name} is corrupt: {err}") from None
    if len(out) > limit:
        raise StoreError(f"{name} is corrupt: it expands past {limit} bytes (refused)")
    return out


def split_frames(data: bytes, name: str) -> list[bytes]:
    """Length-delimited frames (u32 big-endian length, then the message)."""
    frames: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise StoreError(f"{name}: truncated frame header at byte {offset}")
        (length,) = struct.unpack_from(">I", data, offset)
        if length > _MAX_FRAME or offset + 4 + length > len(data):
            raise StoreError(f"{name}: bad frame length {length} at byte {offset}")
        frames.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return frames


def open_store(url: str, create: bool = True) -> SnixStore:
    """A store from a URL: ``file:///path`` (or a plain path), ``memory://``, ``s3://bucket/prefix``;
    without ``create`` a local store must exist already (for reading).

    >>> open_store("memory://").url
    'memory://'
    """
    return SnixStore.open(url, create)


def store_target(url: str) -> str | SnixStore:
    """What an ingest is told to write to, checked now (a bad URL fails before any work): a
    store other processes can open is passed on by its URL (worker processes open their own);
    a ``memory://`` store, which lives in this process only, as the opened object.

    >>> store_target("memory://").url, store_target("file:///tmp/storelab-doctest-store")
    ('memory://', 'file:///tmp/storelab-doctest-store')
    """
    opened = open_store(url)
    return url if opened.shareable else opened

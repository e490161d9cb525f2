"""A blob store in a local folder, laid out exactly as snix's object-store backend lays it out."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import blake3
import zstandard

from storelab.stores.base import ChunkMeta, StoreError, decode_index, encode_index

__all__ = ["LocalBlobStore"]

ZSTD_LEVEL = 3


class LocalBlobStore:
    """``file://`` store. Writes go to a temporary name and are renamed into place, so a
    reader never sees half an object; existing objects are never rewritten.

    >>> import tempfile
    >>> store = LocalBlobStore(tempfile.mkdtemp())
    >>> digest = blake3.blake3(b"hi").digest()
    >>> store.put_chunk(digest, b"hi") > 0, store.read_chunk(digest, 2)
    (True, b'hi')
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._base = os.fspath(self.root)
        self._zstd: zstandard.ZstdCompressor | None = None
        self._local = threading.local()  # zstd contexts must not be shared between threads

    def __getstate__(self) -> dict:
        return {"root": self.root}  # compressor contexts stay per process

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])  # type: ignore[misc]

    def _path(self, kind: str, digest: bytes) -> Path:
        return Path(self._file(kind, digest))

    def _file(self, kind: str, digest: bytes) -> str:
        # plain strings: this runs for every object, and pathlib costs more than the I/O here
        text = digest.hex()
        return f"{self._base}/{kind}/b3/{text[:4]}/{text}"

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as err:
            raise StoreError(f"cannot write {path}: {err.strerror or err}") from None

    def has_chunk(self, digest: bytes) -> bool:
        return os.path.exists(self._file("chunks", digest))

    def put_chunk(self, digest: bytes, data: bytes | memoryview) -> int:
        path = self._path("chunks", digest)
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            pass
        if self._zstd is None:
            self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=False)
        compressed = self._zstd.compress(data)
        self._write(path, compressed)
        return len(compressed)

    def put_index(self, blob_digest: bytes, chunks: list[ChunkMeta]) -> None:
        path = self._path("blobs", blob_digest)
        if not path.exists():
            self._write(path, encode_index(chunks))

    def chunks(self, blob_digest: bytes, blob_size: int) -> list[ChunkMeta]:
        path = self._file("blobs", blob_digest)
        try:
            # most blobs are one chunk, with an empty index: a stat says so without opening it
            data = b"" if os.stat(path).st_size == 0 else _read(path)
        except FileNotFoundError:
            raise StoreError(f"blob {blob_digest.hex()} is not in the store {self.root}") from None
        if not data:
            return [ChunkMeta(blob_digest, blob_size)] if blob_size else []
        chunks = decode_index(data)
        if sum(c.size for c in chunks) != blob_size:
            raise StoreError(f"blob index {path} does not add up to the blob's {blob_size} bytes")
        return chunks

    def read_chunk(self, digest: bytes, size: int) -> bytes:
        path = self._file("chunks", digest)
        try:
            compressed = _read(path)
        except FileNotFoundError:
            raise StoreError(f"chunk {digest.hex()} is not in the store {self.root}") from None
        try:
            # bounded: a chunk never expands past its recorded size (a zstd bomb is refused)
            unzstd = getattr(self._local, "unzstd", None)
            if unzstd is None:
                unzstd = self._local.unzstd = zstandard.ZstdDecompressor()
            data = unzstd.decompress(compressed, max_output_size=size)
        except zstandard.ZstdError as err:
            raise StoreError(f"chunk {path} is corrupt: {err}") from None
        if len(data) != size or blake3.blake3(data).digest() != digest:
            raise StoreError(f"chunk {path} does not match its digest")
        return data


def _read(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read()

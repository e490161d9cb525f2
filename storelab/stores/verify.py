"""``storelab store verify``: re-read every object of a store and check it.

Every chunk is decompressed (bounded: a chunk a blob index names to its recorded size, any
other to the largest chunk the indexes name or ``max_chunk_size``) and its BLAKE3 digest
compared with its key; every
blob index is parsed and each chunk it names must exist with the recorded size; a blob of one
chunk must have that chunk under its own digest; every directory closure must start with its
root, hold only directories reachable from it, and name only blobs the store has (a closure
may expand to at most :func:`~storelab.stores.snix.closure_bound` of its stored size). A store
that holds no object at all is no store (a mistyped prefix): :class:`StoreError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import blake3
import zstandard

from storelab.castore import EMPTY_BLOB_DIGEST, Directory, InvalidNodeError
from storelab.stores.backends import StoreError
from storelab.stores.base import ChunkMeta, decode_index
from storelab.stores.snix import SnixStore, closure_bound, decompress_bounded, object_key, split_frames

__all__ = ["Problem", "VerifyReport", "verify_store"]

DEFAULT_MAX_CHUNK = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad or missing object."""

    key: str
    kind: str
    """``missing``, ``corrupt`` or ``malformed``."""
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """What a verification found."""

    chunks: int = 0
    chunk_bytes: int = 0
    blobs: int = 0
    directory_closures: int = 0
    directories: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _chunk_digests(store: SnixStore, key: str, limit: int) -> tuple[bytes, int]:
    """Digest and length of a stored chunk, decompressed as a stream (bounded memory)."""
    reader = zstandard.ZstdDecompressor().stream_reader(store.backend.get(key))
    hasher = blake3.blake3()
    total = 0
    try:
        while piece := reader.read(1 << 20):
            total += len(piece)
            if total > limit:
                raise StoreError(f"expands past {limit} bytes; refused")
            hasher.update(piece)
    except zstandard.ZstdError as err:
        raise StoreError(f"not a zstd frame: {err}") from None
    return hasher.digest(), total


def verify_store(
    store: SnixStore, max_chunk_size: int = DEFAULT_MAX_CHUNK, on_object: Callable[[], None] | None = None
) -> VerifyReport:
    """Check every object of ``store``; problems are collected, not raised.

    >>> store = SnixStore.open("memory://")
    >>> digest = blake3.blake3(b"hi").digest()
    >>> _ = store.put_chunk(digest, b"hi"); store.put_index(digest, [])
    >>> report = verify_store(store)
    >>> report.ok, report.chunks, report.blobs
    (True, 1, 1)
    """
    report = VerifyReport()
    tick = on_object or (lambda: None)
    indexes: dict[str, list[ChunkMeta] | None] = {}  # blob key → its chunks (None: malformed)
    for key, _size in store.backend.list("blobs/b3/"):
        tick()
        if not _well_named(key, report):
            continue
        try:
            indexes[key] = decode_index(store.backend.get(key))
        except StoreError as err:
            indexes[key] = None
            report.problems.append(Problem(key, "malformed", str(err)))
    # each chunk an index names may expand to exactly its recorded size; any other to the
    # largest chunk the indexes name (the store's chunker's), or max_chunk_size if larger
    expected = {object_key("chunks", c.digest): c.size for chunks in indexes.values() for c in chunks or ()}
    bound = max(max_chunk_size, max(expected.values(), default=0))
    chunk_sizes: dict[str, int] = {}
    for key, _size in store.backend.list("chunks/b3/"):
        tick()
        report.chunks += 1
        if not _well_named(key, report):
            continue
        try:
            digest, length = _chunk_digests(store, key, expected.get(key, bound))
        except StoreError as err:
            report.problems.append(Problem(key, "corrupt", str(err)))
            continue
        if digest.hex() != key.rsplit("/", 1)[-1]:
            report.problems.append(Problem(key, "corrupt", f"holds bytes whose BLAKE3 is {digest.hex()}"))
            continue
        chunk_sizes[key] = length
        report.chunk_bytes += length
    blobs: set[str] = set()
    for key, chunks in indexes.items():
        report.blobs += 1
        name = key.rsplit("/", 1)[-1]
        blobs.add(name)
        if chunks is not None:
            _check_index(store, key, name, chunks, chunk_sizes, report)
    for key, _size in store.backend.list("dirs/b3/"):
        tick()
        report.directory_closures += 1
        if not _well_named(key, report):
            continue
        _check_closure(store, key, blobs, report)
    if not (report.chunks or report.blobs or report.directory_closures):
        raise StoreError(f"{store.url}: no such store (it holds no chunks, blobs or directories)")
    return report


def _well_named(key: str, report: VerifyReport) -> bool:
    """Whether ``key`` is ``<kind>/b3/<4 hex>/<64 hex>``, as snix names objects; else a problem."""
    parts = key.split("/")
    name = parts[-1]
    ok = len(parts) == 4 and len(name) == 64 and parts[2] == name[:4] and all(c in "0123456789abcdef" for c in name)
    if not ok:
        report.problems.append(Problem(key, "malformed", "not named as snix names objects (<kind>/b3/<4 hex>/<BLAKE3 in hex>)"))
    return ok


def _check_index(store: SnixStore, key: str, name: str, chunks: list[ChunkMeta], chunk_sizes: dict[str, int], report: VerifyReport) -> None:
    if not chunks:
        # a blob of at most one chunk: the chunk lives under the blob's own digest
        if bytes.fromhex(name) != EMPTY_BLOB_DIGEST and f"chunks/b3/{name[:4]}/{name}" not in chunk_sizes:
            report.problems.append(Problem(key, "missing", "its one chunk (under the blob's digest) is missing or corrupt"))
        return
    whole = blake3.blake3()
    for chunk in chunks:
        hexdigest = chunk.digest.hex()
        chunk_key = f"chunks/b3/{hexdigest[:4]}/{hexdigest}"
        if chunk_key not in chunk_sizes:
            report.problems.append(Problem(key, "missing", f"chunk {hexdigest} is missing or corrupt"))
            return
        if chunk_sizes[chunk_key] != chunk.size:
            report.problems.append(Problem(key, "corrupt", f"chunk {hexdigest} is {chunk_sizes[chunk_key]} bytes, the index says {chunk.size}"))
            return
    # the blob's own digest over its chunks: the index must describe exactly that blob
    for chunk in chunks:
        whole.update(store.read_chunk(chunk.digest, chunk.size))
    if whole.hexdigest() != name:
        report.problems.append(Problem(key, "corrupt", "its chunks do not make up the blob"))


def _check_closure(store: SnixStore, key: str, blobs: set[str], report: VerifyReport) -> None:
    name = key.rsplit("/", 1)[-1]
    try:
        raw = store.backend.get(key)
        frames = split_frames(decompress_bounded(raw, closure_bound(len(raw)), key), key)
    except StoreError as err:
        report.problems.append(Problem(key, "corrupt", str(err)))
        return
    allowed = {bytes.fromhex(name)}
    for position, encoded in enumerate(frames):
        digest = blake3.blake3(encoded).digest()
        if digest not in allowed:
            what = "does not start with its root" if position == 0 else f"directory {position} is not reachable from the ones before it"
            report.problems.append(Problem(key, "corrupt", what))
            return
        try:
            directory = Directory.decode(encoded)
        except InvalidNodeError as err:
            report.problems.append(Problem(key, "malformed", f"directory {position}: {err}"))
            return
        report.directories += 1
        allowed.update(d.digest for d in directory.directories)
        for file in directory.files:
            if file.digest.hex() not in blobs:
                report.problems.append(Problem(key, "missing", f"blob {file.digest.hex()} (file {file.name!r}) is not in the store"))
    if not frames:
        report.problems.append(Problem(key, "corrupt", "holds no directories"))

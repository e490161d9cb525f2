"""Blob results in columns: how workers hand results back to the parent.

Per-file Python objects would make the parent process the bottleneck on trees of many
small files; a batch carries a few flat buffers instead, cheap to pickle and to turn into
Arrow arrays (:mod:`storelab.ingest.columns`). Plain Python only: worker processes import
this and should boot fast.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from storelab.castore.protobuf import encode_varint

__all__ = ["BlobBatch", "BlobBatchBuilder", "BlobInfo", "index_object_size", "merge_batches"]

@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What one pass over a blob's bytes found."""

    digest: bytes
    """BLAKE3 of the whole blob."""
    size: int
    chunk_digests: bytes
    """The chunks' BLAKE3 digests, concatenated (32 bytes each, in order)."""
    chunk_sizes: array
    """Chunk lengths (``array('Q')``), in order; they sum to ``size``."""
    chunk_compressed: array | None
    """zstd-compressed length of each chunk (``array('Q')``), or None when not measured."""

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_sizes)

    def chunk_digest(self, index: int) -> bytes:
        return self.chunk_digests[32 * index : 32 * index + 32]



NOT_MEASURED = -1


def index_object_size(chunk_sizes: array | list[int]) -> int:
    """Bytes of the blob index object snix's object store writes for a blob with these chunks.

    ``StatBlobResponse{repeated ChunkMeta chunks = 2}``, ``ChunkMeta{bytes digest = 1;
    uint64 size = 2}``; a blob of fewer than two chunks gets an empty (0-byte) index.

    >>> index_object_size([1000]), index_object_size([65536, 65536])
    (0, 80)
    """
    if len(chunk_sizes) < 2:
        return 0
    total = 0
    for size in chunk_sizes:
        meta = 2 + 32 + (1 + len(encode_varint(size)) if size else 0)
        total += 1 + len(encode_varint(meta)) + meta
    return total


@dataclass(frozen=True, slots=True)
class BlobBatch:
    """Blobs of many files, as flat columns (one entry per file, chunks concatenated)."""

    indices: array
    """``array('q')``: the caller's index of each file."""
    digests: bytes
    """32 bytes per file."""
    sizes: array
    """``array('Q')``: bytes per file."""
    chunk_counts: array
    """``array('I')``: chunks per file."""
    compressed: array
    """``array('q')``: compressed bytes per file (sum over its chunks), -1 if not measured."""
    index_sizes: array
    """``array('I')``: blob index object bytes per file."""
    chunk_digests: bytes
    """32 bytes per chunk, the chunks of file 0 first."""
    chunk_sizes: array
    """``array('Q')``."""
    chunk_compressed: array
    """``array('q')``: -1 if not measured."""
    errors: tuple[tuple[int, str], ...] = ()
    """``(index, reason)`` for files that could not be read."""
    store_ops: tuple[int, ...] = ()
    """Store requests a worker process made for this batch (:class:`StoreOps` as a tuple)."""

    def __len__(self) -> int:
        return len(self.indices)

    def digest(self, i: int) -> bytes:
        return self.digests[32 * i : 32 * i + 32]

def _ones(count: int) -> array:
    return array("I", [1]) * count


def _zeros(count: int) -> array:
    return array("I", [0]) * count


def _not_measured(count: int) -> array:
    return array("q", [NOT_MEASURED]) * count


class BlobBatchBuilder:
    """Collects :class:`BlobInfo` values into a :class:`BlobBatch`."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._indices = array("q")
        self._digests = bytearray()
        self._sizes = array("Q")
        self._counts = array("I")
        self._compressed = array("q")
        self._index_sizes = array("I")
        self._chunk_digests = bytearray()
        self._chunk_sizes = array("Q")
        self._chunk_compressed = array("q")
        self._errors: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._indices) + len(self._errors)

    def add(self, index: int, info: BlobInfo) -> None:
        count = len(info.chunk_sizes)
        measured = info.chunk_compressed
        if count == 0 or (count == 1 and info.chunk_digests == info.digest):  # most files: the blob is its one chunk (or has none)
            self.add_single(index, info.digest, info.size, sum(measured) if measured is not None else NOT_MEASURED)
            return
        self._indices.append(index)
        self._digests += info.digest
        self._sizes.append(info.size)
        self._counts.append(count)
        self._compressed.append(sum(measured) if measured is not None else NOT_MEASURED)
        self._index_sizes.append(index_object_size(info.chunk_sizes))
        self._chunk_digests += info.chunk_digests
        self._chunk_sizes.extend(info.chunk_sizes)
        if measured is not None:
            self._chunk_compressed.extend(measured.tolist())
        else:
            self._chunk_compressed.extend([NOT_MEASURED] * count)

    def add_single(self, index: int, digest: bytes, size: int, compressed: int) -> None:
        """A blob of one chunk (or none, when empty): the chunk is the blob itself.
        ``compressed`` is its zstd size (0 for an empty blob), or -1 when not measured."""
        self._indices.append(index)
        self._digests += digest
        self._sizes.append(size)
        if size:
            self._counts.append(1)
            self._chunk_digests += digest
            self._chunk_sizes.append(size)
            self._chunk_compressed.append(compressed)
        else:
            self._counts.append(0)
        self._compressed.append(compressed)
        self._index_sizes.append(0)

    def add_singles(self, indices: Sequence[int], digests: bytes, sizes: array) -> None:
        """Many blobs of one chunk each (or none, when empty), their sizes not measured: as
        :meth:`add_single` for each, in one step.

        >>> builder = BlobBatchBuilder()
        >>> builder.add_singles([4, 7], bytes(32) + bytes([1]) * 32, array("Q", [5, 0]))
        >>> batch = builder.build()
        >>> list(batch.chunk_counts), list(batch.chunk_sizes), len(batch.chunk_digests)
        ([1, 0], [5], 32)
        """
        count = len(indices)
        if 0 in sizes:  # an empty blob has no chunk: one by one
            for k, (index, size) in enumerate(zip(indices, sizes)):
                self.add_single(index, digests[32 * k : 32 * k + 32], size, NOT_MEASURED)
            return
        self._indices.extend(indices)
        self._digests += digests
        self._sizes.extend(sizes)
        self._counts.extend(_ones(count))
        self._compressed.extend(_not_measured(count))
        self._index_sizes.extend(_zeros(count))
        self._chunk_digests += digests
        self._chunk_sizes.extend(sizes)
        self._chunk_compressed.extend(_not_measured(count))

    def add_batch(self, batch: BlobBatch) -> None:
        """Every file of ``batch``, after those added so far (its errors and store requests
        are not taken)."""
        self._indices.extend(batch.indices)
        self._digests += batch.digests
        self._sizes.extend(batch.sizes)
        self._counts.extend(batch.chunk_counts)
        self._compressed.extend(batch.compressed)
        self._index_sizes.extend(batch.index_sizes)
        self._chunk_digests += batch.chunk_digests
        self._chunk_sizes.extend(batch.chunk_sizes)
        self._chunk_compressed.extend(batch.chunk_compressed)

    def add_error(self, index: int, reason: str) -> None:
        self._errors.append((index, reason))

    def build(self, store_ops: tuple[int, ...] = ()) -> BlobBatch:
        batch = BlobBatch(
            self._indices,
            bytes(self._digests),
            self._sizes,
            self._counts,
            self._compressed,
            self._index_sizes,
            bytes(self._chunk_digests),
            self._chunk_sizes,
            self._chunk_compressed,
            tuple(self._errors),
            store_ops,
        )
        self.clear()
        return batch


def merge_batches(batches: Sequence[BlobBatch]) -> BlobBatch:
    """Several batches of one chunking as one (their files in order; errors and store
    requests dropped: the caller has taken them already).

    >>> one, two = BlobBatchBuilder(), BlobBatchBuilder()
    >>> one.add_single(0, b"a" * 32, 1, -1); two.add_single(5, b"b" * 32, 2, -1)
    >>> merged = merge_batches([one.build(), two.build()])
    >>> list(merged.indices), list(merged.sizes), len(merged.chunk_digests)
    ([0, 5], [1, 2], 64)
    """
    if len(batches) == 1:
        return batches[0]
    merged = BlobBatchBuilder()
    for batch in batches:
        merged.add_batch(batch)
    return merged.build()

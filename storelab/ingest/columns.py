"""A :class:`BlobBatch` as Arrow columns of the ``blobs`` and ``chunks`` tables (parent side)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from storelab.ingest.batch import BlobBatch
from storelab.tables.arrow import column

__all__ = ["blob_columns", "chunk_columns", "file_node_columns"]


def blob_columns(batch: BlobBatch, keep: np.ndarray) -> dict[str, pa.Array]:
    """Arrow columns of the ``blobs`` table for the files where ``keep`` is true."""
    return {
        "digest": _digests(batch.digests, keep),
        "size": _numbers(np.frombuffer(batch.sizes, dtype=np.uint64)[keep], pa.uint64()),
        "chunk_count": _numbers(np.frombuffer(batch.chunk_counts, dtype=np.uint32)[keep], pa.uint32()),
        "compressed_size": _measured(np.frombuffer(batch.compressed, dtype=np.int64)[keep], pa.uint64()),
        "index_size": _numbers(np.frombuffer(batch.index_sizes, dtype=np.uint32)[keep], pa.uint32()),
    }


def chunk_columns(batch: BlobBatch, keep: np.ndarray) -> dict[str, pa.Array]:
    """Arrow columns of the ``chunks`` table for the chunks of the kept files."""
    counts = np.frombuffer(batch.chunk_counts, dtype=np.uint32).astype(np.int64)
    sizes = np.frombuffer(batch.chunk_sizes, dtype=np.uint64)
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts  # position of each file's first chunk
    position = np.arange(len(sizes)) - first[owner]
    ends = np.cumsum(sizes)
    offsets = ends - sizes - np.concatenate(([0], ends))[first][owner]
    chunk_keep = keep[owner]
    return {
        "blob_digest": _digests(batch.digests, owner[chunk_keep]),
        "index": _numbers(position[chunk_keep], pa.uint32()),
        "offset": _numbers(offsets[chunk_keep], pa.uint64()),
        "size": _numbers(sizes[chunk_keep], pa.uint32()),
        "digest": _digests(batch.chunk_digests, chunk_keep),
        "compressed_size": _measured(np.frombuffer(batch.chunk_compressed, dtype=np.int64)[chunk_keep], pa.uint32()),
    }


def file_node_columns(paths: list[bytes], sizes: Sequence[int], executables: list[bool], digests: bytes) -> dict[str, pa.Array]:
    """Arrow columns of the ``nodes`` table for files: the i-th of ``paths`` has size
    ``sizes[i]`` and the 32-byte digest at ``digests[32 * i:]``."""
    n = len(paths)
    sizes = sizes if isinstance(sizes, array) and sizes.typecode == "Q" else array("Q", sizes)
    return {
        "path": column(paths, pa.binary()),
        "size": pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(sizes)]),
        "executable": column(executables, pa.bool_()),
        "digest": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(digests[: 32 * n])]),
    }


# Arrow arrays straight from numpy buffers: pa.array(ndarray) would import pandas (0.3 s).
_NUMPY_TYPES = {pa.uint32(): np.uint32, pa.uint64(): np.uint64}


def _numbers(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[type_])
    return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])


def _measured(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """Sizes where -1 means "not measured" (null)."""
    valid = values >= 0
    data = np.ascontiguousarray(np.where(valid, values, 0), dtype=_NUMPY_TYPES[type_])
    if valid.all():
        return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(type_, len(data), [bitmap, pa.py_buffer(data)], null_count=int((~valid).sum()))


def _digests(buffer: bytes, select: np.ndarray) -> pa.Array:
    """32-byte digests picked by a mask or index array, as one Arrow buffer (no per-row objects)."""
    rows = np.frombuffer(buffer, dtype=np.uint8).reshape(-1, 32)[select]
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(rows), [None, pa.py_buffer(rows.tobytes())])

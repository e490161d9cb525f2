"""Every table's Parquet schema, in one place. The README documents each column.

Digests are ``fixed_size_binary(32)``; paths, names and symlink targets are ``binary``
because file names need not be UTF-8.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "SCHEMAS", "TABLES", "DIGEST", "NODE_KINDS"]

SCHEMA_VERSION = 3
"""Bumped whenever a column is added, removed or changes meaning. Version 3 made chunkings a
dimension of a snapshot (the ``chunkings`` table, ``blobs.chunker_id``; the chunker columns left
``snapshots``), added the compressed NAR sizes, and let one Parquet file (a *part*) hold many
snapshots. Datasets of versions 1 and 2 are refused with a message: ingest their sources again."""
READABLE_VERSIONS = (3,)

DIGEST = pa.binary(32)
NODE_KINDS = ("file", "directory", "symlink")

SKIPPED = pa.struct([("path", pa.binary()), ("reason", pa.string())])

SNAPSHOTS = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("label", pa.string()),
        ("source_kind", pa.string()),
        ("source", pa.string()),
        ("root_kind", pa.string()),
        ("root_digest", DIGEST),
        ("root_size", pa.uint64()),
        ("root_executable", pa.bool_()),
        ("root_symlink_target", pa.binary()),
        ("nar_size", pa.uint64()),
        ("nar_sha256", pa.binary(32)),
        ("nar_hash", pa.string()),
        ("nar_zstd_size", pa.uint64()),
        ("nar_xz_size", pa.uint64()),
        ("nar_trailing_bytes", pa.uint64()),
        ("store_path", pa.string()),
        ("references", pa.list_(pa.string())),
        ("store", pa.string()),
        ("store_put_count", pa.uint64()),
        ("store_put_bytes", pa.uint64()),
        ("store_get_count", pa.uint64()),
        ("store_head_count", pa.uint64()),
        ("store_retry_count", pa.uint64()),
        ("file_count", pa.uint64()),
        ("directory_count", pa.uint64()),
        ("symlink_count", pa.uint64()),
        ("file_bytes", pa.uint64()),
        ("blob_count", pa.uint64()),
        ("skipped_count", pa.uint64()),
        ("skipped", pa.list_(SKIPPED)),
        ("wall_seconds", pa.float64()),
        ("storelab_version", pa.string()),
        ("schema_version", pa.uint16()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

NODES = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("path", pa.binary()),
        ("kind", pa.dictionary(pa.int8(), pa.string())),
        ("size", pa.uint64()),
        ("executable", pa.bool_()),
        ("digest", DIGEST),
        ("symlink_target", pa.binary()),
    ]
)

CHUNKINGS = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("chunker_id", pa.string()),
        ("chunker", pa.string()),
        ("chunk_min_size", pa.uint32()),
        ("chunk_avg_size", pa.uint32()),
        ("chunk_max_size", pa.uint32()),
        ("chunk_normalization", pa.uint8()),
        ("chunk_seed", pa.uint64()),
        ("zstd_level", pa.int8()),
        ("chunk_count", pa.uint64()),
    ]
)

BLOBS = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("chunker_id", pa.dictionary(pa.int8(), pa.string())),
        ("digest", DIGEST),
        ("size", pa.uint64()),
        ("chunk_count", pa.uint32()),
        ("compressed_size", pa.uint64()),
        ("index_size", pa.uint32()),
    ]
)

CHUNKS = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("chunker_id", pa.dictionary(pa.int8(), pa.string())),
        ("blob_digest", DIGEST),
        ("index", pa.uint32()),
        ("offset", pa.uint64()),
        ("size", pa.uint32()),
        ("digest", DIGEST),
        ("compressed_size", pa.uint32()),
    ]
)

DIRECTORIES = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("digest", DIGEST),
        ("encoded_size", pa.uint32()),
        ("directory_entries", pa.uint32()),
        ("file_entries", pa.uint32()),
        ("symlink_entries", pa.uint32()),
        ("size", pa.uint64()),
        ("file_bytes", pa.uint64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "snapshots": SNAPSHOTS,
    "chunkings": CHUNKINGS,
    "nodes": NODES,
    "blobs": BLOBS,
    "chunks": CHUNKS,
    "directories": DIRECTORIES,
}
TABLES = tuple(SCHEMAS)

"""Every table's Parquet schema and what each column means, in one place (the docs' table
reference is generated from here).

Digests are ``fixed_size_binary(32)``; paths, names and symlink targets are ``binary``
because file names need not be UTF-8.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["COLUMN_DOCS", "SCHEMA_VERSION", "OLD_VERSIONS", "SCHEMAS", "TABLES", "TABLE_DOCS", "DIGEST", "NODE_KINDS"]

SCHEMA_VERSION = 4
"""Bumped whenever a column is added, removed or changes meaning, or the storage changes.
Version 4 keeps the same tables in a DuckLake (an open table format with a catalog and a
transaction log) instead of storelab's own Parquet parts; version 3 made chunkings a dimension
of a snapshot (the ``chunkings`` table, ``blobs.chunker_id``), added the compressed NAR sizes,
and let one Parquet file (a *part*) hold many snapshots."""
OLD_VERSIONS = (3,)
"""Versions ``storelab migrate`` converts (rows equal before and after). Versions 1 and 2 are
refused with a message: ingest their sources again."""

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


TABLE_DOCS: dict[str, str] = {
 'snapshots': "One row per snapshot (a tree or a NAR), committed in the same transaction as its rows in "
              "every other table.",
 'chunkings': 'One row per snapshot and chunking it was recorded under (chunker, sizes, zstd level).',
 'nodes': "Every path of every snapshot: files, directories and symlinks, with castore's digests.",
 'blobs': 'Each distinct blob (file content) of a snapshot, once per chunking.',
 'chunks': 'Each chunk of each distinct blob of a snapshot, per chunking, in order.',
 'directories': 'Each distinct castore Directory object of a snapshot.'}
"""What one row of each table is (the docs' table reference is generated from these)."""

COLUMN_DOCS: dict[str, dict[str, str]] = {'snapshots': {'snapshot_id': '`20261129T154137-1a2b3c4d`: UTC creation time and a random suffix',
               'label': "the label given (or the folder's / file's name); a label used already is warned about",
               'source_kind': '`directory` or `nar`',
               'source': 'absolute path of what was ingested (`stdin` for a NAR read from standard input)',
               'root_kind': 'castore root node: `directory`, `file` (a single-file snapshot) or `symlink`',
               'root_digest': "BLAKE3 of the root `Directory` (or of the root file's bytes) — equal to snix's",
               'root_size': "the root directory's castore size (see below), or the root file's length",
               'root_executable': 'root file only',
               'root_symlink_target': 'root symlink only',
               'nar_size': "the NAR's length: for NAR snapshots the (decompressed) NAR read; for trees computed while ingesting (what `nix-store "
                           '--dump` would write; tested against it)',
               'nar_sha256': "NAR snapshots: the NAR's sha256; null for directory trees",
               'nar_hash': "NAR snapshots: `sha256:` + the sha256 in Nix's base-32, as `.narinfo` files write `NarHash`",
               'nar_zstd_size': 'the NAR compressed whole with zstd -3 (a `.nar.zst`), measured with `--nar-compression zstd` (the default for '
                                '`ingest-nar`); a `.nar.zst` file read from disk gives its own size; else null',
               'nar_xz_size': "the NAR compressed whole with xz -6 (a `.nar.xz`, cache.nixos.org's format), with `--nar-compression xz` "
                              "(a `.nar.xz` file read from disk gives its own size); else null",
               'nar_trailing_bytes': "NAR snapshots: bytes after the NAR's closing `)`, which Nix ignores and so does storelab (not in the size or "
                                     'hashes); null for trees',
               'store_path': 'NAR snapshots ingested with `--narinfo`: the store path and the store paths it refers to',
               'references': 'NAR snapshots ingested with `--narinfo`: the store path and the store paths it refers to',
               'store': 'the `--store` URL written to; null without one',
               'store_put_count': 'PUT requests the ingest made and their payload bytes',
               'store_put_bytes': 'PUT requests the ingest made and their payload bytes',
               'store_get_count': 'existence checks (HEAD) and reads (GET) it made',
               'store_head_count': 'existence checks (HEAD) and reads (GET) it made',
               'store_retry_count': 'requests retried after a transient failure',
               'file_count': 'nodes of each kind (the root included)',
               'directory_count': 'nodes of each kind (the root included)',
               'symlink_count': 'nodes of each kind (the root included)',
               'file_bytes': 'sum of all file sizes (every occurrence)',
               'blob_count': 'distinct blobs',
               'skipped_count': 'paths left out',
               'skipped': 'each path left out (relative to the root) and why',
               'wall_seconds': 'ingest wall time',
               'storelab_version': 'version that wrote the snapshot',
               'schema_version': 'table schema version (3)',
               'created_at': 'when the snapshot was finished; snapshots are ordered by it'},
 'chunkings': {'snapshot_id': 'the snapshot',
               'chunker_id': 'e.g. `fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1`; names the rows of `blobs` and `chunks` cut this way',
               'chunker': '`fastcdc2020`, `fastcdc2016` or `fixed`',
               'chunk_min_size': 'chunker sizes in bytes',
               'chunk_avg_size': 'chunker sizes in bytes',
               'chunk_max_size': 'chunker sizes in bytes',
               'chunk_normalization': 'FastCDC 2020 normalisation level (0 for the others)',
               'chunk_seed': 'FastCDC 2020 gear-table seed (0 = unseeded, as snix)',
               'zstd_level': "level the chunks' compressed sizes were measured at; 0 = not measured",
               'chunk_count': "chunk rows (chunks of the snapshot's distinct blobs) under this chunking"},
 'nodes': {'snapshot_id': 'owning snapshot',
           'path': 'path relative to the root, `/`-separated; `b""` is the root',
           'kind': '`file`, `directory` or `symlink`',
           'size': 'file: length in bytes; directory: castore size (below); symlink: null',
           'executable': 'file: owner-execute bit (the only mode bit castore keeps); else null',
           'digest': 'file: blob digest; directory: `Directory` digest; symlink: null',
           'symlink_target': 'symlink: its target exactly as `readlink` gives it; else null'},
 'blobs': {'snapshot_id': 'owning snapshot',
           'chunker_id': 'the chunking the per-chunk columns below belong to (a blob appears once per chunking of its snapshot)',
           'digest': "BLAKE3 of the blob's bytes",
           'size': 'bytes',
           'chunk_count': 'chunks it was cut into (0 for the empty blob)',
           'compressed_size': "sum of its chunks' zstd sizes; null when not measured",
           'index_size': 'bytes of the blob index object snix writes (`StatBlobResponse` of its chunks); 0 below two chunks'},
 'chunks': {'snapshot_id': 'owning snapshot',
            'chunker_id': 'the chunking that cut it (as in `chunkings`)',
            'blob_digest': 'the blob it belongs to',
            'index': 'position in the blob, from 0',
            'offset': 'byte offset in the blob',
            'size': 'bytes',
            'digest': "BLAKE3 of the chunk's bytes (equal to the blob digest for a single-chunk blob)",
            'compressed_size': "zstd size at the chunking's level (frame without content-size header, as snix's streaming encoder writes); null when "
                               'not measured'},
 'directories': {'snapshot_id': 'owning snapshot',
                 'digest': 'BLAKE3 of the canonical encoding',
                 'encoded_size': 'bytes of the canonical protobuf encoding (the object snix stores)',
                 'directory_entries': 'entries of each kind',
                 'file_entries': 'entries of each kind',
                 'symlink_entries': 'entries of each kind',
                 'size': 'castore size: 2 × entries + Σ child directory sizes (see below)',
                 'file_bytes': 'total bytes of all files below it'}}
"""What each column means, table by table; a test holds every column of :data:`SCHEMAS` documented here."""

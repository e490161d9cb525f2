"""What every ingest shares: its options, its result, and the snapshots row it commits."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storelab.castore import DirectoryNode, Node
from storelab.chunking import ChunkerSpec, default_spec
from storelab.ingest.record import RecordedTree, SnapshotRecorder, root_fields
from storelab.ingest.tree import Skipped
from storelab.stores.backends import StoreOps
from storelab.stores.base import BlobStore
from storelab.stores.snix import open_store
from storelab.stores.uploader import UploadOptions

if TYPE_CHECKING:
    from storelab.tables import SnapshotWriter

__all__ = [
    "IngestOptions",
    "IngestResult",
    "chunking_rows",
    "commit_snapshot",
    "snapshot_row",
    "stderr_warning",
    "ingest_store",
    "store_closure",
    "store_fields",
]


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How to ingest: chunking, compression, parallelism, strictness, progress."""

    chunker: ChunkerSpec = field(default_factory=default_spec)
    """Chunker and sizes; snix's by default."""
    zstd_level: int = 3
    """zstd level for measuring compressed chunk sizes; 0 turns measuring off."""
    workers: int | None = None
    """Worker processes; None = one per core, 0 = in this process."""
    strict: bool = False
    """Fail on the first unreadable or unsupported path instead of skipping it."""
    progress: bool = False
    """Show a progress bar on stderr."""
    warn: Callable[[str], None] | None = None
    """Where one-line warnings about skipped paths go (default: stderr)."""
    store: str | BlobStore | None = None
    """Also write every blob, chunk and directory to this store (``file:///path``,
    ``memory://``, ``s3://bucket/prefix``, or a store object), in snix's layout."""
    upload: UploadOptions = field(default_factory=UploadOptions)
    """How blobs reach the store: background concurrency, small-blob threshold, buffer cap."""
    rewrite: Callable[[bytes], bytes] | None = None
    """Change every file's bytes before hashing (what-if passes, e.g. normalising store-path
    hashes); a module-level function, so worker processes can take it. Files are then read
    whole into memory."""
    follow_root: bool = False
    """A tree's root that is a symlink: follow it (ingest what it points to) instead of
    recording a symlink node, which is what ``nix-store --dump`` of it gives."""
    nar_compression: tuple[str, ...] = ()
    """Also measure the snapshot's NAR as a binary cache stores it: ``"zstd"`` (zstd -3,
    ``.nar.zst``) and/or ``"xz"`` (xz -6, ``.nar.xz``). A NAR source is compressed as it
    streams past; a tree's NAR is rendered from its files after the ingest (a second read)."""
    also: tuple[ChunkerSpec, ...] = ()
    """More per-file chunkings beside ``chunker``: every file cut under each too, read once
    (what ``sweep`` does for a tree; for NARs, what comparing store models needs). Only
    ``chunker``'s chunks go to the store."""
    streams: tuple[ChunkerSpec, ...] = ()
    """Stream chunkings besides the per-file one (specs whose scope is not ``file``: the
    snapshot's NAR cut whole as attic, nix-casync and ncps cut it, or its files' bytes
    concatenated by name or size). A NAR source is cut as it streams past; a tree's NAR is
    rendered from its files after the ingest, and concatenations read them again."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an ingest committed."""

    snapshot_id: str
    label: str
    root: Node
    files: int
    directories: int
    symlinks: int
    file_bytes: int
    blobs: int
    chunks: int
    """Chunk rows of the first chunking."""
    skipped: tuple[Skipped, ...]
    wall_seconds: float
    store_ops: StoreOps | None = None
    """Requests the store received (None without a store)."""
    chunkings: tuple[tuple[str, int], ...] = ()
    """(chunker id, chunk rows) of every chunking recorded, the first first."""

    @classmethod
    def of(
        cls,
        snapshot_id: str,
        label: str,
        recorded: RecordedTree,
        recorder: SnapshotRecorder,
        skipped: Sequence[Skipped],
        wall_seconds: float,
        store_ops: StoreOps | None = None,
    ) -> IngestResult:
        """The result of a committed ingest, from what its recorder saw."""
        return cls(
            snapshot_id,
            label,
            recorded.root,
            recorded.files,
            recorded.directories,
            recorded.symlinks,
            recorded.file_bytes,
            recorder.blob_count,
            recorder.chunk_rows[0],
            tuple(skipped),
            wall_seconds,
            store_ops,
            tuple(zip(recorder.chunker_ids, recorder.chunk_rows)),
        )

    @property
    def throughput(self) -> float:
        """File bytes per second of wall time."""
        return self.file_bytes / self.wall_seconds if self.wall_seconds > 0 else 0.0


def stderr_warning(message: str) -> None:
    print(f"storelab: {message}", file=sys.stderr)



def ingest_store(options: IngestOptions) -> BlobStore | None:
    """The store an ingest writes to, opened (None without one)."""
    if options.store is None:
        return None
    return open_store(options.store) if isinstance(options.store, str) else options.store


def store_closure(
    store: BlobStore | None, recorded: RecordedTree, recorder: SnapshotRecorder, ops_before: StoreOps, worker_ops: StoreOps | None = None
) -> StoreOps | None:
    """With a store: write the root's directory closure (the last object of an ingest) and
    return every request the ingest made."""
    if store is None:
        return None
    closure = recorder.directory_closure()
    if closure:  # only a directory root has one
        assert isinstance(recorded.root, DirectoryNode)
        store.put_directories(recorded.root.digest, closure)
    return (worker_ops or StoreOps()) + (store.ops - ops_before)


def store_fields(store: BlobStore | None, ops: StoreOps | None) -> dict[str, Any]:
    """The ``snapshots`` columns that say which store was written and what it cost."""
    if store is None or ops is None:
        return {}
    return {
        "store": store.url,
        "store_put_count": ops.put_count,
        "store_put_bytes": ops.put_bytes,
        "store_get_count": ops.get_count,
        "store_head_count": ops.head_count,
        "store_retry_count": ops.retry_count,
    }


def snapshot_row(
    snapshot_id: str,
    label: str,
    source_kind: str,
    source: str,
    recorded: RecordedTree,
    recorder: SnapshotRecorder,
    skipped: Sequence[Skipped],
    wall_seconds: float,
    nar: dict[str, Any] | None = None,
    store: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one row of the ``snapshots`` table for a finished ingest."""
    from storelab import __version__
    from storelab.tables import SCHEMA_VERSION

    return {
        "snapshot_id": snapshot_id,
        "label": label,
        "source_kind": source_kind,
        "source": source,
        **root_fields(recorded.root),
        "nar_size": recorded.nar_size,
        **(nar or {}),
        **(store or {}),
        "file_count": recorded.files,
        "directory_count": recorded.directories,
        "symlink_count": recorded.symlinks,
        "file_bytes": recorded.file_bytes,
        "blob_count": recorder.blob_count,
        "skipped_count": len(skipped),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "wall_seconds": wall_seconds,
        "storelab_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC),
    }


def chunking_rows(snapshot_id: str, specs: Sequence[ChunkerSpec], zstd_level: int, chunk_rows: Sequence[int]) -> list[dict[str, Any]]:
    """The ``chunkings`` rows of a snapshot: one per chunking it was recorded under."""
    return [
        {
            "snapshot_id": snapshot_id,
            "chunker_id": spec.id,
            "chunker": spec.name,
            "chunk_min_size": spec.min_size,
            "chunk_avg_size": spec.avg_size,
            "chunk_max_size": spec.max_size,
            "chunk_normalization": spec.normalization,
            "chunk_seed": spec.seed,
            "zstd_level": zstd_level,
            "chunk_count": rows,
        }
        for spec, rows in zip(specs, chunk_rows, strict=True)
    ]


def commit_snapshot(
    writer: SnapshotWriter, row: dict[str, Any], specs: Sequence[ChunkerSpec], zstd_level: int, chunk_rows: Sequence[int],
    warn: Callable[[str], None] | None = None, stage_only: bool = False,
) -> None:  # fmt: skip
    """The end of every ingest: its chunkings rows, a warning when its label is taken
    already, then the commit (or, ``stage_only``, staging for a cluster's driver)."""
    for chunking in chunking_rows(writer.snapshot_id, specs, zstd_level, chunk_rows):
        writer.append("chunkings", chunking)
    label = row.get("label")
    if warn is not None and label:
        taken = writer.dataset.index().snapshots_labelled(label) + [
            w.snapshot_id for w in writer.batch.finished if w.label == label
        ]
        if taken:
            warn(f"label {label!r} is used already by snapshot {taken[0]}; select snapshots by id where it matters")
    writer.label = label
    writer.stage(row) if stage_only else writer.commit(row)

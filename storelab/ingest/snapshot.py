"""What every ingest shares: its options, its result, and the snapshots row it commits."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from storelab.castore import Node
from storelab.chunking import ChunkerSpec, default_spec
from storelab.ingest.record import RecordedTree, SnapshotRecorder, root_fields
from storelab.ingest.tree import Skipped
from storelab.tables import SCHEMA_VERSION

__all__ = ["IngestOptions", "IngestResult", "snapshot_row", "stderr_warning"]


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
    store: str | None = None
    """Also write every blob and chunk to this store (``file:///path``), in snix's layout."""


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
    skipped: tuple[Skipped, ...]
    wall_seconds: float

    @classmethod
    def of(
        cls,
        snapshot_id: str,
        label: str,
        recorded: RecordedTree,
        recorder: SnapshotRecorder,
        skipped: Sequence[Skipped],
        wall_seconds: float,
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
            recorder.chunk_rows,
            tuple(skipped),
            wall_seconds,
        )

    @property
    def throughput(self) -> float:
        """File bytes per second of wall time."""
        return self.file_bytes / self.wall_seconds if self.wall_seconds > 0 else 0.0


def stderr_warning(message: str) -> None:
    print(f"storelab: {message}", file=sys.stderr)



def snapshot_row(
    snapshot_id: str,
    label: str,
    source_kind: str,
    source: str,
    recorded: RecordedTree,
    recorder: SnapshotRecorder,
    options: IngestOptions,
    skipped: Sequence[Skipped],
    wall_seconds: float,
    nar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one row of the ``snapshots`` table for a finished ingest."""
    from storelab import __version__

    spec = options.chunker
    return {
        "snapshot_id": snapshot_id,
        "label": label,
        "source_kind": source_kind,
        "source": source,
        **root_fields(recorded.root),
        **(nar or {}),
        "chunker_id": spec.id,
        "chunker": spec.name,
        "chunk_min_size": spec.min_size,
        "chunk_avg_size": spec.avg_size,
        "chunk_max_size": spec.max_size,
        "chunk_normalization": spec.normalization,
        "zstd_level": options.zstd_level,
        "file_count": recorded.files,
        "directory_count": recorded.directories,
        "symlink_count": recorded.symlinks,
        "file_bytes": recorded.file_bytes,
        "blob_count": recorder.blob_count,
        "chunk_count": recorder.chunk_rows,
        "skipped_count": len(skipped),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "wall_seconds": wall_seconds,
        "storelab_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc),
    }

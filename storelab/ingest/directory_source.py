"""``ingest_dir``: a directory tree → one snapshot in a dataset."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from storelab.castore import Node
from storelab.chunking import ChunkerSpec, default_spec, make_chunker
from storelab.errors import InputError, Interrupted, OutputError
from storelab.ingest.progress import ByteProgress
from storelab.ingest.record import SnapshotRecorder, root_fields
from storelab.ingest.tree import Skipped, Tree, open_tree
from storelab.ingest.workers import FileJob, HashPool, batch_jobs
from storelab.tables import SCHEMA_VERSION, Dataset
from storelab.tables.known import known_compressed_sizes

__all__ = ["IngestOptions", "IngestResult", "ingest_dir"]

MAX_WARNINGS = 20


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

    @property
    def throughput(self) -> float:
        """File bytes per second of wall time."""
        return self.file_bytes / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _stderr_warning(message: str) -> None:
    print(f"storelab: {message}", file=sys.stderr)


def ingest_dir(
    path: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    label: str | None = None,
    options: IngestOptions | None = None,
) -> IngestResult:
    """Ingest the tree at ``path`` as a new snapshot of ``dataset`` (created if missing).

    >>> import tempfile, pathlib
    >>> tree = pathlib.Path(tempfile.mkdtemp()); (tree / "hello").write_bytes(b"Hello World!")
    12
    >>> result = ingest_dir(tree, tempfile.mkdtemp() + "/ds", "hello", IngestOptions(workers=0))
    >>> result.files, result.file_bytes, result.root.size
    (1, 12, 2)
    """
    options = options or IngestOptions()
    warn = options.warn or _stderr_warning
    make_chunker(options.chunker)  # reject bad sizes before any work
    started = time.perf_counter()
    source = Path(path)
    existing = dataset if isinstance(dataset, Dataset) else Dataset.open_existing(dataset)
    known = known_compressed_sizes(existing, options.zstd_level) if existing and options.zstd_level else {}
    try:
        with HashPool(options.chunker, options.zstd_level, known, options.workers) as pool:
            tree = open_tree(source)  # before touching the dataset: a bad source leaves no trace
            ds = existing or Dataset.open(dataset, create=True)  # type: ignore[arg-type]
            label = label or source.resolve().name or str(source)
            return _ingest_tree(tree, source, ds, label, options, pool, warn, started)
    except KeyboardInterrupt:
        where = existing.path if existing else Path(dataset if not isinstance(dataset, Dataset) else dataset.path)
        raise Interrupted(f"interrupted; nothing was added to {where}") from None


def _ingest_tree(
    tree: Tree,
    source: Path,
    ds: Dataset,
    label: str,
    options: IngestOptions,
    pool: HashPool,
    warn: Callable[[str], None],
    started: float,
) -> IngestResult:
    skipped: list[Skipped] = []
    shown = 0

    def note_skip(item: Skipped) -> None:
        nonlocal shown
        text = f"{os.fsdecode(os.path.join(os.fsencode(source), item.path))}: {item.reason}"
        if options.strict:
            raise InputError(text)
        if shown < MAX_WARNINGS:
            warn(f"skipped {text}")
        elif shown == MAX_WARNINGS:
            warn("more paths skipped; the snapshot's `skipped` column lists them all")
        shown += 1

    entries = tree.entries
    reported = 0

    def report_skips() -> None:
        nonlocal reported
        for item in tree.skipped[reported:]:
            skipped.append(item)
            note_skip(item)
        reported = len(tree.skipped)

    try:
        with ds.begin_snapshot() as writer:
            recorder = SnapshotRecorder(writer, options.chunker, entries)
            with ByteProgress("ingest", 0, 0, options.progress) as bar:

                def jobs() -> Iterator[FileJob]:
                    for listing in tree.walk():
                        report_skips()
                        if listing.directory is not None:
                            recorder.listed(listing.directory, listing.children)
                        found = [FileJob(i, tree.absolute(entries[i]), entries[i].size) for i in listing.files]
                        bar.grow(len(found), sum(job.size for job in found))
                        yield from found
                    report_skips()

                for batch in pool.run(batch_jobs(jobs()), bar.advance):
                    for index, reason in batch.errors:
                        item = Skipped(entries[index].path, reason)
                        skipped.append(item)
                        note_skip(item)
                    recorder.add_batch(batch)
            recorded = recorder.finish()
            wall = time.perf_counter() - started
            spec = options.chunker
            writer.commit(
                {
                    "snapshot_id": writer.snapshot_id,
                    "label": label,
                    "source_kind": "directory",
                    "source": str(source.resolve()),
                    **root_fields(recorded.root),
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
                    "wall_seconds": wall,
                    "storelab_version": _version(),
                    "schema_version": SCHEMA_VERSION,
                    "created_at": datetime.now(timezone.utc),
                }
            )
    except OSError as err:  # anything the writer did not already explain
        raise OutputError(f"cannot write {ds.path}: {err.strerror or err}") from None
    return IngestResult(
        writer.snapshot_id,
        label,
        recorded.root,
        recorded.files,
        recorded.directories,
        recorded.symlinks,
        recorded.file_bytes,
        recorder.blob_count,
        recorder.chunk_rows,
        tuple(skipped),
        wall,
    )


def _version() -> str:
    from storelab import __version__

    return __version__

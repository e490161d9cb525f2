"""``ingest_dir``: a directory tree → one snapshot in a dataset."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from storelab.chunking import make_chunker
from storelab.errors import InputError, Interrupted, OutputError
from storelab.ingest.progress import ByteProgress
from storelab.ingest.record import SnapshotRecorder
from storelab.ingest.snapshot import IngestOptions, IngestResult, ingest_store, snapshot_row, stderr_warning, store_closure, store_fields
from storelab.ingest.tree import Skipped, Tree, open_tree
from storelab.ingest.workers import FileJob, HashPool, batch_jobs
from storelab.stores.backends import StoreOps
from storelab.stores.base import BlobStore
from storelab.tables import Dataset
from storelab.tables.known import prior_knowledge

__all__ = ["IngestOptions", "IngestResult", "ingest_dir"]

MAX_WARNINGS = 20


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
    warn = options.warn or stderr_warning
    make_chunker(options.chunker)  # reject bad sizes before any work
    started = time.perf_counter()
    source = Path(path)
    existing, known = prior_knowledge(dataset, options.zstd_level)
    store = ingest_store(options)
    try:
        with HashPool(options.chunker, options.zstd_level, known, options.workers, store, options.upload) as pool:
            tree = open_tree(source)  # before touching the dataset: a bad source leaves no trace
            ds = existing or Dataset.open(dataset, create=True)  # type: ignore[arg-type]
            label = label or source.resolve().name or str(source)
            return _ingest_tree(tree, source, ds, label, options, pool, store, warn, started)
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
    store: BlobStore | None,
    warn: Callable[[str], None],
    started: float,
) -> IngestResult:
    skipped: list[Skipped] = []
    worker_ops = StoreOps()  # what worker processes report; this process's own are in store.ops
    ops_before = store.ops if store is not None else StoreOps()  # type: ignore[attr-defined]
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
            recorder = SnapshotRecorder(writer, options.chunker, entries, keep_directories=store is not None)
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
                    if batch.store_ops:
                        worker_ops += StoreOps(*batch.store_ops)
                    recorder.add_batch(batch)
            recorded = recorder.finish()
            ops = store_closure(store, recorded, recorder, ops_before, worker_ops)
            wall = time.perf_counter() - started
            writer.commit(
                snapshot_row(
                    writer.snapshot_id, label, "directory", str(source.resolve()), recorded, recorder, options, skipped, wall,
                    store=store_fields(store, ops),
                )
            )
    except OSError as err:  # anything the writer did not already explain
        raise OutputError(f"cannot write {ds.path}: {err.strerror or err}") from None
    return IngestResult.of(writer.snapshot_id, label, recorded, recorder, tuple(skipped), wall, ops)

"""``ingest_dir``: a directory tree → one snapshot in a dataset (``sweep_dir``: the same
snapshot under several chunkings, each file read once)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.errors import ConfigError, InputError, Interrupted, OutputError
from storelab.ingest.progress import ByteProgress
from storelab.ingest.record import SnapshotRecorder
from storelab.ingest.snapshot import (
    IngestOptions,
    IngestResult,
    commit_snapshot,
    ingest_store,
    snapshot_row,
    stderr_warning,
    store_closure,
    store_fields,
)
from storelab.ingest.tree import Listing, Skipped, Tree, open_tree
from storelab.ingest.workers import FileJob, HashPool, batch_jobs
from storelab.stores.backends import StoreOps
from storelab.stores.base import BlobStore
from storelab.tables.layout import is_object_url, may_hold_dataset

if TYPE_CHECKING:
    from storelab.tables import Dataset

__all__ = ["IngestOptions", "IngestResult", "ingest_dir", "sweep_dir", "measure_tree_nar", "refuse_self_ingest"]

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
    return _ingest(path, dataset, label, options, [options.chunker])


def sweep_dir(
    path: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    specs: Sequence[ChunkerSpec],
    label: str | None = None,
    options: IngestOptions | None = None,
) -> IngestResult:
    """Ingest the tree as one snapshot chunked every way in ``specs``, reading each file
    once: nodes and directories are recorded once, blobs and chunks once per chunking.

    >>> import tempfile, pathlib
    >>> from storelab.chunking import default_spec
    >>> tree = pathlib.Path(tempfile.mkdtemp()); _ = (tree / "f").write_bytes(bytes(range(256)) * 1000)
    >>> specs = [default_spec("fixed", 16384), default_spec("fixed", 65536)]
    >>> [rows for _, rows in sweep_dir(tree, tempfile.mkdtemp() + "/ds", specs, "t", IngestOptions(workers=0)).chunkings]
    [16, 4]
    """
    if not specs:
        raise ConfigError("a sweep needs at least one chunker")
    if len({spec.id for spec in specs}) != len(specs):
        raise ConfigError("the sweep names the same chunker twice")
    options = replace(options or IngestOptions(), store=None)
    return _ingest(path, dataset, label, options, list(specs))


def refuse_self_ingest(source: Path, dataset: str | os.PathLike[str] | Dataset) -> None:
    """A dataset inside the tree it records would record its own files as they are written.

    >>> refuse_self_ingest(Path("/tmp/tree"), "/tmp/tree/study")
    Traceback (most recent call last):
    storelab.errors.ConfigError: /tmp/tree/study: the dataset would be inside the tree it records (/tmp/tree); write it elsewhere
    """
    location = os.fspath(dataset) if isinstance(dataset, (str, os.PathLike)) else dataset.location
    if is_object_url(location):
        return
    tree, target = Path(os.path.realpath(source)), Path(os.path.realpath(location))  # realpath: a symlink loop is the scan's to report
    if target == tree or tree in target.parents:
        raise ConfigError(f"{location}: the dataset would be inside the tree it records ({source}); write it elsewhere")


def _ingest(
    path: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    label: str | None,
    options: IngestOptions,
    specs: list[ChunkerSpec],
) -> IngestResult:
    warn = options.warn or stderr_warning
    for spec in specs:
        make_chunker(spec)  # reject bad sizes before any work
    started = time.perf_counter()
    source = Path(path)
    refuse_self_ingest(source, dataset)
    existing, known = _prior_knowledge(dataset, options.zstd_level)
    where = existing.location if existing else str(dataset)
    store = ingest_store(options)

    def open_dataset() -> Dataset:
        from storelab.tables import Dataset

        return existing or Dataset.open(dataset, create=True)  # type: ignore[arg-type]

    try:
        with HashPool(specs, options.zstd_level, known, options.workers, store, options.upload, options.rewrite) as pool:
            tree = open_tree(source, options.follow_root)  # before touching the dataset: a bad source leaves no trace
            base = label or Path(os.path.abspath(source)).name or str(source)
            return _ingest_tree(tree, source, open_dataset, where, base, options, specs, pool, store, warn, started)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; nothing was added to {where}") from None


def _prior_knowledge(dataset: str | os.PathLike[str] | Dataset, zstd_level: int) -> tuple[Dataset | None, dict[bytes, int]]:
    """The dataset if the caller gave one open, and its compressed sizes, which the workers
    need from the start — looked up only when sizes are measured and there may be a dataset
    to have measured them. Otherwise a dataset named by its location is opened once the first
    files are being hashed: its imports (Arrow) then overlap work instead of delaying it."""
    given = None if isinstance(dataset, (str, os.PathLike)) else dataset
    if zstd_level == 0 or given is None and not may_hold_dataset(dataset):  # type: ignore[arg-type]
        return given, {}
    from storelab.tables.known import prior_knowledge

    return prior_knowledge(dataset, zstd_level)


def _ingest_tree(
    tree: Tree,
    source: Path,
    open_dataset: Callable[[], Dataset],
    where: str,
    label: str,
    options: IngestOptions,
    specs: list[ChunkerSpec],
    pool: HashPool,
    store: BlobStore | None,
    warn: Callable[[str], None],
    started: float,
) -> IngestResult:
    skipped: list[Skipped] = []
    shown = 0
    worker_ops = StoreOps()  # what worker processes report; this process's own are in store.ops
    ops_before = store.ops if store is not None else StoreOps()  # type: ignore[attr-defined]

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

    ds: Dataset | None = None
    recorders: list[SnapshotRecorder] = []  # the one recorder, once the dataset is open
    early: list[Listing] = []  # directories listed before the dataset was open
    try:
        with ExitStack() as stack:

            def start_recording() -> None:
                """Open the dataset and the snapshot (the first batches are out)."""
                nonlocal ds
                ds = open_dataset()
                writer = stack.enter_context(ds.begin_snapshot())
                recorders.append(SnapshotRecorder(writer, specs, entries, keep_directories=store is not None))
                for listing in early:
                    record_listing(listing)
                early.clear()

            def record_listing(listing: Listing) -> None:
                recorders[0].listed(listing.directory, listing.children)  # type: ignore[arg-type]

            with ByteProgress("ingest", options.progress, scanning=True) as bar:

                def jobs() -> Iterator[FileJob]:
                    for listing in tree.walk():
                        report_skips()
                        if listing.directory is not None:
                            if recorders:
                                record_listing(listing)
                            else:
                                early.append(listing)
                        found = [FileJob(i, tree.absolute(entries[i]), entries[i].size) for i in listing.files]
                        bar.grow(len(found), sum(job.size for job in found))
                        yield from found
                    report_skips()
                    bar.scan_done()

                for batches in pool.run(batch_jobs(jobs()), bar.advance, on_started=start_recording):
                    for index, reason in batches[0].errors:
                        item = Skipped(entries[index].path, reason)
                        skipped.append(item)
                        note_skip(item)
                    for batch in batches:
                        if batch.store_ops:
                            worker_ops += StoreOps(*batch.store_ops)
                    recorders[0].add_batches(batches)
            if not recorders:  # nothing to hash: the scan ran to its end without a batch
                start_recording()
            assert ds is not None
            recorder = recorders[0]
            recorded = recorder.finish()
            ops = store_closure(store, recorded, recorder, ops_before, worker_ops)
            nar = measure_tree_nar(tree.root, options.nar_compression)
            wall = time.perf_counter() - started
            row = snapshot_row(
                recorder.snapshot_id, label, "directory", os.path.abspath(tree.root), recorded, recorder, skipped, wall,
                nar=nar, store=store_fields(store, ops),
            )  # fmt: skip
            commit_snapshot(recorder.writer, row, specs, options.zstd_level, recorder.chunk_rows, warn)
            return IngestResult.of(recorder.snapshot_id, label, recorded, recorder, tuple(skipped), wall, ops)
    except OSError as err:  # anything the writer did not already explain
        raise OutputError(f"cannot write {ds.location if ds is not None else where}: {err.strerror or err}") from None


def measure_tree_nar(source: Path, codecs: Sequence[str]) -> dict[str, int]:
    """The tree's NAR compressed as a binary cache would store it (its files read once more)."""
    if not codecs:
        return {}
    from storelab.nar import dump_path
    from storelab.nar.compressed import CompressedNarSizes

    sizes = CompressedNarSizes(codecs)
    try:
        sizes.feed(dump_path(source))
    except OSError as err:
        raise InputError(f"{source}: cannot read it again to compress its NAR: {err.strerror or err}") from None
    return sizes.finish()

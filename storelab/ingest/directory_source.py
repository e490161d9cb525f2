"""``ingest_dir``: a directory tree → one snapshot in a dataset (``sweep_dir``: the same
snapshot under several chunkings, each file read once)."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from storelab.chunking import ChunkerSpec, make_chunker
from storelab.errors import ConfigError, InputError, Interrupted
from storelab.ingest.core import (
    Assembled,
    HashedBatch,
    IngestEvent,
    Listed,
    SnapshotSession,
    SourceFacts,
    StoreRequests,
)
from storelab.ingest.hashing import FileJob, batch_jobs
from storelab.ingest.progress import ByteProgress
from storelab.ingest.snapshot import IngestOptions, IngestResult, ingest_store
from storelab.ingest.streams import StreamCutters, check_stream_specs, concatenated_streams
from storelab.ingest.subtrees import SubtreeResult, SubtreeTask
from storelab.ingest.tree import Tree, TreeEntry, open_tree
from storelab.ingest.workers import HashPool, Task
from storelab.stores.backends import StoreOps
from storelab.tables.layout import is_object_url, may_hold_dataset

if TYPE_CHECKING:
    from storelab.tables import Dataset, SnapshotWriter

__all__ = ["IngestOptions", "IngestResult", "ingest_dir", "sweep_dir", "measure_tree_nar", "refuse_self_ingest", "tree_events"]


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
    return _ingest(path, dataset, label, options, [options.chunker, *options.also])


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
    for spec in specs:
        make_chunker(spec)  # reject bad sizes before any work
    check_stream_specs(options.streams, "directory")
    if len({spec.id for spec in [*specs, *options.streams]}) != len(specs) + len(options.streams):
        raise ConfigError("the same chunking is named twice")
    started = time.perf_counter()
    source = Path(path)
    refuse_self_ingest(source, dataset)
    existing, known = _prior_knowledge(dataset, options.zstd_level)
    store = ingest_store(options)

    def open_writer() -> SnapshotWriter:
        from storelab.tables import Dataset

        return (existing or Dataset.open(dataset, create=True)).begin_snapshot()  # type: ignore[arg-type]

    where = existing.location if existing else os.fspath(dataset)  # type: ignore[arg-type]
    try:
        with HashPool(specs, options.zstd_level, known, options.workers, store, options.upload, options.rewrite) as pool:
            tree = open_tree(source, options.follow_root)  # before touching the dataset: a bad source leaves no trace
            base = label or Path(os.path.abspath(source)).name or str(source)
            all_specs = [*specs, *options.streams]
            with SnapshotSession(open_writer, where, all_specs, tree.entries, options, store, started, os.fsencode(source)) as session:
                files: list[tuple[bytes, int]] | None = [] if options.streams else None
                with ByteProgress("ingest", options.progress, scanning=True) as bar:
                    session.consume(tree_events(tree, pool, bar, files))
                streams = [(len(specs) + k, spec) for k, spec in enumerate(options.streams)]
                nar_cuts = StreamCutters([(k, spec) for k, spec in streams if spec.scope == "nar"], options.zstd_level, known)
                try:
                    nar = measure_tree_nar(tree.root, options.nar_compression, nar_cuts)
                    session.consume(nar_cuts.finish() if nar_cuts else [])
                finally:
                    nar_cuts.close()
                session.consume(concatenated_streams(files or [], tree.root_bytes, streams, options.zstd_level, known))
                return session.commit(SourceFacts("directory", os.path.abspath(tree.root), base, nar))
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


def tree_events(tree: Tree, pool: HashPool, bar: ByteProgress, files: list[tuple[bytes, int]] | None = None) -> Iterator[IngestEvent]:
    """A tree (as :func:`open_tree` left it) as ingest events: the workers list, hash and
    assemble its subtrees (:mod:`~storelab.ingest.subtrees`); directories they hand back
    open are completed here. ``files``, if given, gets the path and size of every file
    recorded."""
    entries = tree.entries
    root = entries[0]
    tasks: deque[Task] = deque()
    walking = 0  # subtrees handed out, not yet back: the scan is done when none is left
    if root.kind == "file":
        tasks.append([FileJob(0, tree.absolute(root), root.size)])
        bar.grow(1, root.size)
    elif root.kind == "directory":
        tasks.append(SubtreeTask(0, b"", tree.absolute(root)))
        walking = 1
    for task, outcome in pool.run(tasks):
        if isinstance(outcome, SubtreeResult):
            waiting = len(tasks)
            events = _subtree_events(outcome, entries, tasks, bar)  # entries and tasks first…
            walking += sum(isinstance(tasks[k], SubtreeTask) for k in range(waiting, len(tasks))) - 1
            pool.dispatch()  # …so the workers start on them while the events are recorded
            yield from events
            if not walking:
                bar.scan_done()
            if files is not None:
                files += zip(outcome.rows.files.paths, outcome.rows.files.sizes)
            continue
        assert not isinstance(task, SubtreeTask)
        bar.advance(len(task), sum(job.size for job in task))
        yield HashedBatch(outcome)
        for batch in outcome:
            if batch.store_ops:
                yield StoreRequests(StoreOps(*batch.store_ops))
        if files is not None:
            first = outcome[0]
            files += [(entries[index].path, size) for index, size in zip(first.indices, first.sizes)]
    bar.scan_done()


def _subtree_events(result: SubtreeResult, entries: list[TreeEntry], tasks: deque[Task], bar: ByteProgress) -> list[IngestEvent]:
    """A subtree's outcome as events; what it handed back becomes entries here and new tasks
    (appended to ``tasks``)."""
    rows, task = result.rows, result.task
    count, size = len(rows.files), rows.file_bytes
    if result.root is not None:
        bar.grow(count, size)
        bar.advance(count, size)
        return [Assembled(rows, [(task.index, result.root)])]
    base = len(entries)
    prefix = task.path + b"/" if task.path else b""
    for child in result.children:  # a child's path is its name
        entries.append(TreeEntry(prefix + child.path, child.kind, child.size, child.executable, child.target, parent=task.index))
    jobs: list[FileJob] = []
    for k in result.deferred:
        child = result.children[k]
        where = task.absolute + b"/" + child.path
        if child.kind == "directory":
            tasks.append(SubtreeTask(base + k, prefix + child.path, where))
        else:
            jobs.append(FileJob(base + k, where, child.size))
    tasks.extend(batch_jobs(jobs))
    bar.grow(count + len(jobs), size + sum(job.size for job in jobs))
    bar.advance(count, size)
    return [Assembled(rows, [(base + k, child) for k, child in result.finals]), Listed(task.index, range(base, base + len(result.children)))]


def measure_tree_nar(source: Path, codecs: Sequence[str], cutters: StreamCutters | None = None) -> dict[str, int]:
    """The tree's NAR compressed as a binary cache would store it, and cut whole by ``cutters``
    (its files read once more, for both at once)."""
    if not codecs and not cutters:
        return {}
    from storelab.nar import dump_path
    from storelab.nar.compressed import CompressedNarSizes

    sizes = CompressedNarSizes(codecs) if codecs else None
    try:
        for piece in dump_path(source):
            if sizes is not None:
                sizes.update(piece)
            if cutters:
                cutters.feed(piece)
    except OSError as err:
        raise InputError(f"{source}: cannot read it again for its NAR: {err.strerror or err}") from None
    return sizes.finish() if sizes is not None else {}

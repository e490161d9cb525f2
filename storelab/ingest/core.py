"""The one ingest core: every source produces entries and blob results; this module opens the
snapshot, records what the source produced, commits the snapshot and reports it.

In the spirit of tvix's ``ingest_entries``: a source — the directory walk
(:mod:`~storelab.ingest.directory_source`), the NAR reader (:mod:`~storelab.ingest.nar_source`),
the Dask driver (:mod:`~storelab.ingest.distributed`) — knows how to find entries and hash
files; it knows nothing of datasets, rows, stores' directory closures, commits or results.

Input contract
--------------
A source hands the core two things:

``entries``
    A list of :class:`~storelab.ingest.tree.TreeEntry` in pre-order: each entry's ``parent``
    is an earlier index (-1 for the root, entry 0), and the children of each directory come
    in name order. The list may grow while the events are consumed; an event names only
    entries already in it.

events
    An iterable of :data:`IngestEvent`, the tagged union below, in any interleaving:

    - :class:`Listed` — a directory's children are exactly these entries; once per directory
      entry (a file or symlink root has none);
    - :class:`Hashed` — one file's blob (sources of one chunking, hashing in this process);
    - :class:`HashedBatch` — many files' blobs, one :class:`~storelab.ingest.batch.BlobBatch`
      per chunking in the order of the specs; the batch's errors are skipped files;
    - :class:`Assembled` — entries below some listed directories, done by another process
      whole (:mod:`~storelab.ingest.subtrees`): their rows, the paths left out among them,
      and the entries of ``entries`` they make final, which get no other event;
    - :class:`Staged` — files whose blob and chunk rows another process wrote already (a
      cluster task): the core writes their nodes and counts the chunk rows of the blobs new
      to the snapshot;
    - :class:`Skipped` — a path left out (unreadable, special, vanished), with the file entry
      it was, if it was one; under ``strict`` the ingest fails on it;
    - :class:`StoreRequests` — requests another process made to the store for this snapshot;
    - :class:`StreamHashed` — the one "blob" of a stream chunking (the snapshot's NAR, or its
      files concatenated), cut whole; once per stream chunking, before the commit.

    Every file entry gets exactly one of Hashed, a row of HashedBatch/Staged, or a Skipped
    naming its index (or is made final by an Assembled). A source may call :meth:`SnapshotSession.open` early (its workers are
    busy, so opening the dataset costs nothing); otherwise the core opens it at the first
    blob result, so a source that fails early leaves no trace in the dataset.

Errors: what goes wrong writing the dataset is an :class:`~storelab.errors.OutputError`
naming it; Ctrl-C is :class:`~storelab.errors.Interrupted`; a source raises its own
:class:`~storelab.errors.InputError` for its input. Nothing is committed unless the source's
events ran to their end and :meth:`SnapshotSession.commit` was called.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from storelab.chunking import ChunkerSpec
from storelab.errors import InputError, Interrupted, OutputError
from storelab.ingest.batch import BlobBatch
from storelab.ingest.blobs import BlobInfo
from storelab.ingest.record import Child, RecordedTree, SnapshotRecorder
from storelab.ingest.snapshot import (
    IngestOptions,
    IngestResult,
    commit_snapshot,
    snapshot_row,
    stderr_warning,
    store_closure,
    store_fields,
)
from storelab.ingest.tree import Skipped as SkippedPath
from storelab.ingest.tree import TreeEntry
from storelab.stores.backends import StoreOps
from storelab.stores.base import BlobStore

if TYPE_CHECKING:
    from storelab.ingest.subtrees import AssembledRows
    from storelab.tables import SnapshotWriter

__all__ = [
    "Assembled",
    "Hashed",
    "HashedBatch",
    "IngestEvent",
    "Listed",
    "MAX_WARNINGS",
    "SnapshotSession",
    "Skipped",
    "SourceFacts",
    "Staged",
    "StoreRequests",
    "StreamHashed",
]

MAX_WARNINGS = 20
"""Skipped paths warned about one by one; the rest are counted in one line (the snapshot's
``skipped`` column lists every one)."""


@dataclass(frozen=True, slots=True)
class Listed:
    """Directory entry ``directory`` has exactly these children (entry indices, name order)."""

    directory: int
    children: Sequence[int]


@dataclass(frozen=True, slots=True)
class Hashed:
    """The blob of file entry ``index`` (one chunking)."""

    index: int
    blob: BlobInfo


@dataclass(frozen=True, slots=True)
class HashedBatch:
    """The same files' blobs under every chunking, one batch per spec in order."""

    batches: Sequence[BlobBatch]


@dataclass(frozen=True, slots=True)
class Assembled:
    """Entries another process listed, hashed and assembled (a worker's subtree): their rows,
    the paths it left out, and ``finals`` — the entries here it makes final (entry index,
    final child)."""

    rows: AssembledRows
    finals: Sequence[tuple[int, Child]]


@dataclass(frozen=True, slots=True)
class Staged:
    """Files whose blob and chunk rows are written already (by a cluster task).

    ``digests`` holds 32 bytes per file; ``chunk_counts[k][i]`` is file ``i``'s chunk count
    under chunking ``k``."""

    indices: Sequence[int]
    digests: bytes
    sizes: Sequence[int]
    chunk_counts: Sequence[Sequence[int]]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path left out of the snapshot; ``index`` is its file entry, if it was one."""

    path: bytes
    reason: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class StoreRequests:
    """Requests another process made to the store for this snapshot."""

    ops: StoreOps


@dataclass(frozen=True, slots=True)
class StreamHashed:
    """The stream of stream chunking ``chunking`` (an index into the session's specs), cut whole."""

    chunking: int
    blob: BlobInfo


IngestEvent = Listed | Hashed | HashedBatch | Assembled | Staged | Skipped | StoreRequests | StreamHashed
"""What a source produces (see the module's input contract)."""


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What a source says of itself once its events are done: the ``snapshots`` columns that
    only it knows.

    ``kind`` is ``"directory"`` or ``"nar"``; ``location`` the path or URL recorded in the
    ``source`` column; ``nar`` the NAR columns the source measured (``nar_sha256``,
    ``nar_zstd_size``, ``store_path`` …); ``nar_size`` given there wins over the size the
    recorder computes."""

    kind: str
    location: str
    label: str
    nar: dict[str, Any] | None = None


class SnapshotSession:
    """One snapshot being ingested: open it, consume a source's events, commit, report.

    ``open_writer`` opens the snapshot's writer (a dataset's :meth:`begin_snapshot`, a
    batch's, or a staged one); ``where`` names the dataset in errors. Use it as a context
    manager: leaving the block without :meth:`commit` drops everything written.

    >>> import tempfile, pathlib
    >>> from storelab.chunking import default_spec
    >>> from storelab.ingest.blobs import BlobHasher
    >>> from storelab.chunking import make_chunker
    >>> from storelab.tables import Dataset
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/ds", create=True)
    >>> spec = default_spec()
    >>> entries = [TreeEntry(b"", "directory"), TreeEntry(b"hello", "file", 12, parent=0)]
    >>> blob = BlobHasher(make_chunker(spec), 0).hash_bytes(b"Hello World!")
    >>> with SnapshotSession(ds.begin_snapshot, ds.location, [spec], entries, IngestOptions(zstd_level=0)) as session:
    ...     session.consume([Listed(0, [1]), Hashed(1, blob)])
    ...     result = session.commit(SourceFacts("directory", "/tmp/hello", "hello"))
    >>> result.files, result.file_bytes, ds.snapshot_ids() == [result.snapshot_id]
    (1, 12, True)
    """

    def __init__(
        self,
        open_writer: Callable[[], SnapshotWriter],
        where: str,
        specs: Sequence[ChunkerSpec],
        entries: Sequence[TreeEntry],
        options: IngestOptions,
        store: BlobStore | None = None,
        started: float | None = None,
        root: bytes = b"",
    ) -> None:
        self._open_writer = open_writer
        self.where = where
        self.specs = list(specs)
        self.entries = entries
        self.options = options
        self.store = store
        self.started = time.perf_counter() if started is None else started
        self.warn = options.warn or stderr_warning
        self.root = root
        """Where the tree lies, to name skipped paths in warnings (they are recorded relative)."""
        self.skipped: list[SkippedPath] = []
        self._writer: SnapshotWriter | None = None
        self._recorder: SnapshotRecorder | None = None
        self._early: list[Listed] = []  # listings before the dataset was open
        self._worker_ops = StoreOps()
        self._ops_before = store.ops if store is not None else StoreOps()

    # the snapshot --------------------------------------------------------------------------

    def open(self) -> SnapshotRecorder:
        """Open the dataset and the snapshot (once); the recorder writing its rows."""
        if self._recorder is None:
            try:
                self._writer = self._open_writer()
            except OSError as err:
                raise OutputError(f"cannot write {self.where}: {err.strerror or err}") from None
            self.where = self._writer.dataset.location
            self._recorder = SnapshotRecorder(self._writer, self.specs, self.entries, keep_directories=self.store is not None)
            for listing in self._early:
                self._recorder.listed(listing.directory, listing.children)
            self._early.clear()
        return self._recorder

    @property
    def snapshot_id(self) -> str:
        """The snapshot's id (opens the snapshot)."""
        return self.open().snapshot_id

    def __enter__(self) -> SnapshotSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        writer = self._writer
        if writer is not None and not writer.committed and not writer.staged:
            writer.abort()
        if kind is KeyboardInterrupt:
            raise Interrupted(f"interrupted; nothing was added to {self.where}") from None
        if error is not None and isinstance(error, OSError) and not isinstance(error, InputError):
            raise OutputError(f"cannot write {self.where}: {error.strerror or error}") from None

    # events --------------------------------------------------------------------------------

    def consume(self, events: Iterable[IngestEvent]) -> None:
        """Record every event of a source (see the module's input contract)."""
        recorder = self._recorder
        for event in events:
            if recorder is None and not isinstance(event, (Listed, Skipped, StoreRequests)):
                recorder = self.open()
            if isinstance(event, Hashed):
                recorder.add_blob(event.index, event.blob)  # type: ignore[union-attr]
            elif isinstance(event, Listed):
                if recorder is None:
                    recorder = self._recorder
                if recorder is None:
                    self._early.append(event)
                else:
                    recorder.listed(event.directory, event.children)
            elif isinstance(event, HashedBatch):
                for index, reason in event.batches[0].errors:
                    self._skip(SkippedPath(self.entries[index].path, reason), None)  # add_batches leaves them out
                recorder.add_batches(event.batches)  # type: ignore[union-attr]
            elif isinstance(event, Assembled):
                for path, reason in event.rows.skipped:
                    self._skip(SkippedPath(path, reason), None)  # the assembler left them out
                for ops in event.rows.store_ops:
                    self._worker_ops += StoreOps(*ops)
                recorder.add_assembled(event.rows, event.finals)  # type: ignore[union-attr]
            elif isinstance(event, Staged):
                self._staged(recorder, event)  # type: ignore[arg-type]
            elif isinstance(event, Skipped):
                self._skip(SkippedPath(event.path, event.reason), event.index)
            elif isinstance(event, StreamHashed):
                recorder.add_stream(event.chunking, event.blob)  # type: ignore[union-attr]
            else:
                self._worker_ops += event.ops

    def _staged(self, recorder: SnapshotRecorder, event: Staged) -> None:
        fresh = recorder.add_files(event.indices, event.digests, event.sizes)
        for k, counts in enumerate(event.chunk_counts):
            recorder.chunk_rows[k] += sum(count for count, new in zip(counts, fresh) if new)

    def _skip(self, item: SkippedPath, index: int | None) -> None:
        """The one policy for a path left out: fail under ``strict``, else warn (the first
        :data:`MAX_WARNINGS`), list it in the snapshot, and leave it out of its directory."""
        text = f"{os.fsdecode(os.path.join(self.root, item.path) if self.root else item.path)}: {item.reason}"
        if self.options.strict:
            raise InputError(text)
        shown = len(self.skipped)
        if shown < MAX_WARNINGS:
            self.warn(f"skipped {text}")
        elif shown == MAX_WARNINGS:
            self.warn("more paths skipped; the snapshot's `skipped` column lists them all")
        self.skipped.append(item)
        if index is not None:
            (self._recorder or self.open()).skip(index)

    # the end -------------------------------------------------------------------------------

    def commit(self, source: SourceFacts, stage_only: bool = False, check: Callable[[RecordedTree], None] | None = None) -> IngestResult:
        """Finish the snapshot: its last rows, the store's directory closure, the ``snapshots``
        and ``chunkings`` rows, then the commit (``stage_only``: staged for a cluster's driver).
        ``check`` may refuse the recorded tree before anything is committed."""
        recorder = self.open()
        try:
            recorded = recorder.finish()
        except ValueError as err:  # a source that broke the contract, e.g. a lone file skipped
            raise InputError(f"{source.location}: {err}") from None
        if check is not None:
            check(recorded)
        ops = store_closure(self.store, recorded, recorder, self._ops_before, self._worker_ops)
        wall = time.perf_counter() - self.started
        row = snapshot_row(
            recorder.snapshot_id, source.label, source.kind, source.location, recorded, recorder, self.skipped, wall,
            nar=source.nar, store=store_fields(self.store, ops),
        )  # fmt: skip
        commit_snapshot(recorder.writer, row, self.specs, self.options.zstd_level, recorder.chunk_rows, self.warn, stage_only)
        return IngestResult.of(recorder.snapshot_id, source.label, recorded, recorder, tuple(self.skipped), wall, ops)


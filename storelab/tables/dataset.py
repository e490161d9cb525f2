"""A dataset: Parquet tables in a folder or an object store, written in *parts*.

Layout (the same in a folder and under an ``s3://bucket/prefix``)::

    DATASET/
      _storelab.json                 format marker and schema version
      snapshots/<part>.parquet       the rows of every snapshot in the part — the commit
      chunkings/<part>.parquet       one row per snapshot and chunking
      nodes/<part>.parquet           every path of the part's snapshots
      blobs/<part>[.<n>].parquet     each distinct blob of a snapshot, per chunking
      chunks/<part>[.<n>].parquet    each chunk of each distinct blob, per chunking
      directories/<part>.parquet
      _index.sqlite                  a cache of what ingests look up (:mod:`storelab.tables.index`)
      _staging/<part>/               a part being written (invisible to readers)

A *part* holds one or more snapshots: an ingest commits a part of one, an ingest of many NARs
(``--from-list``) commits a part every :data:`BATCH_SNAPSHOTS` snapshots, and compaction
merges parts. The commit rule: a part's tables are published first, its ``snapshots`` file
last; a snapshot exists once a ``snapshots`` file holding its row does. Compaction and
removal write a new part whose ``snapshots`` file names, in its Parquet metadata, the parts it
*replaces*; from the moment it is published the replaced parts are invisible, and their files
are deleted afterwards (the ``snapshots`` file first). A crash at any moment leaves every
reader seeing either the old parts or the new one, never both or neither.

Parts are kept few by a tiered compaction after each commit (:data:`COMPACT_FANOUT` parts of
one tier become one part of the next), so a dataset of 10,000 snapshots is a few dozen files
per table, and an append costs the same whatever the dataset holds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import socket
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from storelab.errors import DatasetError, OutputError, StorelabError, VanishedError
from storelab.tables.arrow import column as arrow_column
from storelab.tables.layout import LOCK, MARKER, is_object_url, may_hold_dataset
from storelab.tables.schema import READABLE_VERSIONS, SCHEMA_VERSION, SCHEMAS, TABLES
from storelab.tables.storage import (
    STAGING,
    DatasetStorage,
    FolderStorage,
    ObjectStorage,
    describe_os_error,
)

if TYPE_CHECKING:
    from storelab.tables.index import DatasetIndex

__all__ = [
    "Dataset",
    "PartWriter",
    "SnapshotWriter",
    "Part",
    "is_object_url",
    "new_snapshot_id",
    "part_of",
    "BATCH_SNAPSHOTS",
    "COMPACT_FANOUT",
]

ROW_GROUP_ROWS = 128 * 1024
REPLACES = b"storelab.replaces"
"""Parquet metadata key of a ``snapshots`` file: the JSON list of parts it replaces."""
BATCH_SNAPSHOTS = 256
"""An ingest of many sources commits a part at least every this many snapshots."""
BATCH_SECONDS = 60.0
"""… and at least this often, so a long run loses little to a crash."""
COMPACT_FANOUT = 8
"""This many parts of one tier are merged into one part of the next tier."""
_DATASET_NAMES = {MARKER, LOCK, STAGING, "_index.sqlite", "_index.sqlite-wal", "_index.sqlite-shm", *TABLES}


_RELIST_ATTEMPTS = 5
"""Listings of the parts taken before giving up, when files keep vanishing under a reader."""


def new_snapshot_id() -> str:
    """Sortable by creation time, unique without coordination: ``20261129T154137-1a2b3c4d``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def part_of(key: str) -> str:
    """The part a table file belongs to: ``nodes/<part>[.<n>].parquet`` → ``<part>``.

    >>> part_of("blobs/20261129T154137-1a2b3c4d.000003.parquet")
    '20261129T154137-1a2b3c4d'
    """
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def _is_table_file(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith(".")


def _open_sink(path: Path) -> BinaryIO:
    """Where table bytes go; one function so tests can inject a full disk."""
    return open(path, "wb")


@dataclass(frozen=True, slots=True)
class Part:
    """A committed part: its id, its ``snapshots`` file, how many snapshots it holds, and
    the parts it replaces (compaction, removal)."""

    part_id: str
    key: str
    snapshot_count: int
    replaces: tuple[str, ...]


class Dataset:
    """A storelab dataset (a folder, or ``s3://bucket/prefix``).

    >>> import tempfile
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/demo", create=True)
    >>> ds.snapshot_ids()
    []
    """

    def __init__(self, storage: DatasetStorage, dataset_id: str = "") -> None:
        self.storage = storage
        self.dataset_id = dataset_id
        """A random id given when the dataset was created (its marker holds it)."""
        self._footers: dict[str, Part] = {}
        self._rows: dict[str, pa.Table] = {}
        self._index: DatasetIndex | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Dataset.open, (self.location,))  # a cluster task opens its own

    def __repr__(self) -> str:
        return f"Dataset({self.location!r})"

    @property
    def location(self) -> str:
        """Where the dataset is, as given to :meth:`open` (a folder, or an ``s3://`` URL)."""
        return self.storage.location

    # opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, location: str | os.PathLike[str], create: bool = False) -> Dataset:
        """Open a dataset; with ``create``, make it if the location is missing or empty."""
        storage: DatasetStorage = ObjectStorage(str(location)) if is_object_url(location) else FolderStorage(Path(location))
        raw = storage.read(MARKER)
        if raw is None:
            if not create:
                if isinstance(storage, FolderStorage) and storage.root.exists():
                    raise DatasetError(f"{location}: not a storelab dataset (no {MARKER})")
                raise DatasetError(f"{location}: no such dataset (no {MARKER}; ingest something into it first)")
            raw = _create(storage)
        try:
            meta = json.loads(raw)
        except ValueError as err:
            raise DatasetError(f"{location}/{MARKER}: unreadable dataset marker ({err})") from None
        version = meta.get("schema_version") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or meta.get("format") != "storelab-dataset" or version not in READABLE_VERSIONS:
            raise DatasetError(
                f"{location}: dataset schema version {version!r}; this storelab reads version {SCHEMA_VERSION} "
                "(ingest the sources again into a new dataset)"
            )
        return cls(storage, str(meta.get("dataset_id", "")))

    @classmethod
    def open_existing(cls, location: str | os.PathLike[str]) -> Dataset | None:
        """Open a dataset if ``location`` is one; None if there is nothing there yet."""
        if not may_hold_dataset(location):
            return None
        if is_object_url(location) and ObjectStorage(str(location)).read(MARKER) is None:
            return None
        return cls.open(location)

    # reading -------------------------------------------------------------------------------

    def parts(self) -> list[Part]:
        """Every committed part, replaced ones included, by part id.

        A ``snapshots`` file that vanishes between the listing and the reading belonged to a
        part another writer replaced and removed: the listing is taken again (it now holds the
        replacement), so a reader never sees fewer snapshots than were committed."""
        for _ in range(_RELIST_ATTEMPTS):
            found = []
            listed = [f for f in self.storage.list("snapshots") if _is_table_file(f.key)]
            try:
                for file in listed:
                    cached = self._footers.get(file.key)  # a part's files never change: new content, new name
                    if cached is None:
                        cached = self._footers[file.key] = self._read_footer(file.key)
                    found.append(cached)
            except VanishedError:
                continue
            return sorted(found, key=lambda p: p.part_id)
        raise DatasetError(f"{self.location}: parts kept vanishing while being listed (another writer compacting?); try again")

    def _read_footer(self, key: str) -> Part:
        path, temporary = self.storage.local_path(key)
        try:
            meta = pq.read_metadata(path)
        except (OSError, pa.ArrowInvalid) as err:
            if not self.storage.exists(key):
                raise VanishedError(f"{self.storage.url(key)}: vanished while being read") from None
            raise DatasetError(f"{self.storage.url(key)}: not a readable Parquet file ({err})") from None
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        raw = (meta.metadata or {}).get(REPLACES)
        replaces = tuple(json.loads(raw)) if raw else ()
        return Part(part_of(key), key, meta.num_rows, replaces)

    def live_parts(self) -> list[Part]:
        """The committed parts not replaced by another: what readers see."""
        parts = self.parts()
        hidden = _hidden(parts)
        return [p for p in parts if p.part_id not in hidden]

    def snapshots(self) -> pa.Table:
        """The ``snapshots`` rows of every committed snapshot, oldest first."""
        tables = [self.part_rows(p) for p in self.live_parts()]
        if not tables:
            return SCHEMAS["snapshots"].empty_table()
        table = pa.concat_tables(tables)
        import pyarrow.compute as pc  # here: the ingest path never needs it (55 ms to import)
        return table.take(pc.sort_indices(table, [("created_at", "ascending"), ("snapshot_id", "ascending")]))

    def part_rows(self, part: Part) -> pa.Table:
        """The ``snapshots`` rows of one committed part (read once, then cached)."""
        rows = self._rows.get(part.key)
        if rows is None:
            rows = self._rows[part.key] = self.read_file(part.key, "snapshots")
        return rows

    def snapshot_ids(self) -> list[str]:
        """Committed snapshots, oldest first."""
        return self.snapshots().column("snapshot_id").to_pylist()

    def resolve(self, names: Sequence[str]) -> list[str]:
        """Snapshot ids for ``names`` (ids or labels); a label that names several snapshots,
        or no snapshot, is an error naming it.

        >>> import tempfile
        >>> ds = Dataset.open(tempfile.mkdtemp() + "/d", create=True)
        >>> ds.resolve(["nothing"])
        Traceback (most recent call last):
        storelab.errors.DatasetError: ...: no snapshot with id or label 'nothing'
        """
        rows = self.snapshots().select(["snapshot_id", "label"]).to_pylist()
        found: list[str] = []
        for name in names:
            by_id = [r["snapshot_id"] for r in rows if r["snapshot_id"] == name]
            matches = by_id or [r["snapshot_id"] for r in rows if r["label"] == name]
            if not matches:
                raise DatasetError(f"{self.location}: no snapshot with id or label {name!r}")
            if len(matches) > 1:
                raise DatasetError(f"{self.location}: label {name!r} names {len(matches)} snapshots ({', '.join(matches)}); give an id")
            found += [m for m in matches if m not in found]
        return found

    def table_keys(self, table: str) -> list[str]:
        """The files of ``table`` in the live parts."""
        live = {p.part_id for p in self.live_parts()}
        return [f.key for f in self.storage.list(table) if _is_table_file(f.key) and part_of(f.key) in live]

    def check(self) -> None:
        """Raise :class:`DatasetError` naming the damage when the committed parts do not hold
        together: a part without one of its tables' files (every commit writes all of them),
        a snapshot in two parts (a copied file), or — in a folder, where reading a footer is
        cheap — a table file that is truncated or lacks its table's columns. Analyses call it
        before they read."""
        live = self.live_parts()
        ids = {p.part_id for p in live}
        for table in TABLES:
            present = {part_of(k) for k in (f.key for f in self.storage.list(table)) if _is_table_file(k)}
            for part_id in sorted(ids - present):
                raise DatasetError(f"{self.location}: part {part_id} has no {table} file; the dataset is damaged")
            if isinstance(self.storage, FolderStorage):
                self._check_footers(table)
        seen: dict[str, str] = {}
        for part in live:
            for sid in self.part_rows(part).column("snapshot_id").to_pylist():
                if sid in seen:
                    raise DatasetError(
                        f"{self.location}: snapshot {sid} is in two parts ({seen[sid]}, {part.part_id}); the dataset is damaged"
                    )
                seen[sid] = part.part_id

    def _check_footers(self, table: str) -> None:
        assert isinstance(self.storage, FolderStorage)
        need = set(SCHEMAS[table].names)
        for key in self.table_keys(table):
            path = self.storage.root / key
            try:
                names = set(pq.read_schema(path).names)
            except (OSError, pa.ArrowInvalid) as err:
                if not path.exists():
                    raise VanishedError(f"{path}: vanished while being read (another writer merged its part); try again") from None
                raise DatasetError(f"{path}: not a readable Parquet file ({err}); the dataset is damaged") from None
            if missing := need - names:
                raise DatasetError(f"{path}: not a {table} table (it has no {', '.join(sorted(missing))}); the dataset is damaged")

    def table_files(self, table: str) -> list[str]:
        """What DuckDB reads for ``table`` (paths or URLs; :meth:`register` first). A file may
        hold rows of several snapshots: filter on ``snapshot_id``."""
        return [self.storage.url(key) for key in self.table_keys(table)]

    def read_table(self, table: str, snapshot_ids: Sequence[str] | None = None) -> pa.Table:
        """One table of the committed snapshots (or of those given), as an Arrow table."""
        keys = self.table_keys(table)
        if not keys:
            return SCHEMAS[table].empty_table()
        data = pa.concat_tables(self.read_file(key, table) for key in keys)
        if snapshot_ids is not None:
            import pyarrow.compute as pc  # here: the ingest path never needs it (55 ms to import)
            data = data.filter(pc.is_in(data.column("snapshot_id"), value_set=pa.array(list(snapshot_ids), pa.string())))
        return data

    def read_file(self, key: str, table: str) -> pa.Table:
        """One file of ``table``, read against the table's schema."""
        path, temporary = self.storage.local_path(key)
        try:
            # ParquetFile, not pq.read_table: that loads pyarrow.dataset (and with it pandas), half
            # a second on every ingest's critical path; the dataset API is needed only for a file
            # written under an older schema, which it reads with the missing columns as nulls.
            with pq.ParquetFile(path) as parquet:
                data = parquet.read()
            return data if data.schema.equals(SCHEMAS[table]) else pq.read_table(path, schema=SCHEMAS[table])
        except (OSError, pa.ArrowInvalid) as err:
            if not self.storage.exists(key):
                raise VanishedError(f"{self.storage.url(key)}: vanished while being read") from None
            raise DatasetError(f"{self.storage.url(key)}: not a readable {table} table ({err})") from None
        finally:
            if temporary:
                path.unlink(missing_ok=True)

    def register(self, con: Any) -> None:
        """Let a DuckDB connection read :meth:`table_files`."""
        self.storage.register(con)

    def index(self) -> DatasetIndex:
        """The dataset's index, brought up to date with every live part (see
        :mod:`storelab.tables.index`)."""
        from storelab.tables.index import DatasetIndex

        if self._index is None:
            self._index = DatasetIndex(self.storage.index_path(self.dataset_id))
        self._index.sync(self)
        return self._index

    # writing -------------------------------------------------------------------------------

    def begin_snapshot(self, snapshot_id: str | None = None, owner: str | None = None) -> SnapshotWriter:
        """Start writing one snapshot, committed as a part of its own; a context manager
        (aborts on error).

        ``owner`` (``"host pid"``) names the process whose life keeps the staging area from
        clean-ups, when that is not this one (a cluster task writing for a driver); a given
        ``snapshot_id`` whose staging area exists (an earlier attempt) starts afresh.
        """
        self.remove_leftovers()
        snapshot_id = snapshot_id or new_snapshot_id()
        part = PartWriter(self, snapshot_id, owner, single=True)
        return part.begin_snapshot(snapshot_id)

    def begin_batch(self) -> PartWriter:
        """Start a part that will hold many snapshots (:meth:`PartWriter.begin_snapshot` each;
        :meth:`PartWriter.commit` publishes those finished so far)."""
        self.remove_leftovers()
        return PartWriter(self, new_snapshot_id(), None, single=False)

    def write_part(self, snapshot_id: str, table: str, part: int, data: pa.Table) -> None:
        """Write cluster task ``part``'s rows of ``table`` for a snapshot being staged; writing
        the same part again replaces it, never adds a second. Invisible until the snapshot
        commits."""
        sink = pa.BufferOutputStream()
        pq.write_table(data, sink, **parquet_options(data.schema))
        self._put(f"{table}/{snapshot_id}.{part:06d}.parquet", sink.getvalue().to_pybytes())

    def read_part(self, snapshot_id: str, table: str, part: int) -> pa.Table:
        """A part written by :meth:`write_part`."""
        return self.read_file(f"{table}/{snapshot_id}.{part:06d}.parquet", table)

    def _put(self, key: str, data: bytes) -> None:
        folder = Path(self.storage.staging(f"put-{secrets.token_hex(6)}", None))
        try:
            local = folder / "file"
            local.write_bytes(data)
            self.storage.publish(local, key)
        except OSError as err:
            raise OutputError(describe_os_error(err, self.location)) from None
        finally:
            self.storage.drop_staging(folder.name, folder)

    def commit_staged(self, snapshot_id: str) -> None:
        """Commit a snapshot another process staged (:meth:`SnapshotWriter.stage`)."""
        staged = f"{STAGING}/{snapshot_id}/snapshots.parquet"
        try:
            local, temporary = self.storage.local_path(staged)
        except DatasetError:
            raise OutputError(f"{self.location}: snapshot {snapshot_id} was not staged completely") from None
        with _signals_held(), self.storage.locked():
            self.storage.publish(local, f"snapshots/{snapshot_id}.parquet")
        if temporary:
            local.unlink(missing_ok=True)
        self.storage.delete([staged])
        self.storage.drop_staging(snapshot_id, None)
        self._after_commit()

    def _after_commit(self) -> None:
        """What follows every commit: the index learns the new part, parts are compacted.

        Both are housekeeping: the commit stands whatever happens here, so a failure is one
        line on stderr, not the ingest's failure (the next commit, or ``storelab compact``,
        tries again; the index learns what it missed when next opened)."""
        try:
            self.index()
            self.compact(auto=True)
        except VanishedError:
            pass  # another writer is merging the same parts: it finishes what this would have done
        except (StorelabError, OSError, sqlite3.Error) as err:
            print(f"storelab: {self.location}: the snapshot is committed, but merging parts failed: {err}", file=sys.stderr)

    # compaction, removal, clean-up ---------------------------------------------------------

    def compact(self, auto: bool = False) -> list[Part]:
        """Merge parts: all live parts into one, or (``auto``) by tiers — whenever
        :data:`COMPACT_FANOUT` parts share a tier (⌊log₈ snapshots⌋), they become one.
        Returns the parts written.

        >>> import tempfile
        >>> ds = Dataset.open(tempfile.mkdtemp() + "/d", create=True)
        >>> for sid in ("s1", "s2"):
        ...     with ds.begin_snapshot(sid) as w:
        ...         w.commit({"snapshot_id": sid, "label": sid})
        >>> [p.snapshot_count for p in ds.compact()], ds.snapshot_ids(), len(ds.live_parts())
        ([2], ['s1', 's2'], 1)
        """
        written: list[Part] = []
        while True:
            live = self.live_parts()
            group = _tier_group(live) if auto else (live if len(live) > 1 else [])
            if not group:
                return written
            new = self._rewrite(group, drop=frozenset())
            if new is None:  # another writer merged them first
                continue
            written.append(new)
            if not auto:
                return written

    def remove_snapshots(self, snapshot_ids: Sequence[str]) -> None:
        """Remove snapshots at once (the parts holding them are rewritten without them)."""
        gone = frozenset(snapshot_ids)
        while holding := [p for p in self.live_parts() if gone & set(self.part_rows(p).column("snapshot_id").to_pylist())]:
            if self._rewrite(holding, drop=gone) is not None:
                break  # else another writer rewrote those parts first: look again
        if self._index is not None or self.storage.index_path(self.dataset_id).exists():
            self.index().forget(gone)

    def _rewrite(self, parts: Sequence[Part], drop: frozenset[str]) -> Part | None:
        """One new part holding the rows of ``parts`` but for the snapshots in ``drop``,
        replacing them; then the replaced parts' files are deleted."""
        self.remove_leftovers()
        writer = PartWriter(self, new_snapshot_id(), None, single=False)
        try:
            ids = {p.part_id for p in parts}
            committed = self.parts()
            # every part readers do not see stays unseen: replaced ones, losers of a race
            replaces = sorted(ids | (_hidden(committed) & {p.part_id for p in committed}))
            footer = {REPLACES: json.dumps(replaces).encode()}
            still_live = lambda: ids <= {p.part_id for p in self.live_parts()}  # noqa: E731
            try:
                for table in TABLES:
                    keys = [f.key for f in self.storage.list(table) if _is_table_file(f.key) and part_of(f.key) in ids]
                    writer.merge_files(table, keys, drop, metadata=footer if table == "snapshots" else None)
            except VanishedError:
                if not still_live():  # another writer merged (and removed) these parts first
                    return None
                raise
            new = writer.publish_merged(replaces, still_live=still_live)
        finally:
            writer.abort()
        self.remove_leftovers()
        return new

    def remove_leftovers(self) -> list[str]:
        """Delete what no reader sees: the files of replaced parts (their ``snapshots`` file
        first), of parts whose writer is dead, and staging areas of dead writers. Returns the
        keys (and staging part ids) removed."""
        removed: list[str] = []
        with self.storage.locked():
            removed += [f"{STAGING}/{p}" for p in self.storage.dead_staging()]
            parts = self.parts()
            live = {p.part_id for p in parts}
            replaced = _hidden(parts) & live
            commits = [p.key for p in parts if p.part_id in replaced]
            self.storage.delete(commits)  # first: a removal cut short leaves only invisible files
            removed += commits
            committed = live - replaced
            for table in TABLES:
                for file in self.storage.list(table):
                    owner = part_of(file.key)
                    if owner in committed or not _is_table_file(file.key):
                        continue
                    if owner in replaced or not self.storage.writer_alive(owner, file.modified):
                        self.storage.delete([file.key])
                        removed.append(file.key)
            # a part that replaced others and holds no snapshot is needed only while they exist
            for part in parts:
                if part.part_id in committed and part.snapshot_count == 0 and not set(part.replaces) & committed:
                    self.storage.delete([part.key])
                    removed.append(part.key)
        return removed


def _hidden(parts: Sequence[Part]) -> set[str]:
    """Parts readers do not see: those another part replaces, and the losers of a race.

    Two merges of the same parts can race where nothing locks (an object store): both parts
    then claim to replace the same part. The one with the lower id wins; the other is hidden
    (and deleted by the next clean-up), so no snapshot is ever seen twice.
    """
    replaced = {r for p in parts for r in p.replaces}
    claimed: set[str] = set()
    losers: set[str] = set()
    for part in parts:  # by part id
        if part.part_id in replaced or not part.replaces:
            continue
        if claimed & set(part.replaces):
            losers.add(part.part_id)
        else:
            claimed |= set(part.replaces)
    return replaced | losers


def _create(storage: DatasetStorage) -> bytes:
    """Make a new dataset at ``storage``'s location; safe when several writers race to."""
    if isinstance(storage, FolderStorage):
        root = storage.root
        if root.exists() and not root.is_dir():
            raise DatasetError(f"{root}: exists and is not a folder")
        if root.exists() and any(p.name not in _DATASET_NAMES for p in root.iterdir()):
            raise DatasetError(f"{root}: folder is not empty and not a storelab dataset")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(describe_os_error(err, root)) from None
    elif any(not f.key.startswith(tuple(_DATASET_NAMES)) for f in storage.list("")):
        raise DatasetError(f"{storage.location}: holds objects but is not a storelab dataset")
    marker = {"format": "storelab-dataset", "schema_version": SCHEMA_VERSION, "dataset_id": secrets.token_hex(8)}
    raw = (json.dumps(marker) + "\n").encode()
    folder = storage.staging(f"marker-{secrets.token_hex(6)}", None)
    try:
        (folder / MARKER).write_bytes(raw)
        storage.publish(folder / MARKER, MARKER)
    except OSError as err:
        raise OutputError(describe_os_error(err, storage.location)) from None
    finally:
        storage.drop_staging(folder.name, folder)
    return raw


def _tier(part: Part) -> int:
    return int(math.log(max(part.snapshot_count, 1), COMPACT_FANOUT))


def _tier_group(parts: Sequence[Part]) -> list[Part]:
    """The oldest :data:`COMPACT_FANOUT` parts of the lowest tier that has that many."""
    by_tier: dict[int, list[Part]] = {}
    for part in parts:
        by_tier.setdefault(_tier(part), []).append(part)
    for tier in sorted(by_tier):
        if len(by_tier[tier]) >= COMPACT_FANOUT:
            return by_tier[tier][:COMPACT_FANOUT]
    return []


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C between two steps of a commit would leave it half done: hold it back."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


class _TableBuffer:
    """Rows of one table, buffered as columns and written out a row group at a time."""

    def __init__(self, table: str, path: Path) -> None:
        self.table = table
        self.schema = SCHEMAS[table]
        self.path = path
        self.columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.rows = 0
        self.batches: list[pa.Table] = []
        self.batched_rows = 0
        self.written = 0
        self.metadata: dict[bytes, bytes] = {}
        self._sink: BinaryIO | None = None
        self._writer: pq.ParquetWriter | None = None

    def append(self, row: Mapping[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(row.get(name))
        self.rows += 1
        if self.rows + self.batched_rows >= ROW_GROUP_ROWS:
            self.flush()

    def append_columns(self, columns: Mapping[str, Any], constants: Mapping[str, Any]) -> None:
        """Add rows given as columns (Arrow arrays or lists); ``constants`` fill whole columns."""
        self.append_table(table_from_columns(self.schema, columns, constants))

    def append_table(self, table: pa.Table) -> None:
        self._rows_to_batch()
        if table.num_rows == 0:
            return
        self.batches.append(table)
        self.batched_rows += table.num_rows
        if self.batched_rows >= ROW_GROUP_ROWS:
            self.flush()

    def _rows_to_batch(self) -> None:
        if self.rows:
            table = pa.Table.from_arrays([arrow_column(self.columns[f.name], f.type) for f in self.schema], schema=self.schema)
            self.batches.append(table)
            self.batched_rows += self.rows
            for column in self.columns.values():
                column.clear()
            self.rows = 0

    def flush(self) -> None:
        if self._writer is None:
            self._sink = _open_sink(self.path)
            schema = self.schema.with_metadata(self.metadata) if self.metadata else self.schema
            self._writer = pq.ParquetWriter(self._sink, schema, **parquet_options(self.schema))
        self._rows_to_batch()
        if self.batches:
            table = pa.concat_tables(self.batches)
            self._writer.write_table(table.replace_schema_metadata(self.metadata or None), row_group_size=ROW_GROUP_ROWS)
            self.written += self.batched_rows
            self.batches.clear()
            self.batched_rows = 0

    @property
    def spilled(self) -> bool:
        """Whether rows went to the file already (else they are all in memory)."""
        return self._writer is not None

    def take(self) -> list[pa.Table]:
        """The rows held in memory, handed over (a buffer that never spilled)."""
        self._rows_to_batch()
        taken, self.batches, self.batched_rows = self.batches, [], 0
        return taken

    def close(self) -> None:
        self.flush()
        assert self._writer is not None and self._sink is not None
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            if self._sink is not None:
                self._sink.close()


class PartWriter:
    """Builds one part in a staging area: snapshots are written one by one
    (:meth:`begin_snapshot`), and :meth:`commit` publishes those finished so far as one part.
    A snapshot that fails is dropped alone; the others of the part stay."""

    def __init__(self, dataset: Dataset, part_id: str, owner: str | None, single: bool) -> None:
        self.dataset = dataset
        self.part_id = part_id
        self.single = single
        self.folder = dataset.storage.staging(part_id, owner)
        self.finished: list[SnapshotWriter] = []
        self.started = time.monotonic()
        self.committed = 0
        self._merged: dict[str, _TableBuffer] | None = None  # a batch's tables, growing as snapshots finish

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    def begin_snapshot(self, snapshot_id: str | None = None) -> SnapshotWriter:
        """A writer for one more snapshot of this part."""
        snapshot_id = snapshot_id or new_snapshot_id()
        folder = self.folder if self.single else self.folder / snapshot_id
        return SnapshotWriter(self, snapshot_id, folder)

    @property
    def due(self) -> bool:
        """Whether enough snapshots wait (or long enough) that they should be committed."""
        return len(self.finished) >= BATCH_SNAPSHOTS or bool(self.finished) and time.monotonic() - self.started >= BATCH_SECONDS

    def commit(self) -> None:
        """Publish the finished snapshots as one part (nothing when there are none), then let
        the dataset index and compact it. The writer can take more snapshots afterwards."""
        if not self.finished:
            return
        if self.single:
            self._publish({t: self.folder / f"{t}.parquet" for t in TABLES})
        else:
            assert self._merged is not None
            try:
                for buffer in self._merged.values():
                    buffer.close()
            except OSError as err:
                raise OutputError(describe_os_error(err, self.dataset.location)) from None
            self._publish({t: b.path for t, b in self._merged.items()})
            self._merged = None
        self.committed += len(self.finished)
        self.finished.clear()
        self.dataset._after_commit()
        if not self.single:  # the next snapshots go into a new part
            self.dataset.storage.drop_staging(self.part_id, self.folder)
            self.part_id = new_snapshot_id()
            self.folder = self.dataset.storage.staging(self.part_id, None)
            self.started = time.monotonic()

    def absorb(self, writer: SnapshotWriter) -> None:
        """Add a finished snapshot's rows to the batch's tables: rows still in memory go
        straight in; a table that spilled to its file is read back."""
        if self._merged is None:
            self._merged = {t: _TableBuffer(t, self.folder / f"merged-{t}.parquet") for t in TABLES}
        try:
            for table, buffer in writer._buffers.items():
                target = self._merged[table]
                if not buffer.spilled:
                    for data in buffer.take():
                        target.append_table(data)
                    continue
                buffer.close()
                for batch in pq.ParquetFile(buffer.path).iter_batches(batch_size=ROW_GROUP_ROWS):
                    target.append_table(_conform(pa.Table.from_batches([batch]), target.schema))
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None
        finally:
            writer.discard_files()

    def merge_files(self, table: str, keys: Sequence[str], drop: frozenset[str], metadata: Mapping[bytes, bytes] | None = None) -> None:
        """Write ``merged-<table>.parquet`` in staging: the rows of the dataset files ``keys``
        but for the snapshots in ``drop``; ``metadata`` goes into the file's footer."""
        buffer = _TableBuffer(table, self.folder / f"merged-{table}.parquet")
        try:
            for key in keys:
                path, temporary = self.dataset.storage.local_path(key)
                try:
                    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
                        data = _conform(pa.Table.from_batches([batch]).replace_schema_metadata(None), buffer.schema)
                        if drop:
                            import pyarrow.compute as pc  # here: the ingest path never needs it (55 ms to import)
                            data = data.filter(pc.invert(pc.is_in(data.column("snapshot_id"), value_set=pa.array(sorted(drop)))))
                        buffer.append_table(data)
                except (OSError, pa.ArrowInvalid, KeyError) as err:
                    if not self.dataset.storage.exists(key):
                        raise VanishedError(f"{path}: vanished while being read") from None
                    raise DatasetError(f"{path}: not a readable {table} table ({err})") from None
                finally:
                    if temporary:
                        path.unlink(missing_ok=True)
            buffer.metadata = dict(metadata or {})
            buffer.close()
        except OSError as err:
            buffer.discard()
            raise OutputError(describe_os_error(err, self.dataset.location)) from None

    def publish_merged(self, replaces: Sequence[str], still_live: Callable[[], bool]) -> Part | None:
        """Publish the merged files as a part replacing ``replaces`` (named in the merged
        snapshots file's footer by :meth:`merge_files`) — unless ``still_live()`` says, under
        the commit lock, that another writer merged or removed those parts meanwhile (None)."""
        rows = pq.read_metadata(self.folder / "merged-snapshots.parquet").num_rows
        if not self._publish({t: self.folder / f"merged-{t}.parquet" for t in TABLES}, still_live):
            return None
        return Part(self.part_id, f"snapshots/{self.part_id}.parquet", rows, tuple(replaces))

    def _publish(self, files: Mapping[str, Path], still_live: Callable[[], bool] | None = None) -> bool:
        storage = self.dataset.storage
        with _signals_held(), storage.locked():
            if still_live is not None and not still_live():
                return False
            for table in (*[t for t in TABLES if t != "snapshots"], "snapshots"):
                storage.publish(files[table], f"{table}/{self.part_id}.parquet")
        return True

    def abort(self) -> None:
        """Drop everything not yet committed; the dataset is as it was before."""
        for writer in self.finished:
            writer.discard_files()
        self.finished.clear()
        for buffer in (self._merged or {}).values():
            buffer.discard()
        self._merged = None
        self.dataset.storage.drop_staging(self.part_id, self.folder)


class SnapshotWriter:
    """Writes one snapshot's tables into its part's staging area; :meth:`commit` finishes it
    (and, for a snapshot that is a part of its own, makes it visible at once).

    >>> import tempfile
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/d", create=True)
    >>> with ds.begin_snapshot("s1") as w:
    ...     w.append("nodes", {"snapshot_id": "s1", "path": b"", "kind": "directory", "size": 0})
    ...     w.commit({"snapshot_id": "s1", "label": "empty"})
    >>> ds.snapshot_ids()
    ['s1']
    """

    def __init__(self, part: PartWriter, snapshot_id: str, folder: Path) -> None:
        self.part = part
        self.dataset = part.dataset
        self.snapshot_id = snapshot_id
        self.folder = folder
        self.committed = False
        self.staged = False
        self.label: str | None = None
        """The label it is committed under (set by the ingest; duplicate-label checks)."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(describe_os_error(err, folder)) from None
        self._buffers = {t: _TableBuffer(t, folder / f"{t}.parquet") for t in TABLES}

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed and not (self.staged and exc_info[0] is None):
            self.abort()

    def append(self, table: str, row: Mapping[str, Any]) -> None:
        """Add one row to ``table`` (missing columns are null)."""
        try:
            self._buffers[table].append(row)
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None

    def append_columns(self, table: str, columns: Mapping[str, Any], constants: Mapping[str, Any] | None = None) -> None:
        """Add many rows to ``table`` at once, given as columns; ``constants`` fill whole columns."""
        try:
            self._buffers[table].append_columns(columns, constants or {})
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None

    def commit(self, snapshot_row: Mapping[str, Any]) -> None:
        """Finish every table; the snapshot is committed with its part (at once when it is a
        part of its own)."""
        self._finish(snapshot_row)
        if not self.part.single:
            self.part.absorb(self)
        self.part.finished.append(self)
        self.committed = True
        if self.part.single:
            try:
                self.part.commit()
            finally:
                self.part.abort()

    def stage(self, snapshot_row: Mapping[str, Any]) -> None:
        """Finish every table and publish all but the ``snapshots`` one, which waits in the
        staging area for another process (a cluster's driver) to commit it with
        :meth:`Dataset.commit_staged`."""
        self._finish(snapshot_row)
        storage = self.dataset.storage
        for table in TABLES:
            if table != "snapshots":
                storage.publish(self._buffers[table].path, f"{table}/{self.snapshot_id}.parquet")
        storage.publish(self._buffers["snapshots"].path, f"{STAGING}/{self.snapshot_id}/snapshots.parquet")
        self.staged = True
        if isinstance(storage, ObjectStorage):
            storage.drop_staging(self.snapshot_id, self.folder)

    def _finish(self, snapshot_row: Mapping[str, Any]) -> None:
        if snapshot_row.get("snapshot_id") != self.snapshot_id:
            raise ValueError("snapshot row names another snapshot")
        if not self.part.single:  # a batch takes the rows as they are (PartWriter.absorb)
            self._buffers["snapshots"].append(snapshot_row)
            return
        try:
            self._buffers["snapshots"].append(snapshot_row)
            # the last row groups are encoded and compressed by Arrow outside the GIL: side by
            # side they take the time of the largest table, not of all of them
            with ThreadPoolExecutor(len(self._buffers)) as closing:
                for done in [closing.submit(buffer.close) for buffer in self._buffers.values()]:
                    done.result()
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None

    def discard_files(self) -> None:
        for buffer in self._buffers.values():
            buffer.discard()
            buffer.batches.clear()
            buffer.path.unlink(missing_ok=True)
        if self.folder != self.part.folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def abort(self) -> None:
        """Drop everything written so far; the dataset is as it was before."""
        self.discard_files()
        if self.part.single:
            self.part.abort()


def _conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with ``schema``'s columns in its order: a column the file lacks (a nullable
    one added since it was written) is null."""
    if data.schema == schema:
        return data
    for field in schema:
        if field.name not in data.column_names:
            data = data.append_column(field.name, pa.nulls(data.num_rows, field.type))
    return data.select(schema.names).cast(schema)


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """How every table file is written: zstd, and dictionaries only for the columns that
    repeat row after row (names, ids, kinds) — paths, digests and sizes are mostly distinct,
    and trying a dictionary on them first costs a fifth of the write."""
    repetitive = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]
    return {"compression": "zstd", "use_dictionary": repetitive}


def table_from_columns(schema: pa.Schema, columns: Mapping[str, Any], constants: Mapping[str, Any]) -> pa.Table:
    """Rows given as columns (Arrow arrays or lists) as a table of ``schema``; ``constants``
    fill whole columns, and columns named in neither are null.

    >>> table_from_columns(pa.schema([("a", pa.uint8()), ("b", pa.string())]), {"a": [1, 2]}, {"b": "x"}).to_pylist()
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = []
    for field in schema:
        if field.name in columns:
            arrays.append(_as_array(columns[field.name], field.type))
        elif field.name in constants:
            arrays.append(_constant(constants[field.name], field.type, n))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _constant(value: Any, type_: pa.DataType, n: int) -> pa.Array:
    """``n`` copies of one value; a dictionary column costs one entry and n zero indices."""
    if pa.types.is_dictionary(type_):
        indices = pa.Array.from_buffers(type_.index_type, n, [None, pa.py_buffer(bytes(n * type_.index_type.bit_width // 8))])
        return pa.DictionaryArray.from_arrays(indices, arrow_column([value], type_.value_type))
    if value is not None and (pa.types.is_string(type_) or pa.types.is_binary(type_)):
        # every row the same bytes: offsets in steps of its length, no per-row Python
        raw = value.encode() if isinstance(value, str) else bytes(value)
        offsets = array("i", range(0, (n + 1) * len(raw), len(raw))) if raw else array("i", bytes(4 * (n + 1)))
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])
    return arrow_column([value] * n, type_)


def _as_array(values: Any, type_: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values if values.type == type_ else values.cast(type_)
    return arrow_column(values, type_)


def owner_of_this_process() -> str:
    """``"host pid"``: how a staging area names the process that owns it."""
    return f"{socket.gethostname()} {os.getpid()}"

"""A dataset: six tables in a DuckLake — an open table format with a transaction log.

Layout of a folder dataset (an ``s3://bucket/prefix`` dataset has the same files under its
prefix, and its catalog in PostgreSQL)::

    DATASET/
      _storelab.json        format marker: schema version, dataset id, where the catalog is
      _catalog.sqlite       the DuckLake catalog: every table's versions and the files each sees
      data/main/<table>/    the tables' Parquet files, written and named by DuckLake
      _index.sqlite         a cache of what ingests look up (:mod:`storelab.tables.index`)
      _staging/<id>/        a snapshot being written (invisible to readers)

What the format gives, and storelab relies on:

- **All or nothing.** A snapshot's rows in all six tables are one catalog transaction: they
  become visible together or not at all. A crash before the commit leaves nothing visible; its
  staging folder is removed by the next write, stray data files by the next compaction.
- **Isolated readers.** A :class:`Dataset` reads one version of the lake for its whole life
  (the newest when it first reads, or the one ``as_of`` names): appends, compactions and
  removals committed meanwhile do not change what it sees. Files of old versions stay for
  :data:`RETENTION` (settable) before compaction deletes them.
- **Concurrent writers.** Appends from many processes and machines, compactions and removals
  race safely: DuckLake retries a commit that lost the race when nothing conflicts, and a real
  conflict (a removal and a compaction touching the same file) is retried here from the start
  (:func:`transaction`) — nothing is lost, doubled, or undone after it was reported done.

Catalogs: a folder dataset keeps a SQLite catalog beside its data (many processes on one
machine); a dataset in object storage keeps its catalog in PostgreSQL, named when it is created
(``STORELAB_CATALOG=postgres:'host=… dbname=…'``), for many machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from storelab.errors import DatasetError, OutputError, StorelabError
from storelab.tables.layout import MARKER, STAGING, is_object_url, may_hold_dataset
from storelab.tables.rows import ROW_GROUP_ROWS, TableBuffer, conform, owner_of_this_process, parquet_options, table_from_columns
from storelab.tables.schema import OLD_VERSIONS, SCHEMA_VERSION, SCHEMAS, TABLES
from storelab.tables.storage import DatasetStorage, FolderStorage, ObjectStorage, describe_os_error

if TYPE_CHECKING:
    from storelab.tables.index import DatasetIndex

__all__ = [
    "Dataset",
    "BatchWriter",
    "SnapshotWriter",
    "Compaction",
    "new_snapshot_id",
    "is_object_url",
    "parse_as_of",
    "parse_duration",
    "BATCH_SNAPSHOTS",
    "RETENTION",
    "CATALOG_ENV",
    "table_from_columns",
    "parquet_options",
    "owner_of_this_process",
    "ROW_GROUP_ROWS",
]

BATCH_SNAPSHOTS = int(os.environ.get("STORELAB_BATCH_SNAPSHOTS") or 256)
"""An ingest of many sources commits at least every this many snapshots (``STORELAB_BATCH_SNAPSHOTS``)."""
BATCH_SECONDS = 60.0
"""… and at least this often, so a long run loses little to a crash."""
RETENTION = timedelta(hours=1)
"""How long files of replaced versions stay for readers still on them (``STORELAB_RETENTION`` or
``storelab compact --retain`` to change; a reader running longer than this may find its files gone)."""
ORPHAN_AGE = timedelta(minutes=10)
"""A data file no version names, older than this, was left by a writer that died before its
commit (a live transaction commits its files within this)."""
AUTO_COMPACT_EVERY = 64
"""Every this many commits, the committing writer merges the small files (and cleans up)."""
CATALOG_ENV = "STORELAB_CATALOG"
"""Where a new dataset in object storage keeps its catalog: ``postgres:CONNINFO``."""
LAKE = "lake"
"""The name the lake is attached under in storelab's DuckDB connections."""
_CATALOG_FILE = "_catalog.sqlite"
_DATASET_NAMES = {MARKER, STAGING, _CATALOG_FILE, f"{_CATALOG_FILE}-wal", f"{_CATALOG_FILE}-shm", "_lock", "_index.sqlite",
                  "_index.sqlite-wal", "_index.sqlite-shm", "data"}  # fmt: skip
_TRANSIENT = re.compile(r"conflict|database is locked|could not serialize|deadlock|Failed to commit|busy|lock timeout|No snapshot found at version",
                        re.IGNORECASE)  # fmt: skip
_UNSUCCESSFUL = "Attempting to fetch from an unsuccessful query result"
_MAKING_CATALOG = re.compile(_TRANSIENT.pattern + r"|duplicate key|already exists", re.IGNORECASE)
"""What writers racing to make one catalog meet (and retry)."""
_TRANSACTION_TRIES = 60
T = TypeVar("T")


def new_snapshot_id() -> str:
    """Sortable by creation time, unique without coordination: ``20261129T154137-1a2b3c4d``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``7d`` (or a number of seconds) as a duration.

    >>> parse_duration("2h"), parse_duration("45")
    (datetime.timedelta(seconds=7200), datetime.timedelta(seconds=45))
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise DatasetError(f"{text!r} is not a duration (like 90s, 10m, 2h, 7d)")
    return timedelta(seconds=float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]])


def parse_as_of(text: str | int | datetime | None) -> int | datetime | None:
    """A version (a whole number) or a time (ISO 8601, UTC unless it says) to read a dataset as of.

    >>> parse_as_of("12"), parse_as_of("2026-12-07T10:00:00")
    (12, datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.timezone.utc))
    """
    if text is None or isinstance(text, (int, datetime)):
        return text
    if text.strip().isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DatasetError(f"--as-of {text!r}: neither a version number nor a time (2026-12-07T10:00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _retention() -> timedelta:
    raw = os.environ.get("STORELAB_RETENTION")
    return parse_duration(raw) if raw else RETENTION


@dataclass(frozen=True, slots=True)
class Compaction:
    """What a compaction did: files before and after (live files of every table), and the
    files deleted from disk (replaced longer than the retention ago, or left by dead writers)."""

    files_before: int
    files_after: int
    deleted: int
    version: int


@dataclass(frozen=True, slots=True)
class _Marker:
    dataset_id: str
    catalog: str
    """``sqlite:PATH`` (relative to a folder dataset) or ``postgres:CONNINFO``."""
    metadata_schema: str | None


def _read_marker(storage: DatasetStorage, location: str) -> _Marker | None:
    raw = storage.read(MARKER)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise DatasetError(f"{location}/{MARKER}: unreadable dataset marker ({err})") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != "storelab-dataset":
        raise DatasetError(f"{location}/{MARKER}: not a storelab dataset marker")
    if version in OLD_VERSIONS:
        raise DatasetError(f"{location}: a schema-{version} dataset (Parquet parts); convert it with `storelab migrate {location}`")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{location}: dataset schema version {version!r}; this storelab reads version {SCHEMA_VERSION} (ingest the sources again)")
    try:
        return _Marker(str(meta["dataset_id"]), str(meta["catalog"]), meta.get("metadata_schema"))
    except KeyError as err:
        raise DatasetError(f"{location}/{MARKER}: the marker names no {err.args[0]}") from None


def _storage(location: str | os.PathLike[str]) -> DatasetStorage:
    return ObjectStorage(str(location)) if is_object_url(location) else FolderStorage(Path(location))


class Dataset:
    """A storelab dataset (a folder, or ``s3://bucket/prefix``), read as of one version.

    >>> import tempfile
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/demo", create=True)
    >>> ds.snapshot_ids()
    []
    """

    def __init__(self, storage: DatasetStorage, marker: _Marker, as_of: int | datetime | None = None) -> None:
        self.storage = storage
        self.dataset_id = marker.dataset_id
        """A random id given when the dataset was created (its marker holds it)."""
        self.marker = marker
        self.as_of = as_of
        self._con: Any = None
        self._pinned: int | None = None
        self._index: DatasetIndex | None = None
        self._snapshots: pa.Table | None = None
        self._sound_at: int | None = None

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
    def open(cls, location: str | os.PathLike[str], create: bool = False, as_of: int | datetime | str | None = None) -> Dataset:
        """Open a dataset; with ``create``, make it if the location is missing or empty.
        ``as_of`` (a version or a time) reads the dataset as it was then."""
        storage = _storage(location)
        marker = _read_marker(storage, str(location))
        if marker is None:
            if not create:
                if isinstance(storage, FolderStorage) and storage.root.exists():
                    if not storage.root.is_dir():
                        raise DatasetError(f"{location}: not a folder, so not a storelab dataset")
                    raise DatasetError(f"{location}: not a storelab dataset (no {MARKER})")
                raise DatasetError(f"{location}: no such dataset (no {MARKER}; ingest something into it first)")
            marker = _create(storage)
        ds = cls(storage, marker, parse_as_of(as_of))
        if create:
            ds._ensure_tables()
        return ds

    @classmethod
    def open_existing(cls, location: str | os.PathLike[str]) -> Dataset | None:
        """Open a dataset if ``location`` is one; None if there is nothing there yet."""
        if not may_hold_dataset(location):
            return None
        if is_object_url(location) and ObjectStorage(str(location)).read(MARKER) is None:
            return None
        return cls.open(location)

    # the lake ------------------------------------------------------------------------------

    @property
    def catalog(self) -> str:
        """The DuckLake catalog, as DuckDB's ``ATTACH 'ducklake:…'`` takes it."""
        kind, _, rest = self.marker.catalog.partition(":")
        if kind == "sqlite" and isinstance(self.storage, FolderStorage):
            return f"sqlite:{(self.storage.root / rest).resolve()}"
        return self.marker.catalog

    @property
    def data_path(self) -> str:
        """Where the tables' Parquet files are (a folder ending in ``/``, or an ``s3://`` prefix)."""
        if isinstance(self.storage, FolderStorage):
            return str(self.storage.root.resolve() / "data") + "/"
        return f"{self.location}/data/"

    def attach(self, con: Any, alias: str = LAKE, read_only: bool = False, version: int | None = None) -> Any:
        """Attach this dataset's lake to DuckDB connection ``con`` as ``alias`` (at ``version``:
        read-only, as it was then)."""
        from storelab.tables.lake import connect_lake

        def once() -> Any:
            try:
                return connect_lake(self.catalog, self.data_path, alias=alias, read_only=read_only, snapshot_version=version, con=con,
                                    metadata_schema=self.marker.metadata_schema)  # fmt: skip
            except Exception:
                with contextlib.suppress(Exception):
                    con.execute(f"DETACH {alias}")
                raise

        try:  # writers racing to make a new catalog meet a locked one, or each other's schema: again
            return retry(once, lambda err: not isinstance(err, StorelabError) and bool(_MAKING_CATALOG.search(str(err))))
        except StorelabError:
            raise
        except Exception as err:  # noqa: BLE001 — DuckDB's errors have many types; each is one line here
            raise DatasetError(f"{self.location}: cannot open the dataset's catalog: {_first_line(err)}") from None

    def lake(self) -> Any:
        """This process's DuckDB connection with the lake attached as ``lake`` (made once)."""
        if self._con is None:
            from storelab.tables.lake import new_connection

            self._con = self.attach(new_connection())
        return self._con

    def current_version(self) -> int:
        """The newest committed version of the lake."""
        return int(self._query("SELECT id FROM ducklake_current_snapshot('lake')")[0][0])

    def version(self) -> int:
        """The version this dataset object reads: ``as_of``'s, or the newest when it first read."""
        if self._pinned is None:
            if isinstance(self.as_of, int):
                if self.as_of > self.current_version() or self.as_of < 0:
                    raise DatasetError(f"{self.location}: no version {self.as_of} (the newest is {self.current_version()})")
                self._pinned = self.as_of
            elif isinstance(self.as_of, datetime):
                rows = self._query("SELECT max(snapshot_id) FROM ducklake_snapshots('lake') WHERE snapshot_time <= ?", [self.as_of])
                if rows[0][0] is None:
                    raise DatasetError(f"{self.location}: the dataset did not exist yet at {self.as_of.isoformat()}")
                self._pinned = int(rows[0][0])
            else:
                self._pinned = self.current_version()
        return self._pinned

    def refresh(self) -> None:
        """Read the newest version from now on (a writer does after its own commits)."""
        self._pinned = None
        self._snapshots = None

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        for attempt in range(3):
            try:
                return self.lake().execute(sql, params or []).fetchall()
            except StorelabError:
                raise
            except Exception as err:  # noqa: BLE001
                # DuckDB's answer when a streamed result failed under it (a catalog busy with
                # another writer's commit): the statement is asked again
                if _UNSUCCESSFUL in str(err) and attempt < 2:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise _lake_error(self.location, err) from None
        raise AssertionError("unreachable")

    def _arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        try:
            return self.lake().execute(sql, params or []).to_arrow_table()
        except StorelabError:
            raise
        except Exception as err:  # noqa: BLE001
            raise _lake_error(self.location, err) from None

    def _ensure_tables(self) -> None:
        """Create the six tables where they are missing (racing creators are safe: each table
        is created by exactly one of them, the others retry and find it)."""
        from storelab.tables.lake import create_table_sql

        existing = {row[0] for row in self._query("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'")}
        missing = [t for t in TABLES if t not in existing]
        if missing:
            transaction(self, lambda con: [con.execute(create_table_sql(f"{LAKE}.{t}", SCHEMAS[t], if_not_exists=True)) for t in missing])

    def has_tables(self) -> bool:
        return bool(self._query("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'lake' AND table_name = 'snapshots'")[0][0])

    # reading -------------------------------------------------------------------------------

    def table_sql(self, table: str, alias: str | None = None) -> str:
        """The SQL relation of ``table`` at this dataset's version (for :meth:`lake`)."""
        return f"{LAKE}.{table}{f' AS {alias}' if alias else ''} AT (VERSION => {self.version()})"

    def snapshots(self) -> pa.Table:
        """The ``snapshots`` rows of every committed snapshot, oldest first."""
        if self._snapshots is None:
            if not self.has_tables():
                return SCHEMAS["snapshots"].empty_table()
            data = self._arrow(f"SELECT * FROM {self.table_sql('snapshots')} ORDER BY created_at, snapshot_id")
            self._snapshots = conform(data, SCHEMAS["snapshots"])
        return self._snapshots

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

    def read_table(self, table: str, snapshot_ids: Sequence[str] | None = None) -> pa.Table:
        """One table of the committed snapshots (or of those given), as an Arrow table."""
        if not self.has_tables():
            return SCHEMAS[table].empty_table()
        where, params = "", []
        if snapshot_ids is not None:
            where, params = " WHERE snapshot_id IN (SELECT unnest(?::VARCHAR[]))", [list(snapshot_ids)]
        return conform(self._arrow(f"SELECT * FROM {self.table_sql(table)}{where}", params), SCHEMAS[table])

    def problems(self, thorough: bool = True) -> list[str]:
        """What a reader would refuse, one line each (empty when the dataset is sound): a data
        file the catalog names that is missing or not readable Parquet, a snapshot held twice,
        an index that disagrees with the tables; ``thorough``, also rows of a snapshot that has
        no ``snapshots`` row and a snapshot without its nodes (:mod:`storelab.tables.check`)."""
        from storelab.tables.check import find_problems

        return find_problems(self, thorough)

    def check(self, thorough: bool = False) -> None:
        """Raise :class:`DatasetError` naming the first problem :meth:`problems` finds (readers
        check cheaply; ``compact`` and ``remove_snapshots`` thoroughly)."""
        if not thorough and self._sound_at == self.version():
            return  # this object found its version sound already (a version never changes)
        found = self.problems(thorough)
        if not found:
            self._sound_at = self.version()
        if found:
            more = f" (and {len(found) - 1} more; `storelab check {self.location}` lists them)" if len(found) > 1 else ""
            raise DatasetError(f"{found[0]}{more}")

    def index(self) -> DatasetIndex:
        """The dataset's index, brought up to date with the newest version (see
        :mod:`storelab.tables.index`)."""
        from storelab.tables.index import DatasetIndex

        if self._index is None:
            self._index = DatasetIndex(self.storage.index_path(self.dataset_id))
        self._index.sync(self)
        return self._index

    # writing -------------------------------------------------------------------------------

    def begin_snapshot(self, snapshot_id: str | None = None, owner: str | None = None) -> SnapshotWriter:
        """Start writing one snapshot, committed on its own; a context manager (aborts on
        error).

        ``owner`` (``"host pid"``) names the process whose life keeps the staging area from
        clean-ups, when that is not this one (a cluster task writing for a driver); a given
        ``snapshot_id`` whose staging area exists (an earlier attempt) starts afresh.
        """
        self.remove_dead_staging()
        snapshot_id = snapshot_id or new_snapshot_id()
        batch = BatchWriter(self, snapshot_id, owner, single=True)
        return batch.begin_snapshot(snapshot_id)

    def begin_batch(self) -> BatchWriter:
        """Start a batch of many snapshots (:meth:`BatchWriter.begin_snapshot` each;
        :meth:`BatchWriter.commit` commits those finished so far, in one transaction)."""
        self.remove_dead_staging()
        return BatchWriter(self, new_snapshot_id(), None, single=False)

    def write_part(self, snapshot_id: str, table: str, part: int, data: pa.Table) -> None:
        """Write cluster task ``part``'s rows of ``table`` for a snapshot being staged, into
        its staging area; writing the same part again replaces it, never adds a second.
        Committed with the snapshot."""
        sink = pa.BufferOutputStream()
        pq.write_table(data, sink, **parquet_options(data.schema))
        self._put(_part_key(snapshot_id, table, part), sink.getvalue().to_pybytes())

    def read_part(self, snapshot_id: str, table: str, part: int) -> pa.Table:
        """A part written by :meth:`write_part`."""
        path, temporary = self.storage.local_path(_part_key(snapshot_id, table, part))
        try:
            return conform(pq.read_table(path), SCHEMAS[table])
        finally:
            if temporary:
                path.unlink(missing_ok=True)

    def _put(self, key: str, data: bytes) -> None:
        folder = Path(self.storage.scratch())
        try:
            local = folder / "file"
            local.write_bytes(data)
            self.storage.publish(local, key)
        except OSError as err:
            raise OutputError(describe_os_error(err, self.location)) from None
        finally:
            self.storage.drop_scratch(folder)

    def staged_files(self, snapshot_id: str) -> dict[str, list[str]]:
        """The table files staged for ``snapshot_id`` in the dataset's staging area (by
        :meth:`write_part` and :meth:`SnapshotWriter.stage`), as DuckDB reads them."""
        found: dict[str, list[str]] = {}
        for file in self.storage.list(f"{STAGING}/{snapshot_id}"):
            name = file.key.rsplit("/", 1)[-1]
            table = name.split(".", 1)[0]
            if table in SCHEMAS and name.endswith(".parquet"):
                found.setdefault(table, []).append(self.storage.url(file.key))
        return found

    def commit_staged(self, snapshot_id: str) -> None:
        """Commit a snapshot another process staged (:meth:`SnapshotWriter.stage`)."""
        files = self.staged_files(snapshot_id)
        if "snapshots" not in files:
            raise OutputError(f"{self.location}: snapshot {snapshot_id} was not staged completely")
        self._commit(files, {})
        self.storage.delete([f"{STAGING}/{snapshot_id}/{url.rsplit('/', 1)[-1]}" for urls in files.values() for url in urls])
        self.storage.drop_staging(snapshot_id, None)
        self._after_commit()

    def _commit(self, files: Mapping[str, Sequence[str]], tables: Mapping[str, Sequence[pa.Table]]) -> None:
        """One transaction: every table's rows from staged Parquet ``files`` and in-memory
        ``tables``; all become visible at once or none do."""

        def work(con: Any) -> None:
            for table in TABLES:
                for data in tables.get(table, ()):
                    con.register("storelab_rows", data)
                    try:
                        con.execute(f"INSERT INTO {LAKE}.{table} BY NAME SELECT * FROM storelab_rows")
                    finally:
                        con.unregister("storelab_rows")
                if files.get(table):
                    listed = ", ".join(_sql_string(f) for f in files[table])
                    con.execute(f"INSERT INTO {LAKE}.{table} BY NAME SELECT * FROM read_parquet([{listed}], union_by_name = true)")

        with _signals_held():
            transaction(self, work)
        self.refresh()

    def _after_commit(self) -> None:
        """What follows every commit: the index learns it, and every
        :data:`AUTO_COMPACT_EVERY` versions the small files are merged. Both are housekeeping:
        the commit stands whatever happens here, so a failure is one line on stderr."""
        try:
            index = self.index()
            if self.current_version() - index.compacted_at() >= AUTO_COMPACT_EVERY:
                done = self.compact(auto=True)
                index.note_compaction(done.version)
        except (StorelabError, OSError) as err:
            print(f"storelab: {self.location}: the snapshot is committed, but tidying the dataset failed: {err}", file=sys.stderr)

    # compaction, removal, clean-up ---------------------------------------------------------

    def live_files(self) -> int:
        """How many data files the newest version reads, over all tables."""
        return sum(int(self._query(f"SELECT count(*) FROM ducklake_list_files('lake', '{t}')")[0][0]) for t in TABLES if self.has_tables())

    def compact(self, auto: bool = False, retain: timedelta | None = None) -> Compaction:
        """Merge small files, then delete from disk what no version within ``retain`` (default
        :data:`RETENTION`) reads and what dead writers left. Refuses a damaged dataset (see
        :meth:`problems`) unless ``auto`` (a commit's own tidying checks nothing: it must not
        fail the ingest that committed). Each step is its own transaction, retried when it
        meets another writer's; ``auto`` leaves a step another writer keeps busy to it."""
        with self.storage.maintenance_lock(wait=not auto) as held:
            if not held:  # auto: another process is compacting or removing now; it does this work
                return Compaction(0, 0, 0, self.current_version())
            return self._compact(auto, retain)

    def _compact(self, auto: bool, retain: timedelta | None) -> Compaction:
        self.refresh()
        if not auto:
            self.check(thorough=True)
        retain = retain if retain is not None else _retention()
        before = self.live_files()
        cutoff = datetime.now(UTC) - retain
        deleted = 0
        steps: list[tuple[str, list[Any]]] = [
            ("CALL ducklake_flush_inlined_data('lake')", []),
            ("CALL ducklake_merge_adjacent_files('lake')", []),
            *self._expiry_steps(cutoff),
            ("CALL ducklake_delete_orphaned_files('lake', older_than => ?)", [datetime.now(UTC) - ORPHAN_AGE]),
        ]
        for sql, params in steps:
            try:
                rows = self._retrying(sql, params, tries=5 if auto else _TRANSACTION_TRIES)
            except DatasetError as err:
                if not auto or not _TRANSIENT.search(str(err)):
                    raise
                continue  # auto: another writer is busy with the same files; it or the next turn does this
            if "cleanup" in sql or "orphaned" in sql:
                deleted += len(rows)
        self.refresh()
        return Compaction(before, self.live_files(), deleted, self.current_version())

    def _expiry_steps(self, cutoff: datetime) -> list[tuple[str, list[Any]]]:
        """Expire the versions made before ``cutoff`` (never the newest), then delete the files
        they alone read once every file waiting for deletion was scheduled before ``cutoff``.

        Which versions and files qualify is decided here, in DuckDB, and handed to DuckLake as
        lists: its own ``older_than`` compares the times a SQLite catalog stores as text, and
        expired (and deleted the files of) versions made seconds ago — a reader on them would
        fail (found by a test here, DuckLake of DuckDB 1.5.5)."""
        current = self.current_version()
        old = [int(r[0]) for r in self._query("SELECT snapshot_id FROM ducklake_snapshots('lake') WHERE snapshot_time < ? AND snapshot_id < ?",
                                              [cutoff, current])]  # fmt: skip
        steps: list[tuple[str, list[Any]]] = []
        if old:
            steps.append((f"CALL ducklake_expire_snapshots('lake', versions => [{', '.join(map(str, old))}])", []))
        schema = self.marker.metadata_schema or "main"
        newest = self._query(f"SELECT max(schedule_start::TIMESTAMPTZ) FROM __ducklake_metadata_lake.{schema}.ducklake_files_scheduled_for_deletion")[0][0]
        if newest is not None and newest < cutoff:
            steps.append(("CALL ducklake_cleanup_old_files('lake', cleanup_all => true)", []))
        return steps

    def _retrying(self, sql: str, params: list[Any], tries: int = _TRANSACTION_TRIES) -> list[tuple[Any, ...]]:
        """One statement, run again after a pause when it met another writer's transaction."""
        return retry(lambda: self._query(sql, params), lambda err: isinstance(err, DatasetError) and bool(_TRANSIENT.search(str(err))), tries)

    def remove_snapshots(self, snapshot_ids: Sequence[str]) -> None:
        """Remove snapshots from every table at once (one transaction; a conflict with a
        compaction or another removal is retried from the start, never half applied)."""
        gone = sorted(set(snapshot_ids))

        def work(con: Any) -> None:
            for table in TABLES:
                con.execute(f"DELETE FROM {LAKE}.{table} WHERE snapshot_id IN (SELECT unnest(?::VARCHAR[]))", [gone])

        def once() -> None:
            self.refresh()  # a writer works on the newest version
            self.check(thorough=True)
            with _signals_held():
                transaction(self, work)

        # the version just read may be expired by a compaction meanwhile: read the newest again.
        # Held apart from compactions in a folder: DuckLake on a SQLite catalog failed with an
        # internal error (and aborted the process) when a delete and a merge crossed.
        with self.storage.maintenance_lock():
            retry(once, lambda err: isinstance(err, DatasetError) and "No snapshot found at version" in str(err))
        self.refresh()
        if self._index is not None or self.storage.index_path(self.dataset_id).exists():
            self.index().forget(gone)

    def remove_dead_staging(self) -> list[str]:
        """Staging areas of writers known to be dead, removed; their ids."""
        return self.storage.dead_staging()


def _part_key(snapshot_id: str, table: str, part: int) -> str:
    return f"{STAGING}/{snapshot_id}/{table}.{part:06d}.parquet"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _lake_error(location: str, err: BaseException) -> StorelabError:
    text = str(err)
    if "No space left on device" in text:
        return OutputError(f"no space left on device while writing {location}")
    if "Disk quota exceeded" in text:
        return OutputError(f"disk quota exceeded while writing {location}")
    if "No files found" in text or "No such file" in text or "Cannot open file" in text or "HTTP 404" in text:
        return DatasetError(f"{location}: a table file the catalog names is missing ({_first_line(err)}); `storelab check {location}` lists the damage")
    if "Invalid Input Error: No magic bytes" in text or "Invalid Error: Parquet" in text or "not a parquet file" in text.lower():
        return DatasetError(f"{location}: a table file is not readable Parquet ({_first_line(err)}); `storelab check {location}` lists the damage")
    return DatasetError(f"{location}: {_first_line(err)}")


def transaction(ds: Dataset, work: Callable[[Any], Any]) -> Any:
    """Run ``work(con)`` in one lake transaction, from the start again when the commit lost a
    race it could not settle itself (a conflict, a busy catalog), with a growing pause; other
    errors, or the last attempt's, raise one :class:`DatasetError`."""
    def once() -> Any:
        con = ds.lake()
        try:
            con.execute("BEGIN TRANSACTION")
            result = work(con)
            con.execute("COMMIT")
            return result
        except BaseException:
            _rollback(con)
            raise

    try:
        return retry(once, lambda err: not isinstance(err, StorelabError) and bool(_TRANSIENT.search(str(err))))
    except StorelabError:
        raise
    except Exception as err:  # noqa: BLE001 — DuckDB's errors have many types; sorted by their text
        raise _lake_error(ds.location, err) from None


def retry(attempt: Callable[[], T], transient: Callable[[Exception], bool], tries: int = _TRANSACTION_TRIES) -> T:
    """``attempt()``, again after a pause each time it fails in a way ``transient`` says another
    writer caused (a commit that lost a race, a busy catalog), ``tries`` times in all; the pause
    starts at 10 ms and grows ×1.5 to 2 s, jittered so racing writers fall apart (~2 min in all).
    The last error, or any other, is raised as it is.

    >>> outcomes = iter([TimeoutError("busy"), TimeoutError("busy"), "committed"])
    >>> def attempt():
    ...     outcome = next(outcomes)
    ...     if isinstance(outcome, Exception):
    ...         raise outcome
    ...     return outcome
    >>> retry(attempt, lambda err: isinstance(err, TimeoutError))
    'committed'
    """
    pause = 0.01
    for tried in range(1, tries + 1):
        try:
            return attempt()
        except Exception as err:
            if tried == tries or not transient(err):
                raise
        time.sleep(pause * (1 + secrets.randbelow(1000) / 1000))
        pause = min(pause * 1.5, 2.0)
    raise AssertionError("unreachable")


def _rollback(con: Any) -> None:
    with contextlib.suppress(Exception):
        con.execute("ROLLBACK")


def _create(storage: DatasetStorage) -> _Marker:
    """Make a new dataset at ``storage``'s location; safe when several writers race to (the
    first marker written wins, the others read it)."""
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
    marker, raw = new_marker(storage)
    if not storage.create_once(MARKER, raw):  # another writer made it first: theirs holds
        found = _read_marker(storage, storage.location)
        assert found is not None
        return found
    return marker


def new_marker(storage: DatasetStorage) -> tuple[_Marker, bytes]:
    """A new dataset's identity and catalog, and its marker's bytes (not yet written): a folder
    keeps a SQLite catalog beside its data; an object store needs PostgreSQL (:data:`CATALOG_ENV`)."""
    dataset_id = secrets.token_hex(8)
    if isinstance(storage, FolderStorage):
        catalog, schema = f"sqlite:{_CATALOG_FILE}", None
    else:
        catalog = os.environ.get(CATALOG_ENV, "")
        if not catalog.startswith("postgres:"):
            raise DatasetError(
                f"{storage.location}: a dataset in object storage keeps its catalog in PostgreSQL, for many machines: "
                f"set {CATALOG_ENV}=postgres:'host=… dbname=…' (the password from PGPASSWORD or ~/.pgpass)"
            )
        schema = f"storelab_{dataset_id}"
    marker = {"format": "storelab-dataset", "schema_version": SCHEMA_VERSION, "table_format": "ducklake", "dataset_id": dataset_id,
              "catalog": catalog, **({"metadata_schema": schema} if schema else {})}  # fmt: skip
    return _Marker(dataset_id, catalog, schema), (json.dumps(marker) + "\n").encode()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C while a commit is sent would leave the caller unsure whether it happened: hold
    it back until the catalog has answered."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


class BatchWriter:
    """Writes snapshots one by one (:meth:`begin_snapshot`) and commits those finished so far
    in one transaction (:meth:`commit`). A snapshot that fails is dropped alone; the others of
    the batch stay."""

    def __init__(self, dataset: Dataset, batch_id: str, owner: str | None, single: bool) -> None:
        self.dataset = dataset
        self.batch_id = batch_id
        self.single = single
        self.folder = dataset.storage.staging(batch_id, owner)
        self.finished: list[SnapshotWriter] = []
        self.started = time.monotonic()
        self.committed = 0
        self._merged: dict[str, TableBuffer] | None = None  # a batch's tables, growing as snapshots finish

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    def begin_snapshot(self, snapshot_id: str | None = None) -> SnapshotWriter:
        """A writer for one more snapshot of this batch."""
        snapshot_id = snapshot_id or new_snapshot_id()
        folder = self.folder if self.single else self.folder / snapshot_id
        return SnapshotWriter(self, snapshot_id, folder)

    @property
    def due(self) -> bool:
        """Whether enough snapshots wait (or long enough) that they should be committed."""
        return len(self.finished) >= BATCH_SNAPSHOTS or bool(self.finished) and time.monotonic() - self.started >= BATCH_SECONDS

    def commit(self) -> None:
        """Commit the finished snapshots in one transaction (nothing when there are none), then
        let the dataset index them. The writer can take more snapshots afterwards."""
        if not self.finished:
            return
        ds = self.dataset
        if self.single:
            writer = self.finished[0]
            files = {t: [str(b.path)] for t, b in writer._buffers.items() if b.spilled}
            tables = {t: b.take() for t, b in writer._buffers.items() if not b.spilled}
            for table, urls in ds.staged_files(writer.snapshot_id).items():
                files.setdefault(table, []).extend(u for u in urls if u.rsplit("/", 1)[-1] != f"{table}.parquet")
            ds._commit(files, tables)
            # cluster tasks' parts in an object store (in a folder they go with the staging folder)
            staged = [u for urls in files.values() for u in urls if u.startswith("s3://")]
            ds.storage.delete([f"{STAGING}/{writer.snapshot_id}/{u.rsplit('/', 1)[-1]}" for u in staged])
        else:
            assert self._merged is not None
            try:
                for buffer in self._merged.values():
                    buffer.close()
            except OSError as err:
                raise OutputError(describe_os_error(err, ds.location)) from None
            ds._commit({t: [str(b.path)] for t, b in self._merged.items()}, {})
            self._merged = None
        self.committed += len(self.finished)
        self.finished.clear()
        ds._after_commit()
        if not self.single:  # the next snapshots go into a new staging folder
            ds.storage.drop_staging(self.batch_id, self.folder)
            self.batch_id = new_snapshot_id()
            self.folder = ds.storage.staging(self.batch_id, None)
            self.started = time.monotonic()

    def absorb(self, writer: SnapshotWriter) -> None:
        """Add a finished snapshot's rows to the batch's tables: rows still in memory go
        straight in; a table that spilled to its file is read back."""
        if self._merged is None:
            self._merged = {t: TableBuffer(t, self.folder / f"merged-{t}.parquet") for t in TABLES}
        try:
            for table, buffer in writer._buffers.items():
                target = self._merged[table]
                if not buffer.spilled:
                    for data in buffer.take():
                        target.append_table(data)
                    continue
                buffer.close()
                for batch in pq.ParquetFile(buffer.path).iter_batches(batch_size=ROW_GROUP_ROWS):
                    target.append_table(conform(pa.Table.from_batches([batch]), target.schema))
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None
        finally:
            writer.discard_files()

    def abort(self) -> None:
        """Drop everything not yet committed; the dataset is as it was before."""
        for writer in self.finished:
            writer.discard_files()
        self.finished.clear()
        for buffer in (self._merged or {}).values():
            buffer.discard()
        self._merged = None
        self.dataset.storage.drop_staging(self.batch_id, self.folder)


class SnapshotWriter:
    """Writes one snapshot's tables into its staging area; :meth:`commit` finishes it (and,
    for a snapshot written on its own, commits it at once).

    >>> import tempfile
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/d", create=True)
    >>> with ds.begin_snapshot("s1") as w:
    ...     w.append("nodes", {"snapshot_id": "s1", "path": b"", "kind": "directory", "size": 0})
    ...     w.commit({"snapshot_id": "s1", "label": "empty"})
    >>> ds.snapshot_ids()
    ['s1']
    """

    def __init__(self, batch: BatchWriter, snapshot_id: str, folder: Path) -> None:
        self.batch = batch
        self.dataset = batch.dataset
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
        self._buffers = {t: TableBuffer(t, folder / f"{t}.parquet") for t in TABLES}

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
        """Finish every table; the snapshot is committed with its batch (at once when written
        on its own)."""
        self._finish(snapshot_row)
        if not self.batch.single:
            self.batch.absorb(self)
        self.batch.finished.append(self)
        self.committed = True
        if self.batch.single:
            try:
                self.batch.commit()
            finally:
                self.batch.abort()

    def stage(self, snapshot_row: Mapping[str, Any]) -> None:
        """Finish every table and put them in the dataset's staging area, for another process
        (a cluster's driver) to commit with :meth:`Dataset.commit_staged`."""
        self._finish(snapshot_row)
        try:
            for buffer in self._buffers.values():
                if not buffer.spilled:  # spilled ones were closed by _finish
                    buffer.close()
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None
        storage = self.dataset.storage
        if isinstance(storage, ObjectStorage):
            for table in TABLES:
                storage.publish(self._buffers[table].path, f"{STAGING}/{self.snapshot_id}/{table}.parquet")
            storage.drop_staging(self.snapshot_id, self.folder)
        self.staged = True

    def _finish(self, snapshot_row: Mapping[str, Any]) -> None:
        if snapshot_row.get("snapshot_id") != self.snapshot_id:
            raise ValueError("snapshot row names another snapshot")
        try:
            self._buffers["snapshots"].append(snapshot_row)
            if not self.batch.single:  # a batch takes the rows as they are (BatchWriter.absorb)
                return
            spilled = [b for b in self._buffers.values() if b.spilled]
            # the last row groups are encoded and compressed by Arrow outside the GIL: side by
            # side they take the time of the largest table, not of all of them
            if spilled:
                with ThreadPoolExecutor(len(spilled)) as closing:
                    for done in [closing.submit(buffer.close) for buffer in spilled]:
                        done.result()
        except OSError as err:
            raise OutputError(describe_os_error(err, self.dataset.location)) from None

    def discard_files(self) -> None:
        for buffer in self._buffers.values():
            buffer.discard()
            buffer.batches.clear()
            buffer.path.unlink(missing_ok=True)
        if self.folder != self.batch.folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def abort(self) -> None:
        """Drop everything written so far; the dataset is as it was before."""
        self.discard_files()
        if self.batch.single:
            self.batch.abort()

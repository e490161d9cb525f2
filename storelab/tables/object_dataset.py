"""A dataset in object storage (``s3://bucket/prefix``): the same layout as a folder.

Object stores have no rename and no lock, so the commit rule is carried by names alone:

- every table object of a snapshot is uploaded under its final name
  (``nodes/<snapshot_id>.parquet``, a cluster task's ``blobs/<snapshot_id>.<part>.parquet``…);
  a PUT replaces an object whole, so a task run twice replaces its part, never adds one;
- the ``snapshots/<snapshot_id>.parquet`` object is uploaded last, and it is the commit:
  readers list ``snapshots/`` and read only the files of snapshots found there.

A writer stages its tables in a local temporary folder (row groups are written while
ingesting, as for a folder dataset) and uploads them when it commits. A run that dies leaves
objects of an uncommitted snapshot, invisible to readers; a writer that fails deletes its own,
and :meth:`ObjectDataset.remove_leftovers` deletes those a day old (a live cluster ingest may
still be adding parts to a younger one).

Settings come from the environment as for an ``s3://`` store (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storelab.errors import DatasetError, OutputError
from storelab.tables.dataset import MARKER, STAGING, Dataset, SnapshotWriter, new_snapshot_id, parquet_options, part_name
from storelab.tables.schema import READABLE_VERSIONS, SCHEMA_VERSION, SCHEMAS, TABLES

__all__ = ["ObjectDataset", "LEFTOVER_AGE"]

LEFTOVER_AGE = timedelta(days=1)
"""Objects of an uncommitted snapshot older than this are a dead run's, and removed."""


class _Objects:
    """The few object operations a dataset needs, each failure one line naming the key."""

    def __init__(self, url: str) -> None:
        from storelab.stores.backends import _open_obstore

        self.url = url.rstrip("/")
        self._store = _open_obstore(self.url)

    def _fail(self, verb: str, key: str, err: Exception) -> OutputError:
        from storelab.stores.backends import _first_line

        return OutputError(f"{self.url}: cannot {verb} {key}: {_first_line(err)}")

    def get(self, key: str) -> bytes | None:
        import obstore

        try:
            return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError:
            return None
        except Exception as err:
            raise self._fail("read", key, err) from None

    def put(self, key: str, data: bytes | Path) -> None:
        import obstore

        try:
            obstore.put(self._store, key, data)
        except Exception as err:
            raise self._fail("write", key, err) from None

    def list(self, prefix: str) -> list[tuple[str, datetime]]:
        """``(key, last modified)`` of every object under ``prefix``."""
        import obstore

        try:
            return [(m["path"], m["last_modified"]) for page in obstore.list(self._store, prefix) for m in page]
        except Exception as err:
            raise self._fail("list", prefix, err) from None

    def delete(self, keys: Sequence[str]) -> None:
        import obstore

        if keys:
            try:
                obstore.delete(self._store, list(keys))
            except Exception as err:
                raise self._fail("delete", keys[0], err) from None


class ObjectDataset(Dataset):
    """A storelab dataset under an ``s3://bucket/prefix`` URL.

    Everything :class:`Dataset` offers works the same; DuckDB reads the tables through
    obstore's fsspec adapter (:meth:`register`), so the analysis functions run unchanged.
    """

    def __init__(self, url: str, objects: _Objects | None = None) -> None:
        self.url = url.rstrip("/")
        self.objects = objects or _Objects(self.url)
        self.path = self.url  # type: ignore[assignment]  # messages name the dataset by its URL

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectDataset, (self.url,))  # a cluster task opens its own connection

    @property
    def location(self) -> str:
        return self.url

    @classmethod
    def open_url(cls, url: str, create: bool = False) -> ObjectDataset:
        from storelab.errors import StorelabError

        try:
            ds = cls(url)
        except StorelabError as err:
            raise DatasetError(str(err)) from None
        raw = ds.objects.get(MARKER)
        if raw is None:
            if not create:
                raise DatasetError(f"{ds.url}: no such dataset (no {MARKER}; ingest something into it first)")
            if ds.objects.list(""):
                raise DatasetError(f"{ds.url}: holds objects but is not a storelab dataset")
            raw = (json.dumps({"format": "storelab-dataset", "schema_version": SCHEMA_VERSION}) + "\n").encode()
            ds.objects.put(MARKER, raw)
        try:
            meta = json.loads(raw)
        except ValueError as err:
            raise DatasetError(f"{ds.url}/{MARKER}: unreadable dataset marker ({err})") from None
        version = meta.get("schema_version")
        if meta.get("format") != "storelab-dataset" or version not in READABLE_VERSIONS:
            raise DatasetError(f"{ds.url}: dataset schema version {version!r}; this storelab reads version {SCHEMA_VERSION}")
        return ds

    @classmethod
    def open_existing_url(cls, url: str) -> ObjectDataset | None:
        ds = cls(url)
        return cls.open_url(url) if ds.objects.get(MARKER) is not None else None

    def table_dir(self, table: str) -> Path:  # pragma: no cover - object storage has no folders
        raise DatasetError(f"{self.url}: a dataset in object storage has no folders")

    def snapshot_ids(self) -> list[str]:
        return sorted(_stem(key) for key, _ in self.objects.list("snapshots/") if key.endswith(".parquet"))

    def _table_keys(self, table: str) -> list[str]:
        return sorted(key for key, _ in self.objects.list(f"{table}/") if key.endswith(".parquet"))

    def _committed_keys(self, table: str, snapshot_ids: Sequence[str] | None) -> list[str]:
        wanted = set(self.snapshot_ids() if snapshot_ids is None else snapshot_ids)
        return [key for key in self._table_keys(table) if _owner_id(key) in wanted]

    def table_files(self, table: str, snapshot_ids: Sequence[str] | None = None) -> list[str]:
        return [f"{self.url}/{key}" for key in self._committed_keys(table, snapshot_ids)]

    def read_table(self, table: str, snapshot_ids: Sequence[str] | None = None) -> pa.Table:
        keys = self._committed_keys(table, snapshot_ids)
        if not keys:
            return SCHEMAS[table].empty_table()
        return pa.concat_tables(self._read(key, table) for key in keys)

    def _read(self, key: str, table: str) -> pa.Table:
        data = self.objects.get(key)
        if data is None:
            raise DatasetError(f"{self.url}: {key} vanished while being read")
        return pq.read_table(pa.BufferReader(data), schema=SCHEMAS[table])

    def register(self, con: Any) -> None:
        """Give a DuckDB connection an ``s3://`` file system (obstore's, via fsspec)."""
        from obstore.fsspec import FsspecStore

        from storelab.stores.backends import s3_client_options

        con.register_filesystem(FsspecStore("s3", client_options=s3_client_options()))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield  # commits are single PUTs of distinct names: nothing to take turns on

    def remove_leftovers(self, older_than: timedelta = LEFTOVER_AGE) -> list[Path]:
        """Delete objects of snapshots never committed, once they are ``older_than``."""
        committed = set(self.snapshot_ids())
        cutoff = datetime.now(timezone.utc) - older_than
        stale = [
            key
            for table in (*TABLES, STAGING)
            for key, modified in self.objects.list(f"{table}/")
            if _owner_id(key) not in committed and modified < cutoff
        ]
        self.objects.delete(stale)
        return [Path(key) for key in stale]

    def begin_snapshot(self, snapshot_id: str | None = None, owner: str | None = None) -> SnapshotWriter:
        self.remove_leftovers()
        return ObjectSnapshotWriter(self, snapshot_id or new_snapshot_id(), owner)

    def commit_staged(self, snapshot_id: str) -> None:
        staged = f"{STAGING}/{snapshot_id}/snapshots.parquet"
        data = self.objects.get(staged)
        if data is None:
            raise OutputError(f"{self.url}: snapshot {snapshot_id} was not staged completely")
        self.objects.put(f"snapshots/{snapshot_id}.parquet", data)
        self.objects.delete([staged])

    def write_part(self, snapshot_id: str, table: str, part: int, data: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(data, sink, **parquet_options(data.schema))
        self.objects.put(_part_key(table, snapshot_id, part), sink.getvalue().to_pybytes())

    def read_part(self, snapshot_id: str, table: str, part: int) -> pa.Table:
        return self._read(_part_key(table, snapshot_id, part), table)

    def delete_snapshot_objects(self, snapshot_id: str) -> None:
        """Remove every object of a snapshot that was not committed (an aborted write).

        Its ``snapshots`` object goes first, on its own: a removal cut short then leaves only
        invisible leftovers, never a committed snapshot with tables missing.
        """
        keys = [key for table in (*TABLES, STAGING) for key, _ in self.objects.list(f"{table}/") if _owner_id(key) == snapshot_id]
        commit = [key for key in keys if key.startswith("snapshots/")]
        self.objects.delete(commit)
        self.objects.delete([key for key in keys if key not in commit])


class ObjectSnapshotWriter(SnapshotWriter):
    """Writes a snapshot's tables in a local temporary folder, then uploads them, the
    ``snapshots`` object last."""

    dataset: ObjectDataset

    def _staging_folder(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"storelab-{self.snapshot_id}-"))

    def _prepare_staging(self, owner: str | None) -> None:
        pass  # the local folder exists; nothing marks a staging snapshot in the bucket

    def _upload_tables(self) -> None:
        for table in TABLES:
            if table != "snapshots":
                self.dataset.objects.put(f"{table}/{self.snapshot_id}.parquet", self._buffers[table].path)

    def stage(self, snapshot_row: Mapping[str, Any]) -> None:
        """Upload every table; the ``snapshots`` one under ``_staging/`` for the driver to commit."""
        SnapshotWriter.stage(self, snapshot_row)
        self._upload_tables()
        self.dataset.objects.put(f"{STAGING}/{self.snapshot_id}/snapshots.parquet", self._buffers["snapshots"].path)
        shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self, snapshot_row: Mapping[str, Any]) -> None:
        SnapshotWriter.stage(self, snapshot_row)
        self._upload_tables()
        # Ctrl-C between the commit's PUT and noting it would make the clean-up delete a
        # committed snapshot: hold it back for that moment
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.dataset.objects.put(f"snapshots/{self.snapshot_id}.parquet", self._buffers["snapshots"].path)
            self.committed = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        for buffer in self._buffers.values():
            buffer.discard()
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OutputError):  # a dead store: the leftovers age out instead
            self.dataset.delete_snapshot_objects(self.snapshot_id)


def _stem(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name[: -len(".parquet")] if name.endswith(".parquet") else name


def _owner_id(key: str) -> str:
    """The snapshot an object belongs to: ``nodes/<id>[.<part>].parquet``, ``_staging/<id>/…``."""
    table, _, rest = key.partition("/")
    if table == STAGING:
        return rest.split("/", 1)[0]
    return _stem(rest).split(".", 1)[0]


def _part_key(table: str, snapshot_id: str, part: int) -> str:
    number = part_name(table, part).split(".")[1]
    return f"{table}/{snapshot_id}.{number}.parquet"

"""A dataset: a folder of Parquet tables, one sub-folder per table, one file per snapshot.

Layout::

    DATASET/
      _storelab.json                  format marker and schema version
      snapshots/<snapshot_id>.parquet one row: what was ingested, how, and the totals
      nodes/<snapshot_id>.parquet     every path of the snapshot
      blobs/<snapshot_id>.parquet     each distinct blob of the snapshot
      chunks/<snapshot_id>.parquet    each chunk of each distinct blob
      directories/<snapshot_id>.parquet
      _staging/<snapshot_id>/         a snapshot being written (invisible to readers)

A snapshot is written into ``_staging`` and moved into place table by table, the
``snapshots`` row last: a snapshot exists once its ``snapshots`` file does. Readers that go
through :class:`Dataset` only see files of committed snapshots; plain readers
(``pandas.read_parquet("DATASET/nodes")``) see them too, and can only ever see leftovers of a
commit that was killed (``kill -9``) halfway through its renames, which the next write
removes.
"""

from __future__ import annotations

import contextlib
from array import array
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from storelab.errors import DatasetError, OutputError
from storelab.tables.arrow import column as arrow_column
from storelab.tables.layout import LOCK, MARKER, STAGING, is_object_url, may_hold_dataset
from storelab.tables.schema import READABLE_VERSIONS, SCHEMA_VERSION, SCHEMAS, TABLES

__all__ = ["Dataset", "SnapshotWriter", "is_object_url", "new_snapshot_id", "part_name"]

ROW_GROUP_ROWS = 128 * 1024


def new_snapshot_id() -> str:
    """Sortable by creation time, unique without coordination: ``20261129T154137-1a2b3c4d``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def _open_sink(path: Path) -> BinaryIO:
    """Where table bytes go; one function so tests can inject a full disk."""
    return open(path, "wb")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_os_error(err: OSError, path: Path | str) -> str:
    if err.errno == errno.ENOSPC:
        return f"no space left on device while writing {path}"
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {path}"
    return f"cannot write {path}: {err.strerror or err}"


class Dataset:
    """A storelab dataset folder.

    >>> import tempfile
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/demo", create=True)
    >>> ds.snapshot_ids()
    []
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def location(self) -> str:
        """Where the dataset is, as given to :meth:`open` (a folder, or an ``s3://`` URL)."""
        return str(self.path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], create: bool = False) -> Dataset:
        """Open a dataset; with ``create``, make the folder if it is missing or empty.

        An ``s3://bucket/prefix`` location opens a dataset in object storage
        (:class:`~storelab.tables.object_dataset.ObjectDataset`).
        """
        if is_object_url(path):
            from storelab.tables.object_dataset import ObjectDataset

            return ObjectDataset.open_url(str(path), create)
        root = Path(path)
        marker = root / MARKER
        if not marker.exists():
            if not create:
                if not root.exists():
                    raise DatasetError(f"{root}: no such dataset (ingest something into it first)")
                raise DatasetError(f"{root}: not a storelab dataset (no {MARKER})")
            if root.exists() and not root.is_dir():
                raise DatasetError(f"{root}: exists and is not a folder")
            if root.exists() and any(p.name != LOCK for p in root.iterdir()):
                raise DatasetError(f"{root}: folder is not empty and not a storelab dataset")
            try:
                root.mkdir(parents=True, exist_ok=True)
                tmp = root / f".{MARKER}.tmp"
                tmp.write_text(json.dumps({"format": "storelab-dataset", "schema_version": SCHEMA_VERSION}) + "\n")
                os.replace(tmp, marker)
            except OSError as err:
                raise OutputError(_describe_os_error(err, root)) from None
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            raise DatasetError(f"{marker}: unreadable dataset marker ({err})") from None
        version = meta.get("schema_version")
        if meta.get("format") != "storelab-dataset" or version not in READABLE_VERSIONS:
            raise DatasetError(
                f"{root}: dataset schema version {version!r}; this storelab reads version {SCHEMA_VERSION}"
            )
        return cls(root)

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> Dataset | None:
        """Open a dataset if ``path`` is one; None if there is nothing there yet."""
        if is_object_url(path):
            from storelab.tables.object_dataset import ObjectDataset

            return ObjectDataset.open_existing_url(str(path))
        return cls.open(path) if may_hold_dataset(path) else None

    def register(self, con: Any) -> None:
        """Let a DuckDB connection read :meth:`table_files` (local files need nothing)."""

    def write_part(self, snapshot_id: str, table: str, part: int, data: pa.Table) -> None:
        """Write part ``part`` of ``table`` for a snapshot being staged (a cluster task's
        rows); writing the same part again replaces it, never adds a second."""
        folder = self.path / STAGING / snapshot_id / "parts"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / part_name(table, part)
            tmp = folder / f".{target.name}.{os.getpid()}.tmp"
            pq.write_table(data, tmp, **parquet_options(data.schema))
            os.replace(tmp, target)
        except OSError as err:
            raise OutputError(_describe_os_error(err, folder)) from None

    def read_part(self, snapshot_id: str, table: str, part: int) -> pa.Table:
        """A part written by :meth:`write_part`."""
        return pq.read_table(self.path / STAGING / snapshot_id / "parts" / part_name(table, part), schema=SCHEMAS[table])

    def table_dir(self, table: str) -> Path:
        return self.path / table

    def snapshot_ids(self) -> list[str]:
        """Committed snapshots, oldest first."""
        folder = self.table_dir("snapshots")
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.parquet"))

    def table_files(self, table: str, snapshot_ids: Sequence[str] | None = None) -> list[str]:
        """Parquet files of ``table`` belonging to committed snapshots (or to those given)."""
        wanted = set(self.snapshot_ids() if snapshot_ids is None else snapshot_ids)
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(str(p) for p in folder.glob("*.parquet") if _snapshot_of(p) in wanted)

    def read_table(self, table: str, snapshot_ids: Sequence[str] | None = None) -> pa.Table:
        """One table of the committed snapshots as an Arrow table (for small datasets)."""
        files = self.table_files(table, snapshot_ids)
        if not files:
            return SCHEMAS[table].empty_table()
        return pa.concat_tables(pq.read_table(f, schema=SCHEMAS[table]) for f in files)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the dataset's commit lock (commits and clean-ups take turns)."""
        with open(self.path / LOCK, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def remove_leftovers(self) -> list[Path]:
        """Delete staging folders of dead writers and table files of uncommitted snapshots."""
        removed: list[Path] = []
        with self.locked():
            staging = self.path / STAGING
            if staging.is_dir():
                for folder in staging.iterdir():
                    if not _owner_alive(folder):
                        shutil.rmtree(folder, ignore_errors=True)
                        removed.append(folder)
                _remove_empty(staging)
            committed = set(self.snapshot_ids())
            for table in TABLES:
                folder = self.table_dir(table)
                if folder.is_dir():
                    for file in folder.glob("*.parquet"):
                        if _snapshot_of(file) not in committed:
                            file.unlink(missing_ok=True)
                            removed.append(file)
        return removed

    def begin_snapshot(self, snapshot_id: str | None = None, owner: str | None = None) -> SnapshotWriter:
        """Start writing a snapshot; use as a context manager (aborts on error).

        ``owner`` (``"host pid"``) names the process whose life keeps the staging folder from
        clean-ups, when that is not this one (a cluster task writing for a driver); a given
        ``snapshot_id`` whose staging folder exists (an earlier attempt) starts afresh.
        """
        self.remove_leftovers()
        return SnapshotWriter(self, snapshot_id or new_snapshot_id(), owner)

    def commit_staged(self, snapshot_id: str) -> None:
        """Commit a snapshot another process staged (:meth:`SnapshotWriter.stage`)."""
        if not (self.path / STAGING / snapshot_id / "snapshots.parquet").exists():
            raise OutputError(f"{self.path}: snapshot {snapshot_id} was not staged completely")
        SnapshotWriter(self, snapshot_id, staged=True)._publish()


def _snapshot_of(file: Path) -> str:
    return file.stem.split(".", 1)[0]


def part_name(table: str, part: int) -> str:
    """The file name of a cluster task's part of ``table`` while staged."""
    return f"{table}.{part:06d}.parquet"


def _owner_alive(staging_folder: Path) -> bool:
    try:
        host, pid = (staging_folder / "owner").read_text().split()
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return True  # another machine's writer: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self._rows_to_batch()
        table = table_from_columns(self.schema, columns, constants)
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
            self._writer = pq.ParquetWriter(self._sink, self.schema, **parquet_options(self.schema))
        self._rows_to_batch()
        if self.batches:
            table = pa.concat_tables(self.batches)
            self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            self.written += self.batched_rows
            self.batches.clear()
            self.batched_rows = 0

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


class SnapshotWriter:
    """Writes one snapshot's tables into staging; :meth:`commit` makes it visible at once.

    >>> import tempfile
    >>> ds = Dataset.open(tempfile.mkdtemp() + "/d", create=True)
    >>> with ds.begin_snapshot("s1") as w:
    ...     w.append("nodes", {"snapshot_id": "s1", "path": b"", "kind": "directory", "size": 0})
    ...     w.commit({"snapshot_id": "s1", "label": "empty"})
    >>> ds.snapshot_ids()
    ['s1']
    """

    def __init__(self, dataset: Dataset, snapshot_id: str, owner: str | None = None, staged: bool = False) -> None:
        """``staged``: take over a snapshot another process has staged, to commit it."""
        self.dataset = dataset
        self.snapshot_id = snapshot_id
        self.staging = self._staging_folder()
        self.committed = False
        self.staged = staged
        self._buffers = {t: _TableBuffer(t, self.staging / f"{t}.parquet") for t in TABLES}
        if not staged:
            self._prepare_staging(owner)

    def _staging_folder(self) -> Path:
        """Where the tables are written until they are committed."""
        return self.dataset.path / STAGING / self.snapshot_id

    def _prepare_staging(self, owner: str | None) -> None:
        try:
            if self.staging.exists():  # an earlier attempt at this very snapshot: start afresh
                shutil.rmtree(self.staging)
            self.staging.mkdir(parents=True)
            (self.staging / "owner").write_text((owner or f"{socket.gethostname()} {os.getpid()}") + "\n")
        except OSError as err:
            raise OutputError(_describe_os_error(err, self.staging)) from None

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
            raise OutputError(_describe_os_error(err, self.dataset.path)) from None

    def append_columns(self, table: str, columns: Mapping[str, Any], constants: Mapping[str, Any] | None = None) -> None:
        """Add many rows to ``table`` at once, given as columns; ``constants`` fill whole columns."""
        try:
            self._buffers[table].append_columns(columns, constants or {})
        except OSError as err:
            raise OutputError(_describe_os_error(err, self.dataset.path)) from None


    def commit(self, snapshot_row: Mapping[str, Any]) -> None:
        """Finish every table, then move them into place, the snapshots row last."""
        self.stage(snapshot_row)
        self._publish()

    def stage(self, snapshot_row: Mapping[str, Any]) -> None:
        """Finish every table in staging without committing: another process (a cluster's
        driver) commits it with :meth:`Dataset.commit_staged`."""
        if snapshot_row.get("snapshot_id") != self.snapshot_id:
            raise ValueError("snapshot row names another snapshot")
        try:
            self._buffers["snapshots"].append(snapshot_row)
            # the last row groups are encoded and compressed by Arrow outside the GIL: side by
            # side they take the time of the largest table, not of all five
            with ThreadPoolExecutor(len(self._buffers)) as closing:
                for done in [closing.submit(buffer.close) for buffer in self._buffers.values()]:
                    done.result()
        except OSError as err:
            raise OutputError(_describe_os_error(err, self.dataset.path)) from None
        self.staged = True

    def _publish(self) -> None:
        # Ctrl-C between two renames would leave a snapshot half in place: hold it back.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            with self.dataset.locked():
                # parts written by cluster tasks (parts/<table>.<part>.parquet) go in first
                parts = self.staging / "parts"
                for part in sorted(parts.glob("*.parquet")) if parts.is_dir() else []:
                    table, number, _ = part.name.split(".")
                    folder = self.dataset.table_dir(table)
                    folder.mkdir(exist_ok=True)
                    os.replace(part, folder / f"{self.snapshot_id}.{number}.parquet")
                for table in (*[t for t in TABLES if t != "snapshots"], "snapshots"):
                    folder = self.dataset.table_dir(table)
                    folder.mkdir(exist_ok=True)
                    os.replace(self._buffers[table].path, folder / f"{self.snapshot_id}.parquet")
                    _fsync_dir(folder)
                self.committed = True
        except OSError as err:
            raise OutputError(_describe_os_error(err, self.dataset.path)) from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            shutil.rmtree(self.staging, ignore_errors=True)
            _remove_empty(self.dataset.path / STAGING)

    def abort(self) -> None:
        """Drop everything written so far; the dataset is as it was before."""
        for buffer in self._buffers.values():
            buffer.discard()
        shutil.rmtree(self.staging, ignore_errors=True)
        _remove_empty(self.dataset.path / STAGING)


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


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()

"""Rows on their way into a dataset: buffered as Arrow columns, spilled to a local Parquet file
a row group at a time, and the Arrow helpers the writers share (one place for how a table file
is written and how rows given as columns become a table).
"""

from __future__ import annotations

import contextlib
import os
import socket
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from storelab.tables.arrow import column as arrow_column
from storelab.tables.schema import SCHEMAS

__all__ = ["ROW_GROUP_ROWS", "TableBuffer", "conform", "parquet_options", "table_from_columns", "owner_of_this_process"]

ROW_GROUP_ROWS = 128 * 1024


def _open_sink(path: Path) -> BinaryIO:
    """Where table bytes go; one function so tests can inject a full disk."""
    return open(path, "wb")


class TableBuffer:
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



def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
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

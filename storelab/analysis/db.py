"""DuckDB over a dataset's Parquet files: one connection with a view per table.

The views hold only committed snapshots (or the ones asked for), and ``snapshots`` gains a
``seq`` column: the snapshot's position in creation order (0 = oldest).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import duckdb

from storelab.errors import DatasetError
from storelab.tables import TABLES, Dataset
from storelab.tables.schema import SNAPSHOTS



def _sql_type(arrow_type: object) -> str:
    import pyarrow as pa

    if pa.types.is_unsigned_integer(arrow_type):
        return "UBIGINT"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_binary(arrow_type) or pa.types.is_fixed_size_binary(arrow_type):
        return "BLOB"
    if pa.types.is_list(arrow_type):
        return "VARCHAR[]"
    return "VARCHAR"

__all__ = ["connect", "as_dataset", "sql_list"]


def as_dataset(dataset: str | os.PathLike[str] | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)


def connect(
    dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``snapshots``, ``nodes``, ``blobs``, ``chunks``,
    ``directories`` over the dataset; ``snapshots`` may be ids or labels."""
    ds = as_dataset(dataset)
    ids = ds.snapshot_ids()
    if not ids:
        raise DatasetError(f"{ds.path}: the dataset has no snapshots yet")
    con = duckdb.connect()
    ds.register(con)  # a dataset in object storage: let DuckDB read s3:// through obstore
    con.execute("SET preserve_insertion_order = false")
    # out of core: past this much memory DuckDB spills to disk instead of growing
    con.execute(f"SET memory_limit = '{os.environ.get('STORELAB_DUCKDB_MEMORY', '1GB')}'")
    con.execute(f"SET temp_directory = '{os.path.join(tempfile.gettempdir(), 'storelab-duckdb')}'")
    source = f"read_parquet({sql_list(ds.table_files('snapshots', ids))}, union_by_name = true)"
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    # columns newer than every file (a version 1 dataset): present, as nulls
    missing = "".join(f", CAST(NULL AS {_sql_type(f.type)}) AS \"{f.name}\"" for f in SNAPSHOTS if f.name not in present)
    con.execute(
        f"CREATE VIEW all_snapshots AS SELECT *{missing}, (row_number() OVER (ORDER BY created_at, snapshot_id)) - 1 AS seq "
        f"FROM {source}"
    )
    if snapshots is not None:
        wanted = _resolve(con, snapshots, ds)
        ids = [i for i in ids if i in wanted]
    for table in TABLES:
        files = ds.table_files(table, ids)
        if table == "snapshots":
            con.execute(f"CREATE VIEW snapshots AS SELECT * FROM all_snapshots WHERE snapshot_id IN {sql_list(ids, '()')}")
        else:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_list(files)})")
    return con


def sql_list(values: Sequence[str], brackets: str = "[]") -> str:
    """A SQL list literal of strings (DuckDB cannot bind parameters inside CREATE VIEW)."""
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return brackets[0] + (quoted or "NULL") + brackets[1]


def _resolve(con: duckdb.DuckDBPyConnection, names: Sequence[str], ds: Dataset) -> set[str]:
    rows = con.execute("SELECT snapshot_id, label FROM all_snapshots").fetchall()
    found: set[str] = set()
    for name in names:
        matches = {sid for sid, label in rows if name in (sid, label)}
        if not matches:
            raise DatasetError(f"{ds.path}: no snapshot with id or label {name!r}")
        found |= matches
    return found

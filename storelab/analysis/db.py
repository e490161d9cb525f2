"""DuckDB over a dataset's Parquet files: one connection with a view per table.

The views hold only committed snapshots (or the ones asked for), and ``snapshots`` gains a
``seq`` column: the snapshot's position in creation order (0 = oldest).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import duckdb

from storelab.errors import DatasetError
from storelab.tables import TABLES, Dataset

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
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        "CREATE VIEW all_snapshots AS SELECT *, (row_number() OVER (ORDER BY created_at, snapshot_id)) - 1 AS seq "
        f"FROM read_parquet({sql_list(ds.table_files('snapshots', ids))})"
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

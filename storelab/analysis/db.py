"""DuckDB over a dataset: one connection with a view per table.

The dataset's lake is attached read-only at one version (the newest when the connection is made,
or the one the dataset was opened ``as_of``): every query of one connection sees the same
snapshots, whatever other writers commit meanwhile.

Views:

- ``all_snapshots``: every committed snapshot, with ``seq``, its position in creation order
  over the whole dataset (0 = oldest) — so "earlier" means the same whichever snapshots are
  chosen;
- ``snapshots``, ``chunkings``, ``nodes``, ``blobs``, ``chunks``, ``directories``: the rows of
  the chosen snapshots (all by default); ``chunkings`` gains ``seq`` too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import duckdb

from storelab.errors import DatasetError
from storelab.tables import TABLES, Dataset

__all__ = ["connect", "as_dataset", "sql_list", "is_stream_chunking", "stream_chunking_sql"]


def as_dataset(dataset: str | os.PathLike[str] | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)


def connect(
    dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views above; ``snapshots`` may be ids or labels."""
    ds = as_dataset(dataset)
    ds.check()
    if not ds.snapshot_ids():
        raise DatasetError(f"{ds.location}: the dataset has no snapshots yet")
    from storelab.tables.lake import new_connection

    con = new_connection()
    ds.attach(con, "lake", read_only=True, version=ds.version())
    con.execute("SET preserve_insertion_order = false")
    # out of core: past this much memory DuckDB spills to disk instead of growing
    con.execute(f"SET memory_limit = '{os.environ.get('STORELAB_DUCKDB_MEMORY', '1GB')}'")
    con.execute(f"SET temp_directory = '{os.path.join(tempfile.gettempdir(), 'storelab-duckdb')}'")
    con.execute(
        "CREATE VIEW all_snapshots AS SELECT *, (row_number() OVER (ORDER BY created_at, snapshot_id)) - 1 AS seq FROM lake.snapshots"
    )
    where = ""
    if snapshots is not None:
        where = f" WHERE snapshot_id IN {sql_list(sorted(_resolve(con, snapshots, ds)), '()')}"
    con.execute(f"CREATE VIEW snapshots AS SELECT * FROM all_snapshots{where}")
    for table in TABLES:
        if table == "snapshots":
            continue
        name = "chunkings_rows" if table == "chunkings" else table
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM lake.{table}{where}")
    con.execute(
        "CREATE VIEW chunkings AS SELECT c.*, s.seq FROM chunkings_rows c JOIN all_snapshots s USING (snapshot_id)"
    )
    return con


def is_stream_chunking(chunker_id: str) -> bool:
    """Whether a recorded ``chunker_id`` cuts one stream per snapshot (its scope is one of
    :data:`~storelab.chunking.base.STREAM_SCOPES`) rather than each file (``@refs-zeroed`` too
    cuts each file).

    >>> is_stream_chunking("attic@nar"), is_stream_chunking("fastcdc2020/avg=64KiB@refs-zeroed"), is_stream_chunking("fixed/size=4KiB")
    (True, False, False)
    """
    from storelab.chunking.base import STREAM_SCOPES

    return chunker_id.rpartition("@")[2] in STREAM_SCOPES


def stream_chunking_sql(column: str = "chunker_id") -> str:
    """The SQL condition :func:`is_stream_chunking` is, on ``column``.

    >>> stream_chunking_sql("b.chunker_id")
    "(b.chunker_id LIKE '%@nar' OR b.chunker_id LIKE '%@files-by-name' OR b.chunker_id LIKE '%@files-by-size')"
    """
    from storelab.chunking.base import STREAM_SCOPES

    return "(" + " OR ".join(f"{column} LIKE '%@{scope}'" for scope in STREAM_SCOPES) + ")"


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
            raise DatasetError(f"{ds.location}: no snapshot with id or label {name!r}")
        found |= matches
    return found

"""``storelab check DATASET``: what a reader would refuse, one line each.

Checked, at the dataset's version:

- the catalog opens, and holds the six tables;
- every data file the catalog names exists and is readable Parquet with its table's columns
  (its footer read by DuckDB: from disk, or by ranged GETs in an object store);
- no snapshot is held twice;
- the index's values pass their checks and agree with the tables, on a sample;
- (thorough, as ``storelab check``, ``compact`` and ``snapshots --remove`` ask) no table holds rows
  of a snapshot the ``snapshots`` table lacks (half a commit cannot happen in the lake: such rows
  were put there by hand), and every snapshot has its nodes (an ingest always writes the root).

Every reader runs the cheap checks before it reads.

Compaction and removal refuse a dataset that fails this, naming the first problem, so damage is
never merged into new files and laundered.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from storelab.errors import StorelabError
from storelab.tables.schema import SCHEMAS, TABLES

if TYPE_CHECKING:
    from storelab.tables.dataset import Dataset

__all__ = ["find_problems"]

_SAMPLE = 256
"""Index entries compared with the tables."""


def find_problems(ds: Dataset, thorough: bool = True) -> list[str]:
    """The problems of ``ds``, one line each, each naming the dataset (empty: sound).

    Without ``thorough``, only what every reader checks before it reads (cheap whatever the
    dataset holds: the files' footers, the ``snapshots`` table, a seek into the index); with it,
    also the scans of every table for rows without their snapshot and snapshots without nodes.
    """
    try:
        if not ds.has_tables():
            return []
        missing = [t for t in TABLES if not ds._query(f"SELECT count(*) FROM duckdb_tables() WHERE database_name = 'lake' AND table_name = '{t}'")[0][0]]
    except StorelabError as err:
        return [str(err)]
    if missing:
        return [f"{ds.location}: the catalog has no {', '.join(missing)} table"]
    problems = _file_problems(ds)
    if problems:  # the row checks would only fail on the same files
        return problems
    try:
        problems += _duplicate_snapshots(ds)
        if thorough:
            problems += _row_problems(ds)
        problems += _index_problems(ds)
    except StorelabError as err:
        problems.append(str(err))
    return problems


def _file_problems(ds: Dataset) -> list[str]:
    """Each data file the catalog names for this version: there, and readable Parquet with its
    table's columns (its footer read by DuckDB: from disk, or by ranged GETs from s3)."""
    problems = []
    version = ds.version()
    for table in TABLES:
        files = [row[0] for row in ds._query(f"SELECT data_file FROM ducklake_list_files('lake', '{table}', snapshot_version => {version})")]
        need = set(SCHEMAS[table].names)
        for url in files:
            try:
                names = {row[0] for row in ds.lake().execute("SELECT name FROM parquet_schema(?)", [url]).fetchall()}
            except Exception as err:  # noqa: BLE001 — DuckDB's errors have many types: sorted by their text
                text = str(err)
                if any(sign in text for sign in ("No files found", "No such file", "does not exist", "HTTP 404", "Cannot open file")):
                    problems.append(f"{ds.location}: {table} file {_short(url)} is missing")
                else:
                    problems.append(f"{ds.location}: {table} file {_short(url)} is not readable Parquet ({text.strip().splitlines()[0][:120]})")
                continue
            if lacking := need - names:
                problems.append(f"{ds.location}: {table} file {_short(url)} is not a {table} table (it has no {', '.join(sorted(lacking))})")
    return problems


def _short(url: str) -> str:
    return url.split("/data/", 1)[-1] if "/data/" in url else url


def _duplicate_snapshots(ds: Dataset) -> list[str]:
    snapshots = ds.table_sql("snapshots")
    rows = ds._query(f"SELECT snapshot_id, count(*) FROM {snapshots} GROUP BY snapshot_id HAVING count(*) > 1 ORDER BY 1")
    return [f"{ds.location}: snapshot {sid} is held {count} times" for sid, count in rows]


def _row_problems(ds: Dataset) -> list[str]:
    problems = []
    snapshots = ds.table_sql("snapshots")
    for table in TABLES:
        if table == "snapshots":
            continue
        orphans = ds._query(
            f"SELECT DISTINCT snapshot_id FROM {ds.table_sql(table)} WHERE snapshot_id NOT IN (SELECT snapshot_id FROM {snapshots}) ORDER BY 1 LIMIT 5"
        )
        for (sid,) in orphans:
            problems.append(f"{ds.location}: {table} holds rows of snapshot {sid}, which the snapshots table lacks")
    no_nodes = ds._query(
        f"SELECT snapshot_id FROM {snapshots} WHERE snapshot_id NOT IN (SELECT DISTINCT snapshot_id FROM {ds.table_sql('nodes')}) ORDER BY 1 LIMIT 5"
    )
    for (sid,) in no_nodes:
        problems.append(f"{ds.location}: snapshot {sid} has no nodes (its rows were lost)")
    return problems


def _index_problems(ds: Dataset) -> list[str]:
    """The index's sample against the tables (only where an index exists: checking must not
    build one)."""
    from storelab.tables.index import DatasetIndex, size_check

    path = ds.storage.index_path(ds.dataset_id)
    if not path.exists():
        return []
    index = DatasetIndex(path)
    try:
        start = os.urandom(32)  # a seek to a random place: the cost does not grow with the index
        rows = index.con.execute('SELECT level, digest, size, "check" FROM chunk_sizes WHERE digest >= ? LIMIT ?', (start, _SAMPLE)).fetchall()
        rows += index.con.execute('SELECT level, digest, size, "check" FROM chunk_sizes LIMIT ?', (max(0, _SAMPLE - len(rows)),)).fetchall()
    finally:
        index.close()
    problems = []
    bad = [r for r in rows if r[3] != size_check(r[0], r[1], r[2])]
    if bad:
        problems.append(f"{ds.location}: the index holds {len(bad)} of {len(rows)} sampled chunk sizes that fail their check (damaged or edited)")
    good = [r for r in rows if r not in bad]
    if good:
        chunks, chunkings = ds.table_sql("chunks", "c"), ds.table_sql("chunkings", "k")
        recorded = {
            (level, bytes(digest)): size
            for level, digest, size in ds._query(
                f"SELECT DISTINCT k.zstd_level, c.digest, c.compressed_size FROM {chunks} JOIN {chunkings} USING (snapshot_id, chunker_id) "
                "WHERE c.digest IN (SELECT unnest(?::BLOB[])) AND c.compressed_size IS NOT NULL",
                [[bytes(r[1]) for r in good]],
            )
        }
        differ = [r for r in good if (r[0], bytes(r[1])) in recorded and recorded[(r[0], bytes(r[1]))] != r[2]]
        if differ:
            problems.append(f"{ds.location}: the index disagrees with the tables on {len(differ)} of {len(good)} sampled chunk sizes")
    return problems

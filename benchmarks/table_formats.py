"""The spike that chose the datasets' table format: Delta Lake, DuckLake and Apache Iceberg, each
doing what a storelab dataset does, measured side by side in one run.

    .venv/bin/python benchmarks/table_formats.py [--snapshots 2000] [--formats ducklake,delta,iceberg]
                                                 [--s3] [--writers 4]

Needs the spike's libraries: ``pip install -e '.[spike]'`` (deltalake, pyiceberg; DuckLake's
extension ships with storelab). With ``--s3`` a moto server and a PostgreSQL server (Debian's, as
DuckLake's catalog for many machines) are started on 127.0.0.1 and stopped at the end.

A *snapshot* here is what an ingest commits: rows in six tables (snapshots 1, chunkings 1,
nodes 60, blobs 40, chunks 50, directories 8 — a small NAR's share), all of which must become
visible together. Measured per format:

1. **appends**: SNAPSHOTS separate one-snapshot commits; mean ms of the first and the last 10 %
   (the ratio is what the scale target holds to ≤ 1.2);
2. **atomic**: while one writer appends, a reader reads the six tables as one version and counts
   the snapshots whose rows it sees in ``snapshots`` but not in ``nodes`` (or the reverse):
   anything above 0 is a half-visible snapshot;
3. **query**: a stats-like aggregate (distinct blobs, their bytes, per-snapshot nodes) at SNAPSHOTS;
4. **compact**: the format's own compaction, with a reader looping meanwhile — reads that failed;
5. **race**: WRITERS processes appending 25 snapshots each while a compaction and a removal of 10
   snapshots run: snapshots lost, doubled or wrongly present at the end, and errors that reached
   the caller after the format's retries.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TABLE_ROWS = {"snapshots": 1, "chunkings": 1, "nodes": 60, "blobs": 40, "chunks": 50, "directories": 8}


def snapshot_tables(sid: str, seed: int) -> dict[str, pa.Table]:
    """Six tables' rows of one snapshot: ids and sizes enough to join and aggregate on."""
    out = {}
    for table, n in TABLE_ROWS.items():
        digests = [((seed * 7919 + i * 31) % 5000).to_bytes(32, "little") for i in range(n)]
        out[table] = pa.table({
            "snapshot_id": pa.array([sid] * n, pa.string()),
            "digest": pa.array(digests, pa.binary()),
            "size": pa.array([(seed + i) % 4096 for i in range(n)], pa.int64()),
        })  # fmt: skip
    return out


class Format(Protocol):
    name: str

    def create(self) -> None: ...
    def append(self, tables: dict[str, pa.Table]) -> None: ...
    def read(self, table: str) -> pa.Table: ...
    def read_consistent(self) -> dict[str, pa.Table]: ...
    def compact(self) -> None: ...
    def remove(self, sids: list[str]) -> None: ...
    def query(self) -> Any: ...


class DuckLake:
    """All six tables in one lake; a snapshot is one catalog transaction."""

    name = "ducklake"

    def __init__(self, root: Path, catalog: str | None = None, data: str | None = None, s3: dict[str, str] | None = None) -> None:
        self.catalog = catalog or f"sqlite:{root}/catalog.sqlite"
        self.data = data or f"{root}/data/"
        self.s3 = s3
        self._local = threading.local()

    def con(self) -> Any:
        """One DuckDB database a thread, as separate processes would have (one DuckDB's
        connections sharing a SQLite-catalogued lake across threads lose sight of its tables)."""
        if getattr(self._local, "con", None) is None:
            from storelab.tables.lake import connect_lake

            self._local.con = connect_lake(self.catalog, self.data, s3=self.s3)
        return self._local.con

    def _retry(self, work: Callable[[Any], Any]) -> Any:
        """``work`` in one transaction, retried as storelab retries its own (dataset.retry)."""
        from storelab.tables.dataset import retry

        def once() -> Any:
            con = self.con()
            try:
                con.execute("BEGIN")
                result = work(con)
                con.execute("COMMIT")
                return result
            except Exception:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise

        return retry(once, lambda err: any(sign in str(err) for sign in ("onflict", "locked", "commit")))

    def create(self) -> None:
        con = self.con()
        for table in TABLE_ROWS:
            con.execute(f"CREATE TABLE IF NOT EXISTS lake.{table} (snapshot_id VARCHAR, digest BLOB, size BIGINT)")

    def append(self, tables: dict[str, pa.Table]) -> None:
        def work(con: Any) -> None:
            for table, data in tables.items():
                con.register("incoming", data)
                con.execute(f"INSERT INTO lake.{table} SELECT * FROM incoming")
                con.unregister("incoming")

        self._retry(work)

    def read(self, table: str) -> pa.Table:
        return self.con().execute(f"SELECT * FROM lake.{table}").to_arrow_table()

    def read_consistent(self) -> dict[str, pa.Table]:
        con = self.con()
        con.execute("BEGIN")
        try:
            return {t: con.execute(f"SELECT snapshot_id FROM lake.{t}").to_arrow_table() for t in ("snapshots", "nodes")}
        finally:
            con.execute("COMMIT")

    def compact(self) -> None:
        self.con().execute("CALL ducklake_merge_adjacent_files('lake')")

    def remove(self, sids: list[str]) -> None:
        def work(con: Any) -> None:
            for table in TABLE_ROWS:
                con.execute(f"DELETE FROM lake.{table} WHERE snapshot_id IN (SELECT unnest(?::VARCHAR[]))", [sids])

        self._retry(work)

    def query(self) -> Any:
        return self.con().execute(
            "SELECT (SELECT count(DISTINCT digest) FROM lake.blobs), (SELECT sum(size) FROM (SELECT DISTINCT digest, size FROM lake.blobs)), "
            "(SELECT count(*) FROM (SELECT snapshot_id, count(*) FROM lake.nodes GROUP BY snapshot_id))"
        ).fetchall()


class Delta:
    """One Delta table per table; a snapshot is six commits, one per table."""

    name = "delta"

    def __init__(self, root: Path, storage_options: dict[str, str] | None = None, url: str | None = None) -> None:
        self.root = url or str(root)
        self.options = storage_options

    def _path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def create(self) -> None:
        from deltalake import write_deltalake

        for table in TABLE_ROWS:
            write_deltalake(self._path(table), snapshot_tables("init", 0)[table].slice(0, 0), mode="append", storage_options=self.options)

    def append(self, tables: dict[str, pa.Table]) -> None:
        from deltalake import write_deltalake

        for table, data in tables.items():
            for attempt in range(50):
                try:
                    write_deltalake(self._path(table), data, mode="append", storage_options=self.options)
                    break
                except Exception:
                    if attempt == 49:
                        raise
                    time.sleep(0.01 * (attempt + 1))

    def _table(self, table: str) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(self._path(table), storage_options=self.options)

    def read(self, table: str) -> pa.Table:
        return pa.table(self._table(table).to_pyarrow_dataset().to_table())

    def read_consistent(self) -> dict[str, pa.Table]:
        # Delta has no version across tables: the best a reader can do is read each table's latest.
        return {t: self.read(t).select(["snapshot_id"]) for t in ("snapshots", "nodes")}

    def compact(self) -> None:
        for table in TABLE_ROWS:
            self._table(table).optimize.compact()

    def remove(self, sids: list[str]) -> None:
        listed = ", ".join(f"'{s}'" for s in sids)
        for table in TABLE_ROWS:
            self._table(table).delete(f"snapshot_id IN ({listed})")

    def query(self) -> Any:
        import duckdb

        blobs, nodes = self.read("blobs"), self.read("nodes")  # noqa: F841 — DuckDB reads them by name
        return duckdb.sql(
            "SELECT (SELECT count(DISTINCT digest) FROM blobs), (SELECT sum(size) FROM (SELECT DISTINCT digest, size FROM blobs)), "
            "(SELECT count(*) FROM (SELECT snapshot_id, count(*) FROM nodes GROUP BY snapshot_id))"
        ).fetchall()


class Iceberg:
    """One Iceberg table per table in a SQL catalog; a snapshot is six commits."""

    name = "iceberg"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._catalog: Any = None

    def catalog(self) -> Any:
        if self._catalog is None:
            from pyiceberg.catalog.sql import SqlCatalog

            self._catalog = SqlCatalog("bench", uri=f"sqlite:///{self.root}/catalog.db", warehouse=f"file://{self.root}/warehouse")
        return self._catalog

    def create(self) -> None:
        catalog = self.catalog()
        with contextlib.suppress(Exception):
            catalog.create_namespace("ds")
        for table in TABLE_ROWS:
            with contextlib.suppress(Exception):
                catalog.create_table(f"ds.{table}", schema=snapshot_tables("x", 0)[table].schema)

    def append(self, tables: dict[str, pa.Table]) -> None:
        for table, data in tables.items():
            for attempt in range(50):
                try:
                    self.catalog().load_table(f"ds.{table}").append(data)
                    break
                except Exception:
                    if attempt == 49:
                        raise
                    time.sleep(0.01 * (attempt + 1))

    def read(self, table: str) -> pa.Table:
        return self.catalog().load_table(f"ds.{table}").scan().to_arrow()

    def read_consistent(self) -> dict[str, pa.Table]:
        return {t: self.read(t).select(["snapshot_id"]) for t in ("snapshots", "nodes")}

    def compact(self) -> None:
        # pyiceberg has no rewrite of data files: the one way is to overwrite the table with itself
        for table in TABLE_ROWS:
            handle = self.catalog().load_table(f"ds.{table}")
            handle.overwrite(handle.scan().to_arrow())

    def remove(self, sids: list[str]) -> None:
        from pyiceberg.expressions import In

        for table in TABLE_ROWS:
            self.catalog().load_table(f"ds.{table}").delete(In("snapshot_id", sids))

    def query(self) -> Any:
        import duckdb

        blobs, nodes = self.read("blobs"), self.read("nodes")  # noqa: F841
        return duckdb.sql(
            "SELECT (SELECT count(DISTINCT digest) FROM blobs), (SELECT sum(size) FROM (SELECT DISTINCT digest, size FROM blobs)), "
            "(SELECT count(*) FROM (SELECT snapshot_id, count(*) FROM nodes GROUP BY snapshot_id))"
        ).fetchall()


# -- the measurements ---------------------------------------------------------------------


def measure_appends(fmt: Format, count: int) -> dict[str, float]:
    times = []
    for i in range(count):
        tables = snapshot_tables(f"s{i:06d}", i)
        started = time.perf_counter()
        fmt.append(tables)
        times.append(time.perf_counter() - started)
    tenth = max(1, count // 10)
    first, last = statistics.mean(times[:tenth]), statistics.mean(times[-tenth:])
    return {"first_ms": first * 1000, "last_ms": last * 1000, "ratio": last / first}


def _append_many(kind: str, config: dict[str, Any], prefix: str, count: int) -> None:
    fmt = make(kind, config)
    for i in range(count):
        fmt.append(snapshot_tables(f"{prefix}{i:05d}", i))


def _query_until(kind: str, config: dict[str, Any], stop: Any, counts: Any) -> None:
    fmt = make(kind, config)
    while not stop.is_set():
        counts[1] += 1
        try:
            fmt.query()
        except Exception:  # noqa: BLE001 — counted: the measurement is how often readers fail
            counts[0] += 1


def measure_atomic(kind: str, config: dict[str, Any], count: int) -> int:
    """Half-visible snapshots a reader saw while another process appended ``count`` more."""
    fmt = make(kind, config)
    writer = multiprocessing.get_context("spawn").Process(target=_append_many, args=(kind, config, "a", count))
    writer.start()
    torn = 0
    while writer.is_alive():
        seen = fmt.read_consistent()
        ids = {t: set(seen[t].column("snapshot_id").to_pylist()) for t in seen}
        torn += len(ids["snapshots"] ^ ids["nodes"])
    writer.join()
    return torn


def measure_compact(kind: str, config: dict[str, Any]) -> tuple[float, int, int]:
    """Seconds to compact, and the reads another process made meanwhile that failed / in all."""
    context = multiprocessing.get_context("spawn")
    stop, counts = context.Event(), context.Array("i", [0, 0])
    reader = context.Process(target=_query_until, args=(kind, config, stop, counts))
    reader.start()
    while counts[1] == 0 and reader.is_alive():
        time.sleep(0.05)
    started = time.perf_counter()
    make(kind, config).compact()
    took = time.perf_counter() - started
    time.sleep(0.5)  # reads that began before the compaction's end finish against the old files
    stop.set()
    reader.join()
    return took, counts[0], counts[1]


def _race_writer(args: tuple[str, dict[str, Any], int]) -> str:
    kind, config, writer = args
    fmt = make(kind, config)
    try:
        for i in range(25):
            fmt.append(snapshot_tables(f"r{writer}-{i:03d}", writer * 100 + i))
    except Exception as err:  # noqa: BLE001 — reported: the measurement is what reaches the user
        return f"{type(err).__name__}: {str(err)[:120]}"
    return ""


def measure_race(kind: str, config: dict[str, Any], writers: int) -> dict[str, Any]:
    fmt = make(kind, config)
    removed = [f"s{i:06d}" for i in range(10)]
    errors: list[str] = []
    with multiprocessing.get_context("spawn").Pool(writers + 2) as pool:
        appends = pool.map_async(_race_writer, [(kind, config, w) for w in range(writers)])
        time.sleep(0.5)
        for work in (lambda: fmt.compact(), lambda: fmt.remove(removed)):
            try:
                work()
            except Exception as err:  # noqa: BLE001 — reported
                errors.append(f"{type(err).__name__}: {str(err)[:120]}")
        errors += [e for e in appends.get() if e]
    ids = fmt.read("snapshots").column("snapshot_id").to_pylist()
    expected = {f"r{w}-{i:03d}" for w in range(writers) for i in range(25)}
    return {
        "lost": len(expected - set(ids)),
        "doubled": len(ids) - len(set(ids)),
        "removed_back": len(set(removed) & set(ids)),
        "errors": errors,
    }


def make(kind: str, config: dict[str, Any]) -> Format:
    root = Path(config["root"])
    if kind == "ducklake":
        return DuckLake(root, config.get("catalog"), config.get("data"), config.get("s3"))
    if kind == "delta":
        return Delta(root, config.get("storage_options"), config.get("url"))
    return Iceberg(root)


@contextlib.contextmanager
def s3_services(root: Path) -> Iterator[dict[str, Any]]:
    from storelab.testing.servers import moto_server, postgres_server

    with moto_server() as s3, postgres_server(root / "pg") as pg:
        s3.create_bucket("spike")
        yield {"s3": s3, "pg": pg}


def run(kind: str, config: dict[str, Any], snapshots: int, writers: int) -> dict[str, Any]:
    fmt = make(kind, config)
    fmt.create()
    out: dict[str, Any] = {"format": kind, "where": config["where"]}
    out |= measure_appends(fmt, snapshots)
    started = time.perf_counter()
    fmt.query()
    out["query_s"] = time.perf_counter() - started
    out["torn"] = measure_atomic(kind, config, 50)
    out["compact_s"], out["reads_failed"], out["reads"] = measure_compact(kind, config)
    out |= measure_race(kind, config, writers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=2000)
    parser.add_argument("--formats", default="ducklake,delta,iceberg")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--s3", action="store_true", help="also on s3 (moto; DuckLake's catalog in PostgreSQL)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="storelab-spike-") as tmp:
        base = Path(tmp)
        for kind in args.formats.split(","):
            root = base / f"{kind}-folder"
            root.mkdir()
            results.append(run(kind, {"root": str(root), "where": "folder"}, args.snapshots, args.writers))
            print(results[-1], flush=True)
        if args.s3:
            with s3_services(base) as services:
                s3, pg = services["s3"], services["pg"]
                for kind in [k for k in args.formats.split(",") if k in ("ducklake", "delta")]:
                    root = base / f"{kind}-s3"
                    root.mkdir()
                    if kind == "ducklake":
                        config = {"catalog": pg.ducklake_catalog(pg.create_database("spike")), "data": "s3://spike/ducklake/", "s3": s3.ducklake_secret()}
                    else:
                        config = {"url": "s3://spike/delta", "storage_options": s3.delta_options()}
                    results.append(run(kind, {"root": str(root), "where": "s3", **config}, args.snapshots, args.writers))
                    print(results[-1], flush=True)
    print()
    print(f"{'format':9} {'where':6} {'first ms':>9} {'last ms':>8} {'ratio':>6} {'query s':>8} {'torn':>5} {'compact s':>9} "
          f"{'reads failed':>13} {'lost':>5} {'doubled':>7} {'undone':>6}  errors")  # fmt: skip
    for r in results:
        print(f"{r['format']:9} {r['where']:6} {r['first_ms']:9.1f} {r['last_ms']:8.1f} {r['ratio']:6.2f} {r['query_s']:8.2f} {r['torn']:5} "
              f"{r['compact_s']:9.2f} {r['reads_failed']:>6}/{r['reads']:<6} {r['lost']:5} {r['doubled']:7} {r['removed_back']:6}  "
              f"{len(r['errors'])}: {'; '.join(r['errors'])[:200]}")  # fmt: skip
    print(f"\n{args.snapshots} snapshots, {args.writers} racing writers; python {sys.version.split()[0]}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

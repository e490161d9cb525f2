"""DuckLake: the open table format under a dataset — how storelab connects to it.

A DuckLake is a *catalog* (a SQL database holding every table's schema, every version and the
list of data files each version sees) and *data files* (Parquet, in a folder or under an
``s3://`` prefix). A transaction spans all tables: a snapshot's rows in its six tables become
visible in one catalog commit, or not at all; a reader pins one version for its whole run.

Catalogs storelab uses:

- ``sqlite:PATH`` — a folder dataset's own ``_catalog.sqlite`` (many processes on one machine);
- ``postgres:CONNINFO`` — a PostgreSQL database (``host=… dbname=…``; the password from
  ``PGPASSWORD`` or ``~/.pgpass``, never stored): many machines, e.g. a dataset in s3.

DuckDB loads the ``ducklake``, ``sqlite_scanner``, ``postgres_scanner`` and ``httpfs`` extensions
from the ``duckdb-extension-*`` packages pip installed beside it (:func:`extension_path`): never
from the network, so a machine that reaches only the package registries works the same.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
from typing import Any

from storelab.errors import ConfigError

__all__ = ["connect_lake", "new_connection", "create_table_sql", "sql_type", "extension_path", "s3_secret_from_environment", "load_extensions"]

RETRIES = 40
"""How often DuckLake retries a commit that lost a race (20 ms, growing ×1.2: ~2 min in all)."""
_EXTENSIONS = {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner", "s3": "httpfs"}


def extension_path(name: str) -> str:
    """The file of DuckDB extension ``name`` shipped by its ``duckdb-extension-<name>`` package,
    for the DuckDB version running (a mismatch would fail to load: the packages are pinned
    together with duckdb in ``pyproject.toml``)."""
    import duckdb

    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise ConfigError(f"DuckDB's {name} extension is not installed (pip install duckdb-extension-{name.replace('_', '-')})") from None
    folder = os.path.dirname(module.__file__ or "")
    version = "v" + duckdb.__version__
    found = glob.glob(os.path.join(folder, "extensions", version, f"{name}.duckdb_extension"))
    if not found:
        package = f"duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__}"
        raise ConfigError(f"the {name} extension installed is not for DuckDB {duckdb.__version__} (reinstall {package})")
    return found[0]


def new_connection() -> Any:
    """A DuckDB connection ready to load the extensions storelab ships.

    Loading a signed extension makes DuckDB hash its whole file (~35 MB) to check the
    signature: 0.1–0.25 s per extension per connection, more than a small ingest's own work.
    The files here come from the packages pip installed beside DuckDB, from the same registry as
    DuckDB itself; anyone able to change them could change DuckDB, or storelab, as easily. So the
    check buys nothing and is skipped (``allow_unsigned_extensions``); nothing else is loaded.
    """
    import duckdb

    return duckdb.connect(config={"allow_unsigned_extensions": "true"})


def load_extensions(con: Any, *names: str) -> None:
    """Load DuckDB extensions from their packages (never downloaded)."""
    loaded = {row[0] for row in con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    for name in names:
        if name not in loaded:
            con.execute(f"LOAD '{extension_path(name)}'")


def s3_secret_from_environment() -> dict[str, str]:
    """DuckDB S3 secret parameters from the same environment obstore reads (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``):
    one set of settings for the datasets' Parquet files and the blob stores' objects."""
    env = os.environ
    secret = {"REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if env.get("AWS_ACCESS_KEY_ID"):
        secret["KEY_ID"] = env["AWS_ACCESS_KEY_ID"]
        secret["SECRET"] = env.get("AWS_SECRET_ACCESS_KEY", "")
    if env.get("AWS_SESSION_TOKEN"):
        secret["SESSION_TOKEN"] = env["AWS_SESSION_TOKEN"]
    endpoint = env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT") or ""
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        secret["ENDPOINT"] = host.rstrip("/") if host else endpoint
        secret["URL_STYLE"] = "path"  # a local S3-compatible server serves buckets as paths
        secret["USE_SSL"] = "false" if scheme == "http" else "true"
    return secret


def _sqlite_in_wal_mode(path: str) -> None:
    """A SQLite catalog in WAL mode (kept by the file): in its default mode a reader's open
    transaction blocks every commit ("database is locked"), so a ``stats`` would stall an ingest."""
    import sqlite3

    from storelab.tables.index import use_wal

    con = sqlite3.connect(path, timeout=60)
    try:
        use_wal(con)
    finally:
        con.close()


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect_lake(
    catalog: str, data_path: str, *, alias: str = "lake", s3: dict[str, str] | None = None, read_only: bool = False,
    snapshot_version: int | None = None, snapshot_time: str | None = None, con: Any = None, metadata_schema: str | None = None,
) -> Any:  # fmt: skip
    """A DuckDB connection with the DuckLake ``catalog`` attached as ``alias``.

    ``data_path`` is where new data files go (a folder ending in ``/`` or ``s3://bucket/prefix/``);
    ``s3`` the S3 secret's parameters (default: :func:`s3_secret_from_environment` when the data
    or the catalog is in s3). ``snapshot_version`` / ``snapshot_time`` attach the lake as it was
    at that version or time (read-only). Retries of conflicting commits are DuckLake's own
    (its ``ducklake_max_retry_count``), raised here from its default of 10.
    """

    kind = catalog.split(":", 1)[0]
    if kind not in ("sqlite", "postgres"):
        raise ConfigError(f"unknown DuckLake catalog {catalog!r} (storelab uses sqlite:PATH or postgres:CONNINFO)")
    if kind == "sqlite":
        _sqlite_in_wal_mode(catalog.split(":", 1)[1])
    con = con or new_connection()
    with contextlib.suppress(Exception):  # in Jupyter DuckDB refuses to touch it without ipywidgets
        con.execute("SET enable_progress_bar = false")
    con.execute("SET autoinstall_known_extensions = false")  # never from the network: from their packages
    needs = [_EXTENSIONS[kind], "ducklake"]
    if data_path.startswith("s3://"):
        needs.insert(0, "httpfs")
    load_extensions(con, *needs)
    # Concurrent writers: a commit that lost the race is retried by DuckLake against the new
    # version when nothing conflicts. Its default (10 tries, 100 ms growing ×1.5) gives up
    # after ~11 s, too soon for many writers on a SQLite catalog; this waits ~2 min.
    con.execute(f"SET ducklake_max_retry_count = {RETRIES}")
    con.execute("SET ducklake_retry_wait_ms = 20")
    con.execute("SET ducklake_retry_backoff = 1.2")
    if data_path.startswith("s3://"):
        params = s3 if s3 is not None else s3_secret_from_environment()
        body = ", ".join(f"{key} {_sql_string(value) if key not in ('USE_SSL',) else value}" for key, value in params.items())
        con.execute(f"CREATE OR REPLACE SECRET storelab_s3 (TYPE s3, {body})")
    options = [f"DATA_PATH {_sql_string(data_path)}"]
    if metadata_schema:
        options.append(f"METADATA_SCHEMA {_sql_string(metadata_schema)}")
    if read_only or snapshot_version is not None or snapshot_time is not None:
        options.append("READ_ONLY")
    if snapshot_version is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot_version)}")
    if snapshot_time is not None:
        options.append(f"SNAPSHOT_TIME {_sql_string(snapshot_time)}")
    listed = ", ".join(o for o in options if o)
    con.execute(f"ATTACH {_sql_string('ducklake:' + catalog)} AS {alias} ({listed})")
    return con


def sql_type(arrow_type: Any) -> str:
    """The DuckDB type a column of ``arrow_type`` has in the lake.

    >>> import pyarrow as pa
    >>> sql_type(pa.list_(pa.struct([("path", pa.binary()), ("reason", pa.string())])))
    'STRUCT("path" BLOB, "reason" VARCHAR)[]'
    """
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        return sql_type(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return sql_type(t.value_type) + "[]"
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in t) + ")"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    simple = {
        pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR", pa.large_string(): "VARCHAR",
    }  # fmt: skip
    if t in simple:
        return simple[t]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    raise ValueError(f"no lake type for {t}")


def create_table_sql(name: str, schema: Any, if_not_exists: bool = False) -> str:
    """``CREATE TABLE`` for an Arrow schema (the lake's columns, in the schema's order)."""
    columns = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in schema)
    return f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{name} ({columns})"

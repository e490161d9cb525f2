"""``storelab migrate DATASET``: a schema-3 dataset (storelab's own Parquet parts) into a DuckLake.

A schema-3 dataset kept each table as Parquet files named by *part*; a part's ``snapshots`` file
was its commit, and a part written by a merge named the parts it replaced in its footer
(``storelab.replaces``), which readers then hid. Migration reads exactly what a schema-3 reader
saw — the live parts — and writes every row into a new lake in one transaction; only then is
the marker switched to schema 4 (a crash before leaves the old dataset as it was; running
``migrate`` again starts afresh), and the old files are deleted. The rows are equal before and
after (tested).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from storelab.errors import DatasetError
from storelab.tables.layout import MARKER
from storelab.tables.schema import SCHEMA_VERSION, TABLES

__all__ = ["migrate", "live_parts_of_schema_3", "REPLACES"]

REPLACES = b"storelab.replaces"
"""The footer key of a schema-3 ``snapshots`` file: the JSON list of parts it replaces."""


def _part_of(key: str) -> str:
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def live_parts_of_schema_3(storage: object) -> set[str]:
    """The parts a schema-3 reader saw: every part with a ``snapshots`` file, less those another
    part replaces, less the losers of a race (two parts replacing the same one: the lower id
    won)."""
    import pyarrow.parquet as pq

    parts: list[tuple[str, tuple[str, ...]]] = []
    for file in storage.list("snapshots"):  # type: ignore[attr-defined]
        if not file.key.endswith(".parquet"):
            continue
        path, temporary = storage.local_path(file.key)  # type: ignore[attr-defined]
        try:
            raw = (pq.read_metadata(path).metadata or {}).get(REPLACES)
        except Exception as err:  # noqa: BLE001 — pyarrow's errors have many types
            raise DatasetError(f"{storage.location}: {file.key} is not readable Parquet ({err}); repair or remove it, then migrate") from None  # type: ignore[attr-defined]
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        parts.append((_part_of(file.key), tuple(json.loads(raw)) if raw else ()))
    parts.sort()
    replaced = {r for _, replaces in parts for r in replaces}
    claimed: set[str] = set()
    losers: set[str] = set()
    for part, replaces in parts:
        if part in replaced or not replaces:
            continue
        if claimed & set(replaces):
            losers.add(part)
        else:
            claimed |= set(replaces)
    return {p for p, _ in parts} - replaced - losers


def migrate(location: str | os.PathLike[str]) -> int:
    """Convert the schema-3 dataset at ``location``; returns the number of snapshots moved."""
    from storelab.tables.dataset import Dataset, _storage, new_marker, transaction
    from storelab.tables.storage import FolderStorage

    storage = _storage(location)
    raw = storage.read(MARKER)
    if raw is None:
        raise DatasetError(f"{location}: no such dataset (no {MARKER})")
    try:
        version = json.loads(raw).get("schema_version")
    except (ValueError, AttributeError):
        raise DatasetError(f"{location}/{MARKER}: unreadable dataset marker") from None
    if version == SCHEMA_VERSION:
        raise DatasetError(f"{location}: already schema {SCHEMA_VERSION}; nothing to migrate")
    if version != 3:
        raise DatasetError(f"{location}: schema version {version!r} cannot be migrated (only 3 can); ingest the sources again")
    live = live_parts_of_schema_3(storage)
    files = {t: [f.key for f in storage.list(t) if f.key.endswith(".parquet") and _part_of(f.key) in live] for t in TABLES}
    old_keys = [f.key for t in TABLES for f in storage.list(t)]
    # a new lake beside the old files, its marker written only once every row is in
    if isinstance(storage, FolderStorage):
        for suffix in ("", "-wal", "-shm"):
            (storage.root / f"_catalog.sqlite{suffix}").unlink(missing_ok=True)  # an earlier attempt's
    marker, raw_marker = new_marker(storage)
    ds = Dataset(storage, marker)
    ds._ensure_tables()

    def work(con: Any) -> None:
        for table in TABLES:
            if files[table]:
                listed = ", ".join("'" + storage.url(k).replace("'", "''") + "'" for k in files[table])
                con.execute(f"INSERT INTO lake.{table} BY NAME SELECT * FROM read_parquet([{listed}], union_by_name = true)")

    transaction(ds, work)
    scratch = storage.scratch()
    try:
        (scratch / MARKER).write_bytes(raw_marker)
        storage.publish(scratch / MARKER, MARKER)  # the switch: from here on the dataset is the lake
    finally:
        storage.drop_scratch(scratch)
    storage.delete(old_keys)
    storage.delete(["_index.sqlite", "_index.sqlite-wal", "_index.sqlite-shm", "_lock"])
    if isinstance(storage, FolderStorage):
        for table in TABLES:
            with contextlib.suppress(OSError):
                (storage.root / table).rmdir()
    return len(Dataset.open(location).snapshot_ids())

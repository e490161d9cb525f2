"""Small helpers the ingest tests share: build trees on disk, read a snapshot back."""

from __future__ import annotations

from pathlib import Path

from storelab.tables import Dataset
from storelab.testing.trees import TreeSpec, build_tree, flatten  # noqa: F401 — the tests import them from here too


def snapshot_rows(dataset: Path, table: str, snapshot_id: str | None = None) -> list[dict]:
    ds = Dataset.open(dataset)
    rows = ds.read_table(table).to_pylist()
    return [r for r in rows if snapshot_id is None or r["snapshot_id"] == snapshot_id]


VOLATILE = {"snapshot_id", "created_at", "wall_seconds", "label", "source"}


def table_rows(dataset: Path | str, snapshot: str | None = None, ignore: frozenset[str] = frozenset()) -> dict[str, list[tuple]]:
    """Every table's rows (of one snapshot, or all), sorted, without the columns that differ
    between two ingests of the same input (ids, times)."""
    ds = Dataset.open(dataset)
    ids = [snapshot] if snapshot else None
    out = {}
    skip = VOLATILE | ignore
    for table in ("nodes", "blobs", "chunks", "directories", "chunkings", "snapshots"):
        rows = ds.read_table(table, ids).to_pylist()
        out[table] = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k not in skip)) for r in rows)
    return out

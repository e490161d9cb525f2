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


def session_processes(sid: int) -> list[str]:
    """The processes still alive in session ``sid`` (a command started with start_new_session):
    what a killed or failed command left behind."""
    import subprocess

    listing = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if line.split() and line.split()[1] == str(sid)]


def wait_until_gone(sid: int, seconds: float = 10) -> list[str]:
    """Poll :func:`session_processes` until none is left or ``seconds`` pass; what is left."""
    import time

    deadline = time.monotonic() + seconds
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left

"""Small helpers the ingest tests share: build trees on disk, read a snapshot back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from storelab.tables import Dataset

# A tree spec: a dict name → bytes (file), ("x", bytes) (executable file),
# ("link", target) (symlink) or a nested dict (directory).
TreeSpec = dict[bytes, Union[bytes, tuple, dict]]


def build_tree(root: Path, spec: TreeSpec) -> None:
    base = os.fsencode(root)
    os.makedirs(base, exist_ok=True)
    for name, value in spec.items():
        path = base + b"/" + name
        if isinstance(value, dict):
            build_tree(Path(os.fsdecode(path)), value)
        elif isinstance(value, tuple) and value[0] == "link":
            os.symlink(value[1], path)
        else:
            content = value[1] if isinstance(value, tuple) else value
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, 0o755 if isinstance(value, tuple) else 0o644)


def flatten(spec: TreeSpec, prefix: bytes = b"") -> dict[bytes, object]:
    """path → spec value, the root as b"" (a dict marks a directory)."""
    out: dict[bytes, object] = {} if prefix else {b"": {}}
    for name, value in spec.items():
        path = prefix + b"/" + name if prefix else name
        out[path] = value
        if isinstance(value, dict):
            out.update(flatten(value, path))
    return out


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

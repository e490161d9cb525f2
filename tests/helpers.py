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

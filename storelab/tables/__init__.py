"""The tables: schemas (one place), the dataset (a DuckLake), snapshot writing and reading.

Exports load on first use: Arrow takes a fifth of a second to import, and an ingest starts
its scan and its workers before it needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storelab.lazy import lazy_exports

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "TABLES", "Dataset", "BatchWriter", "SnapshotWriter", "new_snapshot_id"]

_WHERE = {
    "Dataset": "storelab.tables.dataset",
    "SnapshotWriter": "storelab.tables.dataset",
    "BatchWriter": "storelab.tables.dataset",
    "new_snapshot_id": "storelab.tables.dataset",
    "SCHEMA_VERSION": "storelab.tables.schema",
    "SCHEMAS": "storelab.tables.schema",
    "TABLES": "storelab.tables.schema",
}

if TYPE_CHECKING:
    from storelab.tables.dataset import (
        BatchWriter,
        Dataset,
        SnapshotWriter,
        new_snapshot_id,
    )
    from storelab.tables.schema import SCHEMA_VERSION, SCHEMAS, TABLES


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

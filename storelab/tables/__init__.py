"""Parquet tables: schemas (one place), the dataset folder, snapshot writing and reading."""

from storelab.tables.dataset import Dataset, SnapshotWriter, new_snapshot_id
from storelab.tables.schema import SCHEMA_VERSION, SCHEMAS, TABLES

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "TABLES", "Dataset", "SnapshotWriter", "new_snapshot_id"]

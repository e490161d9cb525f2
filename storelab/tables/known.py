"""What a dataset already knows, so work is not repeated across snapshots."""

from __future__ import annotations

import os

from storelab.tables.dataset import Dataset

__all__ = ["known_compressed_sizes", "prior_knowledge"]


def known_compressed_sizes(dataset: Dataset, zstd_level: int) -> dict[bytes, int]:
    """Chunk digest → zstd size already measured at ``zstd_level`` in this dataset."""
    import duckdb  # only needed once a dataset has chunks; keeps `storelab` quick to start
    snapshots = dataset.read_table("snapshots").select(["snapshot_id", "zstd_level"]).to_pylist()
    ids = [row["snapshot_id"] for row in snapshots if row["zstd_level"] == zstd_level]
    files = dataset.table_files("chunks", ids)
    if not files:
        return {}
    con = duckdb.connect()
    dataset.register(con)
    rows = con.execute(
        "SELECT digest, any_value(compressed_size) FROM read_parquet(?) "
        "WHERE compressed_size IS NOT NULL GROUP BY digest",
        [files],
    ).fetchall()
    return {bytes(digest): size for digest, size in rows}


def prior_knowledge(dataset: str | os.PathLike[str] | Dataset, zstd_level: int) -> tuple[Dataset | None, dict[bytes, int]]:
    """What an ingest needs to know before it starts: the dataset if it exists already, and
    the compressed sizes it has measured at ``zstd_level`` (nothing is created here)."""
    existing = dataset if isinstance(dataset, Dataset) else Dataset.open_existing(dataset)
    known = known_compressed_sizes(existing, zstd_level) if existing is not None and zstd_level else {}
    return existing, known

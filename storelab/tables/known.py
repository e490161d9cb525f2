"""What a dataset already knows, so work is not repeated across snapshots."""

from __future__ import annotations



from storelab.tables.dataset import Dataset

__all__ = ["known_compressed_sizes"]


def known_compressed_sizes(dataset: Dataset, zstd_level: int) -> dict[bytes, int]:
    """Chunk digest → zstd size already measured at ``zstd_level`` in this dataset."""
    import duckdb  # only needed once a dataset has chunks; keeps `storelab` quick to start
    snapshots = dataset.read_table("snapshots").select(["snapshot_id", "zstd_level"]).to_pylist()
    ids = [row["snapshot_id"] for row in snapshots if row["zstd_level"] == zstd_level]
    files = dataset.table_files("chunks", ids)
    if not files:
        return {}
    con = duckdb.connect()
    rows = con.execute(
        "SELECT digest, any_value(compressed_size) FROM read_parquet(?) "
        "WHERE compressed_size IS NOT NULL GROUP BY digest",
        [files],
    ).fetchall()
    return {bytes(digest): size for digest, size in rows}

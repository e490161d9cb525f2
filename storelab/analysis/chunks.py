"""Chunk sizes and chunker comparisons: how each chunker really cut the data.

Every function counts each distinct chunk once per chunker (the unit a store holds), unless
it says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from storelab.analysis.db import connect, sql_list, stream_chunking_sql
from storelab.tables import Dataset

__all__ = ["chunk_size_distribution", "chunk_size_stats", "chunker_comparison", "refcount_histogram"]


def chunk_size_distribution(
    dataset: str | os.PathLike[str] | Dataset,
    snapshots: Sequence[str] | None = None,
    bins: int = 60,
) -> pd.DataFrame:
    """Histogram and CDF of distinct chunk sizes per chunker, on log-spaced bins.

    Columns: ``chunker_id, bin_low, bin_high, chunks, bytes, cdf_chunks, cdf_bytes`` (the CDFs
    are cumulative shares at ``bin_high``). Bins are shared by all chunkers so they compare.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp()); _ = (tree / "a").write_bytes(b"x" * 1000)
    >>> ds = tempfile.mkdtemp() + "/ds"; _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> dist = chunk_size_distribution(ds, bins=4)
    >>> int(dist.chunks.sum()), float(dist.cdf_chunks.iloc[-1])
    (1, 1.0)
    """
    with connect(dataset, snapshots) as con:
        limits = con.execute("SELECT min(size), max(size) FROM chunks WHERE size > 0").fetchone()
        if limits is None or limits[0] is None:
            return pd.DataFrame(columns=["chunker_id", "bin_low", "bin_high", "chunks", "bytes", "cdf_chunks", "cdf_bytes"])
        low, high = max(1, int(limits[0])), int(limits[1]) + 1
        edges = np.geomspace(low, high, bins + 1)
        # DuckDB bins out of core, by arithmetic on the log scale: one row per (chunker, bin)
        counts = con.execute(
            """
            WITH distinct_chunks AS (SELECT chunker_id, digest, any_value(size) AS size FROM chunks GROUP BY ALL)
            SELECT chunker_id,
                   least($bins - 1, greatest(0, CAST(floor(ln(size / $low) / ln($high / $low) * $bins) AS BIGINT))) AS bin,
                   count(*) AS chunks, sum(size) AS bytes
            FROM distinct_chunks WHERE size > 0 GROUP BY ALL
            """,
            {"bins": bins, "low": float(low), "high": float(high)},
        ).df()
        edges = np.round(edges).astype("int64")
    frames = []
    for chunker, rows in counts.groupby("chunker_id", sort=True):
        full = pd.DataFrame({"bin": np.arange(bins)})
        full = full.merge(rows[["bin", "chunks", "bytes"]], on="bin", how="left").fillna(0)
        full["chunker_id"] = chunker
        full["bin_low"] = edges[:-1][full["bin"]]
        full["bin_high"] = edges[1:][full["bin"]]
        full["chunks"] = full["chunks"].astype("int64")
        full["bytes"] = full["bytes"].astype("int64")
        full["cdf_chunks"] = full["chunks"].cumsum() / max(1, full["chunks"].sum())
        full["cdf_bytes"] = full["bytes"].cumsum() / max(1, full["bytes"].sum())
        frames.append(full)
    out = pd.concat(frames, ignore_index=True)
    return out[["chunker_id", "bin_low", "bin_high", "chunks", "bytes", "cdf_chunks", "cdf_bytes"]]


def chunk_size_stats(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> pd.DataFrame:
    """Per chunker: the configured min/avg/max and what the distinct chunks really measure.

    Columns: ``chunker_id, chunker, min_size, avg_size, max_size, chunks, mean_size,
    median_size, p10_size, p90_size, at_max_share, below_min_share, mean_over_avg``.
    ``at_max_share`` is the share of chunks cut at the maximum (forced cuts);
    ``below_min_share`` the share shorter than the minimum (the blob's last chunk, or small
    blobs); ``mean_over_avg`` is how far the mean chunk is from the "avg" parameter.
    """
    with connect(dataset, snapshots) as con:
        return con.execute(
            """
            WITH spec AS (
                SELECT chunker_id, any_value(chunker) AS chunker, any_value(chunk_min_size) AS min_size,
                       any_value(chunk_avg_size) AS avg_size, any_value(chunk_max_size) AS max_size
                FROM chunkings GROUP BY chunker_id
            ),
            distinct_chunks AS (SELECT chunker_id, digest, any_value(size) AS size FROM chunks GROUP BY ALL)
            SELECT s.chunker_id, s.chunker, s.min_size, s.avg_size, s.max_size,
                   count(*) AS chunks, avg(c.size) AS mean_size, median(c.size) AS median_size,
                   quantile_cont(c.size, 0.1) AS p10_size, quantile_cont(c.size, 0.9) AS p90_size,
                   avg(CASE WHEN c.size = s.max_size THEN 1.0 ELSE 0.0 END) AS at_max_share,
                   avg(CASE WHEN c.size < s.min_size THEN 1.0 ELSE 0.0 END) AS below_min_share,
                   avg(c.size) / s.avg_size AS mean_over_avg
            FROM distinct_chunks c JOIN spec s USING (chunker_id)
            GROUP BY s.chunker_id, s.chunker, s.min_size, s.avg_size, s.max_size ORDER BY s.avg_size, s.chunker_id
            """
        ).df()


def chunker_comparison(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> pd.DataFrame:
    """Per chunking (e.g. after ``storelab sweep``): objects against dedup.

    Columns: ``chunker_id, chunker, avg_size, zstd_level, snapshots, logical_bytes,
    logical_chunks, unique_bytes, unique_chunks, compressed_bytes, index_bytes, index_objects,
    stored_bytes, stored_objects, dedup_ratio, compression_ratio, space_savings, mean_chunk``.
    Logical figures count every chunk of every file occurrence, over the snapshots recorded
    under that chunking (``snapshots``); stored = compressed (or unique) chunks + index objects.
    """
    with connect(dataset, snapshots) as con:
        frame = con.execute(
            f"""
            WITH occ AS (
                SELECT b.chunker_id, sum(n.size) AS logical_bytes, sum(b.chunk_count) AS logical_chunks
                FROM nodes n JOIN blobs b ON n.snapshot_id = b.snapshot_id AND n.digest = b.digest
                WHERE n.kind = 'file' AND NOT {stream_chunking_sql("b.chunker_id")} GROUP BY ALL
                UNION ALL  -- a stream chunking: each snapshot's one stream
                SELECT chunker_id, sum(size), sum(chunk_count) FROM blobs WHERE {stream_chunking_sql()} GROUP BY ALL
            ),
            uniq AS (
                SELECT chunker_id, sum(size) AS unique_bytes, count(*) AS unique_chunks,
                       CASE WHEN count(compressed) = count(*) THEN sum(compressed) END AS compressed_bytes
                FROM (SELECT chunker_id, digest, any_value(size) AS size, min(compressed_size) AS compressed
                      FROM chunks GROUP BY ALL)
                GROUP BY ALL
            ),
            idx AS (
                SELECT chunker_id, sum(index_size) AS index_bytes, count(*) FILTER (WHERE index_size > 0) AS index_objects
                FROM (SELECT chunker_id, digest, any_value(index_size) AS index_size FROM blobs WHERE NOT {stream_chunking_sql()} GROUP BY ALL)
                GROUP BY ALL
            ),
            kinds AS (
                SELECT chunker_id, any_value(chunker) || coalesce('@' || nullif(split_part(chunker_id, '@', 2), ''), '') AS chunker,
                       any_value(chunk_avg_size) AS avg_size,
                       string_agg(DISTINCT zstd_level::VARCHAR, ',') AS zstd_level, count(DISTINCT snapshot_id) AS snapshots
                FROM chunkings GROUP BY chunker_id
            )
            SELECT k.chunker_id, k.chunker, k.avg_size, k.zstd_level, k.snapshots,
                   coalesce(o.logical_bytes, 0) AS logical_bytes, coalesce(o.logical_chunks, 0) AS logical_chunks,
                   coalesce(u.unique_bytes, 0) AS unique_bytes, coalesce(u.unique_chunks, 0) AS unique_chunks,
                   u.compressed_bytes, coalesce(i.index_bytes, 0) AS index_bytes, coalesce(i.index_objects, 0) AS index_objects
            FROM kinds k LEFT JOIN occ o USING (chunker_id) LEFT JOIN uniq u USING (chunker_id) LEFT JOIN idx i USING (chunker_id)
            ORDER BY k.chunker, k.avg_size
            """
        ).df()
    frame["stored_bytes"] = frame["compressed_bytes"].fillna(frame["unique_bytes"]) + frame["index_bytes"]
    frame["stored_objects"] = frame["unique_chunks"] + frame["index_objects"]
    frame["dedup_ratio"] = frame["logical_bytes"] / frame["unique_bytes"].where(frame["unique_bytes"] > 0)
    frame["compression_ratio"] = frame["unique_bytes"] / frame["compressed_bytes"].where(frame["compressed_bytes"] > 0)
    frame["space_savings"] = 1 - frame["stored_bytes"] / frame["logical_bytes"].where(frame["logical_bytes"] > 0)
    frame["mean_chunk"] = frame["unique_bytes"] / frame["unique_chunks"].where(frame["unique_chunks"] > 0)
    return frame


def refcount_histogram(
    dataset: str | os.PathLike[str] | Dataset, level: str = "chunk", snapshots: Sequence[str] | None = None,
    chunker_id: str | None = None,
) -> pd.DataFrame:
    """How many objects are referenced 1, 2, 3–4, 5–8, … times, and the bytes behind them,
    in the manner of ZFS's ``zdb -S``.

    A reference is one occurrence: for chunks, each time the chunk occurs in a file of a
    snapshot (a file present twice references its chunks twice); for blobs, each file.
    Columns: ``refcount`` (the bucket's lower bound: 1, 2, 3, 5, 9, …), ``refcount_high``,
    ``objects``, ``unique_bytes`` (each object once: what a store allocates),
    ``referenced_objects``, ``referenced_bytes`` (every reference: what users see).
    With several chunkings, the chunk level covers ``chunker_id`` (default: the first
    chunking recorded), over the snapshots recorded under it.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp())
    >>> for name in "abc": _ = (tree / name).write_bytes(b"same")
    >>> _ = (tree / "d").write_bytes(b"other")
    >>> ds = tempfile.mkdtemp() + "/ds"; _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> refcount_histogram(ds, "blob")[["refcount", "objects", "referenced_bytes"]].values.tolist()
    [[1, 1, 5], [3, 1, 12]]
    """
    if level not in ("blob", "chunk"):
        raise ValueError("level is 'blob' or 'chunk'")
    with connect(dataset, snapshots) as con:
        return _int_columns(_refcounts(con, level, chunker_id))


def _int_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """DuckDB's sums arrive as floats (HUGEINT); counts and bytes are integers."""
    for column in frame.columns:
        if frame[column].dtype.kind == "f" and frame[column].notna().all() and (frame[column] % 1 == 0).all():
            frame[column] = frame[column].astype("int64")
    return frame


def _refcounts(con: duckdb.DuckDBPyConnection, level: str, chunker_id: str | None) -> pd.DataFrame:
    if level == "blob":
        refs = "SELECT digest, size FROM nodes WHERE kind = 'file'"
    else:
        if chunker_id is None:
            chunker_id = con.execute("SELECT chunker_id FROM chunkings ORDER BY seq, chunker_id LIMIT 1").fetchone()[0]  # type: ignore[index]
        refs = (
            "SELECT c.digest, c.size FROM nodes n JOIN chunks c ON c.snapshot_id = n.snapshot_id AND c.blob_digest = n.digest "
            f"WHERE n.kind = 'file' AND c.chunker_id = {sql_list([str(chunker_id)], '()')[1:-1]}"
        )
    return con.execute(
        f"""
        WITH counted AS (SELECT digest, any_value(size) AS size, count(*) AS refs FROM ({refs}) GROUP BY digest),
        bucketed AS (
            SELECT CASE WHEN refs = 1 THEN 0 ELSE CAST(ceil(log2(refs)) AS BIGINT) END AS k, size, refs FROM counted
        )
        SELECT CASE WHEN k = 0 THEN 1 ELSE CAST(pow(2, k - 1) AS BIGINT) + 1 END AS refcount,
               CAST(pow(2, k) AS BIGINT) AS refcount_high,
               count(*) AS objects, sum(size) AS unique_bytes,
               sum(refs) AS referenced_objects, sum(size * refs) AS referenced_bytes
        FROM bucketed GROUP BY k ORDER BY k
        """
    ).df()

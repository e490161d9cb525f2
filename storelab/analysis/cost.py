"""The request and storage cost model: what a snix-layout object store would be billed.

From the tables alone (no store needed), per chunker:

- ``put_requests``: one PUT per distinct object: each distinct chunk, each distinct blob's
  index object, one directory closure per distinct directory root;
- ``head_requests``: the existence checks an ingest makes before each write (every chunk of
  every distinct blob of each snapshot, every blob, every closure);
- ``restore_get_requests``: GETs to read every snapshot back once (each chunk of each distinct
  blob, the index of each chunked blob, the closure);
- ``stored_bytes``: distinct chunks compressed (or raw when not measured), index objects, and
  the directories' encoded bytes (their closures are compressed too: an upper bound).

Money = requests × price per 1,000 + stored GiB × price per GiB-month × months. With the
defaults (S3 Standard list prices, us-east-1), an object smaller than
``Prices().break_even_object_size`` (228 KiB) costs more to PUT once than to keep for a month —
the trade this model exists to show.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from storelab.analysis.db import connect
from storelab.tables import Dataset

__all__ = ["Prices", "cost_model", "measured_requests"]

GiB = 1024**3


@dataclass(frozen=True, slots=True)
class Prices:
    """Object-store prices in dollars. Defaults: S3 Standard, us-east-1 list prices.

    >>> Prices().put_per_1000, Prices().storage_per_gib_month
    (0.005, 0.023)
    """

    put_per_1000: float = 0.005
    """PUT, COPY, POST, LIST requests."""
    get_per_1000: float = 0.0004
    """GET, HEAD and other requests."""
    storage_per_gib_month: float = 0.023
    months: float = 1.0
    """How long the objects are kept."""

    @property
    def break_even_object_size(self) -> float:
        """Object size (bytes) whose one PUT costs as much as keeping it for ``months``.

        >>> round(Prices().break_even_object_size / 1024)
        228
        """
        monthly = self.storage_per_gib_month * self.months
        return math.inf if monthly <= 0 else self.put_per_1000 / 1000 / monthly * GiB


_MODEL = """
WITH snap AS (
    SELECT k.snapshot_id, k.chunker_id, s.root_kind, s.root_digest FROM chunkings k JOIN snapshots s USING (snapshot_id)
),
distinct_chunks AS (
    SELECT chunker_id, digest, any_value(size) AS size, any_value(compressed_size) AS compressed FROM chunks GROUP BY ALL
),
distinct_blobs AS (
    SELECT chunker_id, digest, any_value(index_size) AS index_size, any_value(chunk_count) AS chunk_count FROM blobs GROUP BY ALL
),
roots AS (SELECT DISTINCT chunker_id, root_digest FROM snap WHERE root_kind = 'directory'),
dir_bytes AS (
    SELECT s.chunker_id, sum(d.encoded_size) AS bytes FROM directories d JOIN snap s USING (snapshot_id) GROUP BY ALL
),
chunk_rows AS (SELECT snapshot_id, chunker_id, count(*) AS n FROM chunks GROUP BY ALL),
blob_rows AS (
    SELECT snapshot_id, chunker_id, count(*) AS n, count(*) FILTER (WHERE chunk_count >= 2) AS indexed FROM blobs GROUP BY ALL
),
per_snapshot AS (
    SELECT s.chunker_id, coalesce(c.n, 0) AS chunk_rows, coalesce(b.n, 0) AS blob_rows, coalesce(b.indexed, 0) AS indexed_blobs,
           CASE WHEN s.root_kind = 'directory' THEN 1 ELSE 0 END AS closures
    FROM snap s LEFT JOIN chunk_rows c USING (snapshot_id, chunker_id) LEFT JOIN blob_rows b USING (snapshot_id, chunker_id)
)
SELECT chunker_id,
       (SELECT count(*) FROM snap x WHERE x.chunker_id = k.chunker_id) AS snapshots,
       (SELECT count(*) FROM distinct_chunks c WHERE c.chunker_id = k.chunker_id) AS chunk_objects,
       (SELECT count(*) FROM distinct_blobs b WHERE b.chunker_id = k.chunker_id) AS blob_objects,
       (SELECT count(*) FROM roots r WHERE r.chunker_id = k.chunker_id) AS closure_objects,
       (SELECT coalesce(sum(coalesce(c.compressed, c.size)), 0) FROM distinct_chunks c WHERE c.chunker_id = k.chunker_id) AS chunk_bytes,
       (SELECT coalesce(sum(b.index_size), 0) FROM distinct_blobs b WHERE b.chunker_id = k.chunker_id) AS index_bytes,
       (SELECT coalesce(sum(d.bytes), 0) FROM dir_bytes d WHERE d.chunker_id = k.chunker_id) AS directory_bytes,
       (SELECT sum(p.chunk_rows + p.blob_rows + p.closures) FROM per_snapshot p WHERE p.chunker_id = k.chunker_id) AS head_requests,
       (SELECT sum(p.chunk_rows + p.indexed_blobs + p.closures) FROM per_snapshot p WHERE p.chunker_id = k.chunker_id)
           AS restore_get_requests
FROM (SELECT DISTINCT chunker_id FROM snap) k
ORDER BY chunker_id
"""


def cost_model(
    dataset: str | os.PathLike[str] | Dataset, prices: Prices | None = None, snapshots: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per chunker: objects, requests, bytes, and what they cost.

    Columns: ``chunker_id, snapshots, chunk_objects, blob_objects, closure_objects,
    put_requests, head_requests, restore_get_requests, chunk_bytes, index_bytes,
    directory_bytes, stored_bytes, put_cost, head_cost, restore_cost, storage_cost,
    total_cost, mean_stored_object`` (costs in dollars; storage for ``prices.months``).
    """
    prices = prices or Prices()
    with connect(dataset, snapshots) as con:
        frame = con.execute(_MODEL).df()
    frame["put_requests"] = frame.chunk_objects + frame.blob_objects + frame.closure_objects
    frame["stored_bytes"] = frame.chunk_bytes + frame.index_bytes + frame.directory_bytes
    frame["put_cost"] = frame.put_requests * prices.put_per_1000 / 1000
    frame["head_cost"] = frame.head_requests * prices.get_per_1000 / 1000
    frame["restore_cost"] = frame.restore_get_requests * prices.get_per_1000 / 1000
    frame["storage_cost"] = frame.stored_bytes / GiB * prices.storage_per_gib_month * prices.months
    frame["total_cost"] = frame.put_cost + frame.head_cost + frame.storage_cost
    frame["mean_stored_object"] = frame.stored_bytes / frame.put_requests.where(frame.put_requests > 0)
    order = [
        "chunker_id", "snapshots", "chunk_objects", "blob_objects", "closure_objects", "put_requests", "head_requests",
        "restore_get_requests", "chunk_bytes", "index_bytes", "directory_bytes", "stored_bytes", "put_cost", "head_cost",
        "restore_cost", "storage_cost", "total_cost", "mean_stored_object",
    ]  # fmt: skip
    return frame[order]


def measured_requests(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> pd.DataFrame:
    """The requests each snapshot's ingest really made, for snapshots ingested with ``--store``.

    Columns: ``label, store, store_put_count, store_put_bytes, store_head_count,
    store_get_count, store_retry_count`` (empty when no snapshot was written to a store).
    """
    with connect(dataset, snapshots) as con:
        return con.execute(
            "SELECT label, store, store_put_count, store_put_bytes, store_head_count, store_get_count, store_retry_count "
            "FROM snapshots WHERE store IS NOT NULL ORDER BY seq"
        ).df()

"""Dedup figures at every level, defined once (DESIGN.md "Dedup figures").

For a level (``nar``, ``blob``, ``chunk``, ``directory``) and a set of snapshots:

- ``logical_bytes`` / ``logical_objects``: every occurrence counted (a file present in three
  snapshots counts three times);
- ``unique_bytes`` / ``unique_objects``: each distinct object once;
- ``compressed_bytes``: the distinct objects, zstd-compressed (chunks and blobs; blobs as
  the sum of their chunks); directories are stored uncompressed; NARs are not compressed here;
- ``metadata_bytes``: objects the store writes besides the data (the blob index objects of
  chunked blobs, at the chunk level);
- ``stored_bytes`` = (compressed or, when not measured, unique) + metadata.

Then ``dedup_ratio`` = logical / unique, ``space_savings`` = 1 − stored / logical, and
``stored_fraction`` = stored / logical.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import duckdb
import pandas as pd

from storelab.analysis.db import connect
from storelab.tables import Dataset

__all__ = ["dedup_summary", "snapshot_summary", "LEVELS"]

LEVELS = ("blob", "chunk", "directory")

# Per level: distinct objects per snapshot (snapshot_id, digest, size, compressed),
# occurrences per snapshot (snapshot_id, bytes, objects), and metadata objects per snapshot.
_OBJECTS = {
    "blob": "SELECT snapshot_id, digest, size, compressed_size AS compressed FROM blobs",
    "chunk": "SELECT DISTINCT snapshot_id, digest, size, compressed_size AS compressed FROM chunks",
    "directory": "SELECT snapshot_id, digest, encoded_size AS size, encoded_size AS compressed FROM directories",
}
# The same objects without the per-snapshot DISTINCT, for totals that group by digest anyway
# (one hash aggregation over the chunk rows instead of two).
_ALL_OBJECTS = {
    "blob": _OBJECTS["blob"],
    "chunk": "SELECT snapshot_id, digest, size, compressed_size AS compressed FROM chunks",
    "directory": _OBJECTS["directory"],
}
_OCCURRENCES = {
    "blob": "SELECT snapshot_id, sum(size) AS bytes, count(*) AS objects FROM nodes WHERE kind = 'file' GROUP BY ALL",
    "chunk": (
        "SELECT n.snapshot_id, sum(n.size) AS bytes, sum(b.chunk_count) AS objects FROM nodes n "
        "JOIN blobs b ON n.snapshot_id = b.snapshot_id AND n.digest = b.digest WHERE n.kind = 'file' GROUP BY ALL"
    ),
    "directory": (
        "SELECT n.snapshot_id, sum(d.encoded_size) AS bytes, count(*) AS objects FROM nodes n "
        "JOIN directories d ON n.snapshot_id = d.snapshot_id AND n.digest = d.digest "
        "WHERE n.kind = 'directory' GROUP BY ALL"
    ),
}
_METADATA = {
    "blob": None,
    "chunk": "SELECT snapshot_id, digest, index_size AS size FROM blobs WHERE index_size > 0",
    "directory": None,
}

_COLUMNS = [
    "logical_bytes",
    "logical_objects",
    "unique_bytes",
    "unique_objects",
    "compressed_bytes",
    "metadata_bytes",
    "stored_bytes",
    "dedup_ratio",
    "space_savings",
    "stored_fraction",
]


def _groups(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, list[str]]]:
    """(level, chunker_id, snapshot ids): the chunk level is split by chunker."""
    by_chunker = con.execute(
        "SELECT chunker_id, list(snapshot_id ORDER BY seq) FROM snapshots GROUP BY chunker_id ORDER BY min(seq)"
    ).fetchall()
    every = [sid for _, ids in by_chunker for sid in ids]
    groups = [("blob", "", every)]
    groups += [("chunk", chunker, ids) for chunker, ids in by_chunker]
    groups.append(("directory", "", every))
    return groups


def _with_ratios(df: pd.DataFrame) -> pd.DataFrame:
    logical = df["logical_bytes"].astype("float64")
    unique = df["unique_bytes"].astype("float64")
    df["stored_bytes"] = df["compressed_bytes"].fillna(df["unique_bytes"]) + df["metadata_bytes"]
    df["dedup_ratio"] = (logical / unique).where(unique > 0)
    df["space_savings"] = (1 - df["stored_bytes"] / logical).where(logical > 0)
    df["stored_fraction"] = (df["stored_bytes"] / logical).where(logical > 0)
    return df


def dedup_summary(
    dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per level (and per chunker at the chunk level) over the chosen snapshots.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (tree / "a").write_bytes(b"x" * 1000), (tree / "b").write_bytes(b"x" * 1000)
    >>> ds = tempfile.mkdtemp() + "/ds"
    >>> _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> blob = dedup_summary(ds).loc["blob"]
    >>> int(blob.logical_bytes), int(blob.unique_bytes), float(blob.dedup_ratio)
    (2000, 1000, 2.0)
    """
    con = connect(dataset, snapshots)
    rows = [_nar_totals(con)]
    for level, chunker, ids in _groups(con):
        row = _level_totals(con, level, ids)
        row.update(level=level, chunker_id=chunker or None)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.index = [f"{r.level}" if not r.chunker_id or _chunkers(rows) == 1 else f"chunk[{r.chunker_id}]" for r in df.itertuples()]
    return _with_ratios(df)[["level", "chunker_id", *_COLUMNS]]


def _nar_totals(con: duckdb.DuckDBPyConnection) -> dict:
    """The NAR level: each snapshot's NAR once per occurrence; a NAR is the same NAR when its
    root is the same castore node (same tree, same bytes)."""
    occ = con.execute("SELECT coalesce(sum(nar_size), 0), count(*) FROM snapshots").fetchone()
    uniq = con.execute(
        "SELECT coalesce(sum(size), 0), count(*) FROM (SELECT any_value(nar_size) AS size FROM snapshots "
        "GROUP BY root_kind, root_digest, root_executable, root_symlink_target)"
    ).fetchone()
    assert occ is not None and uniq is not None
    return {
        "level": "nar",
        "chunker_id": None,
        "logical_bytes": int(occ[0]),
        "logical_objects": int(occ[1]),
        "unique_bytes": int(uniq[0]),
        "unique_objects": int(uniq[1]),
        "compressed_bytes": None,
        "metadata_bytes": 0,
    }


def _chunkers(rows: list[dict]) -> int:
    return sum(1 for r in rows if r["level"] == "chunk")


def _level_totals(con: duckdb.DuckDBPyConnection, level: str, ids: list[str]) -> dict:
    occ = con.execute(
        f"SELECT coalesce(sum(bytes), 0), coalesce(sum(objects), 0) FROM ({_OCCURRENCES[level]}) WHERE snapshot_id IN (SELECT unnest(?))",
        [ids],
    ).fetchone()
    uniq = con.execute(
        f"SELECT coalesce(sum(size), 0), count(*), sum(compressed) FROM ("
        f"SELECT digest, any_value(size) AS size, min(compressed) AS compressed FROM ({_ALL_OBJECTS[level]}) "
        f"WHERE snapshot_id IN (SELECT unnest(?)) GROUP BY digest)",
        [ids],
    ).fetchone()
    meta = 0
    if _METADATA[level]:
        meta = con.execute(
            f"SELECT coalesce(sum(size), 0) FROM (SELECT digest, any_value(size) AS size FROM ({_METADATA[level]}) "
            f"WHERE snapshot_id IN (SELECT unnest(?)) GROUP BY digest)",
            [ids],
        ).fetchone()[0]
    assert occ is not None and uniq is not None
    return {
        "logical_bytes": int(occ[0]),
        "logical_objects": int(occ[1]),
        "unique_bytes": int(uniq[0]),
        "unique_objects": int(uniq[1]),
        "compressed_bytes": None if uniq[2] is None else int(uniq[2]),
        "metadata_bytes": int(meta),
    }


def snapshot_summary(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per snapshot and level: its own dedup figures, and what it adds.

    ``new_bytes`` / ``new_objects`` / ``new_stored_bytes``: distinct objects of this snapshot
    that no earlier snapshot (in creation order, among those chosen) had — what ingesting it
    added to a store holding the earlier ones. ``shared_bytes``: the rest of its unique bytes.
    """
    con = connect(dataset, snapshots)
    frames = []
    for level, chunker, ids in _groups(con):
        meta = _METADATA[level]
        meta_sql = (
            f"SELECT snapshot_id, digest, 0 AS size, 0 AS compressed, size AS meta FROM ({meta})" if meta else None
        )
        objects = f"SELECT snapshot_id, digest, size, compressed, 0 AS meta FROM ({_OBJECTS[level]})"
        if meta_sql:
            # an index object is addressed by its blob's digest; tag it so it never meets a chunk
            objects += f" UNION ALL SELECT snapshot_id, digest || '\\x00'::BLOB, size, compressed, meta FROM ({meta_sql})"
        df = con.execute(
            f"""
            WITH chosen AS (SELECT snapshot_id, label, seq FROM snapshots WHERE snapshot_id IN (SELECT unnest($ids))),
            objs AS (SELECT o.*, c.seq FROM ({objects}) o JOIN chosen c USING (snapshot_id)),
            first AS (SELECT digest, min(seq) AS first_seq FROM objs GROUP BY digest),
            per AS (
                SELECT o.snapshot_id,
                       sum(o.size) AS unique_bytes, count(*) FILTER (WHERE o.meta = 0) AS unique_objects,
                       sum(o.compressed) AS compressed_bytes, sum(o.meta) AS metadata_bytes,
                       coalesce(sum(o.size) FILTER (WHERE f.first_seq = o.seq), 0) AS new_bytes,
                       count(*) FILTER (WHERE f.first_seq = o.seq AND o.meta = 0) AS new_objects,
                       coalesce(sum(coalesce(o.compressed, o.size) + o.meta) FILTER (WHERE f.first_seq = o.seq), 0)
                           AS new_stored_bytes
                FROM objs o JOIN first f USING (digest) GROUP BY o.snapshot_id
            ),
            occ AS (SELECT * FROM ({_OCCURRENCES[level]}))
            SELECT c.seq, c.snapshot_id, c.label,
                   coalesce(occ.bytes, 0) AS logical_bytes, coalesce(occ.objects, 0) AS logical_objects,
                   coalesce(per.unique_bytes, 0) AS unique_bytes, coalesce(per.unique_objects, 0) AS unique_objects,
                   per.compressed_bytes, coalesce(per.metadata_bytes, 0) AS metadata_bytes,
                   coalesce(per.new_bytes, 0) AS new_bytes, coalesce(per.new_objects, 0) AS new_objects,
                   coalesce(per.new_stored_bytes, 0) AS new_stored_bytes
            FROM chosen c LEFT JOIN per USING (snapshot_id) LEFT JOIN occ USING (snapshot_id)
            ORDER BY c.seq
            """,
            {"ids": ids},
        ).df()
        df.insert(3, "level", level)
        df.insert(4, "chunker_id", chunker or None)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    for column in ("logical_bytes", "logical_objects", "unique_bytes", "unique_objects", "metadata_bytes", "new_bytes", "new_objects", "new_stored_bytes"):
        out[column] = out[column].astype("int64")
    out["compressed_bytes"] = out["compressed_bytes"].astype("Int64")
    out["shared_bytes"] = out["unique_bytes"] - out["new_bytes"]
    out = _with_ratios(out)
    return out.sort_values(["seq", "level"], key=lambda s: s.map({lv: i for i, lv in enumerate(LEVELS)}) if s.name == "level" else s).reset_index(drop=True)

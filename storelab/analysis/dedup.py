"""Dedup figures at every level, defined once (DESIGN.md "Dedup figures").

Levels: ``nar`` (each snapshot's NAR; with its compressed forms ``nar.zst`` and ``nar.xz``
when they were measured), ``blob``, ``chunk`` (one row per chunking: chunker and zstd
level), ``directory``. Every tree is counted once at the nar, blob and directory levels,
however many chunkings it was recorded under; the chunk level counts each chunking apart,
over the snapshots recorded under it (``snapshots`` says how many).

For a level and a set of snapshots:

- ``logical_bytes`` / ``logical_objects``: every occurrence (a file in three snapshots
  counts three times);
- ``unique_bytes`` / ``unique_objects``: each distinct object once;
- ``compressed_bytes``: the distinct objects compressed (zstd per chunk; blobs as the sum of
  their chunks under one chunking every snapshot has; NARs whole as a binary cache stores
  them); null where not every distinct object was measured;
- ``metadata_bytes`` / ``metadata_objects``: objects the store writes besides the data (snix's
  blob index objects, at the chunk level);
- ``stored_bytes`` = (compressed or, when not measured, unique) + metadata, and
  ``stored_objects`` = unique + metadata objects: what a store of this level holds.

From them: ``dedup_ratio`` = logical ÷ unique, ``compression_ratio`` = unique ÷ compressed,
``reduction_ratio`` = their product (logical ÷ compressed), ``space_savings`` = 1 − stored ÷
logical, ``stored_fraction`` = stored ÷ logical. ``hit_rate_bytes`` / ``hit_rate_objects``: of
what the snapshots needed in turn (each snapshot's distinct objects), the share a store
holding the earlier snapshots already had — by bytes and by object count, side by side.

Comparisons that would silently mix incomparable figures are flagged in
``frame.attrs["warnings"]`` (chunk rows measured at different zstd levels, a chunking that
covers only some snapshots, NAR sizes measured for only some).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from storelab.analysis.db import connect, is_stream_chunking, sql_list
from storelab.tables import Dataset

__all__ = ["dedup_summary", "snapshot_summary", "LEVELS", "FIGURE_COLUMNS"]

LEVELS = ("nar", "nar.zst", "nar.xz", "blob", "chunk", "directory")

FIGURE_COLUMNS = [
    "stored_bytes",
    "stored_objects",
    "logical_bytes",
    "logical_objects",
    "unique_bytes",
    "unique_objects",
    "compressed_bytes",
    "metadata_bytes",
    "metadata_objects",
    "dedup_ratio",
    "compression_ratio",
    "reduction_ratio",
    "space_savings",
    "stored_fraction",
    "hit_rate_bytes",
    "hit_rate_objects",
]

NAR_KEY = "md5(concat_ws('|', root_kind, root_executable, hex(root_digest), hex(root_symlink_target)))"
"""A NAR is the same NAR when its root is the same castore node (same tree, same bytes)."""


@dataclass(frozen=True, slots=True)
class _Level:
    """The SQL of one row: distinct objects (snapshot_id, digest, size, compressed) per
    snapshot, occurrences (snapshot_id, bytes, objects) per snapshot, metadata objects
    (snapshot_id, digest, size)."""

    level: str
    objects: str
    occurrences: str
    metadata: str | None = None
    chunker_id: str | None = None
    zstd_level: int | None = None
    snapshot_ids: tuple[str, ...] | None = None
    """The snapshots this row covers (None: all chosen)."""


def _levels(con: duckdb.DuckDBPyConnection, warnings: list[str]) -> list[_Level]:
    """Every row's SQL over the chosen snapshots, with what it cannot compare flagged."""
    total = con.execute("SELECT count(*) FROM snapshots").fetchone()[0]  # type: ignore[index]
    levels = [
        _Level(
            "nar",
            f"SELECT snapshot_id, {NAR_KEY} AS digest, nar_size AS size, NULL::UBIGINT AS compressed FROM snapshots",
            "SELECT snapshot_id, nar_size AS bytes, 1 AS objects FROM snapshots",
        )
    ]
    for level, column in (("nar.zst", "nar_zstd_size"), ("nar.xz", "nar_xz_size")):
        measured = con.execute(f"SELECT count({column}) FROM snapshots").fetchone()[0]  # type: ignore[index]
        if measured:
            if measured < total:
                warnings.append(f"{level}: measured for {measured} of {total} snapshots; its compressed figure covers those")
            levels.append(
                _Level(
                    level,
                    f"SELECT snapshot_id, {NAR_KEY} AS digest, nar_size AS size, {column} AS compressed "
                    f"FROM snapshots WHERE {column} IS NOT NULL",
                    f"SELECT snapshot_id, nar_size AS bytes, 1 AS objects FROM snapshots WHERE {column} IS NOT NULL",
                )
            )
    reference = _reference_chunking(con, total, warnings)
    blob_objects = (
        f"SELECT snapshot_id, digest, size, compressed_size AS compressed FROM blobs WHERE chunker_id = {sql_list([reference], '()')[1:-1]}"
        if reference
        else "SELECT DISTINCT snapshot_id, digest, size, NULL::UBIGINT AS compressed FROM blobs"
    )
    levels.append(
        _Level(
            "blob",
            blob_objects,
            "SELECT snapshot_id, sum(size) AS bytes, count(*) AS objects FROM nodes WHERE kind = 'file' GROUP BY ALL",
            chunker_id=reference,
        )
    )
    chunkings = con.execute(
        "SELECT chunker_id, zstd_level, list(snapshot_id ORDER BY seq) FROM chunkings "
        "GROUP BY chunker_id, zstd_level ORDER BY min(seq), chunker_id, zstd_level"
    ).fetchall()
    partial = [len(ids) for _, _, ids in chunkings if len(ids) < total]
    if partial:
        warnings.append(
            f"chunk: {len(partial)} of {len(chunkings)} chunkings cover only some of the {total} snapshots "
            f"({min(partial)}–{max(partial)}; the snapshots column says which): compare them over the snapshots they share"
        )
    for chunker_id, zstd_level, ids in chunkings:
        cid = sql_list([chunker_id], "()")[1:-1]
        if is_stream_chunking(chunker_id):  # a stream chunking: each snapshot's one stream, whole (no per-file index objects)
            occurrences = f"SELECT snapshot_id, sum(size) AS bytes, sum(chunk_count) AS objects FROM blobs WHERE chunker_id = {cid} GROUP BY ALL"
            metadata = None
        else:
            occurrences = (
                "SELECT n.snapshot_id, sum(n.size) AS bytes, sum(b.chunk_count) AS objects FROM nodes n "
                f"JOIN blobs b ON n.snapshot_id = b.snapshot_id AND n.digest = b.digest AND b.chunker_id = {cid} "
                "WHERE n.kind = 'file' GROUP BY ALL"
            )
            metadata = f"SELECT snapshot_id, digest, index_size AS size FROM blobs WHERE chunker_id = {cid} AND index_size > 0"
        levels.append(
            _Level(
                "chunk",
                f"SELECT snapshot_id, digest, size, compressed_size AS compressed FROM chunks WHERE chunker_id = {cid}",
                occurrences,
                metadata,
                chunker_id,
                zstd_level,
                tuple(ids),
            )
        )
    measured_levels = sorted({lv for _, lv, _ in chunkings if lv})
    if len(measured_levels) > 1:
        warnings.append(
            f"chunk rows were measured at different zstd levels ({', '.join(map(str, measured_levels))}): "
            "their compressed and stored bytes do not compare"
        )
    levels.append(
        _Level(
            "directory",
            "SELECT snapshot_id, digest, encoded_size AS size, encoded_size AS compressed FROM directories",
            "SELECT n.snapshot_id, sum(d.encoded_size) AS bytes, count(*) AS objects FROM nodes n "
            "JOIN directories d ON n.snapshot_id = d.snapshot_id AND n.digest = d.digest "
            "WHERE n.kind = 'directory' GROUP BY ALL",
        )
    )
    return levels


def _reference_chunking(con: duckdb.DuckDBPyConnection, total: int, warnings: list[str]) -> str | None:
    """The chunking whose per-blob compressed sizes stand for the blob level: the first per-file
    one (stream chunkings have no per-file blobs) every chosen snapshot was recorded under, at
    one zstd level."""
    rows = con.execute(
        "SELECT chunker_id, count(DISTINCT zstd_level) FROM chunkings WHERE chunker_id NOT LIKE '%@%' GROUP BY chunker_id "
        "HAVING count(DISTINCT snapshot_id) = ? ORDER BY min(seq), chunker_id",
        [total],
    ).fetchall()
    for chunker_id, levels in rows:
        if levels == 1:
            return str(chunker_id)
    if con.execute("SELECT count(*) FROM chunkings").fetchone()[0]:  # type: ignore[index]
        warnings.append("blob: no chunking is common to every snapshot at one zstd level, so blobs have no compressed size")
    return None


def _with_ratios(df: pd.DataFrame) -> pd.DataFrame:
    logical = df["logical_bytes"].astype("float64")
    unique = df["unique_bytes"].astype("float64")
    compressed = df["compressed_bytes"].astype("float64")
    df["stored_bytes"] = (df["compressed_bytes"].fillna(df["unique_bytes"]) + df["metadata_bytes"]).astype("int64")
    df["stored_objects"] = (df["unique_objects"] + df["metadata_objects"]).astype("int64")
    df["dedup_ratio"] = (logical / unique).where(unique > 0)
    df["compression_ratio"] = (unique / compressed).where(compressed > 0)
    df["reduction_ratio"] = (logical / compressed).where(compressed > 0)
    df["space_savings"] = (1 - df["stored_bytes"] / logical).where(logical > 0)
    df["stored_fraction"] = (df["stored_bytes"] / logical).where(logical > 0)
    return df


def _row_name(level: _Level, chunk_rows: int) -> str:
    if level.level != "chunk" or chunk_rows == 1:
        return level.level
    return f"chunk [{level.chunker_id}, zstd {level.zstd_level}]"


def dedup_summary(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per level (and per chunking at the chunk level) over the chosen snapshots.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (tree / "a").write_bytes(b"x" * 1000), (tree / "b").write_bytes(b"x" * 1000)
    >>> ds = tempfile.mkdtemp() + "/ds"
    >>> _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> blob = dedup_summary(ds).loc["blob"]
    >>> int(blob.logical_bytes), int(blob.unique_bytes), float(blob.dedup_ratio), int(blob.stored_objects)
    (2000, 1000, 2.0, 1)
    """
    con = connect(dataset, snapshots)
    warnings: list[str] = []
    levels = _levels(con, warnings)
    chunk_rows = sum(1 for lv in levels if lv.level == "chunk")
    rows = []
    for level in levels:
        row = _level_totals(con, level)
        row.update(level=level.level, chunker_id=level.chunker_id, zstd_level=level.zstd_level, snapshots=row["snapshots"])
        rows.append(row)
    df = pd.DataFrame(rows, index=[_row_name(lv, chunk_rows) for lv in levels])
    df["compressed_bytes"] = df["compressed_bytes"].astype("Int64")
    df["zstd_level"] = df["zstd_level"].astype("Int64")
    df = _with_ratios(df)[["level", "chunker_id", "zstd_level", "snapshots", *FIGURE_COLUMNS]]
    df.attrs["warnings"] = warnings
    return df


def _level_totals(con: duckdb.DuckDBPyConnection, level: _Level) -> dict:
    scope = "" if level.snapshot_ids is None else f" WHERE snapshot_id IN {sql_list(list(level.snapshot_ids), '()')}"
    occ = con.execute(f"SELECT coalesce(sum(bytes), 0), coalesce(sum(objects), 0), count(*) FROM ({level.occurrences}){scope}").fetchone()
    uniq = con.execute(
        f"SELECT coalesce(sum(size), 0), count(*), CASE WHEN count(compressed) = count(*) THEN sum(compressed) END FROM ("
        f"SELECT digest, any_value(size) AS size, min(compressed) AS compressed FROM ({level.objects}){scope} GROUP BY digest)"
    ).fetchone()
    needed = con.execute(
        f"SELECT coalesce(sum(size), 0), count(*) FROM (SELECT DISTINCT snapshot_id, digest, size FROM ({level.objects}){scope})"
    ).fetchone()
    meta = (0, 0)
    if level.metadata:
        meta = con.execute(
            f"SELECT coalesce(sum(size), 0), count(*) FROM (SELECT digest, any_value(size) AS size FROM ({level.metadata}){scope} GROUP BY digest)"
        ).fetchone()  # type: ignore[assignment]
    assert occ is not None and uniq is not None and needed is not None and meta is not None
    covered = con.execute(f"SELECT count(*) FROM snapshots{scope}").fetchone()[0]  # type: ignore[index]
    return {
        "snapshots": int(covered),
        "logical_bytes": int(occ[0]),
        "logical_objects": int(occ[1]),
        "unique_bytes": int(uniq[0]),
        "unique_objects": int(uniq[1]),
        "compressed_bytes": None if uniq[2] is None else int(uniq[2]),
        "metadata_bytes": int(meta[0]),
        "metadata_objects": int(meta[1]),
        "hit_rate_bytes": 1 - int(uniq[0]) / int(needed[0]) if needed[0] else None,
        "hit_rate_objects": 1 - int(uniq[1]) / int(needed[1]) if needed[1] else None,
    }


def snapshot_summary(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per snapshot and level: its own dedup figures, and what it adds.

    ``new_bytes`` / ``new_objects`` / ``new_stored_bytes``: distinct objects of this snapshot
    that no earlier snapshot of the **dataset** had (in creation order, whichever snapshots are
    chosen) — what ingesting it added to a store holding the earlier ones. ``shared_bytes``: the
    rest of its unique bytes; ``hit_rate_bytes`` / ``hit_rate_objects``: the shares of its
    distinct bytes and objects that were already there. ``snapshots`` picks the rows shown.
    """
    con = connect(dataset)
    chosen = None if snapshots is None else connect(dataset, snapshots).execute("SELECT snapshot_id FROM snapshots").fetchall()
    warnings: list[str] = []
    frames = []
    for level in _levels(con, warnings):
        if level.level.startswith("nar."):
            continue  # a NAR's compressed form adds exactly when the NAR does
        meta = level.metadata
        meta_sql = f"SELECT snapshot_id, digest, 0 AS size, 0 AS compressed, size AS meta FROM ({meta})" if meta else None
        objects = f"SELECT snapshot_id, digest, size, compressed, 0 AS meta FROM ({level.objects})"
        if meta_sql:
            # an index object is addressed by its blob's digest; tag it so it never meets a chunk
            objects += f" UNION ALL SELECT snapshot_id, digest || '\\x00'::BLOB, size, compressed, meta FROM ({meta_sql})"
        if level.level == "nar":
            objects = f"SELECT snapshot_id, digest::BLOB AS digest, size, compressed, 0 AS meta FROM ({level.objects})"
        ids = list(level.snapshot_ids) if level.snapshot_ids is not None else None
        scope = "TRUE" if ids is None else f"snapshot_id IN {sql_list(ids, '()')}"
        df = con.execute(
            f"""
            WITH chosen AS (SELECT snapshot_id, label, seq FROM snapshots WHERE {scope}),
            objs AS (SELECT DISTINCT o.*, c.seq FROM ({objects}) o JOIN chosen c USING (snapshot_id)),
            first AS (SELECT digest, min(seq) AS first_seq FROM objs GROUP BY digest),
            per AS (
                SELECT o.snapshot_id,
                       sum(o.size) AS unique_bytes, count(*) FILTER (WHERE o.meta = 0) AS unique_objects,
                       sum(o.compressed) AS compressed_bytes, sum(o.meta) AS metadata_bytes,
                       count(*) FILTER (WHERE o.meta > 0) AS metadata_objects,
                       coalesce(sum(o.size) FILTER (WHERE f.first_seq = o.seq), 0) AS new_bytes,
                       count(*) FILTER (WHERE f.first_seq = o.seq AND o.meta = 0) AS new_objects,
                       coalesce(sum(coalesce(o.compressed, o.size) + o.meta) FILTER (WHERE f.first_seq = o.seq), 0)
                           AS new_stored_bytes
                FROM objs o JOIN first f USING (digest) GROUP BY o.snapshot_id
            ),
            occ AS (SELECT * FROM ({level.occurrences}))
            SELECT c.seq, c.snapshot_id, c.label,
                   coalesce(occ.bytes, 0) AS logical_bytes, coalesce(occ.objects, 0) AS logical_objects,
                   coalesce(per.unique_bytes, 0) AS unique_bytes, coalesce(per.unique_objects, 0) AS unique_objects,
                   per.compressed_bytes, coalesce(per.metadata_bytes, 0) AS metadata_bytes,
                   coalesce(per.metadata_objects, 0) AS metadata_objects,
                   coalesce(per.new_bytes, 0) AS new_bytes, coalesce(per.new_objects, 0) AS new_objects,
                   coalesce(per.new_stored_bytes, 0) AS new_stored_bytes
            FROM chosen c LEFT JOIN per USING (snapshot_id) LEFT JOIN occ USING (snapshot_id)
            ORDER BY c.seq
            """
        ).df()
        df.insert(3, "level", level.level)
        df.insert(4, "chunker_id", level.chunker_id if level.level == "chunk" else None)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    if chosen is not None:
        out = out[out["snapshot_id"].isin({row[0] for row in chosen})]
    for column in (
        "logical_bytes", "logical_objects", "unique_bytes", "unique_objects", "metadata_bytes", "metadata_objects",
        "new_bytes", "new_objects", "new_stored_bytes",
    ):  # fmt: skip
        out[column] = out[column].astype("int64")
    out["compressed_bytes"] = out["compressed_bytes"].astype("Int64")
    out["shared_bytes"] = out["unique_bytes"] - out["new_bytes"]
    unique_objects = out["unique_objects"].astype("float64")
    out["hit_rate_bytes"] = (out["shared_bytes"] / out["unique_bytes"].astype("float64")).where(out["unique_bytes"] > 0)
    out["hit_rate_objects"] = ((unique_objects - out["new_objects"]) / unique_objects).where(unique_objects > 0)
    out = _with_ratios(out)
    order = {lv: i for i, lv in enumerate(LEVELS)}
    out = out.sort_values(["seq", "level", "chunker_id"], key=lambda s: s.map(order) if s.name == "level" else s, na_position="first")
    out = out.reset_index(drop=True)
    out.attrs["warnings"] = warnings
    return out

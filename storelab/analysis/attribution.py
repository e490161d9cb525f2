"""Where the bytes are: by file type, by path prefix, and which snapshots share them."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from storelab.analysis.db import connect, sql_list
from storelab.tables import Dataset

__all__ = ["attribution", "sharing"]

# paths are bytes; as text (non-UTF-8 bytes shown escaped) they group and print fine
_PATH_TEXT = "CAST(path AS VARCHAR)"


def attribution(
    dataset: str | os.PathLike[str] | Dataset,
    by: str = "extension",
    depth: int = 1,
    snapshots: Sequence[str] | None = None,
    top: int | None = 20,
) -> pd.DataFrame:
    """Blob bytes grouped by file extension or by path prefix, largest first.

    ``by="extension"``: the lower-cased suffix after the file name's last dot (``(none)``
    without one); ``by="prefix"``: the first ``depth`` components of the path. Columns:
    ``group, files, logical_bytes, unique_bytes, dedup_ratio, logical_share``; with ``top``,
    the rest is summed into one ``(other)`` row.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp()); (tree / "d").mkdir()
    >>> _ = (tree / "a.py").write_bytes(b"1" * 10), (tree / "d" / "b.py").write_bytes(b"1" * 10), (tree / "c.txt").write_bytes(b"2" * 5)
    >>> ds = tempfile.mkdtemp() + "/ds"; _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> attribution(ds)[["group", "files", "logical_bytes", "unique_bytes"]].values.tolist()
    [['py', 2, 20, 10], ['txt', 1, 5, 5]]
    """
    if by == "extension":
        key = (
            f"coalesce(nullif(lower(regexp_extract(regexp_extract({_PATH_TEXT}, '[^/]*$', 0), '\\.([^.]+)$', 1)), ''), '(none)')"
        )
    elif by == "prefix":
        if depth < 1:
            raise ValueError("depth is at least 1")
        key = f"array_to_string(list_slice(string_split({_PATH_TEXT}, '/'), 1, {int(depth)}), '/')"
    else:
        raise ValueError("by is 'extension' or 'prefix'")
    with connect(dataset, snapshots) as con:
        frame = con.execute(
            f"""
            WITH files AS (SELECT {key} AS grp, digest, size FROM nodes WHERE kind = 'file'),
            uniq AS (SELECT grp, sum(size) AS unique_bytes FROM (SELECT DISTINCT grp, digest, size FROM files) GROUP BY grp)
            SELECT f.grp AS "group", count(*) AS files, sum(f.size) AS logical_bytes, any_value(u.unique_bytes) AS unique_bytes
            FROM files f JOIN uniq u USING (grp) GROUP BY f.grp ORDER BY logical_bytes DESC, "group"
            """
        ).df()
    for column in ("files", "logical_bytes", "unique_bytes"):
        frame[column] = frame[column].astype("int64")
    if top is not None and len(frame) > top:
        rest = frame.iloc[top:]
        other = pd.DataFrame(
            [{"group": "(other)", "files": rest.files.sum(), "logical_bytes": rest.logical_bytes.sum(), "unique_bytes": rest.unique_bytes.sum()}]
        )
        frame = pd.concat([frame.iloc[:top], other], ignore_index=True)
    total = frame["logical_bytes"].sum()
    frame["dedup_ratio"] = frame["logical_bytes"] / frame["unique_bytes"].where(frame["unique_bytes"] > 0)
    frame["logical_share"] = frame["logical_bytes"] / total if total else 0.0
    return frame


def sharing(
    dataset: str | os.PathLike[str] | Dataset, level: str = "blob", snapshots: Sequence[str] | None = None,
    chunker_id: str | None = None,
) -> pd.DataFrame:
    """Per snapshot: its distinct objects split into exclusive (in no other chosen snapshot)
    and shared (in at least one other).

    Columns: ``seq, snapshot_id, label, unique_bytes, exclusive_bytes, shared_bytes,
    unique_objects, exclusive_objects, shared_objects, exclusive_share``. Each tree counts
    once whatever its chunkings; at the chunk level the chunks of ``chunker_id`` (default:
    the first chunking recorded) are compared.
    """
    if level == "blob":
        objects = "SELECT DISTINCT snapshot_id, digest, size FROM blobs"
    elif level == "chunk":
        chosen = sql_list([chunker_id], "()")[1:-1] if chunker_id else "(SELECT chunker_id FROM chunkings ORDER BY seq, chunker_id LIMIT 1)"
        objects = f"SELECT DISTINCT snapshot_id, digest, size FROM chunks WHERE chunker_id = {chosen}"
    else:
        raise ValueError("level is 'blob' or 'chunk'")
    with connect(dataset, snapshots) as con:
        frame = con.execute(
            f"""
            WITH objs AS ({objects}),
            holders AS (SELECT digest, count(DISTINCT snapshot_id) AS n FROM objs GROUP BY digest)
            SELECT s.seq, s.snapshot_id, s.label,
                   coalesce(sum(o.size), 0) AS unique_bytes,
                   coalesce(sum(o.size) FILTER (WHERE h.n = 1), 0) AS exclusive_bytes,
                   coalesce(sum(o.size) FILTER (WHERE h.n > 1), 0) AS shared_bytes,
                   count(o.digest) AS unique_objects,
                   count(o.digest) FILTER (WHERE h.n = 1) AS exclusive_objects,
                   count(o.digest) FILTER (WHERE h.n > 1) AS shared_objects
            FROM snapshots s LEFT JOIN objs o USING (snapshot_id) LEFT JOIN holders h USING (digest)
            GROUP BY s.seq, s.snapshot_id, s.label ORDER BY s.seq
            """
        ).df()
    for column in ("unique_bytes", "exclusive_bytes", "shared_bytes", "unique_objects", "exclusive_objects", "shared_objects"):
        frame[column] = frame[column].astype("int64")
    frame["exclusive_share"] = frame["exclusive_bytes"] / frame["unique_bytes"].where(frame["unique_bytes"] > 0)
    return frame

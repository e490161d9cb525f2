"""What a dataset holds, snapshot by snapshot (``storelab snapshots``)."""

from __future__ import annotations

import os

import pandas as pd

from storelab.analysis.db import connect
from storelab.tables import Dataset

__all__ = ["list_snapshots"]


def list_snapshots(dataset: str | os.PathLike[str] | Dataset) -> pd.DataFrame:
    """One row per snapshot, oldest first: ``seq, snapshot_id, label, source_kind, source,
    chunkings`` (their ids, ``; ``-separated), ``zstd_levels``, ``files, file_bytes,
    nar_size, nar_zstd_size, nar_xz_size, created_at``.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp()); _ = (tree / "a").write_bytes(b"x")
    >>> ds = tempfile.mkdtemp() + "/ds"; _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> list_snapshots(ds)[["label", "files", "chunkings"]].values.tolist()
    [['t', 1, 'fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1']]
    """
    con = connect(dataset)
    frame = con.execute(
        """
        SELECT s.seq, s.snapshot_id, s.label, s.source_kind, s.source,
               coalesce(string_agg(k.chunker_id, '; ' ORDER BY k.chunker_id), '') AS chunkings,
               coalesce(string_agg(DISTINCT k.zstd_level::VARCHAR, ','), '') AS zstd_levels,
               s.file_count AS files, s.file_bytes, s.nar_size, s.nar_zstd_size, s.nar_xz_size, s.created_at
        FROM snapshots s LEFT JOIN chunkings k USING (snapshot_id)
        GROUP BY ALL ORDER BY s.seq
        """
    ).df()
    for column in ("files", "file_bytes", "nar_size"):
        frame[column] = frame[column].astype("int64")
    for column in ("nar_zstd_size", "nar_xz_size"):
        frame[column] = frame[column].astype("Int64")
    return frame

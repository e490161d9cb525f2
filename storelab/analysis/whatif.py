"""What-if passes: the same data, changed before chunking, against the dataset as it is.

``normalize_store_paths`` answers attic's question (zhaofengli/attic#5): how much more would
dedup if the 32-character hashes of ``/nix/store/<hash>-…`` references inside file contents
were a fixed placeholder? Store paths embed their dependencies' hashes, so a rebuild against
a new glibc changes bytes in every file that mentions it, and chunks stop matching.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from storelab.analysis.db import connect
from storelab.analysis.dedup import dedup_summary
from storelab.chunking import spec_from_id
from storelab.errors import InputError
from storelab.tables import Dataset

__all__ = ["normalize_store_paths", "STORE_PATH_HASH", "PLACEHOLDER", "what_if_normalized"]

# the rule lives with the NAR code (ingest workers use it too); re-exported here
from storelab.nar.references import PLACEHOLDER, STORE_PATH_HASH, normalize_store_paths


def what_if_normalized(
    dataset: str | os.PathLike[str] | Dataset,
    out: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Re-read every snapshot's source with store-path hashes normalised, and compare.

    Each snapshot is ingested again from its recorded source (which must still exist), under
    its own chunkings (a NAR: its first), into ``out`` (a temporary dataset when None). Returns one row per level
    (blob, and chunk per chunker): ``level, chunker_id, unique_bytes, unique_bytes_normalized,
    stored_bytes, stored_bytes_normalized, dedup_ratio, dedup_ratio_normalized, saved_bytes,
    saved_share`` (saved = stored − stored normalised; share of stored).
    """
    from storelab.ingest import IngestOptions, sweep_dir
    from storelab.ingest.nar_source import ingest_nar

    with connect(dataset) as con:
        snaps = con.execute(
            "SELECT s.label, s.source_kind, s.source, list({'chunker_id': k.chunker_id, 'zstd_level': k.zstd_level} ORDER BY k.chunker_id) "
            "FROM snapshots s JOIN chunkings k USING (snapshot_id) GROUP BY s.label, s.source_kind, s.source, s.seq ORDER BY s.seq"
        ).fetchall()
    for label, kind, source, _ in snaps:
        if kind == "nar" and source == "stdin":
            raise InputError(f"snapshot {label!r} was read from standard input; it cannot be read again")
        if not os.path.exists(source):
            raise InputError(f"{source}: the source of snapshot {label!r} is gone; a what-if reads it again")
    with tempfile.TemporaryDirectory(prefix="storelab-whatif-") as scratch:
        target = Path(out) if out is not None else Path(scratch) / "normalized"
        for label, kind, source, chunkings in snaps:
            # the plain per-file chunkings only: the rewrite works file by file, not on a stream, and
            # a refs-zeroed chunking is already what the rewrite makes
            specs = [spec for spec in map(spec_from_id, (c["chunker_id"] for c in chunkings)) if spec.scope == "file"]
            level = int(chunkings[0]["zstd_level"])
            options = IngestOptions(specs[0], level, workers, progress=progress, rewrite=normalize_store_paths)
            if kind == "nar":
                ingest_nar(source, target, label, replace(options, workers=0))
            else:
                sweep_dir(source, target, specs, label, options)
        before = dedup_summary(dataset)
        after = dedup_summary(target)
    return _compare(before, after)


def _compare(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key in before.index:
        if before.loc[key, "level"] not in ("blob", "chunk") or key not in after.index:
            continue
        b, a = before.loc[key], after.loc[key]
        saved = float(b.stored_bytes) - float(a.stored_bytes)
        rows.append(
            {
                "level": b.level,
                "chunker_id": b.chunker_id,
                "unique_bytes": int(b.unique_bytes),
                "unique_bytes_normalized": int(a.unique_bytes),
                "stored_bytes": float(b.stored_bytes),
                "stored_bytes_normalized": float(a.stored_bytes),
                "dedup_ratio": float(b.dedup_ratio),
                "dedup_ratio_normalized": float(a.dedup_ratio),
                "saved_bytes": saved,
                "saved_share": saved / float(b.stored_bytes) if float(b.stored_bytes) else 0.0,
            }
        )
    return pd.DataFrame(rows)

"""``compare_models``: each store model's figures over the same snapshots.

Every model is reduced to the objects each snapshot needs — ``(snapshot, key, raw bytes,
stored bytes, data or metadata)`` — taken from the dataset's tables: whole NARs and their
compressed sizes from ``snapshots``, chunks from ``chunks`` under the model's chunking, index
objects from ``blobs``, closures from ``directories``. An object is stored the first time a
snapshot (in the dataset's order) needs it; everything else follows:

- ``stored_bytes``: distinct objects' stored bytes, with the format's per-chunk and
  per-container overheads; ``objects``: what lands in the object store (containers — restic
  packs, borg segments — where the model packs chunks; one per chunk otherwise), which is also
  the PUT count;
- ``restore_gets``: reading every snapshot back once (one GET, or ranged GET, per object a
  snapshot needs);
- ``first_bytes`` / ``later_added_median``: what the first snapshot stores, and the median of
  what each later one adds;
- ``dedup_ratio`` (logical NAR bytes / distinct raw bytes), ``compression_ratio`` (distinct
  raw / their compressed bytes), ``savings`` (1 − stored / logical), and cdc-bench's
  metadata-adjusted savings ``1 − (unique + m·chunks) / logical`` with ``m`` bytes of metadata
  per chunk reference (``chunk_metadata``);
- costs at ``prices``, and ``pareto``: no other model stores fewer bytes in fewer objects.

Logical bytes are the snapshots' NAR sizes, the same for every model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import pandas as pd

from storelab.analysis.cost import GiB, Prices
from storelab.analysis.db import connect
from storelab.analysis.dedup import NAR_KEY
from storelab.errors import ConfigError
from storelab.models.recipes import MODELS, StoreModel
from storelab.nar.narinfo import render_narinfo
from storelab.tables import Dataset

__all__ = ["COMPARE_COLUMNS", "compare_models", "model_objects", "pareto_front"]

COMPARE_COLUMNS = [
    "model", "system", "granularity", "chunker_id", "missing", "snapshots", "logical_bytes", "unique_bytes", "compressed_bytes",
    "metadata_bytes", "stored_bytes", "data_objects", "metadata_objects", "containers", "objects", "put_requests", "restore_gets",
    "chunk_refs", "first_bytes", "later_added_median", "dedup_ratio", "compression_ratio", "savings", "adjusted_savings",
    "put_cost", "storage_cost", "restore_cost", "total_cost", "pareto",
]  # fmt: skip
"""The columns of :func:`compare_models`, in order."""

_CAIBX_FIXED = 48 + 16 + 40
"""A .caibx index without its items: the index header, the table header, the table tail."""
_CAIBX_ITEM = 40


def _snapshots(con: object) -> pd.DataFrame:
    return con.execute(  # type: ignore[attr-defined]
        f"SELECT snapshot_id, seq, label, coalesce(hex(nar_sha256), {NAR_KEY}) AS nar_key, coalesce(store_path, hex(nar_sha256), {NAR_KEY}) "
        "AS path_key, nar_size, nar_zstd_size, nar_xz_size, "
        "store_path, \"references\", root_kind, hex(root_digest) AS root FROM snapshots ORDER BY seq"
    ).df()


def _missing(model: StoreModel, snaps: pd.DataFrame, chunkings: dict[str, int]) -> str | None:
    """Why the dataset cannot give this model's figures (None: it can)."""
    total = len(snaps)
    if model.granularity == "nar":
        if snaps[f"nar_{model.compression}_size"].notna().all():
            return None
        return f"NARs compressed with {model.compression} (ingest with --nar-compression {model.compression} or --models)"
    if chunkings.get(model.chunker_id or "", 0) < total:
        return f"the chunking {model.chunker_id} for every snapshot (ingest with --models {model.name})"
    if model.whole_below and snaps["nar_zstd_size"].isna().any():
        return "NARs compressed with zstd (ingest with --nar-compression zstd or --models)"
    return None


def _rows(snaps: pd.DataFrame, prefix: str, raw: str, stored: str | pd.Series, data: bool) -> pd.DataFrame:
    """Object rows, one per snapshot: key ``prefix`` + the NAR's key."""
    return pd.DataFrame({"seq": snaps["seq"], "key": prefix + snaps["nar_key"], "raw": snaps[raw],
                         "stored": snaps[stored] if isinstance(stored, str) else stored, "data": data})  # fmt: skip


def _narinfo_rows(snaps: pd.DataFrame, compression: str, size_column: str | None) -> pd.DataFrame:
    sizes = []
    for row in snaps.itertuples():
        store_path = row.store_path if isinstance(row.store_path, str) else f"/nix/store/{'0' * 32}-{row.label}"
        references = list(row.references) if isinstance(row.references, (list, tuple)) or hasattr(row.references, "__len__") else []
        file_size = int(getattr(row, size_column)) if size_column and pd.notna(getattr(row, size_column)) else int(row.nar_size)
        sizes.append(len(render_narinfo(store_path, references, compression, file_size, int(row.nar_size)).encode()))
    # one .narinfo per store path (two store paths may share one NAR file)
    return pd.DataFrame({"seq": snaps["seq"], "key": "narinfo:" + snaps["path_key"], "raw": sizes, "stored": sizes, "data": False})


def model_objects(con: object, model: StoreModel, snaps: pd.DataFrame) -> pd.DataFrame:
    """The objects each snapshot needs under ``model``: ``seq, key, raw, stored, data`` (``data``:
    chunk or NAR bytes, else metadata). ``con`` is a connection of :func:`~storelab.analysis.db.connect`."""
    run = con.execute  # type: ignore[attr-defined]
    parts: list[pd.DataFrame] = []
    if model.granularity == "nar":
        parts.append(_rows(snaps, "nar:", "nar_size", f"nar_{model.compression}_size", True))
    else:
        where = "" if not model.whole_below else f" AND s.nar_size >= {int(model.whole_below)}"
        chunks = run(
            f"SELECT s.seq, 'chunk:' || hex(c.digest) AS key, c.size AS raw, coalesce(c.compressed_size, c.size) + {int(model.per_chunk_overhead)} AS stored, "
            f"TRUE AS data FROM chunks c JOIN snapshots s USING (snapshot_id) WHERE c.chunker_id = ?{where}",
            [model.chunker_id],
        ).df()
        parts.append(chunks)
        if model.whole_below:
            parts.append(_rows(snaps[snaps["nar_size"] < model.whole_below], "nar:", "nar_size", "nar_zstd_size", True))
    if model.chunk_index == "snix":
        parts.append(run(
            "SELECT s.seq, 'index:' || hex(b.digest) AS key, b.index_size AS raw, b.index_size AS stored, FALSE AS data "
            "FROM blobs b JOIN snapshots s USING (snapshot_id) WHERE b.chunker_id = ? AND b.index_size > 0",
            [model.chunker_id],
        ).df())  # fmt: skip
        parts.append(run(
            "SELECT s.seq, 'closure:' || hex(s.root_digest) AS key, sum(d.encoded_size) AS raw, sum(d.encoded_size) AS stored, FALSE AS data "
            "FROM directories d JOIN snapshots s USING (snapshot_id) WHERE s.root_kind = 'directory' GROUP BY s.seq, s.root_digest"
        ).df())  # fmt: skip
    elif model.chunk_index == "caibx":
        parts.append(run(
            f"SELECT s.seq, 'caibx:' || coalesce(hex(s.nar_sha256), {NAR_KEY}) AS key, {_CAIBX_FIXED} + {_CAIBX_ITEM} * b.chunk_count AS raw, "
            f"{_CAIBX_FIXED} + {_CAIBX_ITEM} * b.chunk_count AS stored, FALSE AS data FROM blobs b JOIN snapshots s USING (snapshot_id) WHERE b.chunker_id = ?",
            [model.chunker_id],
        ).df())  # fmt: skip
    if model.narinfo is not None:
        parts.append(_narinfo_rows(snaps, model.narinfo, f"nar_{model.narinfo}_size" if model.granularity == "nar" else None))
    filled = [part for part in parts if len(part)]
    frame = pd.concat(filled, ignore_index=True) if filled else pd.DataFrame(columns=["seq", "key", "raw", "stored", "data"])
    return frame.astype({"seq": "int64", "raw": "int64", "stored": "int64", "data": "bool"})


def _figures(model: StoreModel, objects: pd.DataFrame, snaps: pd.DataFrame, prices: Prices, chunk_metadata: int) -> dict:
    ordered = objects.sort_values("seq", kind="stable")
    first = ordered.drop_duplicates("key", keep="first")
    data, meta = first[first["data"]], first[~first["data"]]
    logical = int(snaps["nar_size"].sum())
    unique = int(data["raw"].sum())
    stored_data = int(data["stored"].sum())
    compressed = stored_data - model.per_chunk_overhead * int((data["key"].str.startswith("chunk:")).sum())
    added = first.groupby("seq")["stored"].sum().reindex(snaps["seq"], fill_value=0)
    containers = 0
    if model.container_size:
        data_added = data.groupby("seq")["stored"].sum().reindex(snaps["seq"], fill_value=0)
        per_snapshot = [math.ceil(int(b) / model.container_size) for b in data_added]
        containers = sum(per_snapshot)
        added = added + pd.Series(per_snapshot, index=added.index) * model.per_container_overhead
    stored = stored_data + int(meta["stored"].sum()) + containers * model.per_container_overhead
    objects_count = (containers if model.container_size else len(data)) + len(meta)
    refs = ordered.drop_duplicates(["seq", "key"])
    chunk_refs = int(refs["data"].sum())
    row = {
        "logical_bytes": logical, "unique_bytes": unique, "compressed_bytes": compressed, "metadata_bytes": int(meta["stored"].sum()),
        "stored_bytes": stored, "data_objects": len(data), "metadata_objects": len(meta), "containers": containers,
        "objects": objects_count, "put_requests": objects_count, "restore_gets": len(refs), "chunk_refs": chunk_refs,
        "first_bytes": int(added.iloc[0]) if len(added) else 0,
        "later_added_median": float(added.iloc[1:].median()) if len(added) > 1 else None,
        "dedup_ratio": logical / unique if unique else None,
        "compression_ratio": unique / compressed if compressed else None,
        "savings": 1 - stored / logical if logical else None,
        "adjusted_savings": 1 - (unique + chunk_metadata * chunk_refs) / logical if logical else None,
    }  # fmt: skip
    put_cost = objects_count * prices.put_per_1000 / 1000
    storage_cost = stored / GiB * prices.storage_per_gib_month * prices.months
    row |= {"put_cost": put_cost, "storage_cost": storage_cost, "restore_cost": len(refs) * prices.get_per_1000 / 1000,
            "total_cost": put_cost + storage_cost}  # fmt: skip
    return row


def pareto_front(frame: pd.DataFrame, x: str = "objects", y: str = "stored_bytes") -> pd.Series:
    """Whether each row is on the Pareto front of fewer ``x`` and fewer ``y`` (rows with
    missing figures are not).

    >>> frame = pd.DataFrame({"objects": [10, 5, 20, 5], "stored_bytes": [100, 200, 50, 300]})
    >>> pareto_front(frame).tolist()
    [True, True, True, False]
    """
    points = [(a, b) for a, b in frame[[x, y]].astype(float).itertuples(index=False)]
    known = [(a, b) for a, b in points if not (math.isnan(a) or math.isnan(b))]

    def on_front(a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return False
        return not any(c <= a and d <= b and (c < a or d < b) for c, d in known)

    return pd.Series([on_front(a, b) for a, b in points], index=frame.index)


def compare_models(
    dataset: str | os.PathLike[str] | Dataset, models: Sequence[str | StoreModel] | None = None, prices: Prices | None = None,
    chunk_metadata: int = 64, snapshots: Sequence[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One row per model (names from :data:`~storelab.models.MODELS`, or models of one's own,
    e.g. restic with a repository's polynomial; all by default), columns :data:`COMPARE_COLUMNS`.
    A model the dataset cannot give figures for has them empty and ``missing`` saying what
    ingest would add them."""
    chosen = list(models) if models else list(MODELS)
    unknown = [name for name in chosen if isinstance(name, str) and name not in MODELS]
    if unknown:
        raise ConfigError(f"unknown store model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    prices = prices or Prices()
    rows = []
    with connect(dataset, snapshots) as con:
        snaps = _snapshots(con)
        chunkings = dict(con.execute("SELECT chunker_id, count(DISTINCT snapshot_id) FROM chunkings GROUP BY ALL").fetchall())
        for choice in chosen:
            model = MODELS[choice] if isinstance(choice, str) else choice
            name = model.name
            row: dict = {"model": name, "system": model.system, "granularity": model.granularity, "chunker_id": model.chunker_id,
                         "snapshots": len(snaps), "missing": _missing(model, snaps, chunkings)}  # fmt: skip
            if row["missing"] is None:
                row |= _figures(model, model_objects(con, model, snaps), snaps, prices, chunk_metadata)
            rows.append(row)
    frame = pd.DataFrame(rows).reindex(columns=COMPARE_COLUMNS)
    frame["pareto"] = pareto_front(frame)
    return frame

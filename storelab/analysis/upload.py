"""The upload-speed study: how much concurrent small-blob upload saves over a slow link.

Each run ingests the same input into a fresh in-memory store behind a simulated link
(:class:`~storelab.stores.LatencyBackend`), once sequentially (every request waits for the one
before) and once per concurrency level with tvix's background uploader; wall time, requests
and the speedup over the sequential run at the same RTT are recorded.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from storelab.chunking import ChunkerSpec, default_spec
from storelab.stores import (
    CountingBackend,
    LatencyBackend,
    LinkProfile,
    ObstoreBackend,
    RetryingBackend,
    SnixStore,
)
from storelab.stores.uploader import UploadOptions

__all__ = ["upload_grid", "upload_run", "write_upload_outputs", "UPLOAD_COLUMNS"]

UPLOAD_COLUMNS = [
    "rtt_ms", "mode", "concurrency", "wall_seconds", "requests", "put_count", "head_count", "put_bytes", "files",
    "file_bytes", "speedup",
]  # fmt: skip


def upload_run(
    source: str | os.PathLike[str],
    link: LinkProfile,
    upload: UploadOptions,
    chunker: ChunkerSpec | None = None,
) -> dict[str, object]:
    """Ingest ``source`` (a tree, or a NAR file) once into a fresh store behind ``link``."""
    from storelab.ingest import IngestOptions, ingest_dir
    from storelab.ingest.nar_source import ingest_nar

    store = SnixStore(CountingBackend(RetryingBackend(LatencyBackend(ObstoreBackend("memory://"), link))))
    options = IngestOptions(chunker or default_spec(), zstd_level=3, workers=0, store=store, upload=upload)
    with tempfile.TemporaryDirectory(prefix="storelab-upload-") as scratch:
        started = time.perf_counter()
        ingest = ingest_dir if Path(source).is_dir() else ingest_nar
        result = ingest(source, Path(scratch) / "ds", "upload", options)
        wall = time.perf_counter() - started
    ops = result.store_ops
    assert ops is not None
    return {
        "rtt_ms": link.rtt * 1000,
        "mode": "sequential" if upload.concurrency == 0 else "concurrent",
        "concurrency": upload.concurrency,
        "wall_seconds": wall,
        "requests": ops.requests,
        "put_count": ops.put_count,
        "head_count": ops.head_count,
        "put_bytes": ops.put_bytes,
        "files": result.files,
        "file_bytes": result.file_bytes,
    }


def upload_grid(
    source: str | os.PathLike[str],
    rtts: Sequence[float],
    concurrencies: Sequence[int],
    bandwidth: int | None = None,
    threshold: int = UploadOptions().threshold,
    max_buffered: int = UploadOptions().max_buffered,
    chunker: ChunkerSpec | None = None,
    on_run: Callable[[dict[str, object]], None] | None = None,
) -> pd.DataFrame:
    """Sequential and concurrent uploads of ``source`` at every RTT (seconds) and concurrency.

    One row per run (columns :data:`UPLOAD_COLUMNS`); ``speedup`` is the sequential run's wall
    time at the same RTT over this run's.

    >>> import tempfile, pathlib
    >>> tree = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3): _ = (tree / f"f{i}").write_bytes(bytes([i]) * 100)
    >>> grid = upload_grid(tree, [0.0], [4])
    >>> list(grid["mode"]), list(grid["put_count"])
    (['sequential', 'concurrent'], [7, 7])
    """
    rows: list[dict[str, object]] = []
    for rtt in rtts:
        link = LinkProfile(rtt=rtt, bandwidth=bandwidth)
        baseline = None
        for concurrency in (0, *concurrencies):
            row = upload_run(source, link, UploadOptions(concurrency, threshold, max_buffered), chunker)
            baseline = baseline if baseline is not None else float(row["wall_seconds"])  # type: ignore[arg-type]
            row["speedup"] = baseline / float(row["wall_seconds"])  # type: ignore[arg-type]
            rows.append(row)
            if on_run:
                on_run(row)
    return pd.DataFrame(rows, columns=UPLOAD_COLUMNS)


def write_upload_outputs(grid: pd.DataFrame, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write :func:`upload_grid`'s table (``upload.parquet``) and its plot (``upload.png``)
    into ``folder``, each whole or not at all."""
    from storelab.analysis.plots import plot_upload_speedup
    from storelab.outputs import atomic_output, output_folder

    where = output_folder(folder)
    with atomic_output(where / "upload.parquet") as f:
        grid.to_parquet(f, index=False)
    ax = plot_upload_speedup(grid)
    with atomic_output(where / "upload.png") as f:
        ax.get_figure().savefig(f, format="png", dpi=120)  # type: ignore[union-attr]
    return where / "upload.parquet", where / "upload.png"

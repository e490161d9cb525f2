"""The upload-speed study: how much concurrent small-blob upload saves over a slow link.

Each run ingests the same input into a fresh in-memory store behind a simulated link
(:class:`~storelab.stores.LatencyBackend`), once sequentially (every request waits for the one
before) and once per concurrency level with tvix's background uploader; wall time, requests
and the speedup over the sequential run at the same RTT are recorded. Timings are repeated
(``runs``, taking turns so a machine's drift hits every setting alike): the table keeps the
median and the fastest and slowest run.
"""

from __future__ import annotations

import os
import statistics
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

__all__ = ["timed_row", "upload_grid", "upload_run", "write_upload_outputs", "UPLOAD_COLUMNS"]

UPLOAD_COLUMNS = [
    "rtt_ms", "mode", "concurrency", "wall_seconds", "requests", "put_count", "head_count", "put_bytes", "files",
    "file_bytes", "speedup", "runs", "wall_min", "wall_max", "speedup_low", "speedup_high",
]  # fmt: skip
"""``wall_seconds`` is the median of ``runs`` runs (``wall_min``–``wall_max`` their spread);
``speedup`` = the sequential run's median at the same RTT ÷ this one's, ``speedup_low``–
``speedup_high`` the same ratio from the slowest and the fastest run of this setting."""


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


def timed_row(row: dict[str, object], times: Sequence[float], sequential: float) -> dict[str, object]:
    """One setting's row of :data:`UPLOAD_COLUMNS` from its runs: ``row`` (one run's counts)
    with the median wall time of ``times``, their spread, and the speedups over ``sequential``
    (the sequential median at the same RTT).

    >>> r = timed_row({"requests": 7}, [2.0, 1.0, 4.0], 8.0)
    >>> r["wall_seconds"], r["speedup"], r["speedup_low"], r["speedup_high"], r["runs"]
    (2.0, 4.0, 2.0, 8.0, 3)
    """
    median = statistics.median(times)
    return {
        **row, "wall_seconds": median, "runs": len(times), "wall_min": min(times), "wall_max": max(times),
        "speedup": sequential / median, "speedup_low": sequential / max(times), "speedup_high": sequential / min(times),
    }  # fmt: skip


def upload_grid(
    source: str | os.PathLike[str],
    rtts: Sequence[float],
    concurrencies: Sequence[int],
    bandwidth: int | None = None,
    threshold: int = UploadOptions().threshold,
    max_buffered: int = UploadOptions().max_buffered,
    chunker: ChunkerSpec | None = None,
    on_run: Callable[[dict[str, object]], None] | None = None,
    runs: int = 1,
) -> pd.DataFrame:
    """Sequential and concurrent uploads of ``source`` at every RTT (seconds) and concurrency,
    each setting timed ``runs`` times (round by round); ``on_run`` sees every single run.

    One row per setting (columns :data:`UPLOAD_COLUMNS`): the median wall time and its spread;
    ``speedup`` is the sequential median at the same RTT over this setting's. Requests are
    counted, not timed: every run of a setting makes the same ones.

    >>> import tempfile, pathlib
    >>> tree = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3): _ = (tree / f"f{i}").write_bytes(bytes([i]) * 100)
    >>> grid = upload_grid(tree, [0.0], [4])
    >>> list(grid["mode"]), list(grid["put_count"])
    (['sequential', 'concurrent'], [7, 7])
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    settings = [(rtt, concurrency) for rtt in rtts for concurrency in (0, *concurrencies)]
    walls: dict[tuple[float, int], list[float]] = {setting: [] for setting in settings}
    last: dict[tuple[float, int], dict[str, object]] = {}
    for _ in range(runs):  # round by round: every setting once per round
        for rtt, concurrency in settings:
            row = upload_run(source, LinkProfile(rtt=rtt, bandwidth=bandwidth), UploadOptions(concurrency, threshold, max_buffered), chunker)
            walls[(rtt, concurrency)].append(float(row["wall_seconds"]))  # type: ignore[arg-type]
            last[(rtt, concurrency)] = row
            if on_run:
                on_run(row)
    rows = [timed_row(last[(rtt, c)], walls[(rtt, c)], statistics.median(walls[(rtt, 0)])) for rtt, c in settings]
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

"""Plotting helpers: each takes a DataFrame from :mod:`storelab.analysis` and an optional
matplotlib Axes, draws on it, and returns it. None calls ``show()``: the notebook or the
report decides where figures go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from storelab.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "bytes_axis",
    "bytes_formatter",
    "new_axes",
    "plot_attribution",
    "plot_chunk_size_cdf",
    "plot_chunk_size_histogram",
    "plot_chunker_tradeoff",
    "plot_dedup_levels",
    "plot_layer_pulls",
    "plot_new_bytes",
    "plot_refcounts",
    "plot_sharing",
    "plot_store_models",
    "plot_upload_speedup",
]


def new_axes(ax: Axes | None = None, size: tuple[float, float] = (7.0, 4.2)) -> Axes:
    """``ax``, or the axes of a new figure (without pyplot's global state)."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def bytes_formatter():
    """Tick labels as KiB / MiB / GiB."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: format_bytes(int(value)) if value >= 0 else "")


def plot_upload_speedup(grid: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Speedup of concurrent over sequential upload against concurrency, one line per RTT.

    ``grid`` is :func:`storelab.analysis.upload.upload_grid`'s table.
    """
    ax = new_axes(ax)
    concurrent = grid[grid["mode"] == "concurrent"]
    for rtt, runs in concurrent.groupby("rtt_ms", sort=True):
        runs = runs.sort_values("concurrency")
        if "speedup_low" in runs and int(runs["runs"].max()) > 1:  # repeated: the median, bars from slowest to fastest run
            spread = [runs["speedup"] - runs["speedup_low"], runs["speedup_high"] - runs["speedup"]]
            ax.errorbar(runs["concurrency"], runs["speedup"], yerr=spread, marker="o", capsize=3, label=f"RTT {rtt:g} ms")
        else:
            ax.plot(runs["concurrency"], runs["speedup"], marker="o", label=f"RTT {rtt:g} ms")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(concurrent["concurrency"].unique()))
    ax.get_xaxis().set_major_formatter("{x:g}")
    ax.set_xlabel("upload concurrency (requests in flight)")
    ax.set_ylabel("speedup over sequential upload (×)")
    files = int(grid["files"].iloc[0]) if len(grid) else 0
    size = format_bytes(int(grid["file_bytes"].iloc[0])) if len(grid) else "0 B"
    repeated = int(grid["runs"].max()) if "runs" in grid and len(grid) else 1
    note = f"; median of {repeated} runs, bars: slowest–fastest" if repeated > 1 else ""
    ax.set_title(f"Concurrent small-blob upload: {files:,} files, {size}{note}", fontsize=10)
    ax.legend(title="simulated link")
    ax.grid(True, alpha=0.3)
    return ax


class _BinaryLocator:
    """Ticks at round binary sizes (1, 2, 5, 10, 20, 50… KiB/MiB/GiB) on a linear byte axis."""

    def __new__(cls):
        from matplotlib.ticker import Locator

        class BinaryLocator(Locator):
            def __call__(self):
                assert self.axis is not None  # matplotlib sets it before asking for ticks
                low, high = self.axis.get_view_interval()
                return self.tick_values(low, high)

            def tick_values(self, vmin: float, vmax: float):
                import numpy as np

                top = max(abs(vmin), abs(vmax), 1.0)
                unit = 1024 ** max(0, min(4, int(np.log(top) / np.log(1024))))
                for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
                    if top / (step * unit) <= 6:
                        break
                spacing = step * unit
                start = np.floor(vmin / spacing) * spacing
                return np.arange(start, vmax + spacing, spacing)

        return BinaryLocator()


def _shortened(label: str, limit: int = 24) -> str:
    """A tick label short enough to leave room for the plot (long store-path names are cut).

    >>> _shortened("postgresql"), _shortened("libmagick++-6.q16hdri-dev-8_6.9.11.60+dfsg-1.6+deb12u11")
    ('postgresql', 'libmagick++-6.q16hdri-d…')
    """
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bytes_axis(axis, log: bool = False) -> None:
    """Byte tick labels at round binary sizes (1, 2, 5 … KiB, MiB, GiB); on a log axis
    (``log=True``), ticks at powers of two, thinned to about ten. For a figure of one's own:
    ``bytes_axis(ax.yaxis)``."""
    from matplotlib.ticker import LogLocator

    axis.set_major_locator(LogLocator(base=2, numticks=10) if log else _BinaryLocator())
    axis.set_major_formatter(bytes_formatter())


def level_label(row: pd.Series) -> str:
    """A short name for a row of :func:`~storelab.analysis.dedup_summary`: the level, and for
    a chunk row its chunker and sizes (``chunk fastcdc2020 64 KiB``, ``chunk fixed 16 KiB, zstd 19``).

    >>> level_label(pd.Series({"level": "chunk", "chunker_id": "fixed/size=16KiB", "zstd_level": 3}))
    'chunk fixed/size=16KiB'
    >>> level_label(pd.Series({"level": "chunk", "chunker_id": "borg/min_exp=19,max_exp=23,mask_bits=21,window=4095,seed=0"}))
    'chunk borg/mask_bits=21'
    """
    if row["level"] != "chunk" or not isinstance(row.get("chunker_id"), str):
        return str(row["level"])
    chunker, _, params = row["chunker_id"].partition("/")
    # the parameter that sets each chunker's average (and a seed, which changes every cut)
    averages = ("avg=", "size=", "target=", "mask_bits=", "avg_bits=", "bits=")
    shown = ",".join(p for p in params.split(",") if p.startswith(averages) or (p.startswith("seed=") and p != "seed=0")) or params
    zstd = row.get("zstd_level")
    extra = f", zstd {zstd}" if zstd not in (None, 3) and zstd == zstd else ""
    return f"chunk {chunker}/{shown}{extra}"


def plot_dedup_levels(summary: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Logical, unique and stored bytes per level (:func:`~storelab.analysis.dedup_summary`),
    one labelled row each — readable at any number of chunkings — with the dedup and
    compression factors beside the bars."""
    rows = len(summary)
    ax = new_axes(ax, (7.5, max(3.0, 0.55 * rows + 1.2)))
    labels = [level_label(row) for _, row in summary.iterrows()]
    y = np.arange(rows)[::-1]  # the first level on top
    height = 0.27
    for offset, column, name in ((height, "logical_bytes", "logical"), (0, "unique_bytes", "unique"), (-height, "stored_bytes", "stored")):
        ax.barh(y + offset, summary[column].fillna(0).astype(float), height, label=name)
    for i, (_, row) in enumerate(summary.iterrows()):
        factors = f"dedup {row['dedup_ratio']:.2f}×" if row["dedup_ratio"] == row["dedup_ratio"] else ""
        compression = row.get("compression_ratio")
        if compression is not None and compression == compression:
            factors += f" · compression {compression:.2f}×"
        ax.annotate(factors, (float(row["logical_bytes"]), y[i] + height), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    bytes_axis(ax.xaxis)
    ax.set_xlabel("bytes")
    ax.margins(x=0.25)
    ax.set_title("Dedup at every level: logical, unique and stored bytes")
    ax.legend(loc="lower right", fontsize=8)
    return ax


LABELLED_SNAPSHOTS = 40
"""Up to this many snapshots a per-snapshot plot draws a labelled bar each; past it, an area
over the snapshots' order (thousands of bars and labels would be unreadable, and slow)."""


def _stacked_per_snapshot(ax: Axes, labels: list[str], lower: pd.Series, upper: pd.Series, names: tuple[str, str]) -> None:
    """Two stacked quantities per snapshot, in order; bars by position (labels may repeat)."""
    positions = np.arange(len(labels))
    low, high = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if len(labels) <= LABELLED_SNAPSHOTS:
        ax.bar(positions, low, label=names[0])
        ax.bar(positions, high, bottom=low, label=names[1])
        ax.set_xticks(positions, labels, rotation=30, ha="right")
    else:
        ax.fill_between(positions, 0, low, step="mid", label=names[0])
        ax.fill_between(positions, low, low + high, step="mid", label=names[1])
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xlabel(f"snapshot number, in ingest order ({len(labels):,} snapshots)")


def plot_sharing(shares: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Per snapshot, exclusive against shared bytes (:func:`~storelab.analysis.sharing`)."""
    ax = new_axes(ax)
    ax.set_xlabel("snapshot")
    _stacked_per_snapshot(
        ax, list(shares["label"]), shares["exclusive_bytes"], shares["shared_bytes"],
        ("exclusive (in no other snapshot)", "shared (with at least one other)"),
    )  # fmt: skip
    bytes_axis(ax.yaxis)
    ax.set_ylabel("distinct bytes in the snapshot")
    ax.set_title("What each snapshot has alone, and what it shares")
    ax.legend()
    return ax


def plot_new_bytes(per_snapshot: pd.DataFrame, level: str = "blob", ax: Axes | None = None) -> Axes:
    """Bytes each snapshot adds to a store holding the earlier ones (:func:`~storelab.analysis.snapshot_summary`)."""
    ax = new_axes(ax)
    rows = per_snapshot[per_snapshot["level"] == level]
    ax.set_xlabel("snapshot, in ingest order")
    _stacked_per_snapshot(
        ax, list(rows["label"]), rows["new_bytes"], rows["shared_bytes"], ("new (not in any earlier snapshot)", "already stored")
    )
    bytes_axis(ax.yaxis)
    ax.set_ylabel(f"distinct {level} bytes")
    ax.set_title(f"What each snapshot adds ({level} level)")
    ax.legend()
    return ax


def plot_attribution(groups: pd.DataFrame, ax: Axes | None = None, title: str = "Bytes by file type") -> Axes:
    """Logical and unique bytes per group (:func:`~storelab.analysis.attribution`), largest on top."""
    ax = new_axes(ax)
    rows = groups.iloc[::-1]
    ax.barh(rows["group"], rows["logical_bytes"], label="logical")
    ax.barh(rows["group"], rows["unique_bytes"], label="unique", height=0.5)
    bytes_axis(ax.xaxis)
    ax.set_xlabel("bytes")
    ax.set_title(title)
    ax.legend()
    return ax


def plot_refcounts(histogram: pd.DataFrame, ax: Axes | None = None, level: str = "chunk") -> Axes:
    """Bytes per reference-count bucket, allocated against referenced
    (:func:`~storelab.analysis.refcount_histogram`)."""
    import numpy as np

    ax = new_axes(ax)
    labels = [f"{lo}" if lo == hi else f"{lo}–{hi}" for lo, hi in zip(histogram["refcount"], histogram["refcount_high"])]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, histogram["unique_bytes"], 0.4, label="allocated (each object once)")
    ax.bar(x + 0.2, histogram["referenced_bytes"], 0.4, label="referenced (every occurrence)")
    for i, count in enumerate(histogram["objects"]):
        ax.annotate(f"{int(count):,} {level}s", (x[i] - 0.2, float(histogram["unique_bytes"].iloc[i])), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_yscale("log", base=2)
    bytes_axis(ax.yaxis, log=True)
    ax.set_xlabel("references per object")
    ax.set_ylabel("bytes (log scale)")
    ax.set_title(f"Reference counts of {level}s (as zdb -S)")
    ax.legend()
    return ax


def plot_chunk_size_histogram(distribution: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Distinct chunks per size bin, one line per chunker, log size axis (:func:`~storelab.analysis.chunk_size_distribution`)."""
    ax = new_axes(ax)
    for chunker, rows in distribution.groupby("chunker_id", sort=True):
        centres = (rows["bin_low"] * rows["bin_high"]) ** 0.5
        ax.step(centres, rows["chunks"], where="mid", label=chunker)
    ax.set_xscale("log", base=2)
    bytes_axis(ax.xaxis, log=True)
    ax.set_xlabel("chunk size (log scale)")
    ax.set_ylabel("distinct chunks")
    ax.set_title("Chunk-size distribution")
    ax.legend(fontsize=7)
    return ax


def plot_chunk_size_cdf(distribution: pd.DataFrame, stats: pd.DataFrame | None = None, ax: Axes | None = None) -> Axes:
    """Cumulative share of chunks by size, with each chunker's configured min/avg/max marked."""
    ax = new_axes(ax)
    for chunker, rows in distribution.groupby("chunker_id", sort=True):
        line = ax.plot(rows["bin_high"], rows["cdf_chunks"], label=chunker)[0]
        if stats is not None:
            spec = stats[stats["chunker_id"] == chunker]
            for column, style in (("min_size", ":"), ("avg_size", "--"), ("max_size", "-.")):
                if len(spec) and spec[column].iloc[0] == spec[column].iloc[0]:
                    ax.axvline(float(spec[column].iloc[0]), color=line.get_color(), linestyle=style, linewidth=0.8)
    ax.set_xscale("log", base=2)
    bytes_axis(ax.xaxis, log=True)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("chunk size (log scale); dotted min, dashed avg, dash-dot max")
    ax.set_ylabel("share of distinct chunks ≤ size")
    ax.set_title("Chunk-size CDF against the configured sizes")
    ax.legend(fontsize=7)
    return ax


def plot_chunker_tradeoff(comparison: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Dedup ratio against the number of distinct chunks, one line per chunker kind
    (:func:`~storelab.analysis.chunker_comparison`)."""
    ax = new_axes(ax)
    for kind, rows in comparison.groupby("chunker", sort=True):
        rows = rows.sort_values("unique_chunks")
        ax.plot(rows["unique_chunks"], rows["dedup_ratio"], marker="o", label=kind)
        for row in rows.itertuples():
            ax.annotate(format_bytes(int(row.avg_size)), (row.unique_chunks, row.dedup_ratio), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("distinct chunks (objects to store, log scale)")
    ax.set_ylabel("dedup ratio (logical / unique)")
    ax.set_title("Dedup against object count as the average chunk size is swept")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax


def plot_layer_pulls(pulls: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Cumulative bytes pulled per algorithm over the image sequence
    (:func:`storelab.layers.simulate_pulls`)."""
    ax = new_axes(ax)
    for algorithm, rows in pulls.groupby("algorithm", sort=False):
        rows = rows.sort_values("step")
        ax.plot(rows["step"], rows["bytes_pulled"].cumsum(), marker="o", label=algorithm)
    images = pulls.drop_duplicates("step").sort_values("step")
    ax.set_xticks(images["step"], [_shortened(name) for name in images["image"]], rotation=30, ha="right")
    bytes_axis(ax.yaxis)
    ax.set_xlabel("image pulled, in order")
    ax.set_ylabel("bytes pulled so far")
    ax.set_title("Layer cache: cumulative bytes pulled per layering algorithm")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax


def plot_store_models(comparison: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Stored bytes against objects, one point per store model
    (:func:`storelab.models.compare_models`), the Pareto front (fewer bytes in fewer objects)
    joined and its models marked; models the dataset cannot price are left out."""
    ax = new_axes(ax, (7.5, 4.6))
    shown = comparison[comparison["missing"].isna()].copy()
    shown["objects"] = shown["objects"].astype(float)
    # bytes in one readable unit, so the axis gets evenly spaced round ticks over a narrow range
    top = float(shown["stored_bytes"].max()) if len(shown) else 1.0
    unit, scale = next(((u, 1024.0**p) for u, p in (("GiB", 3), ("MiB", 2), ("KiB", 1)) if top >= 1024.0**p), ("B", 1.0))
    shown["stored_bytes"] = shown["stored_bytes"].astype(float) / scale
    labels: dict[tuple[float, float], list[str]] = {}  # models on (almost) the same point share one label
    for row in shown.itertuples():
        front = bool(row.pareto)
        ax.scatter(row.objects, row.stored_bytes, marker="o" if front else "x", s=40, color="C3" if front else "C0", zorder=3)
        near = next((p for p in labels if abs(p[0] - row.objects) <= 0.02 * p[0] and abs(p[1] - row.stored_bytes) <= 0.01 * p[1]), None)
        labels.setdefault(near or (row.objects, row.stored_bytes), []).append(str(row.model))
    for (x, y), names in labels.items():
        ax.annotate(", ".join(names), (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    front = shown[shown["pareto"].astype(bool)].sort_values("objects")
    if len(front) > 1:
        ax.plot(front["objects"], front["stored_bytes"], color="C3", linewidth=1, linestyle="--", label="Pareto front")
        ax.legend(loc="upper right", fontsize=8)
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _value, _pos: ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}" if top / scale >= 20 else f"{value:,.1f}"))
    ax.set_xlabel("objects in the store (PUT requests)")
    ax.set_ylabel(f"stored ({unit})")
    ax.set_title("what each system would store (o: on the Pareto front)")
    ax.grid(True, alpha=0.3)
    return ax

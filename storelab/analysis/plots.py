"""Plotting helpers: each takes a DataFrame from :mod:`storelab.analysis` and an optional
matplotlib Axes, draws on it, and returns it. None calls ``show()``: the notebook or the
report decides where figures go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from storelab.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["bytes_formatter", "plot_upload_speedup", "new_axes"]


def new_axes(ax: Axes | None = None, size: tuple[float, float] = (7.0, 4.2)) -> Axes:
    """``ax``, or the axes of a new figure (without pyplot's global state)."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def bytes_formatter():  # noqa: ANN201 - a matplotlib Formatter
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
        ax.plot(runs["concurrency"], runs["speedup"], marker="o", label=f"RTT {rtt:g} ms")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(concurrent["concurrency"].unique()))
    ax.get_xaxis().set_major_formatter("{x:g}")
    ax.set_xlabel("upload concurrency (requests in flight)")
    ax.set_ylabel("speedup over sequential upload (×)")
    files = int(grid["files"].iloc[0]) if len(grid) else 0
    size = format_bytes(int(grid["file_bytes"].iloc[0])) if len(grid) else "0 B"
    ax.set_title(f"Concurrent small-blob upload: {files:,} files, {size}")
    ax.legend(title="simulated link")
    ax.grid(True, alpha=0.3)
    return ax

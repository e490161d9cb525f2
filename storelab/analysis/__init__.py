"""Answers from datasets: plain functions from a dataset to pandas DataFrames, computed by
DuckDB over the Parquet files (out of core), and plotting helpers in
:mod:`storelab.analysis.plots` that draw those frames."""

from storelab.analysis.attribution import attribution, sharing
from storelab.analysis.chunks import (
    chunk_size_distribution,
    chunk_size_stats,
    chunker_comparison,
    refcount_histogram,
)
from storelab.analysis.cost import Prices, cost_model, measured_requests
from storelab.analysis.db import connect
from storelab.analysis.dedup import LEVELS, dedup_summary, snapshot_summary
from storelab.analysis.listing import list_snapshots

__all__ = [
    "LEVELS",
    "Prices",
    "attribution",
    "chunk_size_distribution",
    "chunk_size_stats",
    "chunker_comparison",
    "connect",
    "cost_model",
    "dedup_summary",
    "list_snapshots",
    "measured_requests",
    "refcount_histogram",
    "sharing",
    "snapshot_summary",
]

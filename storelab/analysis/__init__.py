"""Answers from datasets: plain functions from a dataset to pandas DataFrames (DuckDB inside)."""

from storelab.analysis.db import connect
from storelab.analysis.dedup import LEVELS, dedup_summary, snapshot_summary

__all__ = ["LEVELS", "connect", "dedup_summary", "snapshot_summary"]

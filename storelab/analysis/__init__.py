"""Answers from datasets: plain functions from a dataset to pandas DataFrames (DuckDB inside)."""

from storelab.analysis.cost import Prices, cost_model, measured_requests
from storelab.analysis.db import connect
from storelab.analysis.dedup import LEVELS, dedup_summary, snapshot_summary

__all__ = ["LEVELS", "Prices", "connect", "cost_model", "dedup_summary", "measured_requests", "snapshot_summary"]

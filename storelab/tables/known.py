"""What a dataset already knows, so work is not repeated across snapshots."""

from __future__ import annotations

import os

from storelab.tables.dataset import Dataset
from storelab.tables.index import KnownSizes

__all__ = ["prior_knowledge"]


def prior_knowledge(dataset: str | os.PathLike[str] | Dataset, zstd_level: int) -> tuple[Dataset | None, KnownSizes]:
    """What an ingest needs to know before it starts: the dataset if it exists already, and
    the compressed sizes it has measured at ``zstd_level``, as a lookup in its index (nothing
    is created here, nothing is read but the index and the lake's newest rows)."""
    existing = dataset if isinstance(dataset, Dataset) else Dataset.open_existing(dataset)
    if existing is None or not zstd_level:
        return existing, KnownSizes(None, zstd_level)
    return existing, existing.index().known_sizes(zstd_level)

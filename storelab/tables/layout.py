"""Where a dataset lives and the names in its folder, importable without Arrow (an ingest
checks for a dataset before it loads the tables machinery)."""

from __future__ import annotations

import os
from pathlib import Path

MARKER = "_storelab.json"
"""Format marker and schema version: a folder is a dataset once it holds this file."""
STAGING = "_staging"
"""Snapshots being written, invisible to readers."""
LOCK = "_lock"
"""Held while a snapshot is moved into place."""


def is_object_url(location: object) -> bool:
    """Whether a dataset location is in object storage rather than a folder.

    >>> is_object_url("s3://bucket/studies/cache"), is_object_url("build/ds")
    (True, False)
    """
    return isinstance(location, str) and location.startswith("s3://")


def may_hold_dataset(location: str | os.PathLike[str]) -> bool:
    """Whether there may be a dataset at ``location`` already: an object store is asked only
    by opening it; a folder holds one when it has the marker."""
    return is_object_url(location) or (Path(location) / MARKER).exists()

"""Names in a dataset folder, importable without Arrow (an ingest checks for a dataset
before it loads the tables machinery)."""

MARKER = "_storelab.json"
"""Format marker and schema version: a folder is a dataset once it holds this file."""
STAGING = "_staging"
"""Snapshots being written, invisible to readers."""
LOCK = "_lock"
"""Held while a snapshot is moved into place."""

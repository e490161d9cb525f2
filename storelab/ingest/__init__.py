"""Ingest sources into dataset snapshots: scan, hash and chunk, record.

Exports load on first use, so worker processes that import only the blob pipeline
(:mod:`storelab.ingest.workers`) do not pay for Arrow and Parquet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storelab.lazy import lazy_exports

__all__ = ["BlobHasher", "BlobInfo", "IngestOptions", "IngestResult", "Skipped", "TreeEntry", "ingest_dir", "scan_tree", "sweep_dir"]

_WHERE = {
    "BlobHasher": "storelab.ingest.blobs",
    "BlobInfo": "storelab.ingest.blobs",
    "IngestOptions": "storelab.ingest.snapshot",
    "IngestResult": "storelab.ingest.snapshot",
    "ingest_dir": "storelab.ingest.directory_source",
    "sweep_dir": "storelab.ingest.directory_source",
    "Skipped": "storelab.ingest.tree",
    "TreeEntry": "storelab.ingest.tree",
    "scan_tree": "storelab.ingest.tree",
}

if TYPE_CHECKING:
    from storelab.ingest.blobs import BlobHasher, BlobInfo
    from storelab.ingest.directory_source import ingest_dir, sweep_dir
    from storelab.ingest.snapshot import IngestOptions, IngestResult
    from storelab.ingest.tree import Skipped, TreeEntry, scan_tree


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

"""Ingest sources (directory trees; NARs in their own module) into dataset snapshots."""

from storelab.ingest.blobs import BlobHasher, BlobInfo
from storelab.ingest.directory_source import IngestOptions, IngestResult, ingest_dir
from storelab.ingest.tree import Skipped, TreeEntry, scan_tree

__all__ = ["BlobHasher", "BlobInfo", "IngestOptions", "IngestResult", "Skipped", "TreeEntry", "ingest_dir", "scan_tree"]

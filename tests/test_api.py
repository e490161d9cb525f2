"""The public API is what the packages' ``__all__`` say, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "storelab.castore": {
        "DIGEST_LEN", "EMPTY_BLOB_DIGEST", "Directory", "DirectoryNode", "FileNode", "InvalidNodeError",
        "Node", "SymlinkNode", "blob_digest", "validate_name", "validate_target",
    },
    "storelab.chunking": {
        "CHUNKERS", "DEFAULT_AVG_SIZE", "Chunker", "ChunkerSpec", "FastCDC2016", "FastCDC2020", "FixedSize",
        "default_spec", "make_chunker",
    },
    "storelab.ingest": {
        "BlobHasher", "BlobInfo", "IngestOptions", "IngestResult", "Skipped", "TreeEntry", "ingest_dir", "scan_tree", "sweep_dir",
    },
    "storelab.tables": {"SCHEMAS", "SCHEMA_VERSION", "TABLES", "Dataset", "PartWriter", "SnapshotWriter", "new_snapshot_id"},
    "storelab.analysis": {
        "LEVELS", "Prices", "attribution", "chunk_size_distribution", "chunk_size_stats", "chunker_comparison", "connect",
        "cost_model", "dedup_summary", "list_snapshots", "measured_requests", "refcount_histogram", "sharing", "snapshot_summary",
    },
    "storelab.layers": {
        "ALGORITHMS", "ClosureGraph", "Layer", "LayerPlan", "StorePath", "graphs_from_dataset", "load_graph", "load_images",
        "load_popularity", "parse_graph", "path_name", "plan_layers", "simulate_pulls",
    },
    "storelab.nar": {
        "MAGIC", "NarDirectoryEnd", "NarDirectoryStart", "NarError", "NarEvent", "NarFile", "NarSymlink",
        "NarEnd", "dump_path", "nar_bytes_of_file", "nar_string", "nix_base32", "read_nar",
    },
    "storelab.nar.render": {"NarLayout", "nar_layout", "open_nar", "castore_from_snapshot", "render_nar"},
    "storelab.stores": {
        "BlobStore", "ChunkMeta", "CountingBackend", "LatencyBackend", "LinkProfile", "ObjectBackend", "ObstoreBackend",
        "RetryingBackend", "SnixStore", "StoreError", "StoreOps", "TransientStoreError", "UploadOptions", "Uploader",
        "decode_index", "encode_index", "object_key", "open_backend", "open_store",
    },
    "storelab.errors": {
        "StorelabError", "InputError", "InputNotFoundError", "DatasetError", "OutputError", "ConfigError", "Interrupted",
    },
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), name

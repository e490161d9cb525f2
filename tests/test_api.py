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
        "CATALOG", "DEFAULT_AVG_SIZE", "PRESETS", "Chunker", "ChunkerInfo", "ChunkerSpec", "FastCDC2016", "FastCDC2020", "FixedSize",
        "chunk_lengths", "default_spec", "make_chunker", "make_spec", "parse_params", "scaled_spec", "spec_from_id",
    },
    "storelab.ingest": {
        "BlobHasher", "BlobInfo", "IngestOptions", "IngestResult", "Skipped", "TreeEntry", "ingest_dir", "scan_tree", "sweep_dir",
    },
    "storelab.tables": {"SCHEMAS", "SCHEMA_VERSION", "TABLES", "Dataset", "BatchWriter", "SnapshotWriter", "new_snapshot_id"},
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
        "NarEnd", "NarRun", "RUN_DIRECTORY", "RUN_END", "RUN_EXECUTABLE", "RUN_FILE", "RUN_SYMLINK",
        "dump_path", "nar_bytes_of_file", "nar_string", "nix_base32", "read_nar",
    },
    "storelab.nar.render": {"NarLayout", "nar_layout", "open_nar", "castore_from_snapshot", "render_nar"},
    "storelab.stores": {
        "BlobStore", "ChunkMeta", "CountingBackend", "LatencyBackend", "LinkProfile", "ObjectBackend", "ObstoreBackend",
        "RetryingBackend", "SnixStore", "StoreError", "StoreOps", "TransientStoreError", "UploadOptions", "Uploader",
        "decode_index", "encode_index", "object_key", "open_backend", "open_store",
    },
    "storelab.errors": {
        "StorelabError", "InputError", "InputNotFoundError", "NarError", "DatasetError", "VanishedError", "OutputError", "StoreError",
        "TransientStoreError", "FormatError", "DecodeError", "InvalidNodeError", "ConfigError", "Interrupted",
    },
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_every_error_storelab_defines_is_in_the_tree() -> None:
    """One error tree: every exception class defined under storelab/ is a StorelabError (but
    FileChangedError, an OSError the hashing workers turn into a skipped file, never raised
    to a caller), and errors.py's docstring draws each of them."""
    import inspect
    import pkgutil

    import storelab
    from storelab import errors

    drawn = errors.__doc__ or ""
    for info in pkgutil.walk_packages(storelab.__path__, "storelab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                if name == "FileChangedError":
                    continue
                assert issubclass(value, errors.StorelabError), f"{info.name}.{name} is outside the error tree"
    for name in errors.__all__:
        assert name in drawn, f"errors.py's tree does not draw {name}"


def test_no_module_cycles() -> None:
    """No two storelab modules import each other, directly or round a loop, at run time
    (imports under ``if TYPE_CHECKING:`` are annotations only and do not count)."""
    import ast
    from pathlib import Path

    root = Path(importlib.import_module("storelab").__file__).parent  # type: ignore[arg-type]
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}

    def loop_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            here, trail = stack.pop()
            for nxt in graph[here]:
                if nxt == start:
                    return trail
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    loops = [loop for name in sorted(graph) if (loop := loop_from(name))]
    assert not loops, f"module cycles: {loops[:3]}"

"""Subtrees listed, hashed and assembled on workers give the rows the whole tree gives when
recorded in one process, however the tree is cut into tasks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storelab.chunking import make_chunker
from storelab.ingest import IngestOptions, ingest_dir
from storelab.ingest.blobs import BlobHasher
from storelab.ingest.record import SnapshotRecorder
from storelab.ingest.subtrees import SubtreeTask, walk_subtree
from storelab.ingest.tree import scan_tree
from storelab.tables import Dataset
from storelab.testing.trees import SMALL_CHUNKS, build_tree, trees
from tests.helpers import snapshot_rows


def _reference(tree: Path, dataset: Path) -> object:
    """The tree recorded the plain way: scanned whole, each file hashed, then every listing."""
    scanned = scan_tree(tree)
    hasher = BlobHasher(make_chunker(SMALL_CHUNKS), zstd_level=0)
    with Dataset.open(dataset, create=True).begin_snapshot("s") as writer:
        recorder = SnapshotRecorder(writer, [SMALL_CHUNKS], scanned.entries)
        for index in scanned.file_indices():
            recorder.add_blob(index, hasher.hash_file(scanned.absolute(scanned.entries[index])))
        recorded = recorder.record_tree(scanned.entries)
        writer.commit({"snapshot_id": "s", "label": "reference"})
    return recorded.root


def _rows(dataset: Path, table: str) -> list[str]:
    return sorted(str(sorted((k, v) for k, v in row.items() if k != "snapshot_id")) for row in snapshot_rows(dataset, table))


def _small_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets so small that every directory is cut: subdirectories taken whole, dropped
    half-listed, handed back; files handed back past the byte budget."""
    import storelab.ingest.subtrees as subtrees

    monkeypatch.setattr(subtrees, "TASK_ENTRIES", 3)
    monkeypatch.setattr(subtrees, "TASK_BYTES", 300)
    monkeypatch.setattr(subtrees, "WHOLE_ENTRIES", 4)
    monkeypatch.setattr(subtrees, "WHOLE_BYTES", 500)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees, read_while_listing=st.booleans())
def test_subtrees_cut_small_give_the_rows_of_the_whole_tree(spec, read_while_listing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the listing reads the small files (a digest-only hasher's road) or leaves them
    all to the hasher."""
    _small_tasks(monkeypatch)
    if not read_while_listing:
        monkeypatch.setattr(BlobHasher, "listing_reads", lambda self: None)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        build_tree(base / "tree", spec)
        root = _reference(base / "tree", base / "reference")
        result = ingest_dir(base / "tree", base / "ds", "t", IngestOptions(SMALL_CHUNKS, zstd_level=0, workers=0))
        assert result.root == root
        for table in ("nodes", "blobs", "chunks", "directories"):
            assert _rows(base / "ds", table) == _rows(base / "reference", table), table


def _nested_tree(root: Path) -> None:
    build_tree(
        root,
        {
            f"p{i}".encode(): {
                b"bin": {b"run": ("x", b"#!" + bytes([i]) * 700)},
                b"share": {f"doc{j}".encode(): bytes([i, j]) * (50 + 40 * j) for j in range(6)} | {b"empty": {}},
                b"lib": ("link", b"share"),
                b"big": bytes([i]) * 3000,
            }
            for i in range(9)
        }
        | {b"top": b"x" * 10, b"same": {b"bin": {b"run": ("x", b"#!" + bytes([1]) * 700)}}},
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_workers_and_this_process_cut_the_same_tree_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """The first task (done here, under the small budgets) hands back most of the tree;
    the parts done here or on worker processes (under their own budgets: the fork server
    does not see this test's) give the reference's rows."""
    _small_tasks(monkeypatch)
    _nested_tree(tmp_path / "tree")
    root = _reference(tmp_path / "tree", tmp_path / "reference")
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(SMALL_CHUNKS, zstd_level=0, workers=workers))
    assert result.root == root
    assert (result.files, result.directories, result.symlinks) == (9 * 8 + 2, 1 + 9 * 4 + 2, 9)
    for table in ("nodes", "blobs", "chunks", "directories"):
        assert _rows(tmp_path / "ds", table) == _rows(tmp_path / "reference", table), table


def test_a_task_hands_back_what_is_past_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_tasks(monkeypatch)
    _nested_tree(tmp_path / "tree")
    hasher = BlobHasher(make_chunker(SMALL_CHUNKS), zstd_level=0)
    result = walk_subtree(SubtreeTask(0, b"", os.fsencode(tmp_path / "tree")), [hasher])
    assert result.root is None  # open: the recording process completes it
    names = [child.path for child in result.children]
    assert names == sorted(names) and b"top" in names
    deferred = {names[k] for k in result.deferred}
    final = {names[k] for k, _ in result.finals}
    assert not deferred & final and deferred | final == set(names)  # no symlink at the top
    # a subdirectory too large to take whole was dropped, not half-recorded
    assert all(not path.startswith(tuple(name + b"/" for name in deferred)) for path in result.rows.nodes["path"])


def test_subtrees_assembled_on_workers_give_the_store_its_whole_closure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a store, every directory a worker encodes reaches the store's closure: the NAR
    rendered back from the store is the tree's, byte for byte, and the store verifies."""
    from storelab.nar import dump_path
    from storelab.nar.render import castore_from_snapshot, open_nar
    from storelab.stores import SnixStore
    from storelab.stores.verify import verify_store

    _small_tasks(monkeypatch)
    _nested_tree(tmp_path / "tree")
    store = tmp_path / "store"
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=2, store=f"file://{store}"))
    root, directories = castore_from_snapshot(tmp_path / "ds", "t")
    assert root == result.root
    assert open_nar(root, directories, SnixStore.open(f"file://{store}")).read() == b"".join(dump_path(tmp_path / "tree"))
    assert verify_store(SnixStore.open(f"file://{store}")).ok


def test_a_file_left_out_of_an_open_directory_is_skipped_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the first task could not read is left out of the directory the recording
    process completes, and named once; under --strict the ingest fails on it."""
    import storelab.ingest.blobs as blobs
    from storelab.errors import InputError

    _small_tasks(monkeypatch)
    _nested_tree(tmp_path / "tree")
    real = blobs.BlobHasher.hash_file_into

    def unreadable_top(self, path, index, builder):
        if path.endswith(b"/top"):
            raise PermissionError(13, "Permission denied")
        return real(self, path, index, builder)

    monkeypatch.setattr(blobs.BlobHasher, "hash_file_into", unreadable_top)
    monkeypatch.setattr(blobs, "_smallfiles", None)  # every file the Python road (the compiled one reads as root)
    warnings: list[str] = []
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(SMALL_CHUNKS, zstd_level=0, workers=0, warn=warnings.append))
    assert [(item.path, item.reason) for item in result.skipped] == [(b"top", "permission denied")]
    assert result.files == 9 * 8 + 1 and len(warnings) == 1
    assert b"top" not in {row["path"] for row in snapshot_rows(tmp_path / "ds", "nodes")}
    with pytest.raises(InputError, match="top: permission denied"):
        ingest_dir(tmp_path / "tree", tmp_path / "strict", "t", IngestOptions(SMALL_CHUNKS, zstd_level=0, workers=0, strict=True))

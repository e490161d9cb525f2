"""ingest-dir: the tables describe exactly the tree that was ingested."""

from __future__ import annotations

import os
import random
from pathlib import Path

import blake3
import duckdb
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storelab.castore import Directory, DirectoryNode, FileNode, SymlinkNode
from storelab.chunking import default_spec
from storelab.ingest import IngestOptions, ingest_dir
from storelab.tables import Dataset
from storelab.testing.trees import SMALL_CHUNKS, trees
from tests.fixtures import DIRECTORY_COMPLICATED, make_complicated_tree
from tests.helpers import build_tree, flatten, snapshot_rows


def test_complicated_tree_has_snix_root_digest(tmp_path: Path) -> None:
    tree = make_complicated_tree(tmp_path / "tree")
    result = ingest_dir(tree, tmp_path / "ds", "complicated", IngestOptions(workers=0))
    assert result.root == DirectoryNode(b"", DIRECTORY_COMPLICATED.digest, DIRECTORY_COMPLICATED.size)
    assert result.root.digest.hex() == "424a7f6ce08d805d15b428062faae96299a1675d708c3a39261afe38cdd04feb"


def test_single_file_root(tmp_path: Path) -> None:
    (tmp_path / "hello").write_bytes(b"Hello World!")
    result = ingest_dir(tmp_path / "hello", tmp_path / "ds", None, IngestOptions(workers=0))
    assert isinstance(result.root, FileNode)
    assert result.root.digest.hex() == "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"
    assert result.label == "hello"





def _expected_digests(spec: dict) -> tuple[bytes, int]:
    """An independent castore digest of a tree spec (not read from disk, not from tables)."""
    nodes = []
    for name, value in spec.items():
        if isinstance(value, dict):
            digest, size = _expected_digests(value)
            nodes.append(DirectoryNode(name, digest, size))
        elif isinstance(value, tuple) and value[0] == "link":
            nodes.append(SymlinkNode(name, value[1]))
        else:
            content = value[1] if isinstance(value, tuple) else value
            nodes.append(FileNode(name, blake3.blake3(content).digest(), len(content), isinstance(value, tuple)))
    directory = Directory.from_nodes(nodes)
    return directory.digest, directory.size


@pytest.mark.slow
@given(spec=trees)
def test_tables_describe_exactly_the_tree(tmp_path_factory: pytest.TempPathFactory, spec: dict) -> None:
    base = tmp_path_factory.mktemp("t")
    root, dataset = base / "tree", base / "ds"
    build_tree(root, spec)
    result = ingest_dir(root, dataset, "t", IngestOptions(SMALL_CHUNKS, zstd_level=1, workers=0))
    assert result.skipped == ()
    assert (result.root.digest, result.root.size) == _expected_digests(spec)

    expected = flatten(spec)
    nodes = {r["path"]: r for r in snapshot_rows(dataset, "nodes")}
    assert set(nodes) == set(expected)
    blobs = {r["digest"]: r for r in snapshot_rows(dataset, "blobs")}
    chunks = snapshot_rows(dataset, "chunks")
    for path, value in expected.items():
        row = nodes[path]
        if isinstance(value, dict):
            assert row["kind"] == "directory"
        elif isinstance(value, tuple) and value[0] == "link":
            assert (row["kind"], row["symlink_target"], row["digest"]) == ("symlink", value[1], None)
        else:
            content = value[1] if isinstance(value, tuple) else value
            assert row["kind"] == "file"
            assert row["size"] == len(content)
            assert row["executable"] == isinstance(value, tuple)
            assert row["digest"] == blake3.blake3(content).digest()
            blob = blobs[row["digest"]]
            mine = sorted((c for c in chunks if c["blob_digest"] == row["digest"]), key=lambda c: c["index"])
            assert blob["chunk_count"] == len(mine)
            assert sum(c["size"] for c in mine) == len(content)
            # the chunks reassemble to the file, and each digest is its bytes' BLAKE3
            assert b"".join(content[c["offset"] : c["offset"] + c["size"]] for c in mine) == content
            for chunk in mine:
                piece = content[chunk["offset"] : chunk["offset"] + chunk["size"]]
                assert chunk["digest"] == blake3.blake3(piece).digest()
    assert len(blobs) == len({nodes[p]["digest"] for p in nodes if nodes[p]["kind"] == "file"})


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    odd = b"caf\xe9-\xff\xfe.txt"
    root = tmp_path / "tree"
    build_tree(root, {odd: b"latin-1 name", b"d\x80ir": {b"inner": b"x"}})
    ingest_dir(root, tmp_path / "ds", "odd", IngestOptions(workers=0))
    paths = {r["path"] for r in snapshot_rows(tmp_path / "ds", "nodes")}
    assert paths == {b"", odd, b"d\x80ir", b"d\x80ir/inner"}
    # and the path is usable to reach the file again
    assert (os.fsencode(root) + b"/" + odd) and os.path.exists(os.fsencode(root) + b"/" + odd)


def test_second_ingest_appends_a_snapshot(tmp_path: Path) -> None:
    build_tree(tmp_path / "v1", {b"a": b"one", b"b": b"two"})
    build_tree(tmp_path / "v2", {b"a": b"one", b"c": b"three"})
    first = ingest_dir(tmp_path / "v1", tmp_path / "ds", "v1", IngestOptions(workers=0))
    second = ingest_dir(tmp_path / "v2", tmp_path / "ds", "v2", IngestOptions(workers=0))
    ds = Dataset.open(tmp_path / "ds")
    assert ds.snapshot_ids() == [first.snapshot_id, second.snapshot_id]  # in creation order
    labels = {r["snapshot_id"]: r["label"] for r in snapshot_rows(tmp_path / "ds", "snapshots")}
    assert labels == {first.snapshot_id: "v1", second.snapshot_id: "v2"}


def test_parallel_and_serial_ingest_write_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storelab.ingest.hashing as hashing
    import storelab.ingest.subtrees as subtrees
    import storelab.ingest.workers as workers

    monkeypatch.setattr(subtrees, "TASK_BYTES", 1 << 20)  # the root hands most files back…
    monkeypatch.setattr(hashing, "BATCH_BYTES", 1 << 20)  # …in many batches, so the pool really runs
    spawned: list[int] = []
    real_pool = workers.ProcessPoolExecutor

    def counting_pool(n, **kwargs):
        spawned.append(n)
        return real_pool(n, **kwargs)

    monkeypatch.setattr(workers, "ProcessPoolExecutor", counting_pool)
    rng = random.Random(3)
    spec = {f"f{i}".encode(): rng.randbytes(rng.choice([0, 10, 5000, 300_000, 1_200_000])) for i in range(40)}
    spec[b"dup"] = spec[b"f1"]
    build_tree(tmp_path / "tree", spec)
    options = dict(chunker=default_spec("fastcdc2020", 65536), zstd_level=3)
    a = ingest_dir(tmp_path / "tree", tmp_path / "serial", "t", IngestOptions(**options, workers=0))
    b = ingest_dir(tmp_path / "tree", tmp_path / "parallel", "t", IngestOptions(**options, workers=2))
    assert spawned == [2]
    assert a.root == b.root
    for table in ("nodes", "blobs", "chunks", "directories"):
        rows_a = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(tmp_path / "serial", table))
        rows_b = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(tmp_path / "parallel", table))
        assert rows_a == rows_b, table


def _niceness() -> int:
    return os.nice(0)


def test_pool_workers_yield_the_cpu_to_the_recording_process() -> None:
    """The process that scans and records is the critical path; its workers run niced."""
    from storelab.ingest.workers import WORKER_NICENESS, HashPool

    with HashPool(default_spec(), zstd_level=0, workers=1) as pool:
        niceness = pool._start().submit(_niceness).result()
    assert niceness == min(19, os.nice(0) + WORKER_NICENESS)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_pool_does_the_tasks_added_while_it_runs(tmp_path: Path, workers: int) -> None:
    """Outcomes hand back work: what the caller adds while taking them is done too, once."""
    from collections import deque

    from storelab.ingest.hashing import FileJob
    from storelab.ingest.subtrees import SubtreeResult, SubtreeTask
    from storelab.ingest.workers import HashPool

    for i in range(6):
        (tmp_path / f"f{i}").write_bytes(bytes([i]) * 100)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "g").write_bytes(b"g")
    tasks: deque = deque([[FileJob(0, os.fsencode(tmp_path / "f0"), 100)]])
    done: list[str] = []
    with HashPool(default_spec(), zstd_level=0, workers=workers) as pool:
        for _task, outcome in pool.run(tasks):
            if isinstance(outcome, SubtreeResult):
                done.append(f"subtree {outcome.rows.files.paths}")
                continue
            index = outcome[0].indices[0]
            done.append(f"file {index}")
            if index == 0:
                tasks.extend([FileJob(i, os.fsencode(tmp_path / f"f{i}"), 100)] for i in range(1, 6))
                tasks.append(SubtreeTask(9, b"d", os.fsencode(tmp_path / "d")))
                pool.dispatch()
    assert sorted(done) == [f"file {i}" for i in range(6)] + ["subtree [b'd/g']"]


def test_compressed_sizes_are_measured_once_per_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zstandard

    import storelab.ingest.blobs as blobs

    build_tree(tmp_path / "tree", {b"a": b"z" * 5000, b"b": b"y" * 7000})
    ingest_dir(tmp_path / "tree", tmp_path / "ds", "first", IngestOptions(workers=0))
    calls: list[int] = []
    real = blobs.zstd_stream

    def counting(compressor, data):
        calls.append(len(data))
        return real(compressor, data)

    monkeypatch.setattr(blobs, "zstd_stream", counting)
    build_tree(tmp_path / "tree2", {b"a": b"z" * 5000, b"new": b"n" * 3000})
    ingest_dir(tmp_path / "tree2", tmp_path / "ds", "second", IngestOptions(workers=0))
    assert calls == [3000]  # only the chunk the dataset had not seen
    rows = snapshot_rows(tmp_path / "ds", "blobs")
    sizes = {r["size"]: r["compressed_size"] for r in rows}
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    assert sizes[5000] == len(stream.compress(b"z" * 5000) + stream.flush())


def test_zstd_level_zero_measures_nothing(tmp_path: Path) -> None:
    build_tree(tmp_path / "tree", {b"a": b"z" * 5000})
    ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(zstd_level=0, workers=0))
    assert [r["compressed_size"] for r in snapshot_rows(tmp_path / "ds", "chunks")] == [None]


def test_a_dataset_is_a_ducklake_that_plain_duckdb_reads(tmp_path: Path) -> None:
    """The docs' snippet (docs/guide/datasets.md): DuckDB with its own ducklake extension, no storelab."""
    import glob
    import os

    import duckdb_extension_ducklake
    import duckdb_extension_sqlite_scanner

    build_tree(tmp_path / "tree", {b"a": b"hello", b"sub": {b"b": b"world", b"l": ("link", b"../a")}})
    ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=0))
    ingest_dir(tmp_path / "tree", tmp_path / "ds", "t2", IngestOptions(workers=0))
    ds = tmp_path / "ds"
    con = duckdb.connect()
    for package in (duckdb_extension_sqlite_scanner, duckdb_extension_ducklake):  # offline; online: INSTALL ducklake
        con.execute(f"LOAD '{glob.glob(os.path.dirname(package.__file__) + '/extensions/*/*.duckdb_extension')[0]}'")
    con.execute(f"ATTACH 'ducklake:sqlite:{ds}/_catalog.sqlite' AS study (DATA_PATH '{ds}/data/', READ_ONLY)")
    nodes = con.execute("SELECT * FROM study.nodes").df()
    assert len(nodes) == 2 * 5
    assert sorted(nodes["kind"].astype(str).unique()) == ["directory", "file", "symlink"]
    assert con.execute("SELECT count(*) FROM study.chunks").fetchone()[0] == 2 * 2
    snapshots = pl.from_arrow(con.execute("SELECT label FROM study.snapshots").to_arrow_table())
    assert sorted(snapshots["label"].to_list()) == ["t", "t2"]
    assert set(con.execute("SELECT DISTINCT size FROM study.blobs").fetchall()) == {(5,)}


def test_large_file_is_streamed_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    import storelab.ingest.blobs as blobs

    monkeypatch.setattr(blobs, "READ_BUFFER", 1 << 20)
    data = random.Random(5).randbytes(24 * (1 << 20) + 123)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "big").write_bytes(data)
    digest = blake3.blake3(data).digest()
    del data
    tracemalloc.start()
    try:
        result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "big", IngestOptions(workers=0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.file_bytes == 24 * (1 << 20) + 123
    assert peak < 6 * (1 << 20), f"peak Python allocation {peak} bytes for a 24 MiB file"
    assert snapshot_rows(tmp_path / "ds", "blobs")[0]["digest"] == digest


def test_blobs_added_one_at_a_time_give_the_same_rows_as_batches(tmp_path: Path) -> None:
    """The one-blob path (NAR sources hand blobs over one by one) writes what batches write."""
    from storelab.chunking import make_chunker
    from storelab.ingest.blobs import BlobHasher
    from storelab.ingest.record import SnapshotRecorder
    from storelab.ingest.tree import scan_tree

    rng = random.Random(9)
    spec = {b"a": rng.randbytes(5000), b"b": b"", b"d": {b"c": rng.randbytes(70_000), b"same": b"x"}, b"same": b"x"}
    build_tree(tmp_path / "tree", spec)
    chunker = default_spec("fastcdc2020", 16384)
    tree = scan_tree(tmp_path / "tree")
    hasher = BlobHasher(make_chunker(chunker), zstd_level=1)
    dataset = Dataset.open(tmp_path / "one", create=True)
    with dataset.begin_snapshot("s") as writer:
        recorder = SnapshotRecorder(writer, [chunker], tree.entries)
        for index in tree.file_indices():
            recorder.add_blob(index, hasher.hash_file(tree.absolute(tree.entries[index])))
        recorded = recorder.record_tree(tree.entries)
        writer.commit({"snapshot_id": "s", "label": "one"})
    batched = ingest_dir(tmp_path / "tree", tmp_path / "batched", "b", IngestOptions(chunker, zstd_level=1, workers=0))
    assert recorded.root == batched.root
    for table in ("nodes", "blobs", "chunks", "directories"):
        one = sorted(str(sorted((k, v) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(tmp_path / "one", table))
        many = sorted(str(sorted((k, v) for k, v in r.items() if k != "snapshot_id")) for r in snapshot_rows(tmp_path / "batched", table))
        assert one == many, table


@given(
    sizes=st.lists(st.sampled_from([0, 1, 100, 4096, 32 * 1024, 32 * 1024 + 1, 200_000]), min_size=1, max_size=6),
    zstd_level=st.sampled_from([0, 3]),
)
def test_the_small_file_path_equals_the_general_one(tmp_path_factory, sizes: list[int], zstd_level: int) -> None:
    """hash_file_into (the per-file fast path of a batch) fills a batch exactly as
    hash_file + add do, for empty, one-chunk and many-chunk files."""
    from storelab.chunking import make_chunker
    from storelab.ingest.batch import BlobBatchBuilder
    from storelab.ingest.blobs import BlobHasher

    root = tmp_path_factory.mktemp("small")
    rng = random.Random(len(sizes) * 7 + zstd_level)
    paths = []
    for i, size in enumerate(sizes):
        path = root / f"f{i}"
        path.write_bytes(rng.randbytes(size // 2) * 2 + rng.randbytes(size % 2))
        paths.append(os.fsencode(path))
    spec = default_spec("fastcdc2020", 16 * 1024)
    fast, general = BlobBatchBuilder(), BlobBatchBuilder()
    fast_hasher, general_hasher = (BlobHasher(make_chunker(spec), zstd_level) for _ in range(2))
    for index, path in enumerate(paths):
        fast_hasher.hash_file_into(path, index, fast)
        general.add(index, general_hasher.hash_file(path))
    assert fast.build() == general.build()

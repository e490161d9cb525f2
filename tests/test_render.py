"""Rendering NARs back from castore + a blob store: byte-identical, seekable, lazy."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest
import zstandard
from hypothesis import given

from storelab.cli import main
from storelab.ingest import IngestOptions, ingest_dir
from storelab.ingest.nar_source import ingest_nar
from storelab.nar import dump_path
from storelab.nar.render import castore_from_snapshot, nar_layout, open_nar
from storelab.stores import (
    ChunkMeta,
    SnixStore,
    StoreError,
    decode_index,
    encode_index,
    open_backend,
)
from storelab.testing.trees import SMALL_CHUNKS, trees
from tests.fixtures import NAR_FILES, VECTORS, oracle_trees
from tests.helpers import build_tree, snapshot_rows


@pytest.mark.parametrize("name", NAR_FILES)
def test_vector_nars_render_back_identical(name: str, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    assert main(["ingest-nar", str(VECTORS / "nar" / name), "-o", str(tmp_path / "ds"), "--store", store, "-q"]) == 0
    assert main(["render-nar", str(tmp_path / "ds"), name, "--store", store, "-o", str(tmp_path / "out.nar")]) == 0
    assert (tmp_path / "out.nar").read_bytes() == (VECTORS / "nar" / name).read_bytes()


@pytest.mark.slow
@given(spec=trees)
def test_tree_nar_ingest_render_is_the_identity(tmp_path_factory: pytest.TempPathFactory, spec: dict) -> None:
    base = tmp_path_factory.mktemp("r")
    build_tree(base / "tree", spec)
    nar = b"".join(dump_path(base / "tree"))
    (base / "t.nar").write_bytes(nar)
    options = IngestOptions(SMALL_CHUNKS, zstd_level=0, workers=0, store=str(base / "store"))
    result = ingest_nar(base / "t.nar", base / "ds", "t", options)
    root, directories = castore_from_snapshot(base / "ds", result.snapshot_id)
    assert open_nar(root, directories, SnixStore.open(str(base / "store"))).read() == nar
    # the NAR size the recorder computes from the tree alone is the NAR's length, for trees too
    tree_result = ingest_dir(base / "tree", base / "ds", "tree", IngestOptions(SMALL_CHUNKS, zstd_level=0, workers=0))
    sizes = {row["label"]: row["nar_size"] for row in snapshot_rows(base / "ds", "snapshots")}
    assert sizes == {"t": len(nar), "tree": len(nar)} and tree_result.root == result.root


def test_parallel_directory_ingest_with_store_renders_nix_store_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storelab.ingest.hashing as hashing
    import storelab.ingest.subtrees as subtrees

    monkeypatch.setattr(subtrees, "TASK_BYTES", 1 << 18)  # the root hands most files back…
    monkeypatch.setattr(hashing, "BATCH_BYTES", 1 << 18)  # …in several batches: the workers write the store
    rng = random.Random(4)
    build_tree(tmp_path / "tree", {f"f{i}".encode(): rng.randbytes(rng.choice([0, 9, 40_000, 900_000])) for i in range(30)} | {b"l": ("link", b"f1"), b"d": {}})
    store = tmp_path / "store"
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=2, store=str(store)))
    root, directories = castore_from_snapshot(tmp_path / "ds", "t")
    assert root == result.root
    assert open_nar(root, directories, SnixStore.open(str(store))).read() == b"".join(dump_path(tmp_path / "tree"))


def test_render_equals_nix_store_dump(tmp_path: Path) -> None:
    if shutil.which("nix-store") is None:
        pytest.skip("nix-store (Debian's nix-bin) is not installed; `make test` installs it where apt can")
    for i, tree in enumerate(oracle_trees(tmp_path)):
        store = tmp_path / f"store{i}"
        result = ingest_dir(tree, tmp_path / f"ds{i}", "t", IngestOptions(workers=0, zstd_level=0, store=str(store)))
        root, directories = castore_from_snapshot(tmp_path / f"ds{i}", result.snapshot_id)
        nix = subprocess.run(["nix-store", "--dump", str(tree)], capture_output=True, check=True).stdout
        assert open_nar(root, directories, SnixStore.open(str(store))).read() == nix, tree
        assert snapshot_rows(tmp_path / f"ds{i}", "snapshots")[0]["nar_size"] == len(nix)


class CountingStore(SnixStore):
    def __init__(self, root: Path) -> None:
        super().__init__(open_backend(str(root)))
        self.reads: list[bytes] = []

    def read_chunk(self, digest: bytes, size: int) -> bytes:
        self.reads.append(digest)
        return super().read_chunk(digest, size)


def test_seek_and_read_fetch_only_the_chunks_covered(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(3 << 20)
    build_tree(tmp_path / "tree", {b"a-small": b"hello", b"big": data})
    options = IngestOptions(workers=0, zstd_level=0, store=str(tmp_path / "store"))
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", options)
    root, directories = castore_from_snapshot(tmp_path / "ds", result.snapshot_id)
    whole = b"".join(dump_path(tmp_path / "tree"))
    store = CountingStore(tmp_path / "store")
    nar = open_nar(root, directories, store)
    offset = whole.index(data[2_000_000:2_000_064])
    nar.seek(offset)
    assert nar.tell() == offset
    assert nar.read(64) == data[2_000_000:2_000_064]
    chunks = store.chunks(blake3.blake3(data).digest(), len(data))
    assert len(chunks) > 4
    assert 1 <= len(store.reads) <= 2  # the chunk holding the range (and at most the next)
    nar.seek(0)
    assert nar.read() == whole
    nar.seek(-10, io.SEEK_END)
    assert nar.read() == whole[-10:]
    assert nar_layout(root, directories).size == len(whole)


def test_store_layout_is_snix(tmp_path: Path) -> None:
    store = SnixStore.open(str(tmp_path))
    a, b = b"a" * 10, b"b" * 20
    da, db = blake3.blake3(a).digest(), blake3.blake3(b).digest()
    store.put_chunk(da, a)
    store.put_chunk(db, b)
    blob = blake3.blake3(a + b).digest()
    store.put_index(blob, [ChunkMeta(da, 10), ChunkMeta(db, 20)])
    index = tmp_path / "blobs" / "b3" / blob.hex()[:4] / blob.hex()
    assert decode_index(index.read_bytes()) == [ChunkMeta(da, 10), ChunkMeta(db, 20)]
    # StatBlobResponse{chunks = 2: ChunkMeta{digest = 1, size = 2}}, byte by byte
    assert index.read_bytes() == b"".join(b"\x12\x24\x0a\x20" + d + b"\x10" + bytes([n]) for d, n in ((da, 10), (db, 20)))
    chunk = tmp_path / "chunks" / "b3" / da.hex()[:4] / da.hex()
    assert zstandard.ZstdDecompressor().decompress(chunk.read_bytes(), max_output_size=10) == a
    assert encode_index([ChunkMeta(da, 10)]) == b""


def test_corrupt_and_bomb_chunks_are_refused(tmp_path: Path) -> None:
    store = SnixStore.open(str(tmp_path))
    data = b"x" * 1000
    digest = blake3.blake3(data).digest()
    store.put_chunk(digest, data)
    path = tmp_path / "chunks" / "b3" / digest.hex()[:4] / digest.hex()
    path.write_bytes(zstandard.ZstdCompressor().compress(b"y" * 1000))
    with pytest.raises(StoreError, match="does not match its digest"):
        store.read_chunk(digest, 1000)
    path.write_bytes(zstandard.ZstdCompressor().compress(bytes(50_000_000)))  # a zstd bomb
    with pytest.raises(StoreError, match="corrupt"):
        store.read_chunk(digest, 1000)
    with pytest.raises(StoreError, match="not in the store"):
        store.read_chunk(blake3.blake3(b"missing").digest(), 7)


def test_existing_objects_are_not_rewritten(tmp_path: Path) -> None:
    store = SnixStore.open(str(tmp_path))
    digest = blake3.blake3(b"data").digest()
    store.put_chunk(digest, b"data")
    path = tmp_path / "chunks" / "b3" / digest.hex()[:4] / digest.hex()
    before = os.stat(path).st_mtime_ns
    store.put_chunk(digest, b"data")
    assert os.stat(path).st_mtime_ns == before


def test_a_swapped_blob_index_never_renders_a_wrong_nar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two blobs' index objects swapped: every chunk is still a good chunk, but of the other
    blob. The blob's own digest, checked as its chunks pass, catches it: one line, exit 1, no
    output file (and no temporary) left."""
    from storelab.stores.snix import object_key

    rng = random.Random(8)
    first, second = rng.randbytes(200_000), rng.randbytes(200_000)
    build_tree(tmp_path / "t", {b"a": first, b"b": second})
    store = f"file://{tmp_path / 'store'}"
    options = ["--chunker", "fixed", "--avg-chunk-size", "64KiB", "-q", "-j", "0"]
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", store, "-l", "t", *options]) == 0
    backend = open_backend(store)
    keys = [object_key("blobs", blake3.blake3(data).digest()) for data in (first, second)]
    one, two = backend.get(keys[0]), backend.get(keys[1])
    backend.put(keys[0], two)
    backend.put(keys[1], one)
    (tmp_path / "out").mkdir()
    capsys.readouterr()
    assert main(["render-nar", str(tmp_path / "ds"), "t", "--store", store, "-o", str(tmp_path / "out" / "t.nar")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match its digest" in err[-1]
    assert list((tmp_path / "out").iterdir()) == []

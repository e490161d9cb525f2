"""The conformance suite every blob store backend passes, and a state machine comparing a
store with a dict.

A backend's test module subclasses :class:`StoreTests` and says how to make a fresh, empty store
(:meth:`StoreTests.make_store`) and, if its objects are not reachable through ``store.backend``,
how to read and plant raw objects underneath it (:meth:`StoreTests.get_raw`,
:meth:`StoreTests.put_raw`)::

    class TestMemoryStore(StoreTests):
        def make_store(self, tmp_path, request):
            return SnixStore.open("memory://")
"""

from __future__ import annotations

import random
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
import zstandard
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from storelab.castore import Directory, DirectoryNode, FileNode
from storelab.chunking import default_spec
from storelab.errors import StoreError
from storelab.ingest import IngestOptions, ingest_dir
from storelab.nar import dump_path
from storelab.nar.render import castore_from_snapshot, open_nar
from storelab.stores.base import ChunkMeta, decode_index
from storelab.stores.snix import SnixStore, object_key
from storelab.stores.verify import verify_store
from storelab.testing.trees import build_tree

__all__ = ["StoreTests", "digest_of", "put_two_chunk_blob", "store_matches_dict"]


def digest_of(data: bytes) -> bytes:
    """BLAKE3 of ``data``: what every object is named by."""
    return blake3.blake3(data).digest()


def put_two_chunk_blob(store: SnixStore, a: bytes, b: bytes) -> tuple[bytes, bytes, bytes]:
    """Store the blob ``a + b`` as the two chunks ``a`` and ``b`` and its index; returns the
    digests of ``a``, ``b`` and the blob."""
    da, db = digest_of(a), digest_of(b)
    store.put_chunk(da, a)
    store.put_chunk(db, b)
    blob = digest_of(a + b)
    store.put_index(blob, [ChunkMeta(da, len(a)), ChunkMeta(db, len(b))])
    return da, db, blob


class StoreTests:
    """What every blob store backend must do: snix's exact layout, checked reads, idempotent
    writes, directory closures, verification, and an ingest rendered back byte for byte."""

    state_machine_settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
    """How hard :meth:`test_store_matches_a_dict` tries (a backend over a network may ask less)."""

    def make_store(self, tmp_path: Path, request: pytest.FixtureRequest) -> SnixStore:
        """A fresh, empty store of the backend under test (called once per test, and once per
        example of the state machine)."""
        raise NotImplementedError

    def get_raw(self, store: SnixStore, key: str) -> bytes:
        """The raw bytes of the object under ``key``, read underneath the store."""
        return store.backend.get(key)

    def put_raw(self, store: SnixStore, key: str, data: bytes) -> None:
        """Plant raw bytes under ``key`` underneath the store (to damage it)."""
        store.backend.put(key, data)

    @pytest.fixture
    def store(self, tmp_path: Path, request: pytest.FixtureRequest) -> SnixStore:
        return self.make_store(tmp_path, request)

    def test_chunk_round_trip_and_layout(self, store: SnixStore) -> None:
        data = b"chunk " * 1000
        digest = digest_of(data)
        assert not store.has_chunk(digest)
        stored = store.put_chunk(digest, data)
        assert store.has_chunk(digest)
        raw = self.get_raw(store, object_key("chunks", digest))
        assert len(raw) == stored < len(data)
        # zstd level 3, no content size in the frame header, as snix's streaming encoder writes
        assert zstandard.get_frame_parameters(raw).content_size == zstandard.CONTENTSIZE_UNKNOWN
        stream = zstandard.ZstdCompressor(level=3).compressobj()  # snix: a streaming encoder, never told the size
        assert raw == stream.compress(data) + stream.flush()
        assert store.read_chunk(digest, len(data)) == data


    def test_existing_objects_are_checked_not_rewritten(self, store: SnixStore) -> None:
        data = b"twice"
        digest = digest_of(data)
        store.put_chunk(digest, data)
        store.put_index(digest, [ChunkMeta(digest, len(data))])
        before = store.ops
        assert store.put_chunk(digest, data) > 0
        store.put_index(digest, [ChunkMeta(digest, len(data))])
        delta = store.ops - before
        assert (delta.head_count, delta.put_count) == (2, 0)


    def test_blob_index_is_snix_stat_blob_response(self, store: SnixStore) -> None:
        da, db, blob = put_two_chunk_blob(store, b"a" * 10, b"b" * 20)
        raw = self.get_raw(store, object_key("blobs", blob))
        # StatBlobResponse{chunks = 2: ChunkMeta{digest = 1, size = 2}}, byte by byte
        assert raw == b"".join(b"\x12\x24\x0a\x20" + d + b"\x10" + bytes([n]) for d, n in ((da, 10), (db, 20)))
        assert decode_index(raw) == store.chunks(blob, 30) == [ChunkMeta(da, 10), ChunkMeta(db, 20)]
        with pytest.raises(StoreError, match="does not add up"):
            store.chunks(blob, 31)


    def test_single_chunk_and_empty_blobs_have_empty_indexes(self, store: SnixStore) -> None:
        data = b"one chunk"
        digest = digest_of(data)
        store.put_chunk(digest, data)
        store.put_index(digest, [ChunkMeta(digest, len(data))])
        empty = digest_of(b"")
        store.put_index(empty, [])
        assert self.get_raw(store, object_key("blobs", digest)) == b""
        assert self.get_raw(store, object_key("blobs", empty)) == b""
        assert store.chunks(digest, len(data)) == [ChunkMeta(digest, len(data))]
        assert store.chunks(empty, 0) == []
        assert not store.has_chunk(empty)  # the empty blob has no chunk object


    def test_reads_check_digests_and_refuse_bombs(self, store: SnixStore) -> None:
        data = b"x" * 1000
        digest = digest_of(data)
        key = object_key("chunks", digest)
        self.put_raw(store, key, zstandard.ZstdCompressor().compress(b"y" * 1000))
        with pytest.raises(StoreError, match="does not match its digest"):
            store.read_chunk(digest, 1000)
        self.put_raw(store, key, zstandard.ZstdCompressor().compress(bytes(50_000_000)))  # a zstd bomb
        with pytest.raises(StoreError, match="corrupt"):
            store.read_chunk(digest, 1000)
        with pytest.raises(StoreError, match="not in the store"):
            store.read_chunk(digest_of(b"missing"), 7)


    def test_directory_closures_root_to_leaves(self, store: SnixStore) -> None:
        leaf = Directory(files=(FileNode(b"f", digest_of(b""), 0),))
        middle = Directory(directories=(DirectoryNode(b"leaf", leaf.digest, leaf.size),))
        root = Directory(directories=(DirectoryNode(b"a", middle.digest, middle.size), DirectoryNode(b"b", leaf.digest, leaf.size)))
        store.put_directories(root.digest, [root.encoded, middle.encoded, leaf.encoded])
        assert store.get_directories(root.digest) == [root.encoded, middle.encoded, leaf.encoded]
        raw = zstandard.ZstdDecompressor().decompress(self.get_raw(store, object_key("dirs", root.digest)), max_output_size=1 << 20)
        assert raw[:4] == struct.pack(">I", len(root.encoded))  # u32 big-endian length prefixes
        self.put_raw(store, object_key("dirs", leaf.digest), zstandard.ZstdCompressor().compress(struct.pack(">I", 2) + b"\x0a\x00"))
        with pytest.raises(StoreError, match="does not start with its root"):
            store.get_directories(leaf.digest)


    def test_verify_finds_missing_and_corrupt_objects(self, store: SnixStore) -> None:
        da, db, blob = put_two_chunk_blob(store, b"a" * 100, b"b" * 200)
        store.put_index(da, [])
        file_dir = Directory(files=(FileNode(b"a", da, 100), FileNode(b"ab", blob, 300)))
        store.put_directories(file_dir.digest, [file_dir.encoded])
        report = verify_store(store)
        assert report.ok, report.problems
        assert (report.chunks, report.blobs, report.directory_closures, report.directories) == (2, 2, 1, 1)
        # damage: one chunk's bytes swapped, one blob index pointing at a chunk that is not there
        self.put_raw(store, object_key("chunks", db), store.compress(b"c" * 200))
        lost = digest_of(b"lost")
        store.put_index(digest_of(b"x" + b"lost"), [ChunkMeta(da, 100), ChunkMeta(lost, 4)])
        ghost = Directory(files=(FileNode(b"g", digest_of(b"ghost"), 5),))
        store.put_directories(ghost.digest, [ghost.encoded])
        problems = {(p.kind, p.key.split("/")[0], p.detail.split(" ")[0]) for p in verify_store(store).problems}
        assert ("corrupt", "chunks", "holds") in problems
        assert ("missing", "blobs", "chunk") in problems  # the blob over the corrupt chunk, and the lost one
        assert ("missing", "dirs", "blob") in problems


    def test_ingest_with_store_renders_the_same_nar(self, store: SnixStore, tmp_path: Path) -> None:
        data = random.Random(1).randbytes(700_000)
        build_tree(tmp_path / "tree", {b"big": data, b"small": b"hello", b"d": {b"same": b"hello", b"link": ("link", b"../big")}})
        options = IngestOptions(workers=0, zstd_level=3, store=store, chunker=default_spec(avg_size=64 * 1024))
        result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", options)
        assert result.store_ops is not None and result.store_ops.put_count > 0
        report = verify_store(store)
        assert report.ok, report.problems
        assert report.directory_closures == 1 and report.directories == 2
        root, directories = castore_from_snapshot(tmp_path / "ds", result.snapshot_id)
        assert open_nar(root, directories, store).read() == b"".join(dump_path(tmp_path / "tree"))
        assert isinstance(root, DirectoryNode)
        assert store.get_directories(root.digest)[0] == directories[root.digest].encoded


    def test_store_matches_a_dict(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        def fresh() -> SnixStore:
            return self.make_store(Path(tempfile.mkdtemp(dir=tmp_path)), request)

        run_state_machine_as_test(store_matches_dict(fresh), settings=self.state_machine_settings)


def store_matches_dict(make_store: Callable[[], SnixStore]) -> type[RuleBasedStateMachine]:
    """A state machine: whatever is put into a store ``make_store`` makes, the store answers
    exactly as a dict of what was put would."""

    class StoreMatchesDict(RuleBasedStateMachine):
        """Whatever is put, a memory store answers exactly as a dict of what was put would."""

        def __init__(self) -> None:
            super().__init__()
            self.store = make_store()
            self.chunks: dict[bytes, bytes] = {}
            self.blobs: dict[bytes, list[ChunkMeta]] = {}

        @rule(data=st.binary(max_size=300))
        def put_chunk(self, data: bytes) -> None:
            digest = digest_of(data)
            self.store.put_chunk(digest, data)
            self.chunks[digest] = data

        @rule(picks=st.lists(st.integers(0, 50), min_size=0, max_size=4))
        def put_blob(self, picks: list[int]) -> None:
            stored = sorted(self.chunks)
            parts = [self.chunks[stored[i % len(stored)]] for i in picks] if stored else []
            digest = digest_of(b"".join(parts))
            metas = [ChunkMeta(digest_of(p), len(p)) for p in parts]
            if len(metas) == 1:
                return  # a one-chunk blob lives under its own digest: covered by put_chunk
            self.store.put_index(digest, metas)
            self.blobs.setdefault(digest, metas if len(metas) >= 2 else [])

        @rule(data=st.binary(max_size=50))
        def ask_for_anything(self, data: bytes) -> None:
            digest = digest_of(data)
            assert self.store.has_chunk(digest) == (digest in self.chunks)
            assert self.store.has_blob(digest) == (digest in self.blobs)

        @invariant()
        def everything_reads_back(self) -> None:
            for digest, data in self.chunks.items():
                assert self.store.read_chunk(digest, len(data)) == data
            for digest, metas in self.blobs.items():
                size = sum(m.size for m in metas)
                assert self.store.chunks(digest, size) == metas

    return StoreMatchesDict

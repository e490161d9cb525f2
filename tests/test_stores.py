"""Blob stores: one conformance suite for every backend, snix's exact layout, a state machine
against a dict, the background uploader, verification, and faults."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from storelab.castore import Directory
from storelab.ingest import IngestOptions, ingest_dir
from storelab.nar import dump_path
from storelab.stores import (
    ChunkMeta,
    CountingBackend,
    LatencyBackend,
    LinkProfile,
    ObstoreBackend,
    RetryingBackend,
    SnixStore,
    StoreError,
    Uploader,
    UploadOptions,
    object_key,
    open_backend,
)
from storelab.stores.uploader import PendingChunk
from storelab.stores.verify import verify_store
from storelab.tables import Dataset
from storelab.testing.stores import StoreTests, digest_of
from tests.helpers import build_tree, wait_until_gone

# -- conformance: every backend passes storelab.testing's suite -------------------------------


class TestFileStore(StoreTests):
    def make_store(self, tmp_path: Path, request: pytest.FixtureRequest) -> SnixStore:
        return SnixStore.open(f"file://{tmp_path}/store")


class TestMemoryStore(StoreTests):
    def make_store(self, tmp_path: Path, request: pytest.FixtureRequest) -> SnixStore:
        return SnixStore.open("memory://")


class TestStoreBehindASlowLink(StoreTests):
    state_machine_settings = settings(max_examples=8, stateful_step_count=12, deadline=None)  # every request pays the link's delay

    def make_store(self, tmp_path: Path, request: pytest.FixtureRequest) -> SnixStore:
        return SnixStore(CountingBackend(LatencyBackend(ObstoreBackend("memory://"), LinkProfile(rtt=0.001))))


@pytest.mark.slow
class TestS3Store(StoreTests):
    state_machine_settings = settings(max_examples=8, stateful_step_count=12, deadline=None)

    def make_store(self, tmp_path: Path, request: pytest.FixtureRequest) -> SnixStore:
        server = request.getfixturevalue("s3_server")
        for key, value in server.environment().items():
            request.getfixturevalue("monkeypatch").setenv(key, value)
        return SnixStore.open(f"s3://{server.new_bucket()}/store")



# -- the background uploader ---------------------------------------------------------------


class GateBackend:
    """PUTs wait for a gate; records the order of keys and the most PUTs at once."""

    def __init__(self) -> None:
        self.inner = ObstoreBackend("memory://")
        self.url, self.shareable = "gate://", False
        self.gate = threading.Event()
        self.order: list[str] = []
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    def head(self, key: str) -> int | None:
        return self.inner.head(key)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str):
        return self.inner.list(prefix)

    def put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        self.gate.wait(10)
        time.sleep(0.001)
        with self.lock:
            self.active -= 1
            self.order.append(key)
        self.inner.put(key, data)


def _blob(seed: int, chunks: int = 2, size: int = 1000) -> tuple[bytes, list[PendingChunk], list[ChunkMeta]]:
    parts = [random.Random(seed * 100 + i).randbytes(size) for i in range(chunks)]
    pending = [PendingChunk(digest_of(p), p) for p in parts]
    return digest_of(b"".join(parts)), pending, [ChunkMeta(c.digest, len(c.data)) for c in pending]


def test_uploader_overlaps_requests_and_writes_each_index_after_its_chunks() -> None:
    backend = GateBackend()
    store = SnixStore(backend)
    blobs = [_blob(i) for i in range(20)]
    with Uploader(store, UploadOptions(concurrency=8)) as uploader:
        for blob in blobs:
            uploader.submit(*blob)
        time.sleep(0.05)
        backend.gate.set()
    assert backend.most_active > 1  # requests really were in flight together
    position = {key: i for i, key in enumerate(backend.order)}
    for digest, pending, _ in blobs:
        index_at = position[object_key("blobs", digest)]
        assert all(position[object_key("chunks", c.digest)] < index_at for c in pending)


def test_uploader_caps_buffered_bytes() -> None:
    backend = GateBackend()
    store = SnixStore(backend)
    uploader = Uploader(store, UploadOptions(concurrency=4, max_buffered=5000))
    uploader.submit(*_blob(1, chunks=2, size=1000))
    uploader.submit(*_blob(2, chunks=1, size=2000))
    third = threading.Thread(target=uploader.submit, args=_blob(3, chunks=2, size=1000))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # 4000 bytes wait; 2000 more would pass the 5000-byte cap
    assert uploader.buffered == 4000
    backend.gate.set()
    third.join(5)
    assert not third.is_alive()
    uploader.drain()
    uploader.close()
    assert uploader.buffered == 0


class FailingBackend(GateBackend):
    def put(self, key: str, data: bytes) -> None:
        if key.startswith("chunks/"):
            raise StoreError(f"{self.url}: cannot PUT {key}: permission denied")
        super().put(key, data)


def test_first_upload_error_fails_and_no_index_is_written() -> None:
    backend = FailingBackend()
    backend.gate.set()
    store = SnixStore(backend)
    uploader = Uploader(store, UploadOptions(concurrency=2))
    uploader.submit(*_blob(1))
    with pytest.raises(StoreError, match="permission denied"):
        uploader.drain()
    with pytest.raises(StoreError, match="permission denied"):
        uploader.submit(*_blob(2))
    uploader.close()
    assert not any(key.startswith("blobs/") for key in backend.order)


# -- faults --------------------------------------------------------------------------------


def _tree_of_small_files(root: Path, count: int = 60) -> None:
    build_tree(root, {f"f{i:03}".encode(): random.Random(i).randbytes(2000 + i) for i in range(count)})


def test_retries_ride_out_a_lossy_link(tmp_path: Path) -> None:
    _tree_of_small_files(tmp_path / "tree")
    link = LinkProfile(rtt=0.0005, error_rate=0.15, timeout_rate=0.05, timeout=0.01, seed=7)
    backend = CountingBackend(RetryingBackend(LatencyBackend(ObstoreBackend("memory://"), link), attempts=8, backoff=0.001))
    store = SnixStore(backend)
    result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=0, store=store))
    assert result.store_ops is not None and result.store_ops.retry_count > 0
    assert verify_store(SnixStore(backend.inner.inner.inner)).ok


def test_a_dead_link_fails_cleanly_and_commits_nothing(tmp_path: Path) -> None:
    _tree_of_small_files(tmp_path / "tree")
    dead = LinkProfile(error_rate=1.0)
    store = SnixStore(CountingBackend(RetryingBackend(LatencyBackend(ObstoreBackend("memory://"), dead), backoff=0.001)))
    with pytest.raises(StoreError, match=r"memory://: (PUT|HEAD) .* \(simulated\)"):
        ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=0, store=store))
    # the store failed before any row was recorded: no dataset was made, or one with no snapshot
    assert not (tmp_path / "ds").exists() or Dataset.open(tmp_path / "ds").snapshot_ids() == []


@pytest.mark.slow
def test_killed_s3_server_then_rerun_completes_without_rewrites(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.s3server import TcpProxy

    proxy = TcpProxy.start(s3_server.port)
    try:
        env = s3_server.environment() | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        url = f"s3://{s3_server.new_bucket()}/store"
        _tree_of_small_files(tmp_path / "tree", count=80)
        backend = open_backend(url)
        puts = 0

        class KillMidway(CountingBackend):
            def put(self, key: str, data: bytes) -> None:
                nonlocal puts
                puts += 1
                if puts == 40:
                    proxy.stop()  # the server goes away mid-ingest
                super().put(key, data)

        store = SnixStore(KillMidway(backend.inner))
        with pytest.raises(StoreError, match=url.split("/store")[0]):
            ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=0, store=store))
        assert not (tmp_path / "ds").exists() or Dataset.open(tmp_path / "ds").snapshot_ids() == []
        proxy.restart()
        there_before = sum(1 for _ in open_backend(url).list(""))
        assert 0 < there_before < 160
        result = ingest_dir(tmp_path / "tree", tmp_path / "ds", "t", IngestOptions(workers=0, store=url))
        assert result.store_ops is not None
        there_after = sum(1 for _ in open_backend(url).list(""))
        # 80 chunks + 80 indexes + 1 closure; nothing already there was written again
        assert there_after == 161
        assert result.store_ops.put_count == there_after - there_before
        assert verify_store(SnixStore.open(url)).ok
    finally:
        proxy.stop()


def test_uploader_sends_a_shared_chunk_once_and_orders_indexes_after_it() -> None:
    backend = GateBackend()
    store = SnixStore(backend)
    x, y, z = (random.Random(n).randbytes(500) for n in (1, 2, 3))
    chunks = {name: PendingChunk(digest_of(data), data) for name, data in (("x", x), ("y", y), ("z", z))}
    first, second = digest_of(x + y), digest_of(x + z)
    with Uploader(store, UploadOptions(concurrency=4)) as uploader:
        uploader.submit(first, [chunks["x"], chunks["y"]], [ChunkMeta(chunks[n].digest, 500) for n in "xy"])
        uploader.submit(second, [chunks["x"], chunks["z"]], [ChunkMeta(chunks[n].digest, 500) for n in "xz"])
        uploader.submit(second, [chunks["x"], chunks["z"]], [ChunkMeta(chunks[n].digest, 500) for n in "xz"])  # an identical file
        time.sleep(0.05)
        backend.gate.set()
    puts = backend.order
    assert puts.count(object_key("chunks", chunks["x"].digest)) == 1
    assert puts.count(object_key("blobs", second)) == 1
    assert puts.index(object_key("chunks", chunks["x"].digest)) < puts.index(object_key("blobs", second))
    assert store.chunks(second, 1000) == [ChunkMeta(chunks["x"].digest, 500), ChunkMeta(chunks["z"].digest, 500)]


@settings(max_examples=40)
@given(data=st.binary(max_size=300_000) | st.builds(lambda n, b: b * n, st.integers(0, 50_000), st.binary(min_size=1, max_size=8)),
       piece=st.integers(1, 1 << 17))  # fmt: skip
def test_chunk_objects_are_what_a_streaming_encoder_writes(data: bytes, piece: int) -> None:
    """snix compresses each chunk through a streaming zstd encoder fed in pieces, never told the
    size; the bytes do not depend on the pieces, and storelab's objects are those bytes."""
    from storelab.stores.snix import zstd_stream

    stream = zstandard.ZstdCompressor(level=3).compressobj()
    fed = b"".join(stream.compress(data[i : i + piece]) for i in range(0, len(data), piece)) + stream.flush()
    assert zstd_stream(zstandard.ZstdCompressor(level=3), data) == fed
    if data:  # (an empty stream is one empty single-segment frame: its size, 0, is known)
        assert zstandard.get_frame_parameters(fed).content_size == zstandard.CONTENTSIZE_UNKNOWN


def _zstd_cli_version() -> tuple[int, ...] | None:
    import re
    import shutil
    import subprocess

    if shutil.which("zstd") is None:
        return None
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout)
    return tuple(int(x) for x in found.groups()) if found else None


@pytest.mark.skipif(_zstd_cli_version() is None, reason="no zstd command (Debian's zstd); `make test` installs it where apt can")
def test_chunk_objects_against_the_zstd_command(tmp_path: Path) -> None:
    """The oracle: `zstd -3 --no-check -c < chunk` (a stream of unknown size, as snix writes).
    The frame header always agrees; the payload is identical when the command links the same
    libzstd as python-zstandard (compression internals change between libzstd releases)."""
    import random
    import subprocess

    from storelab.stores.snix import zstd_stream

    rng = random.Random(3)
    real = Path("/etc/services").read_bytes() if Path("/etc/services").exists() else b"s" * 9
    inputs = [b"", b"x", rng.randbytes(70_000), bytes(300_000), b"abc" * 100_000, real]
    same_library = _zstd_cli_version() == zstandard.ZSTD_VERSION
    for data in inputs:
        ours = zstd_stream(zstandard.ZstdCompressor(level=3), data)
        theirs = subprocess.run(["zstd", "-3", "--no-check", "-c", "-q"], input=data, capture_output=True, check=True).stdout
        assert ours[:6] == theirs[:6]  # magic, frame header descriptor, window descriptor
        if same_library:
            assert ours == theirs
    for data in inputs[:4]:  # incompressible or trivially compressible: the same bytes across these libzstd releases
        assert zstd_stream(zstandard.ZstdCompressor(level=3), data) == subprocess.run(
            ["zstd", "-3", "--no-check", "-c", "-q"], input=data, capture_output=True, check=True
        ).stdout


def _closure_labels(tmp_path: Path, spec: dict, names: dict[str, dict]) -> list[str]:
    """Ingest ``spec`` into a memory store; name each directory of the stored closure by
    which of ``names`` (subtree specs) it encodes."""
    from storelab.ingest import IngestOptions, ingest_dir
    from tests.helpers import build_tree

    store = SnixStore.open("memory://")
    build_tree(tmp_path / "t", spec)
    result = ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(workers=0, store=store))
    digests = {}
    for label, sub in names.items():
        build_tree(tmp_path / label, sub)
        digests[ingest_dir(tmp_path / label, tmp_path / f"ds-{label}", label, IngestOptions(workers=0)).root.digest] = label
    digests[result.root.digest] = "root"
    return [digests[Directory.decode(encoded).digest] for encoded in store.get_directories(result.root.digest)]


def test_directory_closures_in_snix_order(tmp_path: Path) -> None:
    """snix drains the closure breadth first, each directory's children in reverse name
    order (petgraph lists the newest edge first), a shared subtree once: worked by hand."""
    empty: dict = {}
    assert _closure_labels(tmp_path / "one", {b"a": {}, b"b": {b"c": {}}}, {"A": empty, "B": {b"c": {}}}) == ["root", "B", "A"]
    p, q = {b"f": b"1"}, {b"f2": b"2"}
    spec = {b"x": {b"p": p, b"q": q}, b"y": {b"p": p}, b"z.txt": b"z"}
    names = {"X": {b"p": p, b"q": q}, "Y": {b"p": p}, "P": p, "Q": q}
    assert _closure_labels(tmp_path / "two", spec, names) == ["root", "Y", "X", "P", "Q"]


@pytest.mark.timeout(60)
def test_a_store_failure_while_a_large_nar_file_is_hashed_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """The second thread hashing a large NAR file dies when the store refuses a chunk: its
    error is raised, instead of the reader waiting for ever to hand it more pieces."""
    from storelab.ingest import IngestOptions
    from storelab.ingest.nar_source import ingest_nar
    from storelab.tables import Dataset
    from tests.helpers import build_tree

    build_tree(tmp_path / "t", {b"big": random.Random(5).randbytes(30 << 20), b"small": b"x"})
    (tmp_path / "t.nar").write_bytes(b"".join(dump_path(tmp_path / "t")))
    backend = FailingBackend()
    backend.gate.set()
    with pytest.raises(StoreError, match="permission denied"):
        ingest_nar(tmp_path / "t.nar", tmp_path / "ds", options=IngestOptions(workers=0, store=SnixStore(backend)))
    assert Dataset.open(tmp_path / "ds").snapshot_ids() == []


def test_a_store_failure_on_a_mapped_file_is_the_store_error(tmp_path: Path) -> None:
    """A file read through a memory map: the store's error surfaces, not a BufferError from
    closing a map its traceback still holds views of."""
    from storelab.ingest import IngestOptions, ingest_dir
    from tests.helpers import build_tree

    build_tree(tmp_path / "t", {b"big": random.Random(6).randbytes(3 << 20)})
    backend = FailingBackend()
    backend.gate.set()
    with pytest.raises(StoreError, match="permission denied"):
        ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(workers=0, store=SnixStore(backend)))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_s3_stopped_while_a_nar_streams_is_an_error_not_a_hang(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint goes away while a NAR's large file is hashed on the second thread: the
    store's one line, at once; nothing committed."""
    from storelab.ingest.nar_source import ingest_nar
    from tests.s3server import TcpProxy

    proxy = TcpProxy.start(s3_server.port)
    try:
        for key, value in (s3_server.environment() | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}).items():
            monkeypatch.setenv(key, value)
        url = f"s3://{s3_server.new_bucket()}/store"
        rng = random.Random(9)
        build_tree(tmp_path / "tree", {b"big": rng.randbytes(6_000_000), **{f"s{i:02}".encode(): rng.randbytes(3000) for i in range(30)}})
        (tmp_path / "t.nar").write_bytes(b"".join(dump_path(tmp_path / "tree")))
        puts = 0

        class StopMidway(CountingBackend):
            def put(self, key: str, data: bytes) -> None:
                nonlocal puts
                puts += 1
                if puts == 5:
                    proxy.stop()
                super().put(key, data)

        store = SnixStore(StopMidway(RetryingBackend(ObstoreBackend(url), attempts=2, backoff=0.01)))
        started = time.monotonic()
        with pytest.raises(StoreError, match=url.split("/store")[0]):
            ingest_nar(tmp_path / "t.nar", tmp_path / "ds", options=IngestOptions(zstd_level=0, store=store))
        assert time.monotonic() - started < 60
        assert Dataset.open(tmp_path / "ds").snapshot_ids() == []
    finally:
        proxy.stop()


@pytest.mark.slow
def test_s3_stopped_while_workers_ingest_a_tree_is_one_line(s3_server, tmp_path: Path) -> None:
    """The endpoint goes away while worker processes write a tree's blobs: exit 1 with the
    store's line, within a bounded time, no process left behind, nothing committed."""
    import subprocess
    import sys

    from tests.fixtures import REPO
    from tests.s3server import TcpProxy

    proxy = TcpProxy.start(s3_server.port)
    try:
        env = {**__import__("os").environ, **s3_server.environment(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        url = f"s3://{s3_server.new_bucket()}/store"
        rng = random.Random(11)
        build_tree(tmp_path / "tree", {f"f{i:03}".encode(): rng.randbytes(300_000) for i in range(300)})
        timer = threading.Timer(1.0, proxy.stop)
        timer.start()
        started = time.monotonic()
        command = subprocess.Popen(
            [sys.executable, "-m", "storelab", "ingest-dir", str(tmp_path / "tree"), "-o", str(tmp_path / "ds"), "-q", "-j", "2",
             "--store", url, "--zstd-level", "19"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        _, stderr = command.communicate(timeout=110)
        done = subprocess.CompletedProcess(command.args, command.returncode, "", stderr)
        timer.join()
        assert wait_until_gone(command.pid) == []  # no worker, fork server or tracker left behind
        assert not (tmp_path / "ds").exists() or Dataset.open(tmp_path / "ds").snapshot_ids() == []
        assert time.monotonic() - started < 100
        assert done.returncode == 1, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in done.stderr and url.split("/store")[0] in lines[0], done.stderr
    finally:
        proxy.stop()

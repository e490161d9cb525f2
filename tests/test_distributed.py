"""Ingest on a Dask cluster (a LocalCluster of two worker processes on 127.0.0.1): the same
tables as a local ingest, row for row; a worker killed mid-run changes nothing."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from storelab.chunking import default_spec  # noqa: E402
from storelab.ingest import IngestOptions, ingest_dir, sweep_dir  # noqa: E402
from storelab.ingest import distributed as dist  # noqa: E402
from storelab.ingest.nar_source import ingest_nar  # noqa: E402
from storelab.nar import dump_path  # noqa: E402
from storelab.tables import Dataset  # noqa: E402
from tests.helpers import build_tree, table_rows  # noqa: E402

pytestmark = pytest.mark.slow  # a cluster, an S3 server or a kernel per test: make test-fast leaves them out

@pytest.fixture(scope="module")
def client():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=50
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def _tree(root: Path) -> None:
    rng = random.Random(3)
    shared = rng.randbytes(300_000)
    spec = {f"f{i:02}".encode(): rng.randbytes(rng.choice([0, 10, 5_000, 700_000])) for i in range(24)}
    spec |= {b"dup1": shared, b"sub": {b"dup2": shared, b"dup3": shared, b"link": ("link", b"../f01")}, b"empty": {}}
    build_tree(root, spec)


def _rows(dataset: Path | str, snapshot: str | None = None) -> dict[str, list[tuple]]:
    return table_rows(dataset, snapshot)


def test_cluster_ingest_equals_local(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    monkeypatch.setattr(dist, "PARTITION_FILES", 4)  # many partitions; the shared blob lands in several
    options = IngestOptions(default_spec("fastcdc2020", 64 * 1024), zstd_level=3, workers=0)
    local = ingest_dir(tmp_path / "t", tmp_path / "local", "t", options)
    remote = dist.ingest_dir_on_cluster(client, tmp_path / "t", tmp_path / "remote", "t", options, [options.chunker])
    assert remote.root == local.root and (remote.blobs, remote.chunks) == (local.blobs, local.chunks)
    assert _rows(tmp_path / "remote") == _rows(tmp_path / "local")
    assert not (tmp_path / "remote" / "_staging").exists()  # the tasks' parts went into the commit


def test_cluster_sweep_equals_local(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    monkeypatch.setattr(dist, "PARTITION_FILES", 7)
    specs = [default_spec("fixed", 32 * 1024), default_spec("fastcdc2016", 16 * 1024)]
    options = IngestOptions(zstd_level=0, workers=0)
    local = sweep_dir(tmp_path / "t", tmp_path / "local", specs, "t", options)
    remote = dist.ingest_dir_on_cluster(client, tmp_path / "t", tmp_path / "remote", "t", options, specs)
    assert remote.chunkings == local.chunkings  # one snapshot, both chunkings, the same chunk counts
    assert _rows(tmp_path / "remote", remote.snapshot_id) == _rows(tmp_path / "local", local.snapshot_id)


def _objects_under(ds: Dataset, prefix: str) -> list[str]:
    """Peek underneath an object-store dataset: every key below ``prefix``, nested ones too."""
    import obstore

    return [m["path"] for page in obstore.list(ds.storage._store, prefix) for m in page]  # type: ignore[attr-defined]


def _nars(root: Path, count: int, fill: bytes) -> list[str]:
    """NAR files of small trees that share one file and differ in another."""
    nars = []
    for i in range(count):
        build_tree(root / f"t{i}", {b"a": fill * (1000 * (i + 1)), b"b": {b"c": b"same"}})
        nar = root / f"n{i}.nar"
        nar.write_bytes(b"".join(dump_path(root / f"t{i}")))
        nars.append(str(nar))
    return nars


def test_cluster_nars(client, tmp_path: Path) -> None:
    nars = _nars(tmp_path, 3, b"x")
    options = IngestOptions(zstd_level=3, workers=0)
    results = dist.ingest_nars_on_cluster(client, nars, tmp_path / "remote", None, options)
    assert [r.label for r in results] == ["n0.nar", "n1.nar", "n2.nar"]
    for nar in nars:
        ingest_nar(nar, tmp_path / "local", None, options)
    assert _rows(tmp_path / "remote") == _rows(tmp_path / "local")


def slow_copy(data: bytes) -> bytes:
    time.sleep(0.15)  # slow files: the run is still going when a worker dies
    return data


def test_a_worker_killed_mid_run_changes_nothing(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    monkeypatch.setattr(dist, "PARTITION_FILES", 2)
    options = IngestOptions(zstd_level=0, workers=0, rewrite=slow_copy)
    killed = []

    def kill_one(part: int) -> None:
        if not killed:
            pids = client.run(os.getpid)
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    result = dist.ingest_dir_on_cluster(
        client, tmp_path / "t", tmp_path / "remote", "t", options, [options.chunker], on_partition=kill_one
    )
    assert killed
    local = ingest_dir(tmp_path / "t", tmp_path / "local", "t", IngestOptions(zstd_level=0, workers=0))
    assert result.root == local.root
    assert _rows(tmp_path / "remote") == _rows(tmp_path / "local")
    blobs = Dataset.open(tmp_path / "remote").read_table("blobs").column("digest").to_pylist()
    assert len(blobs) == len(set(blobs))  # duplicate-free


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from storelab.cli import main

    build_tree(tmp_path / "t", {b"a": b"x"})
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--scheduler", "tcp://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("storelab: error: tcp://127.0.0.1:9: cannot reach the Dask scheduler")
    assert Dataset.open(tmp_path / "ds").snapshot_ids() == []


STORE_COLUMNS = frozenset({"store", "store_put_count", "store_put_bytes", "store_get_count", "store_head_count", "store_retry_count"})


def _set_environment(values: dict[str, str]) -> None:
    os.environ.update(values)  # (a bound os.environ.update would update a pickled copy)


def test_cluster_ingest_into_object_storage_with_a_store(
    client, s3_server, s3_url, s3_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks PUT their parts straight into an s3:// dataset and their blobs into an s3://
    store; the driver writes the directory closure and commits: the rows equal a local
    ingest's, and the store verifies and holds every blob."""
    from storelab.stores.snix import open_store
    from storelab.stores.verify import verify_store

    client.run(_set_environment, s3_server.environment())  # the workers were started before the fixture
    _tree(tmp_path / "t")
    monkeypatch.setattr(dist, "PARTITION_FILES", 5)
    dataset = s3_catalog
    options = IngestOptions(default_spec("fastcdc2020", 64 * 1024), zstd_level=3, workers=0, store=s3_url)
    remote = dist.ingest_dir_on_cluster(client, tmp_path / "t", dataset, "t", options, [options.chunker])
    local = ingest_dir(tmp_path / "t", tmp_path / "local", "t", IngestOptions(options.chunker, zstd_level=3, workers=0))
    assert remote.root == local.root
    assert table_rows(dataset, ignore=STORE_COLUMNS) == table_rows(tmp_path / "local", ignore=STORE_COLUMNS)
    ds = Dataset.open(dataset)
    assert ds.location == dataset and ds.snapshot_ids() == [remote.snapshot_id]
    assert not _objects_under(ds, "_staging/")  # the tasks' parts went into the commit, then away
    row = ds.read_table("snapshots").to_pylist()[0]
    assert row["store"] == s3_url and row["store_put_count"] >= remote.blobs
    store = open_store(s3_url, create=False)
    report = verify_store(store)
    assert report.problems == [] and report.directory_closures == 1
    for blob in ds.read_table("blobs").to_pylist():
        assert store.has_blob(blob["digest"])
        chunks = store.chunks(blob["digest"], blob["size"])
        data = b"".join(store.read_chunk(c.digest, c.size) for c in chunks)
        assert data == _content_of(tmp_path / "t", blob["digest"])


def _content_of(root: Path, digest: bytes) -> bytes:
    import blake3

    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and blake3.blake3(path.read_bytes()).digest() == digest:
            return path.read_bytes()
    raise AssertionError(f"no file with digest {digest.hex()}")


def test_cluster_nars_into_object_storage(client, s3_server, s3_url, s3_catalog: str, tmp_path: Path) -> None:
    client.run(_set_environment, s3_server.environment())
    nars = _nars(tmp_path, 2, b"yy")
    dataset = s3_catalog.rsplit("/", 1)[0] + "/nars"
    options = IngestOptions(zstd_level=3, workers=0, store=s3_url)
    results = dist.ingest_nars_on_cluster(client, nars, dataset, None, options)
    for nar in nars:
        ingest_nar(nar, tmp_path / "local", None, IngestOptions(zstd_level=3, workers=0))
    assert table_rows(dataset, ignore=STORE_COLUMNS) == table_rows(tmp_path / "local", ignore=STORE_COLUMNS)
    assert not _objects_under(Dataset.open(dataset), "_staging/")
    from storelab.stores.snix import open_store
    from storelab.stores.verify import verify_store

    assert verify_store(open_store(s3_url, create=False)).directory_closures == len(results)


def test_a_memory_store_cannot_go_to_a_cluster(client, tmp_path: Path) -> None:
    from storelab.errors import ConfigError

    _tree(tmp_path / "t")
    options = IngestOptions(workers=0, store="memory://")
    with pytest.raises(ConfigError, match="memory"):
        dist.ingest_dir_on_cluster(client, tmp_path / "t", tmp_path / "ds", "t", options, [options.chunker])
    assert not (tmp_path / "ds").exists() or Dataset.open(tmp_path / "ds").snapshot_ids() == []

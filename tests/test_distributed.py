"""Ingest on a Dask cluster (a LocalCluster of two worker processes on 127.0.0.1): the same
tables as a local ingest, row for row; a worker killed mid-run changes nothing."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

distributed = pytest.importorskip("distributed")

from storelab.chunking import default_spec  # noqa: E402
from storelab.ingest import IngestOptions, ingest_dir, sweep_dir  # noqa: E402
from storelab.ingest import distributed as dist  # noqa: E402
from storelab.ingest.nar_source import ingest_nar  # noqa: E402
from storelab.nar import dump_path  # noqa: E402
from storelab.tables import Dataset  # noqa: E402
from tests.helpers import build_tree  # noqa: E402

VOLATILE = {"snapshot_id", "created_at", "wall_seconds", "label", "source"}


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


def _rows(dataset: Path, snapshot: str | None = None) -> dict[str, list[tuple]]:
    ds = Dataset.open(dataset)
    ids = [snapshot] if snapshot else None
    out = {}
    for table in ("nodes", "blobs", "chunks", "directories", "snapshots"):
        rows = ds.read_table(table, ids).to_pylist()
        out[table] = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k not in VOLATILE)) for r in rows)
    return out


def test_cluster_ingest_equals_local(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    monkeypatch.setattr(dist, "PARTITION_FILES", 4)  # many partitions; the shared blob lands in several
    options = IngestOptions(default_spec("fastcdc2020", 64 * 1024), zstd_level=3, workers=0)
    local = ingest_dir(tmp_path / "t", tmp_path / "local", "t", options)
    remote = dist.ingest_dir_on_cluster(client, tmp_path / "t", tmp_path / "remote", "t", options, [options.chunker])[0]
    assert remote.root == local.root and (remote.blobs, remote.chunks) == (local.blobs, local.chunks)
    assert _rows(tmp_path / "remote") == _rows(tmp_path / "local")
    parts = list((tmp_path / "remote" / "chunks").glob("*.*.parquet"))
    assert len(parts) >= 5  # the tasks wrote the chunk rows themselves, a part per partition
    assert not (tmp_path / "remote" / "_staging").exists()


def test_cluster_sweep_equals_local(client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    monkeypatch.setattr(dist, "PARTITION_FILES", 7)
    specs = [default_spec("fixed", 32 * 1024), default_spec("fastcdc2016", 16 * 1024)]
    options = IngestOptions(zstd_level=0, workers=0)
    local = sweep_dir(tmp_path / "t", tmp_path / "local", specs, "t", options)
    from storelab.ingest.directory_source import sweep_label

    remote = dist.ingest_dir_on_cluster(client, tmp_path / "t", tmp_path / "remote", "t", options, specs, sweep_label)
    assert [r.label for r in remote] == [r.label for r in local]
    for a, b in zip(local, remote):
        assert _rows(tmp_path / "remote", b.snapshot_id) == _rows(tmp_path / "local", a.snapshot_id)


def test_cluster_nars(client, tmp_path: Path) -> None:
    nars = []
    for i in range(3):
        build_tree(tmp_path / f"t{i}", {b"a": b"x" * (1000 * (i + 1)), b"b": {b"c": b"same"}})
        nar = tmp_path / f"n{i}.nar"
        nar.write_bytes(b"".join(dump_path(tmp_path / f"t{i}")))
        nars.append(str(nar))
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
    )[0]
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

"""Datasets in object storage (``s3://``, a moto server on 127.0.0.1): the same rows and the
same analysis as a folder, the ``snapshots`` object as the commit, nothing left by a failure."""

from __future__ import annotations

import json
import pickle
import random
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from storelab.analysis import dedup_summary, snapshot_summary
from storelab.chunking import default_spec
from storelab.cli import main
from storelab.errors import DatasetError, OutputError
from storelab.ingest import IngestOptions, ingest_dir, sweep_dir
from storelab.ingest.nar_source import ingest_nar
from storelab.nar import dump_path
from storelab.tables import Dataset
from storelab.tables import storage as storage_module
from storelab.tables.storage import DatasetStorage, ObjectStorage
from storelab.testing.datasets import DatasetStorageTests, race_to_create
from tests.helpers import build_tree, table_rows

pytestmark = pytest.mark.slow  # a cluster, an S3 server or a kernel per test: make test-fast leaves them out

@pytest.fixture
def s3_dataset(s3_url: str) -> str:
    return s3_url.rsplit("/", 1)[0] + "/study"


def _tree(root: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    shared = rng.randbytes(200_000)
    build_tree(root, {b"a": shared, b"b": {b"c": shared, b"d": rng.randbytes(900_000), b"l": ("link", b"../a")}, b"e": b""})


OPTIONS = IngestOptions(default_spec("fastcdc2020", 64 * 1024), zstd_level=3, workers=0)


def test_ingests_into_s3_equal_a_folder(s3_dataset: str, tmp_path: Path) -> None:
    _tree(tmp_path / "one", 1)
    _tree(tmp_path / "two", 2)
    nar = tmp_path / "two.nar"
    nar.write_bytes(b"".join(dump_path(tmp_path / "two")))
    for target in (s3_dataset, tmp_path / "local"):
        ingest_dir(tmp_path / "one", target, "one", OPTIONS)
        ingest_dir(tmp_path / "two", target, "two", OPTIONS)  # reuses the sizes measured for "one"
        ingest_nar(nar, target, None, OPTIONS)
        sweep_dir(tmp_path / "one", target, [default_spec("fixed", 65536)], "one", OPTIONS)
    assert table_rows(s3_dataset) == table_rows(tmp_path / "local")
    ds = Dataset.open(s3_dataset)
    assert isinstance(ds.storage, ObjectStorage) and len(ds.snapshot_ids()) == 4
    drop = ["snapshot_id", "label"]
    remote, local = dedup_summary(s3_dataset), dedup_summary(tmp_path / "local")
    pd.testing.assert_frame_equal(remote, local)
    pd.testing.assert_frame_equal(snapshot_summary(s3_dataset).drop(columns=drop), snapshot_summary(tmp_path / "local").drop(columns=drop))


def test_cli_stats_of_an_s3_dataset(s3_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t")
    outputs = []
    for target in (s3_dataset, str(tmp_path / "local")):
        assert main(["ingest-dir", str(tmp_path / "t"), "-o", target, "-q", "--label", "t", "-j", "0"]) == 0
        capsys.readouterr()
        assert main(["stats", target, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    for stats in outputs:  # ids and times differ between the two ingests
        for row in stats.get("snapshots", []):
            row.pop("snapshot_id", None)
            row.pop("created_at", None)
    assert outputs[0]["overall"] == outputs[1]["overall"]


def _keys(ds: Dataset) -> list[str]:
    return sorted(f.key for table in ("nodes", "blobs", "chunks", "directories", "chunkings", "snapshots") for f in ds.storage.list(table))


def _put(url: str, key: str, data: bytes, tmp_path: Path) -> None:
    local = tmp_path / "object"
    local.write_bytes(data)
    ObjectStorage(url).publish(local, key)


def test_a_failed_commit_leaves_nothing(s3_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    first = ingest_dir(tmp_path / "t", s3_dataset, "first", OPTIONS)
    real_publish = ObjectStorage.publish

    def publish(self, local: Path, key: str) -> None:
        if key.startswith("snapshots/"):
            raise OutputError(f"{self.location}: cannot write {key}: the store went away")
        real_publish(self, local, key)

    monkeypatch.setattr(ObjectStorage, "publish", publish)
    with pytest.raises(OutputError, match="went away"):
        ingest_dir(tmp_path / "t", s3_dataset, "second", OPTIONS)
    monkeypatch.setattr(ObjectStorage, "publish", real_publish)  # (undo() would drop the S3 settings too)
    ds = Dataset.open(s3_dataset)
    assert ds.snapshot_ids() == [first.snapshot_id]  # the failed snapshot is invisible …
    monkeypatch.setattr(storage_module, "LEFTOVER_AGE", timedelta(0))
    ds.remove_leftovers()  # … and its uploads go with the next clean-up
    keys = _keys(ds)
    assert keys and all(first.snapshot_id in key for key in keys)


def test_leftovers_of_a_dead_run_age_out(s3_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    kept = ingest_dir(tmp_path / "t", s3_dataset, "kept", OPTIONS)
    ds = Dataset.open(s3_dataset)
    _put(s3_dataset, "chunks/20200101T000000-deadbeef.000003.parquet", b"half a run", tmp_path)
    _put(s3_dataset, "_staging/20200101T000000-deadbeef/snapshots.parquet", b"never committed", tmp_path)
    assert ds.remove_leftovers() == []  # young: a cluster run may still be adding parts
    monkeypatch.setattr(storage_module, "LEFTOVER_AGE", timedelta(0))
    removed = ds.remove_leftovers()
    assert sorted(removed) == ["_staging/20200101T000000-deadbeef", "chunks/20200101T000000-deadbeef.000003.parquet"]
    assert ds.snapshot_ids() == [kept.snapshot_id] and len(ds.read_table("nodes")) > 0


def test_an_object_dataset_travels_by_url(s3_dataset: str, tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    ingest_dir(tmp_path / "t", s3_dataset, "t", OPTIONS)
    copy = pickle.loads(pickle.dumps(Dataset.open(s3_dataset)))
    assert copy.location == s3_dataset and len(copy.snapshot_ids()) == 1


def test_bad_object_locations_are_one_line(s3_dataset: str, s3_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    with pytest.raises(DatasetError, match="no such dataset"):
        Dataset.open(s3_dataset)
    _put(s3_url, "stranger.txt", b"not ours", tmp_path)
    with pytest.raises(DatasetError, match="not a storelab dataset"):
        Dataset.open(s3_url, create=True)
    _tree(tmp_path / "t")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", s3_dataset, "-q", "-j", "0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("storelab: error: s3://") and "Traceback" not in err[0]


def test_a_removal_takes_the_commit_object_first(s3_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    gone = ingest_dir(tmp_path / "t", s3_dataset, "gone", OPTIONS)
    kept = ingest_dir(tmp_path / "t", s3_dataset, "kept", OPTIONS)
    ds = Dataset.open(s3_dataset)
    calls: list[list[str]] = []
    real_delete = ObjectStorage.delete
    monkeypatch.setattr(ObjectStorage, "delete", lambda self, keys: (calls.append(list(keys)), real_delete(self, keys)))
    ds.remove_snapshots([gone.snapshot_id])
    deletions = [keys for keys in calls if keys]
    assert deletions[0] == [f"snapshots/{gone.snapshot_id}.parquet"]  # cut short after this, only invisible files remain
    assert ds.snapshot_ids() == [kept.snapshot_id]
    assert not [key for key in _keys(ds) if gone.snapshot_id in key]


class TestObjectDatasetStorage(DatasetStorageTests):
    def make_storage(self, tmp_path: Path, request: pytest.FixtureRequest) -> DatasetStorage:
        url = request.getfixturevalue("s3_url")
        request.getfixturevalue("monkeypatch").setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        return ObjectStorage(url.rsplit("/", 1)[0] + "/ds")


def test_writers_racing_to_create_an_s3_dataset_all_succeed(s3_url: str, s3_server, tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"f": b"x"})
    for round_ in range(3):
        location = s3_url.rsplit("/", 1)[0] + f"/race{round_}"
        assert race_to_create(location, tmp_path / "t", env={**s3_server.environment(), "XDG_CACHE_HOME": str(tmp_path / "cache")}) == []
        assert sorted(Dataset.open(location).snapshots().column("label").to_pylist()) == [f"w{i}" for i in range(8)]

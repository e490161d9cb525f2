"""Datasets in object storage (``s3://``, a moto server on 127.0.0.1, the catalog in a PostgreSQL
server on 127.0.0.1): the same rows and the same analysis as a folder, the catalog's transaction
as the commit, nothing left by a failure."""

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
from storelab.errors import DatasetError, StorelabError
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
def s3_dataset(s3_catalog: str) -> str:
    return s3_catalog


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


def _put(url: str, key: str, data: bytes, tmp_path: Path) -> None:
    local = tmp_path / "object"
    local.write_bytes(data)
    ObjectStorage(url).publish(local, key)


def test_a_failed_commit_leaves_nothing(s3_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes away while a snapshot's rows are sent: nothing of it is visible, and the
    dataset still reads and takes the next snapshot."""
    _tree(tmp_path / "t")
    first = ingest_dir(tmp_path / "t", s3_dataset, "first", OPTIONS)
    real = Dataset._commit

    def commit(self, files, tables):
        # nothing listens there: the data files cannot be written
        self.lake().execute("CREATE OR REPLACE SECRET storelab_s3 (TYPE s3, KEY_ID 'x', SECRET 'x', ENDPOINT '127.0.0.1:9', URL_STYLE 'path', USE_SSL false)")
        try:
            real(self, files, tables)
        finally:
            self._con = None

    monkeypatch.setattr(Dataset, "_commit", commit)
    with pytest.raises(StorelabError):
        ingest_dir(tmp_path / "t", s3_dataset, "second", OPTIONS)
    monkeypatch.setattr(Dataset, "_commit", real)
    ds = Dataset.open(s3_dataset)
    assert ds.snapshot_ids() == [first.snapshot_id] and ds.problems() == []
    third = ingest_dir(tmp_path / "t", s3_dataset, "third", OPTIONS)
    assert Dataset.open(s3_dataset).snapshot_ids() == [first.snapshot_id, third.snapshot_id]


def test_staged_leftovers_of_a_dead_run_age_out(s3_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t")
    kept = ingest_dir(tmp_path / "t", s3_dataset, "kept", OPTIONS)
    ds = Dataset.open(s3_dataset)
    _put(s3_dataset, "_staging/20200101T000000-deadbeef/chunks.000003.parquet", b"half a run", tmp_path)
    _put(s3_dataset, "_staging/20200101T000000-deadbeef/snapshots.parquet", b"never committed", tmp_path)
    assert ds.remove_dead_staging() == []  # young: a cluster run may still be adding parts
    monkeypatch.setattr(storage_module, "LEFTOVER_AGE", timedelta(0))
    assert ds.remove_dead_staging() == ["20200101T000000-deadbeef"]
    assert ObjectStorage(s3_dataset).list("_staging/20200101T000000-deadbeef") == []
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


def test_a_removal_is_one_transaction(s3_dataset: str, tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    gone = ingest_dir(tmp_path / "t", s3_dataset, "gone", OPTIONS)
    kept = ingest_dir(tmp_path / "t", s3_dataset, "kept", OPTIONS)
    ds = Dataset.open(s3_dataset)
    version = ds.current_version()
    ds.remove_snapshots([gone.snapshot_id])
    assert ds.current_version() == version + 1 and ds.snapshot_ids() == [kept.snapshot_id]
    for table in ("nodes", "blobs", "chunks", "directories", "chunkings"):
        assert set(ds.read_table(table).column("snapshot_id").to_pylist()) == {kept.snapshot_id}


def test_a_new_s3_dataset_needs_a_catalog_server(s3_url: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("STORELAB_CATALOG", raising=False)
    _tree(tmp_path / "t")
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", s3_url.rsplit("/", 1)[0] + "/nocatalog", "-q", "-j", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "STORELAB_CATALOG=postgres:" in err[0]


class TestObjectDatasetStorage(DatasetStorageTests):
    def make_storage(self, tmp_path: Path, request: pytest.FixtureRequest) -> DatasetStorage:
        url = request.getfixturevalue("s3_url")
        request.getfixturevalue("monkeypatch").setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        return ObjectStorage(url.rsplit("/", 1)[0] + "/ds")


def test_writers_racing_to_create_an_s3_dataset_all_succeed(s3_url: str, s3_server, catalog_database: str, tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"f": b"x"})
    environment = {**s3_server.environment(), "XDG_CACHE_HOME": str(tmp_path / "cache"), "STORELAB_CATALOG": catalog_database}
    for round_ in range(3):
        location = s3_url.rsplit("/", 1)[0] + f"/race{round_}"
        assert race_to_create(location, tmp_path / "t", env=environment) == []
        assert sorted(Dataset.open(location).snapshots().column("label").to_pylist()) == [f"w{i}" for i in range(8)]

"""Datasets at scale in snapshot count: parts holding many snapshots, tiered compaction,
removal, the index, and the commit rule through crashes at every step (folder and s3://)."""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from storelab.analysis import dedup_summary, snapshot_summary
from storelab.cli import main
from storelab.errors import DatasetError, OutputError
from storelab.ingest import IngestOptions, ingest_dir
from storelab.ingest.nar_source import ingest_nar, ingest_nars
from storelab.nar import dump_path
from storelab.tables import Dataset
from storelab.tables import dataset as dataset_module
from storelab.tables.storage import DatasetStorage, FolderStorage, ObjectStorage
from storelab.testing.datasets import DatasetStorageTests, race_to_create
from tests.helpers import build_tree, snapshot_rows, table_rows

OPTIONS = IngestOptions(zstd_level=3, workers=0)


def _nars(root: Path, count: int) -> list[Path]:
    """NARs of small trees that share one file and differ in another."""
    out = []
    for i in range(count):
        build_tree(root / f"t{i}", {b"shared": b"s" * 5000, b"own": f"tree {i}".encode() * 300})
        nar = root / f"n{i:03d}.nar"
        nar.write_bytes(b"".join(dump_path(root / f"t{i}")))
        out.append(nar)
    return out


def _snapshot_files(ds: Path) -> list[str]:
    return sorted(p.name for p in (ds / "snapshots").glob("*.parquet"))


def test_a_list_of_nars_commits_many_snapshots_per_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_module, "BATCH_SNAPSHOTS", 2)
    nars = _nars(tmp_path, 5)
    results = ingest_nars([(str(n), n) for n in nars], tmp_path / "ds", OPTIONS)
    ds = Dataset.open(tmp_path / "ds")
    assert sorted(p.snapshot_count for p in ds.live_parts()) == [1, 2, 2]
    assert ds.snapshot_ids() == [r.snapshot_id for r in results]  # creation order
    for nar in nars:  # the same rows as one NAR at a time
        ingest_nar(nar, tmp_path / "one-by-one", options=OPTIONS)
    assert table_rows(tmp_path / "ds") == table_rows(tmp_path / "one-by-one")


def test_a_bad_nar_in_a_list_keeps_those_before(tmp_path: Path) -> None:
    nars = _nars(tmp_path, 3)
    bad = tmp_path / "bad.nar"
    bad.write_bytes(nars[1].read_bytes()[:-40])  # cut short
    sources = [(str(nars[0]), nars[0]), (str(bad), bad), (str(nars[2]), nars[2])]
    with pytest.raises(Exception, match="bad.nar"):
        ingest_nars(sources, tmp_path / "ds", OPTIONS)
    ds = Dataset.open(tmp_path / "ds")
    assert [row["label"] for row in ds.snapshots().to_pylist()] == ["n000.nar"]
    assert not (tmp_path / "ds" / "_staging").exists()


@pytest.mark.slow
def test_commits_compact_by_tiers_and_lose_nothing(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"a": b"x" * 3000, b"d": {b"b": b"y" * 100}})
    ids = [ingest_dir(tmp_path / "t", tmp_path / "ds", f"s{i}", OPTIONS).snapshot_id for i in range(20)]
    ds = Dataset.open(tmp_path / "ds")
    counts = sorted(p.snapshot_count for p in ds.live_parts())
    assert counts == [1, 1, 1, 1, 8, 8]  # 20 = 8 + 8 + 4 × 1 with a fan-out of 8
    assert len(_snapshot_files(tmp_path / "ds")) == 6  # replaced parts' files are gone
    assert ds.snapshot_ids() == ids
    assert len(ds.read_table("nodes")) == 20 * 4
    blob = dedup_summary(tmp_path / "ds").loc["blob"]
    assert (blob.logical_objects, blob.unique_objects) == (40, 2)
    ds.compact()
    assert [p.snapshot_count for p in ds.live_parts()] == [20] and ds.snapshot_ids() == ids
    assert len(_snapshot_files(tmp_path / "ds")) == 1


def _three_snapshots(tmp_path: Path) -> list[str]:
    """Three snapshots of one small tree in ``tmp_path / "ds"``, a part each; their ids."""
    build_tree(tmp_path / "t", {b"a": b"x" * 3000})
    return [ingest_dir(tmp_path / "t", tmp_path / "ds", f"s{i}", OPTIONS).snapshot_id for i in range(3)]


def _crash_when(monkeypatch: pytest.MonkeyPatch, method: str, predicate) -> None:
    real = getattr(FolderStorage, method)

    def failing(self, *args):
        if predicate(*args):
            raise OutputError(f"{self.location}: simulated crash in {method}{args}")
        return real(self, *args)

    monkeypatch.setattr(FolderStorage, method, failing)


def test_a_compaction_that_dies_before_its_commit_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _three_snapshots(tmp_path)
    before = table_rows(tmp_path / "ds")
    ds = Dataset.open(tmp_path / "ds")
    _crash_when(monkeypatch, "publish", lambda local, key: key.startswith("snapshots/"))
    with pytest.raises(OutputError, match="simulated crash"):
        ds.compact()
    monkeypatch.undo()
    assert table_rows(tmp_path / "ds") == before and len(ds.live_parts()) == 3
    ds.remove_leftovers()  # the half-published part's tables go
    assert sorted(p.name for p in (tmp_path / "ds" / "nodes").glob("*")) == sorted(
        n.replace("snapshots", "nodes") for n in _snapshot_files(tmp_path / "ds")
    )


def test_a_compaction_that_dies_after_its_commit_shows_the_new_part_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _three_snapshots(tmp_path)
    before = table_rows(tmp_path / "ds")
    ds = Dataset.open(tmp_path / "ds")
    _crash_when(monkeypatch, "delete", lambda keys: any(k.startswith("snapshots/") for k in keys))
    with pytest.raises(OutputError, match="simulated crash"):
        ds.compact()
    monkeypatch.undo()
    assert len(_snapshot_files(tmp_path / "ds")) == 4  # the old parts' files are still there …
    assert table_rows(tmp_path / "ds") == before and [p.snapshot_count for p in ds.live_parts()] == [3]  # … unseen
    ds.remove_leftovers()
    assert len(_snapshot_files(tmp_path / "ds")) == 1


def test_snapshots_are_removed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_module, "BATCH_SNAPSHOTS", 3)
    nars = _nars(tmp_path, 4)
    results = ingest_nars([(str(n), n) for n in nars], tmp_path / "ds", OPTIONS)
    ds = Dataset.open(tmp_path / "ds")
    ds.remove_snapshots([results[1].snapshot_id, results[3].snapshot_id])  # one of a part of 3, the only one of a part
    assert ds.snapshot_ids() == [results[0].snapshot_id, results[2].snapshot_id]
    for table in ("nodes", "blobs", "chunks", "chunkings", "directories"):
        assert set(ds.read_table(table).column("snapshot_id").to_pylist()) == {results[0].snapshot_id, results[2].snapshot_id}
    assert len(_snapshot_files(tmp_path / "ds")) == 1  # the emptied part left no tombstone behind
    assert ds.index().snapshots_labelled("n001.nar") == []


def test_the_index_is_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_tree(tmp_path / "t", {b"a": b"z" * 5000})
    ingest_dir(tmp_path / "t", tmp_path / "ds", "first", OPTIONS)
    (tmp_path / "ds" / "_index.sqlite").unlink()  # lost: it is rebuilt from the tables
    for suffix in ("-wal", "-shm"):
        (tmp_path / "ds" / f"_index.sqlite{suffix}").unlink(missing_ok=True)
    import storelab.ingest.blobs as blobs

    calls: list[int] = []
    real = blobs.zstd_stream
    monkeypatch.setattr(blobs, "zstd_stream", lambda compressor, data: (calls.append(len(data)), real(compressor, data))[1])
    ingest_dir(tmp_path / "t", tmp_path / "ds", "second", OPTIONS)
    assert calls == []  # the size measured by the first ingest was found again
    ingest_dir(tmp_path / "t", tmp_path / "other", "elsewhere", OPTIONS)
    assert calls == [5000]  # (the counting sees a measurement where there is one)
    assert Dataset.open(tmp_path / "ds").index().snapshots_labelled("first")


def test_nar_sizes_as_a_binary_cache_stores_them(tmp_path: Path) -> None:
    nar = _nars(tmp_path, 1)[0]
    ingest_nar(nar, tmp_path / "ds", options=IngestOptions(zstd_level=3, workers=0, nar_compression=("zstd", "xz")))
    row = Dataset.open(tmp_path / "ds").snapshots().to_pylist()[0]
    data = nar.read_bytes()
    assert row["nar_xz_size"] == len(lzma.compress(data, preset=6))  # `xz -6`
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    assert row["nar_zstd_size"] == len(stream.compress(data) + stream.flush())  # `zstd -3`, streamed
    summary = dedup_summary(tmp_path / "ds")
    xz = summary.loc["nar.xz"]
    assert xz.compressed_bytes == row["nar_xz_size"] and xz.compression_ratio == pytest.approx(len(data) / row["nar_xz_size"])
    assert xz.reduction_ratio == pytest.approx(xz.dedup_ratio * xz.compression_ratio)
    ingest_dir(tmp_path / "t0", tmp_path / "ds", "tree", IngestOptions(zstd_level=3, workers=0, nar_compression=("zstd",)))
    rows = Dataset.open(tmp_path / "ds").snapshots().to_pylist()
    assert rows[1]["nar_zstd_size"] == row["nar_zstd_size"] and rows[1]["nar_xz_size"] is None  # the tree's NAR is the same NAR
    assert any("nar.xz: measured for 1 of 2" in w for w in dedup_summary(tmp_path / "ds").attrs["warnings"])


def test_a_snapshot_is_shown_within_the_whole_order(tmp_path: Path) -> None:
    build_tree(tmp_path / "a", {b"f": b"1" * 4000, b"g": b"2" * 4000})
    build_tree(tmp_path / "b", {b"f": b"1" * 4000, b"h": b"3" * 4000})
    ingest_dir(tmp_path / "a", tmp_path / "ds", "a", OPTIONS)
    ingest_dir(tmp_path / "b", tmp_path / "ds", "b", OPTIONS)
    whole = snapshot_summary(tmp_path / "ds")
    alone = snapshot_summary(tmp_path / "ds", ["b"])
    assert set(alone["label"]) == {"b"}
    blob = alone[alone.level == "blob"].iloc[0]
    assert blob.new_bytes == 4000 and blob.hit_rate_bytes == 0.5  # f was in a, before b
    assert blob.new_bytes == whole[(whole.label == "b") & (whole.level == "blob")].iloc[0].new_bytes


def test_cli_snapshots_lists_removes_and_refuses_ambiguity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"a": b"x" * 100})
    ds = str(tmp_path / "ds")
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", ds, "-q", "-j", "0", "-l", "same"]) == 0
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", ds, "-q", "-j", "0", "-l", "same"]) == 0
    assert "label 'same' is used already" in capsys.readouterr().err
    assert main(["snapshots", ds, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["label"] for row in listed] == ["same", "same"] and listed[0]["chunkings"].startswith("fastcdc2020/")
    assert main(["snapshots", ds, "--remove", "same"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names 2 snapshots" in err[0] and "give an id" in err[0]
    assert main(["snapshots", ds, "--remove", listed[0]["snapshot_id"]]) == 0
    assert Dataset.open(ds).snapshot_ids() == [listed[1]["snapshot_id"]]
    assert main(["compact", ds]) == 0
    assert "1 part(s) → 1" in capsys.readouterr().out


def test_a_dataset_inside_its_tree_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", {b"a": b"x"})
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "t" / "study"), "-q"]) == 2  # options that do not fit
    err = capsys.readouterr().err
    assert "inside the tree it records" in err and not (tmp_path / "t" / "study").exists()
    os.chdir(tmp_path / "t")
    assert main(["ingest-dir", ".", "-o", "./study", "-q"]) == 2


def test_an_old_dataset_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "_storelab.json").write_text('{"format": "storelab-dataset", "schema_version": 2}\n')
    with pytest.raises(DatasetError, match="version 2; this storelab reads version 3"):
        Dataset.open(tmp_path / "old")


@pytest.mark.slow
def test_parts_compaction_and_removal_in_object_storage(s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_module, "BATCH_SNAPSHOTS", 2)
    dataset = s3_url.rsplit("/", 1)[0] + "/parts"
    nars = _nars(tmp_path, 5)
    results = ingest_nars([(str(n), n) for n in nars], dataset, OPTIONS)
    ingest_nars([(str(n), n) for n in nars], tmp_path / "local", OPTIONS)
    ds = Dataset.open(dataset)
    assert isinstance(ds.storage, ObjectStorage) and sorted(p.snapshot_count for p in ds.live_parts()) == [1, 2, 2]
    assert table_rows(dataset) == table_rows(tmp_path / "local")
    ds.compact()
    assert [p.snapshot_count for p in ds.live_parts()] == [5] and table_rows(dataset) == table_rows(tmp_path / "local")
    ds.remove_snapshots([results[0].snapshot_id])
    assert ds.snapshot_ids() == [r.snapshot_id for r in results[1:]]
    assert len(ds.storage.list("snapshots")) == 1


def test_two_merges_of_the_same_parts_never_show_a_snapshot_twice(tmp_path: Path) -> None:
    """Where nothing locks (an object store), two writers may merge the same parts at once:
    both merged parts are published, and readers see the one with the lower id only."""
    ids = _three_snapshots(tmp_path)
    ds = Dataset.open(tmp_path / "ds")
    parts = ds.live_parts()
    merged = []
    for _ in range(2):  # two writers, each unaware of the other's merge
        writer = dataset_module.PartWriter(ds, dataset_module.new_snapshot_id(), None, single=False)
        footer = {dataset_module.REPLACES: json.dumps([p.part_id for p in parts]).encode()}
        for table in dataset_module.TABLES:
            keys = [f.key for f in ds.storage.list(table) if dataset_module.part_of(f.key) in {p.part_id for p in parts}]
            writer.merge_files(table, keys, frozenset(), metadata=footer if table == "snapshots" else None)
        merged.append(writer.publish_merged([p.part_id for p in parts], still_live=lambda: True))
        writer.abort()
    assert len(_snapshot_files(tmp_path / "ds")) == 5
    assert [p.part_id for p in ds.live_parts()] == [min(m.part_id for m in merged)]
    assert ds.snapshot_ids() == ids and len(ds.read_table("nodes")) == 3 * 2
    ds.remove_leftovers()
    assert len(_snapshot_files(tmp_path / "ds")) == 1 and ds.snapshot_ids() == ids


def test_a_merge_of_parts_another_writer_merged_first_is_dropped(tmp_path: Path) -> None:
    _three_snapshots(tmp_path)
    ds = Dataset.open(tmp_path / "ds")
    stale = ds.live_parts()
    ds.compact()
    assert ds._rewrite(stale, frozenset()) is None  # checked under the commit lock: not published
    assert [p.snapshot_count for p in ds.live_parts()] == [3] and len(_snapshot_files(tmp_path / "ds")) == 1


def test_an_index_learnt_another_way_is_emptied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes measured another way (another libzstd, another encoder) are not reused: the index
    records its measuring method and empties itself when it differs."""
    from storelab.tables import index as index_module

    build_tree(tmp_path / "t", {b"a": b"z" * 5000})
    ingest_dir(tmp_path / "t", tmp_path / "ds", "first", OPTIONS)
    ds = Dataset.open(tmp_path / "ds")
    assert ds.index().chunk_size_count(3) == 1
    monkeypatch.setattr(index_module, "measuring_method", lambda: "another encoder")
    assert index_module.DatasetIndex(tmp_path / "ds" / "_index.sqlite").chunk_size_count(3) == 0  # emptied on opening
    assert Dataset.open(tmp_path / "ds").index().chunk_size_count(3) == 1  # and learnt again from the tables


def test_a_dataset_made_anew_at_the_same_place_has_a_new_identity(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"a": b"z"})
    ingest_dir(tmp_path / "t", tmp_path / "ds", "first", OPTIONS)
    first = Dataset.open(tmp_path / "ds").dataset_id
    import shutil

    shutil.rmtree(tmp_path / "ds")
    ingest_dir(tmp_path / "t", tmp_path / "ds", "again", OPTIONS)
    assert first and Dataset.open(tmp_path / "ds").dataset_id not in ("", first)


def test_a_failed_merge_after_a_commit_leaves_the_commit_standing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_tree(tmp_path / "t", {b"a": b"x" * 3000})
    for i in range(7):
        ingest_dir(tmp_path / "t", tmp_path / "ds", f"s{i}", OPTIONS)
    _crash_when(monkeypatch, "publish", lambda local, key: "merged-" in str(local))  # the 8th commit's merge fails
    result = ingest_dir(tmp_path / "t", tmp_path / "ds", "s7", OPTIONS)
    monkeypatch.undo()
    assert "the snapshot is committed, but merging parts failed" in capsys.readouterr().err
    ds = Dataset.open(tmp_path / "ds")
    assert ds.snapshot_ids()[-1] == result.snapshot_id and len(ds.live_parts()) == 8
    ds.compact()
    assert [p.snapshot_count for p in ds.live_parts()] == [8]


def test_a_damaged_dataset_is_an_error_not_a_wrong_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    build_tree(tmp_path / "t", {b"a": b"x" * 3000})
    first = ingest_dir(tmp_path / "t", tmp_path / "ds", "first", OPTIONS)
    ingest_dir(tmp_path / "t", tmp_path / "ds", "second", OPTIONS)
    shutil.copy(tmp_path / "ds" / "snapshots" / f"{first.snapshot_id}.parquet", tmp_path / "ds" / "snapshots" / "20300101T000000-c0ffee00.parquet")
    for name in ("nodes", "blobs", "chunks", "chunkings", "directories"):
        shutil.copy(tmp_path / "ds" / name / f"{first.snapshot_id}.parquet", tmp_path / "ds" / name / "20300101T000000-c0ffee00.parquet")
    assert main(["stats", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"snapshot {first.snapshot_id} is in two parts" in err[0]
    for name in ("snapshots", "nodes", "blobs", "chunks", "chunkings", "directories"):
        (tmp_path / "ds" / name / "20300101T000000-c0ffee00.parquet").unlink()
    (tmp_path / "ds" / "nodes" / f"{first.snapshot_id}.parquet").unlink()
    assert main(["stats", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"part {first.snapshot_id} has no nodes file" in err[0]


def test_a_truncated_or_foreign_table_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    build_tree(tmp_path / "t", {b"a": b"x" * 3000})
    result = ingest_dir(tmp_path / "t", tmp_path / "ds", "t", OPTIONS)
    nodes = tmp_path / "ds" / "nodes" / f"{result.snapshot_id}.parquet"
    good = nodes.read_bytes()
    nodes.write_bytes(good[:300])
    assert main(["stats", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(nodes) in err[0] and "not a readable Parquet file" in err[0]
    nodes.write_bytes(good)
    blobs = tmp_path / "ds" / "blobs" / f"{result.snapshot_id}.parquet"
    pq.write_table(pa.table({"x": [1]}), blobs)
    assert main(["stats", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blobs) in err[0] and "not a blobs table" in err[0]


class TestFolderDatasetStorage(DatasetStorageTests):
    def make_storage(self, tmp_path: Path, request: pytest.FixtureRequest) -> DatasetStorage:
        return FolderStorage(tmp_path / "ds")


@pytest.mark.slow
def test_writers_racing_to_create_a_dataset_all_succeed(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"f": b"x"})
    for round_ in range(4):
        location = tmp_path / f"ds{round_}"
        assert race_to_create(str(location), tmp_path / "t") == []
        assert sorted(r["label"] for r in snapshot_rows(location, "snapshots")) == [f"w{i}" for i in range(8)]
        assert not (location / "_staging").exists()


def test_a_stray_file_among_the_commits_is_one_line_for_readers_and_writers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Something that is not Parquet dropped into snapshots/ (where commits live): `stats` and an
    append both refuse with one line naming it (exit 1) — reported, never skipped over — and
    the committed snapshot stays as it was."""
    build_tree(tmp_path / "t", {b"a": b"x" * 3000})
    ingest_dir(tmp_path / "t", tmp_path / "ds", "t", OPTIONS)
    stray = tmp_path / "ds" / "snapshots" / "stray.parquet"
    stray.write_bytes(b"not parquet\n")
    for args in (["stats", str(tmp_path / "ds")], ["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-j", "0", "-q"]):
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(stray) in err[0] and "Traceback" not in err[0]
    stray.unlink()
    assert [r["label"] for r in snapshot_rows(tmp_path / "ds", "snapshots")] == ["t"]


def _open_index_and_write(path: str, writer: int) -> str:
    from storelab.tables.index import DatasetIndex

    try:
        index = DatasetIndex(Path(path))
        index.add([(3, os.urandom(32), 5)], [(f"w{writer}", f"s{writer}")], f"p{writer}")
        index.close()
        return ""
    except Exception as err:  # noqa: BLE001 — the test reports what any writer met
        return f"{type(err).__name__}: {err}"


@pytest.mark.slow
def test_processes_opening_a_new_index_at_once_never_find_it_locked(tmp_path: Path) -> None:
    """Switching a new index to WAL takes a lock SQLite does not wait for: without the retry,
    8 processes opening one new index failed with "database is locked" in ~1 round of 6."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(8) as pool:
        for round_ in range(40):
            path = str(tmp_path / f"index-{round_}.sqlite")
            assert [e for e in pool.starmap(_open_index_and_write, [(path, i) for i in range(8)]) if e] == []

"""Stream chunkings: a snapshot's NAR (or its files concatenated) cut whole, as attic,
nix-casync and ncps cut, recorded as chunkings of their own beside the per-file one."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest

from storelab.analysis import chunker_comparison, dedup_summary
from storelab.analysis.db import connect
from storelab.chunking import chunk_lengths, spec_from_id
from storelab.cli import main
from storelab.errors import ConfigError
from storelab.ingest import IngestOptions, ingest_dir
from storelab.ingest.nar_source import ingest_nar
from storelab.nar import dump_path
from tests.helpers import build_tree

TREE = {
    b"b-large": bytes(range(256)) * 700,
    b"a-small": b"hello" * 30,
    b"dir": {b"x": b"x" * 5000, b"empty": b""},
    b"link": ("link", b"b-large"),
}
STREAMS = ("fixed/size=1000@nar", "casync/min=64,avg=256,max=1024@nar", "fixed/size=1000@files-by-name", "fixed/size=1000@files-by-size")


def _stream_rows(dataset: Path, chunker_id: str) -> list[tuple]:
    with connect(dataset) as con:
        blob = con.execute("SELECT snapshot_id, digest, size, chunk_count FROM blobs WHERE chunker_id = ? ORDER BY snapshot_id", [chunker_id]).fetchall()
        chunks = con.execute(
            "SELECT snapshot_id, index, \"offset\", size, digest FROM chunks WHERE chunker_id = ? ORDER BY snapshot_id, index", [chunker_id]
        ).fetchall()
    return blob + chunks


def test_a_trees_nar_stream_is_cut_whole_and_equals_the_nars(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", TREE)
    nar = b"".join(dump_path(tmp_path / "t"))
    (tmp_path / "t.nar").write_bytes(nar)
    streams = tuple(spec_from_id(text) for text in STREAMS)
    ingest_dir(tmp_path / "t", tmp_path / "from-tree", options=IngestOptions(workers=0, zstd_level=0, streams=streams))
    ingest_nar(tmp_path / "t.nar", tmp_path / "from-nar", options=IngestOptions(zstd_level=0, streams=streams[:2]))
    for text in STREAMS[:2]:
        spec = spec_from_id(text)
        rows = _stream_rows(tmp_path / "from-tree", spec.id)
        blob, chunks = rows[0], rows[1:]
        # the stream's blob is the NAR: its BLAKE3, its size; its chunks cut the NAR as the chunker cuts it
        assert blob[1:] == (blake3.blake3(nar).digest(), len(nar), len(chunks))
        lengths = chunk_lengths(spec, nar)
        assert [c[3] for c in chunks] == lengths
        assert [c[2] for c in chunks] == [sum(lengths[:i]) for i in range(len(lengths))]
        assert [c[4] for c in chunks] == [blake3.blake3(nar[c[2] : c[2] + c[3]]).digest() for c in chunks]
        # read from the NAR itself, the same rows (but for the snapshot id)
        assert [r[1:] for r in _stream_rows(tmp_path / "from-nar", spec.id)] == [r[1:] for r in rows]


def test_files_concatenated_by_name_and_by_size(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", TREE)
    streams = tuple(spec_from_id(text) for text in STREAMS[2:])
    ingest_dir(tmp_path / "t", tmp_path / "ds", options=IngestOptions(workers=0, zstd_level=0, streams=streams))
    files = {"a-small": TREE[b"a-small"], "b-large": TREE[b"b-large"], "dir/empty": b"", "dir/x": TREE[b"dir"][b"x"]}  # type: ignore[index]
    by_name = b"".join(files[name] for name in sorted(files))
    by_size = b"".join(files[name] for name in sorted(files, key=lambda name: (len(files[name]), name)))
    for text, stream in zip(STREAMS[2:], (by_name, by_size)):
        blob = _stream_rows(tmp_path / "ds", spec_from_id(text).id)[0]
        assert blob[1:3] == (blake3.blake3(stream).digest(), len(stream))


def test_stream_chunkings_count_in_the_dedup_figures(tmp_path: Path) -> None:
    """Two snapshots of the same tree: each stream chunking stores the NAR once, its logical
    bytes are both NARs; the blob level stays per file."""
    build_tree(tmp_path / "t", TREE)
    nar = b"".join(dump_path(tmp_path / "t"))
    nar_size = len(nar)
    options = IngestOptions(workers=0, zstd_level=0, streams=(spec_from_id("casync/min=64,avg=256,max=1024@nar"),))
    distinct: dict[bytes, int] = {}
    offset = 0
    for length in chunk_lengths(options.streams[0], nar):
        distinct[nar[offset : offset + length]] = length
        offset += length
    for label in ("one", "two"):
        ingest_dir(tmp_path / "t", tmp_path / "ds", label, options)
    stream_id = options.streams[0].id
    assert stream_id == "casync/min=64,avg=256,max=1KiB@nar"
    summary = dedup_summary(tmp_path / "ds").set_index("chunker_id", drop=False)
    stream = summary.loc[stream_id]
    # the second snapshot adds nothing; the first stores the NAR's distinct chunks (its 256-byte pattern repeats)
    assert (stream["logical_bytes"], stream["unique_bytes"]) == (2 * nar_size, sum(distinct.values()))
    assert stream["unique_objects"] == len(distinct)
    blob = summary[summary["level"] == "blob"].iloc[0]
    assert blob["chunker_id"].startswith("fastcdc2020/")
    comparison = chunker_comparison(tmp_path / "ds").set_index("chunker_id")
    assert comparison.loc[stream_id, "chunker"] == "casync@nar"
    assert comparison.loc[stream_id, "logical_bytes"] == 2 * nar_size


def test_a_refs_zeroed_chunking_is_counted_per_file_not_as_a_stream(tmp_path: Path) -> None:
    """``@refs-zeroed`` cuts each file (its id has an ``@`` like a stream's): logical bytes are
    every file occurrence's, and its blobs have index objects like any per-file chunking."""
    build_tree(tmp_path / "t", TREE)
    plain = spec_from_id("fixed/size=1000")
    zeroed = spec_from_id("fixed/size=1000@refs-zeroed")
    for label in ("one", "two"):
        ingest_dir(tmp_path / "t", tmp_path / "ds", label, IngestOptions(plain, workers=0, zstd_level=0, also=(zeroed,)))
    comparison = chunker_comparison(tmp_path / "ds").set_index("chunker_id")
    files = sum(len(v) for v in (TREE[b"b-large"], TREE[b"a-small"], TREE[b"dir"][b"x"]))  # type: ignore[index, arg-type]
    for chunking in (plain, zeroed):  # no /nix/store path in these files: blanking changes nothing
        row = comparison.loc[chunking.id]
        assert row["logical_bytes"] == 2 * files
        assert row["index_bytes"] == comparison.loc[plain.id, "index_bytes"] > 0
    summary = dedup_summary(tmp_path / "ds").set_index("chunker_id", drop=False)
    assert summary.loc[zeroed.id, "logical_bytes"] == 2 * files


def test_stream_chunkings_refused_where_they_cannot_be_cut(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"f": b"data"})
    (tmp_path / "t.nar").write_bytes(b"".join(dump_path(tmp_path / "t")))
    with pytest.raises(ConfigError, match="@files-by-size needs a tree"):
        ingest_nar(tmp_path / "t.nar", tmp_path / "ds", options=IngestOptions(streams=(spec_from_id("casync@files-by-size"),)))
    with pytest.raises(ConfigError, match="unknown scope 'blob'"):
        spec_from_id("casync@blob")
    with pytest.raises(ConfigError, match="needs a scope"):
        ingest_dir(tmp_path / "t", tmp_path / "ds", options=IngestOptions(streams=(spec_from_id("casync"),)))
    assert not (tmp_path / "ds").exists()


def test_stream_chunkings_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tree(tmp_path / "t", TREE)
    (tmp_path / "t.nar").write_bytes(b"".join(dump_path(tmp_path / "t")))
    streams = ["--stream-chunking", "attic@nar", "--stream-chunking", "casync@nar", "--stream-chunking", "ncps@nar"]
    assert main(["ingest-nar", str(tmp_path / "t.nar"), "-o", str(tmp_path / "ds"), "-q", *streams]) == 0
    assert main(["stats", str(tmp_path / "ds"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ids = {r["chunker_id"] for r in report["overall"] if r["level"] == "chunk"}
    assert {"fastcdc2016/min=16KiB,avg=64KiB,max=256KiB@nar", "casync/min=16KiB,avg=64KiB,max=256KiB@nar", "ncps/min=16KiB,avg=64KiB,max=256KiB,nc=2@nar"} < ids
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds2"), "--stream-chunking", "casync"]) == 2
    assert "name what is cut: casync@nar" in capsys.readouterr().err
    assert main(["ingest-nar", str(tmp_path / "t.nar"), "-o", str(tmp_path / "ds3"), "--stream-chunking", "casync@files-by-name"]) == 2
    assert "needs a tree" in capsys.readouterr().err
    assert not (tmp_path / "ds3").exists()

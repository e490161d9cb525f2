"""Dedup figures on cases whose answers are known by hand."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storelab.analysis import dedup_summary, snapshot_summary
from storelab.chunking import default_spec
from storelab.ingest import IngestOptions, ingest_dir
from tests.helpers import build_tree

MIB = 1 << 20
KIB = 1 << 10


@pytest.fixture(scope="module")
def three_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """The same 3 MiB file twice, plus a copy with one byte changed in the middle."""
    base = tmp_path_factory.mktemp("dedup")
    original = random.Random(11).randbytes(3 * MIB)
    changed = bytearray(original)
    changed[3 * MIB // 2 + 100] ^= 0xFF
    build_tree(base / "tree", {b"a": original, b"b": original, b"c": bytes(changed)})
    return base, original, bytes(changed)


def test_fixed_blocks_by_hand(three_copies: tuple[Path, bytes, bytes]) -> None:
    base, _, _ = three_copies
    options = IngestOptions(default_spec("fixed", 64 * KIB), zstd_level=0, workers=0)
    ingest_dir(base / "tree", base / "fixed", "t", options)
    s = dedup_summary(base / "fixed")
    # files: 3 × 3 MiB logical; 2 distinct blobs
    assert s.loc["blob", "logical_bytes"] == 9 * MIB
    assert s.loc["blob", "unique_bytes"] == 6 * MIB
    assert s.loc["blob", "unique_objects"] == 2
    # chunks: 48 blocks per file; c differs from a in exactly one 64 KiB block
    assert s.loc["chunk", "logical_objects"] == 3 * 48
    assert s.loc["chunk", "unique_objects"] == 48 + 1
    assert s.loc["chunk", "unique_bytes"] == 3 * MIB + 64 * KIB
    assert s.loc["chunk", "dedup_ratio"] == pytest.approx(9 * MIB / (3 * MIB + 64 * KIB))
    # two chunked blobs, 48 ChunkMeta each: (1 + 1 + (2+32) + (1+3)) bytes per entry
    assert s.loc["chunk", "metadata_bytes"] == 2 * 48 * (2 + 34 + 4)
    assert s.loc["chunk", "stored_bytes"] == 3 * MIB + 64 * KIB + 2 * 48 * 40
    assert s.loc["chunk", "space_savings"] == pytest.approx(1 - (3 * MIB + 64 * KIB + 3840) / (9 * MIB))


def test_fastcdc_resynchronises_after_the_changed_byte(three_copies: tuple[Path, bytes, bytes]) -> None:
    base, original, changed = three_copies
    ingest_dir(base / "tree", base / "cdc", "t", IngestOptions(zstd_level=0, workers=0))
    s = dedup_summary(base / "cdc")
    # The cut points: the chunker is already proven against fastcdc-rs; here we only use it
    # to find where c's chunks differ, then check the summary counts exactly those bytes.
    from storelab.chunking import make_chunker

    chunker = make_chunker(default_spec())
    cuts_a = chunker.split(memoryview(original), eof=True)
    cuts_c = chunker.split(memoryview(changed), eof=True)

    def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
        out, pos = [], 0
        for n in cuts:
            out.append(data[pos : pos + n])
            pos += n
        return out

    known = set(pieces(original, cuts_a))
    only_c = [p for p in pieces(changed, cuts_c) if p not in known]
    # one byte changed: the chunk holding it differs, and at most its neighbour with it
    assert 1 <= len(only_c) <= 2
    assert s.loc["chunk", "unique_bytes"] == 3 * MIB + sum(len(p) for p in only_c)
    assert s.loc["chunk", "unique_objects"] == len(known) + len(only_c)
    assert s.loc["chunk", "unique_bytes"] < 3 * MIB + 3 * 512 * KIB


def test_what_each_snapshot_adds(tmp_path: Path) -> None:
    build_tree(tmp_path / "v1", {b"a": b"A" * 1000, b"b": b"B" * 2000})
    build_tree(tmp_path / "v2", {b"a": b"A" * 1000, b"c": b"C" * 4000, b"a2": b"A" * 1000})
    options = IngestOptions(zstd_level=0, workers=0)
    ingest_dir(tmp_path / "v1", tmp_path / "ds", "v1", options)
    ingest_dir(tmp_path / "v2", tmp_path / "ds", "v2", options)
    per = snapshot_summary(tmp_path / "ds").set_index(["label", "level"])
    assert per.loc[("v1", "blob"), ["logical_bytes", "unique_bytes", "new_bytes", "shared_bytes"]].tolist() == [3000, 3000, 3000, 0]
    assert per.loc[("v2", "blob"), ["logical_bytes", "unique_bytes", "new_bytes", "shared_bytes"]].tolist() == [6000, 5000, 4000, 1000]
    assert per.loc[("v2", "blob"), "new_objects"] == 1
    overall = dedup_summary(tmp_path / "ds")
    assert overall.loc["blob", ["logical_bytes", "unique_bytes"]].tolist() == [9000, 7000]
    # directories: two different roots, each counted once
    assert overall.loc["directory", "unique_objects"] == 2
    only_v2 = dedup_summary(tmp_path / "ds", ["v2"])
    assert only_v2.loc["blob", ["logical_bytes", "unique_bytes"]].tolist() == [6000, 5000]


def test_compressed_and_stored_bytes(tmp_path: Path) -> None:
    import zstandard

    build_tree(tmp_path / "t", {b"zeros": bytes(100_000), b"again": bytes(100_000)})
    ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(zstd_level=3, workers=0))
    s = dedup_summary(tmp_path / "ds")
    stream = zstandard.ZstdCompressor(level=3).compressobj()  # as snix streams a chunk through zstd
    one = len(stream.compress(bytes(100_000)) + stream.flush())
    assert s.loc["chunk", "compressed_bytes"] == one
    assert s.loc["chunk", "stored_bytes"] == one  # a single-chunk blob has an empty index
    assert s.loc["chunk", "stored_fraction"] == pytest.approx(one / 200_000)


def test_chunk_level_is_split_by_chunker(tmp_path: Path) -> None:
    build_tree(tmp_path / "t", {b"x": random.Random(1).randbytes(200_000)})
    ingest_dir(tmp_path / "t", tmp_path / "ds", "a", IngestOptions(default_spec("fixed", 64 * KIB), zstd_level=0, workers=0))
    ingest_dir(tmp_path / "t", tmp_path / "ds", "b", IngestOptions(default_spec("fixed", 32 * KIB), zstd_level=0, workers=0))
    s = dedup_summary(tmp_path / "ds")
    chunk_rows = s[s["level"] == "chunk"]
    assert sorted(chunk_rows["unique_objects"]) == [4, 7]
    assert set(chunk_rows["logical_bytes"]) == {200_000}

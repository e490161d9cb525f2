"""Every analysis function on constructed datasets whose answers are worked out by hand;
sweeps, what-if, reports."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from storelab.analysis import (
    attribution,
    chunk_size_distribution,
    chunk_size_stats,
    chunker_comparison,
    dedup_summary,
    refcount_histogram,
    sharing,
    snapshot_summary,
)
from storelab.analysis.whatif import (
    PLACEHOLDER,
    normalize_store_paths,
    what_if_normalized,
)
from storelab.chunking import default_spec
from storelab.cli import main
from storelab.ingest import IngestOptions, ingest_dir, sweep_dir
from storelab.ingest.nar_source import ingest_nar
from storelab.nar import dump_path
from storelab.report import SECTION_TITLES, build_report
from tests.helpers import build_tree, snapshot_rows

KiB = 1024
# 4 KiB blocks of distinct bytes: A, B, C, D
A, B, C, D = (bytes([n]) * (4 * KiB) for n in (1, 2, 3, 4))


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    """v1: a.py = A+B, b.txt = C, lib/c.py = A+B (a copy); v2: a.py = A+B, b.txt = D.
    With fixed 4 KiB chunks every block is one chunk."""
    build_tree(tmp_path / "v1", {b"a.py": A + B, b"b.txt": C, b"lib": {b"c.py": A + B}})
    build_tree(tmp_path / "v2", {b"a.py": A + B, b"b.txt": D})
    options = IngestOptions(default_spec("fixed", 4 * KiB), zstd_level=0, workers=0)
    ingest_dir(tmp_path / "v1", tmp_path / "ds", "v1", options)
    ingest_dir(tmp_path / "v2", tmp_path / "ds", "v2", options)
    return tmp_path / "ds"


def test_dedup_summary_every_level_by_hand(two_versions: Path, tmp_path: Path) -> None:
    s = dedup_summary(two_versions)
    # files: v1 has 8+4+8 KiB, v2 8+4 KiB = 32 KiB logical; distinct blobs A+B, C, D = 16 KiB
    assert (s.loc["blob", "logical_bytes"], s.loc["blob", "unique_bytes"]) == (32 * KiB, 16 * KiB)
    assert (s.loc["blob", "logical_objects"], s.loc["blob", "unique_objects"]) == (5, 3)
    # chunks: A, B, C, D distinct (16 KiB), 8 occurrences
    assert (s.loc["chunk", "logical_objects"], s.loc["chunk", "unique_objects"]) == (8, 4)
    assert s.loc["chunk", "dedup_ratio"] == 2.0
    # chunked blob A+B has an index object: 2 × ChunkMeta (tag, length, then digest field 1 + 1 + 32
    # and size field 1 + 2 bytes of varint(4096)) = 2 × (1 + 1 + 37) = 78 bytes
    assert s.loc["chunk", "metadata_bytes"] == 78 and s.loc["chunk", "stored_bytes"] == 16 * KiB + 78
    # NAR level: two different trees; each NAR's length is what nix-store --dump writes
    nar_sizes = [len(b"".join(dump_path(tmp_path / v))) for v in ("v1", "v2")]
    assert s.loc["nar", "logical_bytes"] == sum(nar_sizes) and s.loc["nar", "unique_objects"] == 2


def test_sharing_by_hand(two_versions: Path) -> None:
    shares = sharing(two_versions, "blob").set_index("label")
    # v1 holds A+B (shared with v2) and C (its own); v2 holds A+B and D (its own)
    assert (shares.loc["v1", "exclusive_bytes"], shares.loc["v1", "shared_bytes"]) == (4 * KiB, 8 * KiB)
    assert (shares.loc["v2", "exclusive_bytes"], shares.loc["v2", "shared_bytes"]) == (4 * KiB, 8 * KiB)
    chunks = sharing(two_versions, "chunk").set_index("label")
    assert (chunks.loc["v1", "exclusive_objects"], chunks.loc["v1", "shared_objects"]) == (1, 2)


def test_attribution_by_hand(two_versions: Path) -> None:
    by_type = attribution(two_versions).set_index("group")
    # .py: a.py twice (v1, v2) + lib/c.py = 24 KiB logical, one distinct blob of 8 KiB
    assert (by_type.loc["py", "files"], by_type.loc["py", "logical_bytes"], by_type.loc["py", "unique_bytes"]) == (3, 24 * KiB, 8 * KiB)
    assert (by_type.loc["txt", "logical_bytes"], by_type.loc["txt", "unique_bytes"]) == (8 * KiB, 8 * KiB)
    assert by_type.loc["py", "logical_share"] == pytest.approx(24 / 32)
    by_prefix = attribution(two_versions, "prefix", depth=1).set_index("group")
    assert by_prefix.loc["lib", "logical_bytes"] == 8 * KiB and by_prefix.loc["a.py", "files"] == 2
    top = attribution(two_versions, top=1)
    assert list(top.group) == ["py", "(other)"] and top.logical_bytes.sum() == 32 * KiB


def test_refcounts_by_hand(two_versions: Path) -> None:
    chunks = refcount_histogram(two_versions, "chunk")
    # A and B occur 3 times each (a.py in v1 and v2, lib/c.py); C and D once
    assert chunks[["refcount", "refcount_high", "objects", "unique_bytes", "referenced_bytes"]].values.tolist() == [
        [1, 1, 2, 8 * KiB, 8 * KiB],
        [3, 4, 2, 8 * KiB, 24 * KiB],
    ]
    blobs = refcount_histogram(two_versions, "blob")
    assert blobs[["refcount", "objects", "referenced_objects"]].values.tolist() == [[1, 2, 2], [3, 1, 3]]


def test_chunk_sizes_by_hand(tmp_path: Path) -> None:
    # 10,250 bytes, periodic in 256 for the first 10,240, under fixed 4 KiB blocks: chunks of
    # 4096, 4096 (the same bytes as the first) and 2058 bytes
    build_tree(tmp_path / "t", {b"f": bytes(range(256)) * 40 + b"\x00" * 9 + b"y"})
    spec = default_spec("fixed", 4 * KiB)
    ingest_dir(tmp_path / "t", tmp_path / "ds", "t", IngestOptions(spec, zstd_level=0, workers=0))
    stats = chunk_size_stats(tmp_path / "ds").iloc[0]
    assert stats.chunks == 2  # distinct: the repeated 4 KiB block once, and the tail
    assert stats.mean_size == pytest.approx((4096 + 2058) / 2)
    assert stats.at_max_share == 0.5 and stats.mean_over_avg == pytest.approx((4096 + 2058) / 2 / 4096)
    dist = chunk_size_distribution(tmp_path / "ds", bins=8)
    assert dist.chunks.sum() == 2 and dist.bytes.sum() == 4096 + 2058
    assert dist.cdf_chunks.iloc[-1] == 1.0


def test_sweep_reads_once_and_compares_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_tree(tmp_path / "t", {b"f": A + B + A + C, b"g": b"tiny"})
    import storelab.ingest.blobs as blobs

    opened: list[bytes] = []
    real_open = blobs.os.open

    def counting_open(path, *args, **kwargs):
        opened.append(path if isinstance(path, bytes) else str(path).encode())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(blobs.os, "open", counting_open)
    specs = [default_spec("fixed", 4 * KiB), default_spec("fixed", 8 * KiB), default_spec("fastcdc2020", 4 * KiB)]
    result = sweep_dir(tmp_path / "t", tmp_path / "ds", specs, "t", IngestOptions(zstd_level=0, workers=0))
    tree = str(tmp_path / "t").encode() + b"/"
    assert len([p for p in opened if p.startswith(tree)]) == 2  # each file read once, for all three chunkings
    assert [chunker for chunker, _ in result.chunkings] == [s.id for s in specs]  # one snapshot, three chunkings
    comparison = chunker_comparison(tmp_path / "ds").set_index("chunker_id")
    four, eight = comparison.loc[specs[0].id], comparison.loc[specs[1].id]
    # 4 KiB blocks: A, B, A, C + tiny → 4 distinct (A, B, C, tiny); 8 KiB: A+B, A+C, tiny → 3
    assert (four.logical_chunks, four.unique_chunks, four.unique_bytes) == (5, 4, 12 * KiB + 4)
    assert (eight.logical_chunks, eight.unique_chunks, eight.unique_bytes) == (3, 3, 16 * KiB + 4)
    assert four.dedup_ratio == pytest.approx((16 * KiB + 4) / (12 * KiB + 4))
    assert len(snapshot_rows(tmp_path / "ds", "snapshots")) == 1  # the tree is one snapshot …
    rows = snapshot_rows(tmp_path / "ds", "chunkings")
    assert sorted(r["chunker_id"] for r in rows) == sorted(s.id for s in specs)  # … recorded under three chunkings
    assert len(snapshot_rows(tmp_path / "ds", "nodes")) == 3  # its nodes once: root, f, g


def test_a_sweep_counts_the_tree_once(tmp_path: Path) -> None:
    """A tree ingested once and the same tree swept three ways give the same nar, blob and
    directory levels (worked by hand), and the chunk level per chunking."""
    build_tree(tmp_path / "t", {b"f": A + B + A + C, b"g": b"tiny", b"h": A + B + A + C})
    specs = [default_spec("fixed", 4 * KiB), default_spec("fixed", 8 * KiB), default_spec("fastcdc2020", 4 * KiB)]
    options = IngestOptions(zstd_level=0, workers=0)
    ingest_dir(tmp_path / "t", tmp_path / "once", "t", IngestOptions(specs[0], zstd_level=0, workers=0))
    sweep_dir(tmp_path / "t", tmp_path / "swept", specs, "t", options)
    once, swept = dedup_summary(tmp_path / "once"), dedup_summary(tmp_path / "swept")
    size = 16 * KiB + 4
    for summary in (once, swept):
        blob = summary.loc["blob"]
        # f and h are the same blob: logical 2 × 16 KiB + 4, unique 16 KiB + 4, two distinct blobs
        assert (blob.logical_bytes, blob.unique_bytes, blob.logical_objects, blob.unique_objects) == (2 * size - 4, size, 3, 2)
        assert summary.loc["nar", "logical_objects"] == 1 and summary.loc["directory", "unique_objects"] == 1
    for level in ("nar", "blob", "directory"):
        assert once.loc[level].drop(["chunker_id"]).equals(swept.loc[level].drop(["chunker_id"])), level
    chunk_rows = swept[swept["level"] == "chunk"].set_index("chunker_id")
    assert sorted(chunk_rows.index) == sorted(s.id for s in specs) and set(chunk_rows["snapshots"]) == {1}
    # 4 KiB blocks: A, B, A, C per big file → distinct A, B, C + tiny
    assert (chunk_rows.loc[specs[0].id, "unique_objects"], chunk_rows.loc[specs[0].id, "unique_bytes"]) == (4, 12 * KiB + 4)
    assert (chunk_rows.loc[specs[1].id, "unique_objects"], chunk_rows.loc[specs[1].id, "unique_bytes"]) == (3, 16 * KiB + 4)
    assert once.attrs["warnings"] == [] and swept.attrs["warnings"] == []
    per = snapshot_summary(tmp_path / "swept")
    assert sorted(per[per.level == "chunk"].chunker_id) == sorted(s.id for s in specs) and (per.level == "blob").sum() == 1


def test_normalize_store_paths_keeps_lengths() -> None:
    data = b"x /nix/store/0c0njx0wxbvdbcfacnha7d9nsc9wwmcw-glibc-2.40/lib and /nix/store/short-no"
    out = normalize_store_paths(data)
    assert len(out) == len(data) and PLACEHOLDER in out and b"short-no" in out
    assert normalize_store_paths(b"/nix/store/" + b"e" * 32 + b"-x") == b"/nix/store/" + b"e" * 32 + b"-x"


def test_what_if_normalized_by_hand(tmp_path: Path) -> None:
    # two builds of one program, differing only in the store path of the libc they name
    body = b"\x7fELF" + b"\x00" * 3000
    ref1 = b"/nix/store/0c0njx0wxbvdbcfacnha7d9nsc9wwmcw-glibc-2.40/lib/libc.so.6"
    ref2 = b"/nix/store/1d1pky1xycwfcdgbdpia8f9psd9xxpdx-glibc-2.40/lib/libc.so.6"
    build_tree(tmp_path / "b1", {b"prog": body + ref1 + body})
    build_tree(tmp_path / "b2", {b"prog": body + ref2 + body})
    options = IngestOptions(zstd_level=0, workers=0)
    ingest_dir(tmp_path / "b1", tmp_path / "ds", "b1", options)
    (tmp_path / "b2.nar").write_bytes(b"".join(dump_path(tmp_path / "b2")))
    ingest_nar(tmp_path / "b2.nar", tmp_path / "ds", "b2", options)
    result = what_if_normalized(tmp_path / "ds", tmp_path / "normalized", workers=0).set_index("level")
    size = len(body + ref1 + body)
    assert (result.loc["blob", "unique_bytes"], result.loc["blob", "unique_bytes_normalized"]) == (2 * size, size)
    assert result.loc["blob", "dedup_ratio_normalized"] == 2.0 and result.loc["blob", "saved_bytes"] == size
    assert result.loc["blob", "saved_share"] == 0.5
    (tmp_path / "b2.nar").unlink()
    with pytest.raises(Exception, match="b2.nar.*gone"):
        what_if_normalized(tmp_path / "ds")


def test_what_if_cli_and_ingest_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = b"/nix/store/0c0njx0wxbvdbcfacnha7d9nsc9wwmcw-x"
    build_tree(tmp_path / "t", {b"a": ref + b"1" * 100, b"b": ref.replace(b"0c0n", b"1c1n") + b"1" * 100})
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q", "--normalize-store-paths", "-j", "0"]) == 0
    assert snapshot_rows(tmp_path / "ds", "snapshots")[0]["blob_count"] == 1  # both files normalise to one blob
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds2"), "-q", "-j", "0"]) == 0
    capsys.readouterr()
    assert main(["what-if", "--normalize-store-paths", str(tmp_path / "ds2"), "--json", "-j", "0"]) == 0
    rows = json.loads(capsys.readouterr().out)
    blob = next(r for r in rows if r["level"] == "blob")
    assert (blob["unique_bytes"], blob["unique_bytes_normalized"]) == (2 * (len(ref) + 100), len(ref) + 100)
    assert main(["what-if", str(tmp_path / "ds2")]) == 2


@pytest.mark.slow
def test_report_html_is_complete_and_offline(two_versions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r" / "report.html"
    assert main(["report", str(two_versions), "-o", str(out)]) == 0
    text = out.read_text()
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in text, title
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) >= 7 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    # nothing to fetch: no URL, no script, no stylesheet link, every src embedded
    assert not re.search(r"https?://|<script|<link|src=\"(?!data:)", text)
    assert "storelab report" in text and "v1" in text and "v2" in text and "0.1.0" in text


@pytest.mark.slow
def test_report_markdown_with_pngs_beside(two_versions: Path, tmp_path: Path) -> None:
    out = build_report(two_versions, tmp_path / "md" / "study.md", "md", command=["storelab", "report", "x"])
    text = out.read_text()
    pngs = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", text)
    assert len(pngs) >= 7 and all((out.parent / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert "`storelab report x`" in text and "## Cost of a store" in text
    with pytest.raises(Exception, match="html or md"):
        build_report(two_versions, tmp_path / "x.pdf", "pdf")

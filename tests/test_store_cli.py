"""The store commands as a user types them: --store on both ingests, `store verify`,
`bench-upload`, `stats --cost`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from storelab.cli import main
from storelab.nar import dump_path
from storelab.stores import SnixStore, object_key
from storelab.tables import Dataset
from tests.helpers import build_tree

REPO = Path(__file__).resolve().parent.parent


def _tree(root: Path, files: int = 30) -> None:
    build_tree(root, {f"f{i:02}".encode(): random.Random(i).randbytes(500 + 37 * i) for i in range(files)} | {b"same": b"x" * 500})


def test_ingest_into_a_file_store_then_verify_and_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t")
    store = f"file://{tmp_path}/store"
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", store, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # 31 distinct one-chunk blobs: a chunk and an (empty) index each, and the root's closure
    assert summary["store_requests"]["put"] == 31 * 2 + 1
    assert main(["store", "verify", store]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["render-nar", str(tmp_path / "ds"), "t", "--store", store, "-o", str(tmp_path / "t.nar")]) == 0
    assert (tmp_path / "t.nar").read_bytes() == b"".join(dump_path(tmp_path / "t"))


def test_verify_reports_damage_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t", files=3)
    store = str(tmp_path / "store")
    main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", store, "-q"])
    chunk = next((tmp_path / "store" / "chunks").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(zstandard.ZstdCompressor().compress(b"not what it was"))
    capsys.readouterr()
    assert main(["store", "verify", store, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]
    assert any(p["kind"] == "corrupt" and p["key"].endswith(chunk.name) for p in report["problems"])
    assert main(["store", "verify", store]) == 1
    assert "corrupt: chunks/b3/" in capsys.readouterr().out


def test_memory_store_and_upload_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t")
    args = ["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", "memory://", "--json"]
    assert main([*args, "--upload-concurrency", "0"]) == 0
    first = json.loads(capsys.readouterr().out)["store_requests"]
    assert main([*args, "--upload-concurrency", "4", "--upload-threshold", "1KiB", "--upload-buffer", "4KiB"]) == 0
    second = json.loads(capsys.readouterr().out)["store_requests"]
    assert first["put"] == second["put"] == 63  # a fresh memory store each run: everything is written
    assert main([*args, "--upload-buffer", "lots"]) == 2
    assert "lots" in capsys.readouterr().err


def test_stats_cost_model_matches_what_the_store_saw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t")
    main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", str(tmp_path / "s"), "-q"])
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "ds"), "--cost", "--json", "--put-price", "1", "--storage-price", "0", "--get-price", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    model, measured = report["model"][0], report["measured"][0]
    assert model["put_requests"] == measured["store_put_count"] == 63
    assert model["head_requests"] == measured["store_head_count"]
    assert model["put_cost"] == pytest.approx(63 / 1000)
    assert model["total_cost"] == pytest.approx(63 / 1000)
    assert main(["stats", str(tmp_path / "ds"), "--cost"]) == 0
    text = capsys.readouterr().out
    assert "costs more to PUT once than to keep" in text and "requests the --store ingests made" in text


@pytest.mark.slow
def test_bench_upload_writes_table_parquet_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t", files=12)
    out = tmp_path / "bench"
    assert main(["bench-upload", str(tmp_path / "t"), "--rtt", "0ms,2ms", "--concurrency", "1,16", "-o", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["rtt_ms"], r["mode"], r["concurrency"]) for r in rows] == [
        (0, "sequential", 0), (0, "concurrent", 1), (0, "concurrent", 16),
        (2, "sequential", 0), (2, "concurrent", 1), (2, "concurrent", 16),
    ]  # fmt: skip
    assert all(r["put_count"] == 13 * 2 + 1 for r in rows)
    assert rows[3]["wall_seconds"] >= rows[3]["requests"] * 0.002  # each request waited its round trip
    assert pq.read_table(out / "upload.parquet").num_rows == 6
    assert (out / "upload.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["bench-upload", str(tmp_path / "t"), "--rtt", "fast"]) == 2
    assert main(["bench-upload", str(tmp_path / "nope"), "--rtt", "1ms"]) == 1


@pytest.mark.slow
def test_s3_store_from_the_command_line(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "t", files=5)
    bucket = s3_server.new_bucket()
    env = os.environ | s3_server.environment()
    store = f"s3://{bucket}/castore"

    def storelab(*args: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from storelab.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)

    done = storelab("ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", store, "-j", "2")
    assert done.returncode == 0, done.stderr
    assert "store: 13 PUT" in done.stdout
    verified = storelab("store", "verify", store)
    assert verified.returncode == 0 and "ok" in verified.stdout
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    root = Dataset.open(tmp_path / "ds").snapshots().column("root_digest")[0].as_py()
    # the objects sit under the prefix, in snix's layout
    assert SnixStore.open(store).backend.head(object_key("dirs", root)) is not None
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # nothing listens there
    refused = storelab("ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds3"), "--store", f"s3://{bucket}/x")
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"storelab: error: s3://{bucket}/x: cannot ") and "Traceback" not in refused.stderr


def test_reading_a_store_that_is_not_there_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-store"
    assert main(["store", "verify", str(missing)]) == 1
    assert "no such store" in capsys.readouterr().err and not missing.exists()
    _tree(tmp_path / "t", files=2)
    main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "-q"])
    assert main(["render-nar", str(tmp_path / "ds"), "t", "--store", f"file://{missing}", "-o", str(tmp_path / "t.nar")]) == 1
    assert not missing.exists() and not (tmp_path / "t.nar").exists()


def test_verify_of_a_place_with_no_objects_is_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["store", "verify", f"file://{tmp_path}/empty"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such store" in err and "Traceback" not in err


@pytest.mark.slow
def test_verify_of_a_mistyped_s3_prefix_is_no_store(s3_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "t", 3)
    assert main(["ingest-dir", str(tmp_path / "t"), "-o", str(tmp_path / "ds"), "--store", s3_url, "-q"]) == 0
    assert main(["store", "verify", s3_url]) == 0
    capsys.readouterr()
    assert main(["store", "verify", s3_url + "-typo"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such store" in err


def test_verify_bounds_chunks_by_what_the_indexes_say(tmp_path: Path) -> None:
    """Chunks bigger than --max-chunk-size pass when blob indexes name them with their sizes;
    a chunk that expands past the size its index records is corrupt."""
    import blake3

    from storelab.stores import ChunkMeta
    from storelab.stores.verify import verify_store

    store = SnixStore.open(f"file://{tmp_path}/store")
    a, b = random.Random(1).randbytes(1_500_000), random.Random(2).randbytes(1_200_000)
    da, db = blake3.blake3(a).digest(), blake3.blake3(b).digest()
    store.put_chunk(da, a)
    store.put_chunk(db, b)
    store.put_index(blake3.blake3(a + b).digest(), [ChunkMeta(da, len(a)), ChunkMeta(db, len(b))])
    assert verify_store(store, max_chunk_size=1 << 20).ok
    c = random.Random(3).randbytes(1_300_000)
    dc = blake3.blake3(c).digest()
    store.put_chunk(dc, c)
    store.put_index(blake3.blake3(b + c).digest(), [ChunkMeta(db, len(b)), ChunkMeta(dc, 1000)])  # lies about c's size
    problems = verify_store(store, max_chunk_size=1 << 20).problems
    assert any(p.key == object_key("chunks", dc) and "expands past 1000" in p.detail for p in problems), problems


def test_verify_refuses_a_directory_bomb_quickly_and_odd_names_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    store = SnixStore.open(f"file://{tmp_path}/store")
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(200_000_000))  # a few KB that would be 200 MB
    store.backend.put(object_key("dirs", bytes(32)), bomb)
    store.backend.put("blobs/b3/zzzz/not-a-digest", b"")
    store.backend.put("dirs/b3/0000/" + "0" * 63 + "g", b"")
    started = time.perf_counter()
    assert main(["store", "verify", f"file://{tmp_path}/store", "--json"]) == 1
    assert time.perf_counter() - started < 20
    report = json.loads(capsys.readouterr().out)
    kinds = {(p["key"].split("/")[0], p["kind"]) for p in report["problems"]}
    assert ("dirs", "corrupt") in kinds and ("blobs", "malformed") in kinds and ("dirs", "malformed") in kinds
    assert any("expands past" in p["detail"] for p in report["problems"])

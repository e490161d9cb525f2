"""`ingest-nar` from a list of paths and URLs (http, s3), fetched ahead with bounded concurrency."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

from storelab.cli import main
from storelab.ingest.fetch import fetch_sources
from storelab.nar import nar_bytes_of_file
from tests.helpers import snapshot_rows


class _Handler(http.server.SimpleHTTPRequestHandler):
    active = 0
    most = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with _Handler.lock:
            _Handler.active += 1
            _Handler.most = max(_Handler.most, _Handler.active)
        try:
            time.sleep(0.05)  # a slow cache: fetches overlap
            super().do_GET()
        finally:
            with _Handler.lock:
                _Handler.active -= 1

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.most = 0
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _nars(folder: Path, count: int) -> list[bytes]:
    nars = [nar_bytes_of_file(f"file number {i}".encode() * 50) for i in range(count)]
    for i, nar in enumerate(nars):
        (folder / f"n{i}.nar").write_bytes(nar)
    return nars


def test_list_of_urls_and_paths_in_order_with_bounded_fetches(http_root, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, base = http_root
    nars = _nars(root, 6)
    local = tmp_path / "local.nar"
    local.write_bytes(nar_bytes_of_file(b"local"))
    listing = tmp_path / "list.txt"
    listing.write_text("# a slice of a cache\n" + "".join(f"{base}/n{i}.nar\n" for i in range(6)) + f"\n{local}\n")
    assert main(["ingest-nar", "--from-list", str(listing), "-o", str(tmp_path / "ds"), "--fetch-concurrency", "2", "--json", "-q"]) == 0
    rows = sorted(snapshot_rows(tmp_path / "ds", "snapshots"), key=lambda r: r["created_at"])
    assert [r["label"] for r in rows] == [*(f"n{i}.nar" for i in range(6)), "local.nar"]
    assert [r["source"] for r in rows][:2] == [f"{base}/n0.nar", f"{base}/n1.nar"]
    assert [r["nar_size"] for r in rows][:6] == [len(n) for n in nars]
    assert 1 < _Handler.most <= 2  # fetched ahead, never more than two at once


def test_a_failed_fetch_names_the_url_and_keeps_what_came_before(http_root, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, base = http_root
    _nars(root, 1)
    code = main(["ingest-nar", f"{base}/n0.nar", f"{base}/missing.nar", "-o", str(tmp_path / "ds"), "-q"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"storelab: error: {base}/missing.nar: HTTP 404 File not found"]
    assert [r["label"] for r in snapshot_rows(tmp_path / "ds", "snapshots")] == ["n0.nar"]
    assert main(["ingest-nar", "-o", str(tmp_path / "ds")]) == 2
    assert main(["ingest-nar", "--from-list", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "ds")]) == 1


def test_s3_urls(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    bucket = s3_server.new_bucket()
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    nar = nar_bytes_of_file(b"from a bucket")
    client.put_object(Bucket=bucket, Key="nar/abc.nar", Body=nar)
    assert main(["ingest-nar", f"s3://{bucket}/nar/abc.nar", "-o", str(tmp_path / "ds"), "-q"]) == 0
    row = snapshot_rows(tmp_path / "ds", "snapshots")[0]
    assert (row["label"], row["source"], row["nar_size"]) == ("abc.nar", f"s3://{bucket}/nar/abc.nar", len(nar))
    assert main(["ingest-nar", f"s3://{bucket}/nar/none.nar", "-o", str(tmp_path / "ds"), "-q"]) == 1


def test_temporary_copies_go_once_consumed(http_root) -> None:
    root, base = http_root
    _nars(root, 3)
    seen = []
    for _source, local in fetch_sources([f"{base}/n{i}.nar" for i in range(3)], concurrency=2):
        assert local.exists()
        seen.append(local)
    assert [p.name for p in seen] == ["n0.nar", "n1.nar", "n2.nar"]
    assert not any(p.exists() for p in seen)

"""Downloads that survive a flaky network (storelab.downloads), against a real HTTP server on
127.0.0.1 that fails as networks do: 503s, bodies cut short, no such file."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from storelab.downloads import RetryPolicy, download, fetch_verified, is_transient
from storelab.errors import InputError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
FAST = RetryPolicy(attempts=4, first_pause=0.01, max_pause=0.02, timeout=10)


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file with ranges; the first ``fail`` requests answer 503, and the
    first ``cut`` answers stop halfway through the body."""

    fail = 0
    cut = 0
    requests: list[str | None] = []

    def do_GET(self) -> None:
        _Flaky.requests.append(self.headers.get("Range"))
        if self.path != "/file":
            self.send_error(404, "File not found")
            return
        if _Flaky.fail:
            _Flaky.fail -= 1
            self.send_error(503, "Service Unavailable")
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if _Flaky.cut:
            _Flaky.cut -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Flaky.fail, _Flaky.cut, _Flaky.requests = 0, 0, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_errors_are_retried_with_growing_pauses(flaky: str, tmp_path: Path) -> None:
    _Flaky.fail = 2
    pauses: list[float] = []
    download(f"{flaky}/file", tmp_path / "f", policy=FAST, sleep=pauses.append)
    assert (tmp_path / "f").read_bytes() == PAYLOAD
    assert len(_Flaky.requests) == 3 and pauses == [0.01, 0.02]


def test_a_body_cut_short_is_resumed_from_where_it_stopped(flaky: str, tmp_path: Path) -> None:
    _Flaky.cut = 1
    download(f"{flaky}/file", tmp_path / "f", policy=FAST, sleep=lambda _: None)
    assert (tmp_path / "f").read_bytes() == PAYLOAD
    assert _Flaky.requests[0] is None and _Flaky.requests[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert not (tmp_path / "f.part").exists()


def test_a_rerun_resumes_what_an_earlier_run_left(flaky: str, tmp_path: Path) -> None:
    (tmp_path / "f.part").write_bytes(PAYLOAD[:1000])
    download(f"{flaky}/file", tmp_path / "f", policy=FAST)
    assert (tmp_path / "f").read_bytes() == PAYLOAD and _Flaky.requests == ["bytes=1000-"]


def test_a_missing_file_is_final_at_once(flaky: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"/nothing: HTTP 404 File not found$"):
        download(f"{flaky}/nothing", tmp_path / "f", policy=FAST, sleep=lambda _: None)
    assert len(_Flaky.requests) == 1 and not (tmp_path / "f").exists()


def test_giving_up_says_how_often_it_tried(flaky: str, tmp_path: Path) -> None:
    _Flaky.fail = 10
    with pytest.raises(InputError, match=r"HTTP 503 Service Unavailable \(after 4 tries\)"):
        download(f"{flaky}/file", tmp_path / "f", policy=FAST, sleep=lambda _: None)


def test_a_verified_file_is_kept_and_needs_no_network_again(flaky: str, tmp_path: Path) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    cache = tmp_path / "cache"
    fetch_verified([f"{flaky}/file"], tmp_path / "a", len(PAYLOAD), sha, policy=FAST, cache=cache)
    assert (cache / sha).read_bytes() == PAYLOAD
    fetch_verified(["http://127.0.0.1:9/nowhere"], tmp_path / "b", len(PAYLOAD), sha, policy=FAST, cache=cache)
    assert (tmp_path / "b").read_bytes() == PAYLOAD and len(_Flaky.requests) == 1


def test_the_next_mirror_serves_when_one_gives_up(flaky: str, tmp_path: Path) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    got = fetch_verified([f"{flaky}/missing", f"{flaky}/file"], tmp_path / "a", len(PAYLOAD), sha, policy=FAST, cache=tmp_path / "c")
    assert got.read_bytes() == PAYLOAD


def test_a_file_that_is_not_the_pinned_one_is_refused_and_removed(flaky: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not the pinned file"):
        fetch_verified([f"{flaky}/file"], tmp_path / "a", len(PAYLOAD), "0" * 64, policy=FAST, cache=tmp_path / "c")
    assert not (tmp_path / "a").exists() and not list((tmp_path / "c").glob("*"))


@pytest.mark.parametrize(
    ("err", "transient"),
    [
        (urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")), True),
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), True),
        (urllib.error.URLError(TimeoutError("timed out")), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), False),
        (urllib.error.HTTPError("http://h/x", 502, "Bad Gateway", None, None), True),  # type: ignore[arg-type]
        (urllib.error.HTTPError("http://h/x", 403, "Forbidden", None, None), False),  # type: ignore[arg-type]
    ],
)
def test_which_errors_are_worth_another_try(err: BaseException, transient: bool) -> None:
    assert is_transient(err) is transient

"""Real servers on 127.0.0.1 for tests and benchmarks, started on a free port and stopped after:
moto's S3-compatible ``moto_server``, and PostgreSQL (Debian's) as a DuckLake catalog for many
machines. Never mocks: the same protocols a deployment speaks.

>>> ServerUnavailable.__mro__[1].__name__
'StorelabError'
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storelab.errors import StorelabError

__all__ = ["ServerUnavailable", "S3Server", "PostgresServer", "free_port", "moto_server", "postgres_server"]

_buckets = itertools.count()
_databases = itertools.count()


class ServerUnavailable(StorelabError):
    """The server's program is not installed here (a test skips, saying this)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """``moto_server`` on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None) -> S3Server:
        exe = Path(sys.executable).with_name("moto_server")
        if not exe.exists() and shutil.which("moto_server") is None:
            raise ServerUnavailable("moto_server is not installed (pip install 'moto[server]')")
        port = port or free_port()
        process = subprocess.Popen(
            [str(exe if exe.exists() else "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        server = cls(process, port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(server.endpoint, timeout=1)
                return server
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("moto_server exited at start") from None
                time.sleep(0.1)
        server.stop()
        raise RuntimeError("moto_server did not answer within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def environment(self) -> dict[str, str]:
        """The environment that points storelab (obstore and DuckDB alike) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "storelab-test",
            "AWS_SECRET_ACCESS_KEY": "storelab-test",
            "AWS_REGION": "us-east-1",
        }

    def create_bucket(self, name: str) -> str:
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="storelab-test", aws_secret_access_key="storelab-test", region_name="us-east-1"
        )
        client.create_bucket(Bucket=name)
        return name

    def new_bucket(self) -> str:
        return self.create_bucket(f"storelab-test-{next(_buckets)}")

    def ducklake_secret(self) -> dict[str, str]:
        """DuckDB S3 secret parameters for this server."""
        return {"KEY_ID": "storelab-test", "SECRET": "storelab-test", "REGION": "us-east-1", "ENDPOINT": f"127.0.0.1:{self.port}",
                "URL_STYLE": "path", "USE_SSL": "false"}  # fmt: skip

    def delta_options(self) -> dict[str, str]:
        """delta-rs storage options for this server (conditional puts: safe concurrent commits)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "storelab-test", "AWS_SECRET_ACCESS_KEY": "storelab-test",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"}  # fmt: skip


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise ServerUnavailable("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return found


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable("running as root and there is no postgres user to run PostgreSQL as") from None
    if setpriv is None:
        raise ServerUnavailable("running as root and setpriv (util-linux) is missing to run PostgreSQL as its own user")
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster in ``folder``, listening on 127.0.0.1 only, trusting local
    connections (no password: it lives as long as a test run)."""

    folder: Path
    port: int

    @classmethod
    def start(cls, folder: Path) -> PostgresServer:
        initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
        prefix = _as_server_user()
        if prefix:  # the server's user must reach its folder: a fresh one in the system's temp folder
            import tempfile

            folder = Path(tempfile.mkdtemp(prefix="storelab-postgres-"))
            shutil.chown(folder, "postgres", "postgres")
            os.chmod(folder, 0o700)
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "data"
        run = dict(capture_output=True, text=True, timeout=120)
        done = subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"], **run)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-300:]}")
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
        done = subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]
        if done.returncode != 0:
            log = (folder / "log").read_text() if (folder / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()[-200:]} {log[-300:]}")
        return cls(folder, port)

    def stop(self) -> None:
        subprocess.run([*_as_server_user(), _postgres_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (its name)."""
        name = name or f"storelab_test_{next(_databases)}_{os.getpid()}"
        done = subprocess.run([_postgres_bin("psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", f'CREATE DATABASE "{name}"'],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed: {done.stderr.strip()}")
        return name

    def ducklake_catalog(self, database: str) -> str:
        """The DuckLake catalog string for ``database`` on this server."""
        return "postgres:" + self.conninfo(database)


@contextlib.contextmanager
def moto_server() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_server(folder: Path) -> Iterator[PostgresServer]:
    server = PostgresServer.start(folder)
    try:
        yield server
    finally:
        server.stop()

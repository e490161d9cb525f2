from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.fixtures import VECTORS

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not VECTORS.is_dir():
        raise pytest.UsageError(
            f"test vectors not found at {VECTORS}; they are vendored in tests/vectors "
            "(or set STORELAB_VECTORS)"
        )


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1, started for the session (skipped if moto is absent)."""
    from storelab.testing.servers import S3Server, ServerUnavailable

    try:
        server = S3Server.start()
    except ServerUnavailable as err:
        pytest.skip(str(err))
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the session's S3 server, with the environment pointing at it."""
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.new_bucket()}/store"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL server (Debian's) on 127.0.0.1 for the session: DuckLake's catalog for many
    machines (skipped, saying why, where PostgreSQL is not installed)."""
    from storelab.testing.servers import PostgresServer, ServerUnavailable

    try:
        server = PostgresServer.start(tmp_path_factory.mktemp("postgres"))
    except ServerUnavailable as err:
        pytest.skip(str(err))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def catalog_database(postgres) -> str:
    """One PostgreSQL database for the session's s3 datasets (each keeps its catalog in a
    schema of its own, named by its dataset id)."""
    return postgres.ducklake_catalog(postgres.create_database("storelab_tests"))


@pytest.fixture
def s3_catalog(s3_url: str, catalog_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new dataset location in s3 (moto) whose catalog goes to the session's PostgreSQL."""
    monkeypatch.setenv("STORELAB_CATALOG", catalog_database)
    return s3_url.rsplit("/", 1)[0] + "/study"

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
            f"test vectors not found at {VECTORS}; they live in ../shared/vectors beside the checkout "
            "(or set STORELAB_VECTORS)"
        )

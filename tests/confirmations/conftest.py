"""Fixtures of the confirmation relay's tests: the service on the session's Hardhat node with the
relayer's key, on each database (`database_url`), and an API client over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.services import Services
from tests.confirmations.support import TestClient, api_client, relay_services
from tests.support import EscrowEnv


@pytest.fixture
def services(hardhat_env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Services]:
    """The service on the Hardhat node with a relayer account; its engine is disposed after."""
    built = relay_services(hardhat_env, database_url, tmp_path / "data")
    try:
        yield built
    finally:
        built.engine.dispose()


@pytest.fixture
def client(services: Services) -> TestClient:
    """The API of `services`, in process."""
    return api_client(services)

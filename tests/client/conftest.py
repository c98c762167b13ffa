"""What the client-library tests share: the real service (app and workers) on a free loopback
port against the session's Hardhat node (`tests.web.support.live_service_on`, the page tests'
own scaffolding), and a `ServiceClient` on it.

- ``live_service``: ``LiveService(url, services, env, workers, http)`` on a fresh SQLite file
  under the test's tmp_path; the chain is reverted after the test (``hardhat_env``).
- ``service``: a ``ServiceClient`` on ``live_service.url``, closed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.client import ServiceClient
from tests.support import EscrowEnv
from tests.web.support import LiveService, quick_live_service


@pytest.fixture
def live_service(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveService]:
    """The app and its workers on a free port, on the Hardhat chain and a fresh SQLite file."""
    with quick_live_service(hardhat_env, tmp_path, monkeypatch, "client") as live:
        yield live


@pytest.fixture
def service(live_service: LiveService) -> Iterator[ServiceClient]:
    with ServiceClient(live_service.url, timeout=10) as client:
        yield client

"""A webhook failure is logged with the receiver named by scheme://host[:port]/path only: the
URL's credentials, query string and fragment (where receivers keep their tokens) never reach a
log line, in the text or in the JSON fields. In-process chain, SQLite."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.config import Settings
from backend.db.session import transaction
from backend.logs import JsonFormatter, TextFormatter
from backend.notify.dispatch import dispatch_due
from backend.notify.events import Notification, enqueue
from backend.notify.webhooks import create_subscription
from backend.services import Services, build_services
from tests.support import EscrowEnv

BASE = 30


@pytest.fixture
def services(env: EscrowEnv, tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'escrow.db'}",
        webhook_max_attempts=2, webhook_backoff_base=BASE, webhook_timeout=2.0,
    )
    built = build_services(settings, w3=env.w3, contract_address=env.escrow.address,
                           deployment_block=env.deployment_block)
    try:
        yield built
    finally:
        built.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_webhook_failure_is_logged_without_the_urls_credentials_or_query(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()  # nobody listens there
    url = f"http://hook-user:hunter2@127.0.0.1:{port}/hooks/in?token=SECRET-TOKEN#frag"
    with transaction(services.sessions) as session:
        sub = create_subscription(session, address="0x" + "AB" * 20,  # type: ignore[arg-type]
                                  url=url, events=["milestone_settled"], secret="s" * 32,
                                  now=int(time.time()), limit=20)
        enqueue(session, [Notification("milestone_settled", "milestone_settled:1:1:0",
                                       ((sub.address, "client"),), {"milestone": 0})])
    caplog.set_level(logging.INFO, logger="backend.notify.dispatch")
    now = int(time.time()) + 1

    with httpx.Client() as http:
        assert dispatch_due(services, now=now, http_client=http) == 1
        assert dispatch_due(services, now=now + BASE, http_client=http) == 1

    records = [r for r in caplog.records if r.name == "backend.notify.dispatch"]
    assert [(r.levelname, getattr(r, "event", None), getattr(r, "final", None))
            for r in records] == [
        ("WARNING", "webhook_failed", False), ("ERROR", "webhook_failed", True),
    ]
    shown = f"http://127.0.0.1:{port}/hooks/in"
    lines = [f(r) for r in records for f in (TextFormatter().format, JsonFormatter().format)]
    for line in lines:
        assert shown in line
        for secret in ("hunter2", "hook-user", "SECRET-TOKEN", "token=", "frag"):
            assert secret not in line, line
    assert {getattr(r, "url", None) for r in records} == {shown}
    assert all(getattr(r, "error", "").startswith("ConnectError") for r in records)

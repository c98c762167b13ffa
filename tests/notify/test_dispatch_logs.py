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
from sqlalchemy import select

from backend.config import Settings
from backend.db.models import WebhookDelivery
from backend.db.session import transaction
from backend.logs import JsonFormatter, TextFormatter
from backend.notify.dispatch import dispatch_due
from backend.notify.egress import EgressPolicy
from backend.notify.events import Notification, enqueue
from backend.notify.webhooks import create_subscription
from backend.services import Services, build_services
from tests.notify.conftest import FakeDns
from tests.support import EscrowEnv

BASE = 30


@pytest.fixture
def services(env: EscrowEnv, tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'escrow.db'}",
        webhook_max_attempts=2, webhook_backoff_base=BASE, webhook_timeout=2.0,
        webhook_allow_hosts="127.0.0.1",
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
        sub = create_subscription(session, address="0x" + "AB" * 20,
                                  url=url, events=["milestone_settled"], secret="s" * 32,
                                  now=int(time.time()), limit=20,
                                  policy=EgressPolicy.from_settings(services.settings))
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


@pytest.mark.parametrize(
    "says",
    [
        "cannot connect to {url}",  # the URL the client was given, in full
        "reset by peer during POST /path?token=abc as user:secret@host",  # pieces, no scheme
        "bad answer for https://user:secret@host/path?token=abc and /path?token%3Dabc",
    ],
    ids=["whole-url", "pieces", "original-and-encoded"],
)
def test_a_failed_delivery_logs_and_notes_neither_the_password_nor_the_token(
    services: Services, fake_dns: FakeDns, caplog: pytest.LogCaptureFixture, says: str
) -> None:
    """Whatever the HTTP library's exception says about the request, the log lines (text and
    JSON) and the note stored with the delivery hold neither the URL's password nor its
    token: https://user:secret@host/path?token=abc."""
    fake_dns.names["host"] = ["93.184.216.34"]
    with transaction(services.sessions) as session:
        sub = create_subscription(session, address="0x" + "AB" * 20,
                                  url="https://user:secret@host/path?token=abc",
                                  events=["milestone_settled"], secret="s" * 32,
                                  now=int(time.time()), limit=20,
                                  policy=EgressPolicy.from_settings(services.settings))
        enqueue(session, [Notification("milestone_settled", "milestone_settled:1:1:0",
                                       ((sub.address, "client"),), {"milestone": 0})])

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(says.format(url=request.url), request=request)

    caplog.set_level(logging.INFO, logger="backend.notify.dispatch")
    now = int(time.time()) + 1
    with httpx.Client(transport=httpx.MockTransport(fail)) as http:
        assert dispatch_due(services, now=now, http_client=http) == 1
        assert dispatch_due(services, now=now + BASE, http_client=http) == 1

    records = [r for r in caplog.records if r.name == "backend.notify.dispatch"]
    assert len(records) == 2
    with services.sessions() as session:
        note = session.scalars(select(WebhookDelivery.last_error)).one()
    assert note is not None and note.startswith("ReadError: ")
    said = [note] + [f(r) for r in records for f in (TextFormatter().format,
                                                      JsonFormatter().format)]
    for text in said:
        for secret in ("secret", "abc"):  # the password, the token
            assert secret not in text, text
    assert all("https://host/path" in text for text in said[1:])  # how a line names it

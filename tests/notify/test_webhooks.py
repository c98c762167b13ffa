"""Webhooks end to end: subscriptions proven with Sign-In with Ethereum through the API, events
indexed from the in-process chain, deliveries POSTed to a real local HTTP receiver with their
HMAC signature, stable delivery ids and exponential backoff. Every test runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from backend.api.app import create_app
from backend.chain.deploy import deploy_contract
from backend.config import Settings
from backend.db.models import EventLog, SiweNonce, WebhookDelivery, WebhookSubscription
from backend.db.session import transaction
from backend.index.indexer import Indexer
from backend.notify.dispatch import dispatch_due, run_dispatcher
from backend.notify.egress import EgressPolicy
from backend.notify.events import (
    STALE_GRACE,
    Notification,
    enqueue,
    scan_review_deadlines,
    webhook_listener,
)
from backend.notify.siwe import build_message
from backend.notify.webhooks import EVENT_TYPES, create_subscription, verify_body
from backend.services import Services, build_services
from tests.fake_dns import FakeDns
from tests.support import CHALLENGE, ETH, REVIEW, EscrowEnv, serving

DOMAIN = "testserver"  # the Host of FastAPI's TestClient
BASE, CAP = 30, 120


# ------------------------------------------------------------------ a real HTTP receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event(self) -> str:
        return self.headers["x-escrow-event"]


@dataclass
class Receiver:
    """Records every POST; answers `fail_status` to the next `failures` of them, sleeping
    `delay` seconds before answering."""

    url: str
    requests: list[Received] = field(default_factory=list)
    failures: int = 0
    fail_status: int = 500
    delay: float = 0.0
    #: the Location header of the failing answers (a redirect)
    location: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int, status: int = 500) -> None:
        self.failures, self.fail_status = n, status


@contextmanager
def _receiving() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(state.delay)
            with state.lock:
                state.requests.append(Received({k.lower(): v for k, v in self.headers.items()},
                                               body))
                failing = state.failures > 0
                state.failures -= 1 if failing else 0
            self.send_response(state.fail_status if failing else 204)
            if failing and state.location is not None:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST  # a redirect followed as a GET is recorded too

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/escrow?token=abc"
    with serving(server):
        yield state


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with _receiving() as state:
        yield state


# ------------------------------------------------------------------ services and API


def _services(env: EscrowEnv, database_url: str, tmp_path: Path, **settings: Any) -> Services:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "webhook_backoff_base": BASE,
        "webhook_backoff_max": CAP,
        "webhook_max_attempts": 4,
        "webhook_timeout": 2.0,
        "webhook_review_lead_time": 3_600,
        # the receivers of these tests listen on loopback: allowed as a developer would
        "webhook_allow_hosts": "127.0.0.1",
    }
    values.update(settings)
    return build_services(
        Settings(**values),
        w3=env.w3,
        contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )


@pytest.fixture
def services(env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Services]:
    s = _services(env, database_url, tmp_path)
    try:
        yield s
    finally:
        s.engine.dispose()


@pytest.fixture
def api(services: Services) -> TestClient:
    return TestClient(create_app(services))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def _subscribe(services: Services, address: str, url: str, events: list[str] | None = None,
               secret: str | None = None) -> WebhookSubscription:
    with transaction(services.sessions) as session:
        return create_subscription(
            session, address=address,
            url=url, events=events or list(EVENT_TYPES), secret=secret,
            now=int(time.time()), limit=20, policy=EgressPolicy.from_settings(services.settings),
        )


def _sync(services: Services) -> int:
    return Indexer(services, listeners=[webhook_listener]).sync()


def _deliveries(services: Services) -> list[WebhookDelivery]:
    with services.sessions() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_key)))


def _soon() -> int:
    return int(time.time()) + 1


# ------------------------------------------------------------------ events from the chain


def test_indexed_events_reach_each_party_signed_with_its_secret(
    env: EscrowEnv, services: Services, receiver: Receiver, http: httpx.Client
) -> None:
    client_secret, provider_secret = "c" * 32, "p" * 32
    _subscribe(services, env.client, receiver.url, secret=client_secret)
    _subscribe(services, env.provider, receiver.url, secret=provider_secret)
    e = env.escrow
    escrow_id = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(escrow_id, 0)
    breach_id, reported = e.report_breach(escrow_id, 1, 7, b"\x44" * 32, env.oracle)
    reserve = reported.event("BreachReported").args["reserved"]
    settled = e.confirm(escrow_id, 0, 4, None, env.client).event("MilestoneSettled").args
    env.advance(CHALLENGE + 1)
    e.finalize_breach(escrow_id, breach_id, env.parties.relayer.address)

    # created, accepted, delivered, reported, milestone settled, breach settled
    assert _sync(services) == 6
    assert dispatch_due(services, now=_soon(), http_client=http) == 7

    got = sorted(
        (r.event, r.payload["recipient"], r.payload["event_key"]) for r in receiver.requests
    )
    key = f"{services.chain_id}:{escrow_id}"
    assert got == sorted([
        ("delivery_submitted", env.client, f"delivery_submitted:{key}:0"),
        ("breach_reported", env.provider, f"breach_reported:{key}:0"),
        ("milestone_settled", env.client, f"milestone_settled:{key}:0"),
        ("milestone_settled", env.provider, f"milestone_settled:{key}:0"),
        ("credit_available", env.provider,
         f"credit_available:{key}:milestone_settled:0:{env.provider}"),
        ("credit_available", env.client,
         f"credit_available:{key}:milestone_settled:0:{env.client}"),
        ("credit_available", env.client,
         f"credit_available:{key}:breach_settled:0:{env.client}"),
    ])
    by_key = {(r.payload["event_key"], r.payload["recipient"]): r for r in receiver.requests}
    for r in receiver.requests:
        secret = client_secret if r.payload["recipient"] == env.client else provider_secret
        assert verify_body(secret, r.body, r.headers["x-escrow-signature"])
        assert not verify_body("x" * 32, r.body, r.headers["x-escrow-signature"])
        assert r.headers["x-escrow-delivery"] == r.payload["delivery_id"]
        assert r.headers["x-escrow-attempt"] == "1"
        assert r.headers["content-type"] == "application/json"

    delivered = by_key[(f"delivery_submitted:{key}:0", env.client)].payload
    assert delivered["milestone"] == 0 and delivered["amount"] == str(ETH)
    assert delivered["review_deadline"] == delivered["block_time"] + REVIEW
    assert delivered["delivery_hash"] == "0x" + "22" * 32
    breach = by_key[(f"breach_reported:{key}:0", env.provider)].payload
    assert (breach["breach_id"], breach["kind"], breach["period"]) == (0, 1, 7)
    assert breach["reserved"] == str(reserve) and breach["can_challenge"] is True
    assert breach["challenge_deadline"] == breach["block_time"] + CHALLENGE
    settlement = by_key[(f"milestone_settled:{key}:0", env.client)].payload
    assert (settlement["how"], settlement["rating"]) == ("confirmed", 4)
    assert settlement["to_provider"] == str(settled["toProvider"])
    assert settlement["to_client"] == str(settled["toClient"])
    provider_credit = by_key[
        (f"credit_available:{key}:milestone_settled:0:{env.provider}", env.provider)
    ].payload
    assert provider_credit["amount"] == str(settled["toProvider"])
    assert provider_credit["token"] == "0x" + "00" * 20
    refund = by_key[(f"credit_available:{key}:breach_settled:0:{env.client}", env.client)].payload
    assert (refund["amount"], refund["source"]) == (
        str(reserve), {"event": "breach_settled", "breach_id": 0}
    )
    assert all(d.status == "delivered" and d.attempts == 1 for d in _deliveries(services))


def test_events_seen_again_after_a_restart_are_not_notified_twice(
    env: EscrowEnv, services: Services
) -> None:
    _subscribe(services, env.client, "https://hooks.example/a")
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)
    assert _sync(services) == 4
    first = [(d.event_key, d.id) for d in _deliveries(services)]
    key = f"{services.chain_id}:{escrow_id}"
    assert [k for k, _ in first] == [
        f"delivery_submitted:{key}:0", f"milestone_settled:{key}:0"
    ]  # rating 5: nothing credited to the client
    # a restarted indexer finds nothing new; the listener seeing every event again adds nothing
    assert _sync(services) == 0
    with transaction(services.sessions) as session:
        rows = list(session.scalars(select(EventLog)))
        webhook_listener(session, rows)
    assert [(d.event_key, d.id) for d in _deliveries(services)] == first


def test_events_without_a_matching_subscription_queue_nothing(
    env: EscrowEnv, services: Services
) -> None:
    _subscribe(services, env.provider, "https://hooks.example/p", ["breach_reported"])
    _subscribe(services, env.parties.stranger.address, "https://hooks.example/s")
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)  # for the client, who has no subscription
    env.escrow.confirm(escrow_id, 0, 3, None, env.client)  # provider not subscribed to these
    assert _sync(services) == 4
    assert _deliveries(services) == []



def test_a_cancelled_escrow_credits_its_client(env: EscrowEnv, services: Services) -> None:
    _subscribe(services, env.client, "https://hooks.example/c", ["credit_available"])
    escrow_id = env.create(env.params((ETH, 2 * ETH)))
    env.escrow.cancel(escrow_id, env.client)
    assert _sync(services) == 2
    (d,) = _deliveries(services)
    key = f"{services.chain_id}:{escrow_id}"
    assert d.event_key == f"credit_available:{key}:escrow_cancelled:{env.client}"
    assert (d.payload["amount"], d.payload["source"]) == (
        str(3 * ETH), {"event": "escrow_cancelled"}
    )



def test_events_from_before_a_subscription_are_not_sent_to_it(
    env: EscrowEnv, services: Services
) -> None:
    sub = _subscribe(services, env.client, "https://hooks.example/c")
    with transaction(services.sessions) as session:  # as if subscribed long after these events
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == sub.id)
            # the next blocks land at the later of chain time and wall-clock time
            .values(created_at=max(env.now(), int(time.time())) + STALE_GRACE + 100)
        )
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)
    assert _sync(services) == 3
    assert _deliveries(services) == []


# ------------------------------------------------------------------ retries


def _queue_one(services: Services, url: str, secret: str = "s" * 32) -> str:
    sub = _subscribe(services, "0x" + "AB" * 20, url, ["milestone_settled"], secret)
    note = Notification("milestone_settled", "milestone_settled:1:1:0",
                        ((sub.address, "client"),), {"escrow_id": 1, "milestone": 0})
    with transaction(services.sessions) as session:
        assert enqueue(session, [note]) == 1
        assert enqueue(session, [note]) == 0  # the same event again is not queued twice
    (delivery,) = _deliveries(services)
    return delivery.id


def test_failed_deliveries_retry_with_exponential_backoff_and_the_same_delivery_id(
    services: Services, receiver: Receiver, http: httpx.Client
) -> None:
    delivery_id = _queue_one(services, receiver.url)
    receiver.fail_next(3, status=503)
    t = _soon()
    schedule = [  # (now, sent, status after, attempts after)
        (t, 1, "pending", 1),  # fails: next try at t + 30
        (t + BASE - 1, 0, "pending", 1),
        (t + BASE, 1, "pending", 2),  # fails: next at +60
        (t + BASE + 2 * BASE - 1, 0, "pending", 2),
        (t + 3 * BASE, 1, "pending", 3),  # fails: next at +120 (the cap)
        (t + 3 * BASE + CAP - 1, 0, "pending", 3),
        (t + 3 * BASE + CAP, 1, "delivered", 4),
        (t + 10 * CAP, 0, "delivered", 4),
    ]
    for now, sent, status, attempts in schedule:
        assert dispatch_due(services, now=now, http_client=http) == sent, now - t
        (d,) = _deliveries(services)
        assert (d.status, d.attempts) == (status, attempts), now - t
    assert d.delivered_at == t + 3 * BASE + CAP and d.last_error is None
    assert [r.headers["x-escrow-delivery"] for r in receiver.requests] == [delivery_id] * 4
    assert [r.headers["x-escrow-attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]
    assert len({r.body for r in receiver.requests}) == 1  # byte for byte the same body
    assert all(verify_body("s" * 32, r.body, r.headers["x-escrow-signature"])
               for r in receiver.requests)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deliveries_give_up_after_the_last_attempt_and_log_every_failure(
    services: Services, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    delivery_id = _queue_one(services, f"http://127.0.0.1:{_free_port()}/nobody")
    t = _soon()
    caplog.set_level(logging.INFO, logger="backend.notify.dispatch")
    for now in (t, t + BASE, t + 3 * BASE, t + 3 * BASE + CAP):
        assert dispatch_due(services, now=now, http_client=http) == 1
    assert dispatch_due(services, now=t + 100 * CAP, http_client=http) == 0
    (d,) = _deliveries(services)
    assert (d.status, d.attempts, d.delivered_at) == ("failed", 4, None)
    assert d.last_error is not None and d.last_error.startswith("ConnectError")
    levels = [(r.levelname, delivery_id in r.getMessage()) for r in caplog.records]
    assert levels == [("WARNING", True)] * 3 + [("ERROR", True)]



def test_a_dead_receiver_is_tried_once_per_round_and_does_not_hold_up_the_others(
    services: Services, receiver: Receiver, http: httpx.Client
) -> None:
    dead = _subscribe(services, "0x" + "CD" * 20, f"http://127.0.0.1:{_free_port()}/x",
                      ["milestone_settled"])
    alive = _subscribe(services, "0x" + "EF" * 20, receiver.url, ["milestone_settled"])
    notes = [
        Notification("milestone_settled", f"milestone_settled:1:1:{m}",
                     ((dead.address, "client"), (alive.address, "provider")), {"milestone": m})
        for m in range(3)
    ]
    with transaction(services.sessions) as session:
        assert enqueue(session, notes, queued_at=100) == 6
    assert dispatch_due(services, now=100, http_client=http) == 4  # 1 dead + 3 alive
    assert len(receiver.requests) == 3
    by_url: dict[int, list[tuple[str, int]]] = {}
    for d in _deliveries(services):
        by_url.setdefault(d.subscription_id, []).append((d.status, d.attempts))
    assert sorted(by_url[alive.id]) == [("delivered", 1)] * 3
    assert sorted(by_url[dead.id]) == [("pending", 0), ("pending", 0), ("pending", 1)]


def test_a_receiver_slower_than_the_timeout_counts_as_a_failure(
    env: EscrowEnv, database_url: str, tmp_path: Path, receiver: Receiver, http: httpx.Client
) -> None:
    services = _services(env, database_url, tmp_path, webhook_timeout=0.2)
    try:
        _queue_one(services, receiver.url)
        receiver.delay = 0.6
        t = _soon()
        assert dispatch_due(services, now=t, http_client=http) == 1
        (d,) = _deliveries(services)
        assert (d.status, d.attempts, d.next_attempt_at) == ("pending", 1, t + BASE)
        assert d.last_error is not None and d.last_error.startswith("ReadTimeout")
    finally:
        services.engine.dispose()


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_a_failed_delivery_and_never_followed(
    services: Services, receiver: Receiver, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Both receivers on loopback, allowed by `ESCROW_WEBHOOK_ALLOW_HOSTS=127.0.0.1`: the first
    answers a redirect to the second, which must get nothing, even through a client that
    follows redirects by default."""
    with _receiving() as elsewhere:
        _queue_one(services, receiver.url)
        receiver.location = elsewhere.url
        receiver.fail_next(1, status=status)
        caplog.set_level(logging.INFO, logger="backend.notify.dispatch")
        with httpx.Client(follow_redirects=True) as following:
            assert dispatch_due(services, now=_soon(), http_client=following) == 1
        assert len(receiver.requests) == 1
        assert elsewhere.requests == []
    (d,) = _deliveries(services)
    assert (d.status, d.attempts) == ("pending", 1)
    assert d.last_error == f"HTTP {status} (redirects are not followed)"
    (record,) = caplog.records
    assert record.levelname == "WARNING" and f"HTTP {status}" in record.getMessage()


def test_client_errors_are_failures_too(
    services: Services, receiver: Receiver, http: httpx.Client
) -> None:
    _queue_one(services, receiver.url)
    receiver.fail_next(1, status=404)
    assert dispatch_due(services, now=_soon(), http_client=http) == 1
    (d,) = _deliveries(services)
    assert (d.status, d.last_error) == ("pending", "HTTP 404")


def test_a_cancelled_subscription_sends_nothing_more(
    services: Services, receiver: Receiver, http: httpx.Client
) -> None:
    _queue_one(services, receiver.url)
    with transaction(services.sessions) as session:
        sub = session.scalars(select(WebhookSubscription)).one()
        sub.active = False
    assert dispatch_due(services, now=_soon(), http_client=http) == 0
    assert receiver.requests == []
    assert [d.status for d in _deliveries(services)] == ["cancelled"]



def test_the_dispatcher_worker_sends_until_stopped(
    env: EscrowEnv, services: Services, receiver: Receiver
) -> None:
    delivery_id = _queue_one(services, receiver.url)
    stop = threading.Event()
    worker = threading.Thread(
        target=run_dispatcher, args=(services, stop), kwargs={"interval": 0.05}, daemon=True
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
    assert [r.headers["x-escrow-delivery"] for r in receiver.requests] == [delivery_id]
    assert [d.status for d in _deliveries(services)] == ["delivered"]


# ------------------------------------------------------------------ review deadlines


def test_review_deadline_near_fires_once_inside_the_lead_time(
    env: EscrowEnv, services: Services, receiver: Receiver, http: httpx.Client
) -> None:
    lead = services.settings.webhook_review_lead_time
    _subscribe(services, env.client, receiver.url, ["review_deadline_near"])
    escrow_id = env.create_active(env.params((ETH, ETH, ETH)))
    env.deliver(escrow_id, 0)
    env.deliver(escrow_id, 1)
    env.deliver(escrow_id, 2)
    env.escrow.confirm(escrow_id, 1, 5, None, env.client)  # settled: no reminder
    env.escrow.open_dispute(escrow_id, 2, b"\x55" * 32, env.client)  # disputed: no reminder
    _sync(services)
    delivered_at = env.escrow.get_milestone(escrow_id, 0).since
    deadline = delivered_at + REVIEW

    def scan(now: int) -> int:
        with transaction(services.sessions) as session:
            return scan_review_deadlines(session, services.chain_id, now=now, lead_time=lead)

    assert scan(deadline - lead - 1) == 0
    assert scan(deadline - lead) == 1
    assert scan(deadline - 10) == 0  # already queued
    assert scan(deadline) == 0
    assert dispatch_due(services, now=_soon(), http_client=http) == 1
    (r,) = receiver.requests
    assert r.event == "review_deadline_near"
    assert {k: r.payload[k] for k in ("escrow_id", "milestone", "review_deadline",
                                      "seconds_left", "recipient", "role")} == {
        "escrow_id": escrow_id, "milestone": 0, "review_deadline": deadline,
        "seconds_left": lead, "recipient": env.client, "role": "client",
    }


def test_review_deadline_near_stays_silent_once_the_window_closed(
    env: EscrowEnv, services: Services
) -> None:
    _subscribe(services, env.client, "https://hooks.example/c", ["review_deadline_near"])
    escrow_id = env.create_active()
    env.deliver(escrow_id, 0)
    _sync(services)
    deadline = env.escrow.get_milestone(escrow_id, 0).since + REVIEW
    with transaction(services.sessions) as session:
        assert scan_review_deadlines(
            session, services.chain_id, now=deadline + 1, lead_time=3_600
        ) == 0
    assert _deliveries(services) == []


# ------------------------------------------------------------------ API and sign-in


def _sign_in(
    api: TestClient, account: LocalAccount, chain_id: int, *, nonce: str | None = None,
    **overrides: Any,
) -> dict[str, str]:
    now = int(time.time())
    values: dict[str, Any] = {
        "domain": DOMAIN,
        "address": account.address,
        "uri": f"http://{DOMAIN}",
        "chain_id": chain_id,
        "nonce": nonce or api.get("/api/auth/nonce").json()["nonce"],
        "issued_at": now,
        "expires_at": now + 300,
        "statement": "Manage my Quality Escrow webhooks.",
    }
    signer = overrides.pop("signer", account)
    if "message_chain_id" in overrides:
        values["chain_id"] = overrides.pop("message_chain_id")
    values.update(overrides)
    text = build_message(**values).to_text()
    signature = bytes(signer.sign_message(encode_defunct(text=text)).signature)
    return {"message": text, "signature": "0x" + signature.hex()}


def _post(api: TestClient, proof: dict[str, str], **body: Any) -> httpx.Response:
    payload = {"url": "https://hooks.example/escrow", "events": ["milestone_settled"],
               **proof, **body}
    answer: httpx.Response = api.post("/api/webhooks", json=payload)
    return answer


def test_the_nonce_endpoint_issues_fresh_single_use_nonces(
    api: TestClient, services: Services
) -> None:
    a, b = api.get("/api/auth/nonce"), api.get("/api/auth/nonce")
    assert a.status_code == 200 and a.headers["cache-control"] == "no-store"
    body = a.json()
    assert set(body) == {"nonce", "expires_at", "domain", "uri", "chain_id"}
    assert (body["domain"], body["uri"], body["chain_id"]) == (
        DOMAIN, f"http://{DOMAIN}", services.chain_id
    )
    assert len(body["nonce"]) == 32 and body["nonce"].isalnum()
    assert body["nonce"] != b.json()["nonce"]
    assert body["expires_at"] - int(time.time()) in range(598, 601)
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SiweNonce)) == 2


def test_a_signed_in_party_subscribes_lists_and_unsubscribes(
    env: EscrowEnv, api: TestClient, services: Services
) -> None:
    proof = _sign_in(api, env.parties.provider, services.chain_id)
    created = _post(api, proof, url="https://hooks.example/escrow?token=t0p",
                    events=["credit_available", "breach_reported", "breach_reported"])
    assert created.status_code == 201, created.text
    sub = created.json()
    assert (sub["address"], sub["url"], sub["events"], sub["active"]) == (
        env.provider, "https://hooks.example/escrow?token=t0p",
        ["breach_reported", "credit_available"], True,
    )
    assert len(sub["secret"]) == 64  # generated: 32 random bytes in hex

    listed = api.get("/api/webhooks", params={"address": env.provider.lower()})
    assert listed.status_code == 200
    assert listed.json() == {"address": env.provider, "subscriptions": [{
        "id": sub["id"], "address": env.provider, "url": "https://hooks.example",
        "events": ["breach_reported", "credit_available"], "active": True,
        "created_at": sub["created_at"],
    }]}

    stranger = _sign_in(api, env.parties.stranger, services.chain_id)
    refused = api.request("DELETE", f"/api/webhooks/{sub['id']}", json=stranger)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden_signer"

    gone = api.request("DELETE", f"/api/webhooks/{sub['id']}",
                       json=_sign_in(api, env.parties.provider, services.chain_id))
    assert gone.status_code == 204
    assert api.get("/api/webhooks", params={"address": env.provider}).json()[
        "subscriptions"] == []
    again = api.request("DELETE", f"/api/webhooks/{sub['id']}",
                        json=_sign_in(api, env.parties.provider, services.chain_id))
    assert again.status_code == 404 and again.json()["error"] == "not_found"


def test_a_subscription_keeps_the_secret_it_was_given(
    env: EscrowEnv, api: TestClient, services: Services
) -> None:
    proof = _sign_in(api, env.parties.client, services.chain_id)
    created = _post(api, proof, secret="my-own-secret-0123456789")
    assert created.status_code == 201
    assert created.json()["secret"] == "my-own-secret-0123456789"


def test_a_replayed_sign_in_is_refused_with_401(
    env: EscrowEnv, api: TestClient, services: Services
) -> None:
    proof = _sign_in(api, env.parties.client, services.chain_id)
    assert _post(api, proof).status_code == 201
    replay = _post(api, proof)
    assert replay.status_code == 401
    assert replay.json()["error"] == "nonce_refused"
    assert "already used" in replay.json()["detail"]


REFUSALS = {
    # name: (overrides of the signed message, status, error code, part of the detail)
    "wrong signer": ({"signer": "stranger"}, 401, "sign_in_refused", "signed by 0x"),
    "wrong domain": ({"domain": "evil.example"}, 401, "sign_in_refused", "'evil.example'"),
    "wrong chain": ({"message_chain_id": 1}, 401, "sign_in_refused", "for chain 1"),
    "expired": ({"issued_at": 1_700_000_000, "expires_at": 1_700_000_300}, 401,
                "sign_in_expired", "expired at 2023-11-14T22:18:20Z"),
    "nonce never issued": ({"nonce": "abcdef0123456789"}, 401, "nonce_refused",
                           "not issued by this service"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_sign_in_refusals_answer_401_with_error_and_detail(
    env: EscrowEnv, api: TestClient, services: Services, case: tuple[Any, ...]
) -> None:
    overrides, status, code, detail = case
    overrides = dict(overrides)
    if overrides.get("signer") == "stranger":
        overrides["signer"] = env.parties.stranger
    proof = _sign_in(api, env.parties.client, services.chain_id, **overrides)
    answer = _post(api, proof)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code
    assert detail in answer.json()["detail"]
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookSubscription)) == 0


def test_an_expired_nonce_is_refused(
    env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    services = _services(env, database_url, tmp_path)
    try:
        api = TestClient(create_app(services))
        proof = _sign_in(api, env.parties.client, services.chain_id)
        with transaction(services.sessions) as session:
            for row in session.scalars(select(SiweNonce)):
                row.expires_at = int(time.time()) - 1
        answer = _post(api, proof)
        assert answer.status_code == 401
        assert answer.json()["error"] == "nonce_refused" and "expired" in answer.json()["detail"]
    finally:
        services.engine.dispose()


def test_malformed_sign_ins_are_400(
    env: EscrowEnv, api: TestClient, services: Services
) -> None:
    proof = _sign_in(api, env.parties.client, services.chain_id)
    broken = _post(api, {**proof, "message": proof["message"].replace("Version: 1", "Version: 2")})
    assert broken.status_code == 400
    assert broken.json() == {"error": "malformed",
                             "detail": "malformed sign-in message: version must be 1, got '2'"}
    bad_signature = _post(api, {**proof, "signature": "0x1234"})
    assert bad_signature.status_code == 400
    assert bad_signature.json()["detail"] == (
        "malformed signature: not a recoverable 65-byte signature (2)"
    )
    missing = api.post("/api/webhooks", json={"url": "https://a.example", "events": []})
    assert missing.status_code == 400 and missing.json()["error"] == "malformed"
    # none of them used up the nonce
    assert _post(api, proof).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["milestone_settled", "coffee_ready"]}, "events=['coffee_ready']"),
        ({"events": []}, "events=[]"),
        ({"url": "ftp://hooks.example/x"}, "url='ftp://hooks.example/x'"),
        ({"url": "https:///no-host"}, "url='https:///no-host'"),
        ({"url": "http://hooks.example:port/"}, "url="),
        ({"secret": "short"}, "secret='<hidden>'"),
    ],
    ids=["unknown-event", "no-event", "ftp", "no-host", "bad-port", "short-secret"],
)
def test_bad_subscriptions_are_422_and_keep_the_nonce(
    env: EscrowEnv, api: TestClient, services: Services, body: dict[str, Any], field: str
) -> None:
    proof = _sign_in(api, env.parties.client, services.chain_id)
    answer = _post(api, proof, **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "out_of_range"
    assert answer.json()["detail"].startswith(field)
    assert _post(api, proof).status_code == 201


# ------------------------------------------------------------------ only the outside world

#: webhook URLs whose host is, or resolves to, an address off the public internet: the five
#: forms observed accepted and called, and an inside name; every other form is in
#: tests/notify/test_egress.py
INSIDE_URLS = {
    "loopback": ("http://127.0.0.1/hooks/in", "127.0.0.1 (loopback)"),
    "localhost": ("http://localhost/hooks/in", "localhost (loopback, RFC 6761)"),
    "unspecified": ("http://0.0.0.0/", "0.0.0.0 (unspecified)"),
    "decimal-ip": ("http://2130706433/", "127.0.0.1 (loopback)"),
    "metadata": ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local)"),
    "inside-name": ("https://intranet.example.com/", "intranet.example.com, which resolves to "
                    "an address that is private"),
}


@dataclass
class StrictApi:
    http: TestClient
    services: Services


@pytest.fixture
def strict(env: EscrowEnv, tmp_path: Path) -> Iterator[StrictApi]:
    """The API with the default settings (no local target allowed, on this development chain
    too), on SQLite: a refusal comes before the database."""
    s = _services(env, f"sqlite:///{tmp_path / 'strict.db'}", tmp_path, webhook_allow_hosts="")
    try:
        yield StrictApi(TestClient(create_app(s)), s)
    finally:
        s.engine.dispose()


@pytest.mark.parametrize("case", INSIDE_URLS.values(), ids=INSIDE_URLS.keys())
def test_a_subscription_to_an_inside_address_is_refused_with_422_naming_why(
    env: EscrowEnv, strict: StrictApi, fake_dns: FakeDns, case: tuple[str, str],
) -> None:
    url, why = case
    fake_dns.names["intranet.example.com"] = ["93.184.216.34", "10.0.0.8"]
    proof = _sign_in(strict.http, env.parties.client, strict.services.chain_id)
    answer = _post(strict.http, proof, url=url)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "out_of_range"
    assert body["detail"].startswith("url=")
    assert "expected a host on the public internet, not " in body["detail"]
    assert why in body["detail"]
    assert "10.0.0.8" not in body["detail"]  # what an inside name resolves to is not told
    assert "ESCROW_WEBHOOK_ALLOW_HOSTS" in body["detail"]
    with strict.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookSubscription)) == 0
    # the refusal did not use up the sign-in: a public receiver is accepted with it
    fake_dns.names["hooks.example"] = ["93.184.216.34"]
    assert _post(strict.http, proof, url="https://hooks.example/in").status_code == 201


def test_a_refused_url_is_shown_without_its_credentials_or_query(
    env: EscrowEnv, strict: StrictApi
) -> None:
    proof = _sign_in(strict.http, env.parties.client, strict.services.chain_id)
    answer = _post(strict.http, proof, url="http://user:pa55word@127.0.0.1/in?token=abc#f")
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("url='http://127.0.0.1/in' is out of range")
    for secret in ("pa55word", "user", "token", "abc"):
        assert secret not in answer.json()["detail"]


def test_the_operator_allows_named_local_targets_and_only_those(
    env: EscrowEnv, tmp_path: Path
) -> None:
    services = _services(env, f"sqlite:///{tmp_path / 'allow.db'}", tmp_path,
                         webhook_allow_hosts="127.0.0.1:9000, localhost")
    try:
        api = TestClient(create_app(services))
        for url, status in [
            ("http://127.0.0.1:9000/in", 201),
            ("http://2130706433:9000/in", 201),  # the same address, written otherwise
            ("http://127.0.0.1:9001/in", 422),  # another port
            ("http://localhost:8080/in", 201),  # a name without a port: every port
            ("http://[::1]:9000/in", 422),  # localhost's other address, but not named
            ("http://10.0.0.1:9000/in", 422),
        ]:
            proof = _sign_in(api, env.parties.client, services.chain_id)
            assert _post(api, proof, url=url).status_code == status, url
    finally:
        services.engine.dispose()


def test_listing_needs_a_valid_address(api: TestClient) -> None:
    answer = api.get("/api/webhooks", params={"address": "0x123"})
    assert answer.status_code == 400 and answer.json()["error"] == "malformed"


# ------------------------------------------------------------------ contract wallets


@pytest.mark.parametrize(("mode", "status"), [(0, 201), (1, 401)], ids=["accepts", "rejects"])
def test_a_contract_wallet_signs_in_through_erc1271(
    env: EscrowEnv, api: TestClient, services: Services, mode: int, status: int
) -> None:
    wallet, _ = deploy_contract(env.w3, "MockERC1271Wallet", env.client)
    env.contract("MockERC1271Wallet", wallet).functions.setMode(mode).transact(
        {"from": env.client}
    )
    proof = _sign_in(api, env.parties.client, services.chain_id, address=wallet,
                     signer=env.parties.client)
    answer = _post(api, proof)
    assert answer.status_code == status, answer.text
    if status == 201:
        assert answer.json()["address"] == wallet


def test_a_contract_wallet_sign_in_answers_503_with_retry_after_when_the_node_does_not(
    env: EscrowEnv, api: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet, _ = deploy_contract(env.w3, "MockERC1271Wallet", env.client)
    proof = _sign_in(api, env.parties.client, services.chain_id, address=wallet,
                     signer=env.parties.client)

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(services.w3.eth, "call", down)
    answer = _post(api, proof)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable"
    assert int(answer.headers["retry-after"]) > 0
    monkeypatch.undo()
    # the node back, the same proof still signs in: the nonce was not used up
    assert _post(api, proof).status_code == 201

"""The webhook sender: POSTs due deliveries, retries failures with exponential backoff.

A delivery is claimed in a short transaction (its next attempt moved a lease ahead, rows locked
with SKIP LOCKED on PostgreSQL so two dispatchers never take the same one), sent outside any
transaction, and its outcome recorded in another. A crash between sending and recording means
the delivery is sent again after the lease: delivery is at least once, and receivers deduplicate
by the `X-Escrow-Delivery` id, which never changes across attempts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.models import WebhookDelivery, WebhookSubscription
from backend.db.session import transaction
from backend.errors import QualityEscrowError
from backend.inputs import IPAddress, parse_http_url
from backend.logs import redact, safe_url
from backend.notify.egress import EgressPolicy, HostNotResolvedError, RefusedDestinationError
from backend.notify.events import scan_review_deadlines
from backend.notify.webhooks import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    encode_body,
    sign_body,
)
from backend.outbox.backlog import Backlog, WaitingItem
from backend.services import Services

logger = logging.getLogger(__name__)

USER_AGENT = "QualityEscrow-Webhooks/1"
#: states of a delivery: waiting to be sent (again), or done one way or the other
DELIVERY_STATUSES = ("pending", "delivered", "failed", "cancelled")
#: extra seconds a claimed delivery stays reserved beyond its requests' timeouts (two: one per
#: address family tried)
LEASE_MARGIN = 60


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base: int
    cap: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.webhook_max_attempts, settings.webhook_backoff_base,
            settings.webhook_backoff_max,
        )

    def delay(self, attempts: int) -> int:
        """Seconds to wait after the `attempts`-th failure: base, 2 base, 4 base ... up to cap."""
        return int(min(self.base * 2 ** (attempts - 1), self.cap))


@dataclass(frozen=True)
class _Job:
    delivery_id: str
    url: str
    secret: str
    event_type: str
    payload: dict[str, Any]
    attempt: int


def _claim(services: Services, now: int, limit: int, lease: int) -> list[_Job]:
    jobs: list[_Job] = []
    with transaction(services.sessions) as session:
        rows = session.execute(
            select(WebhookDelivery, WebhookSubscription)
            .join(WebhookSubscription, WebhookDelivery.subscription_id == WebhookSubscription.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        ).all()
        for delivery, sub in rows:
            if not sub.active:
                delivery.status = "cancelled"
                continue
            delivery.next_attempt_at = now + lease
            jobs.append(_Job(delivery.id, sub.url, sub.secret, delivery.event_type,
                             dict(delivery.payload), delivery.attempts + 1))
    return jobs


class _Unreachable(str):
    """A failure of the transport (connection refused, timeout, a refused or unresolvable
    host), not an answer."""


def _one_per_family(addresses: list[IPAddress]) -> list[IPAddress]:
    """The first address of each family, in the resolver's order: a host whose first family
    cannot be reached from here (IPv6 without a route) is tried once more on the other one."""
    out: list[IPAddress] = []
    for ip in addresses:
        if all(ip.version != seen.version for seen in out):
            out.append(ip)
    return out


def _send(client: httpx.Client, job: _Job, timeout: float, policy: EgressPolicy) -> str | None:
    """POSTs the delivery; None on a 2xx answer, else what went wrong (cut by `redact`: never
    the URL's credentials, query or fragment).

    The host is resolved and checked here (`EgressPolicy.destinations`) and the request goes to
    a checked address itself (the URL's host replaced by it; the `Host` header and, for https,
    the TLS server name and certificate check keep the name), so nothing resolves the name
    again between the check and the connection. `Connection: close`: a connection to one
    address is never reused for a request that names another host. Redirects are never
    followed, whatever the client's own setting: a 3xx is a failed delivery."""
    try:
        url = parse_http_url("url", job.url)
        addresses = policy.destinations(url)
    except RefusedDestinationError as exc:
        return _Unreachable(f"refused: {exc.note}")
    except HostNotResolvedError as exc:
        return _Unreachable(f"{type(exc).__name__}: {exc}")
    except QualityEscrowError as exc:  # a URL stored before today's rules
        return _Unreachable(f"{type(exc).__name__}: {exc}")
    body = encode_body(job.payload)
    headers = {
        "Host": url.host_header,
        "Connection": "close",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign_body(job.secret, body),
        DELIVERY_HEADER: job.delivery_id,
        EVENT_HEADER: job.event_type,
        ATTEMPT_HEADER: str(job.attempt),
    }
    extensions = {"sni_hostname": url.host} if url.scheme == "https" and url.ip is None else {}
    error: str = "no address"
    for ip in _one_per_family(addresses):
        try:
            target = httpx.URL(job.url).copy_with(host=str(ip))
            response = client.post(target, content=body, headers=headers, timeout=timeout,
                                   follow_redirects=False, extensions=extensions)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue  # the other family, if the host has one
        except Exception as exc:  # any transport failure is this delivery's, and is
            # recorded with it (redacted), not logged with a traceback naming the URL
            return _Unreachable(f"{type(exc).__name__}: {exc}"[:1000])
        if 200 <= response.status_code < 300:
            return None
        if 300 <= response.status_code < 400:
            return f"HTTP {response.status_code} (redirects are not followed)"
        return f"HTTP {response.status_code}"
    return _Unreachable(error[:1000])


def _record(services: Services, job: _Job, error: str | None, now: int) -> None:
    policy = RetryPolicy.from_settings(services.settings)
    with transaction(services.sessions) as session:
        delivery = session.get(WebhookDelivery, job.delivery_id)
        if delivery is None or delivery.status != "pending":
            return
        delivery.attempts = job.attempt
        # a log line names the receiver by scheme://host[:port]/path only: its URL may carry
        # credentials or a token in the query string
        url = safe_url(job.url)
        fields: dict[str, Any] = {
            "delivery_id": job.delivery_id, "event_type": job.event_type, "url": url,
            "attempt": job.attempt,
        }
        if error is None:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
            logger.info("webhook %s (%s) delivered to %s on attempt %d",
                        job.delivery_id, job.event_type, url, job.attempt,
                        extra={"event": "webhook_delivered", **fields})
            return
        said = redact(error, job.url)
        delivery.last_error = said
        if job.attempt >= policy.max_attempts:
            delivery.status = "failed"
            logger.error("webhook %s (%s) to %s failed for good after %d attempts: %s",
                         job.delivery_id, job.event_type, url, job.attempt, said,
                         extra={"event": "webhook_failed", **fields, "error": said,
                                "final": True})
            return
        delivery.next_attempt_at = now + policy.delay(job.attempt)
        logger.warning("webhook %s (%s) to %s failed (attempt %d: %s); next try at %d",
                       job.delivery_id, job.event_type, url, job.attempt, said,
                       delivery.next_attempt_at,
                       extra={"event": "webhook_failed", **fields, "error": said,
                              "final": False, "next_attempt_at": delivery.next_attempt_at})


def dispatch_due(
    services: Services, *, now: int, http_client: httpx.Client, limit: int = 100
) -> int:
    """Sends every pending delivery due at `now` (up to `limit`); returns how many were tried.

    Once a URL could not be reached (refused, timed out), its other deliveries of this round are
    not tried: they stay claimed for the lease and go out on a later round, so one dead receiver
    does not hold up everybody else's deliveries. Where a delivery may go is
    `backend.notify.egress` (`ESCROW_WEBHOOK_ALLOW_HOSTS`), checked again for each one."""
    timeout = services.settings.webhook_timeout
    policy = EgressPolicy.from_settings(services.settings)
    jobs = _claim(services, now, limit, 2 * int(timeout) + LEASE_MARGIN)
    unreachable: set[str] = set()
    tried = 0
    for job in jobs:
        if job.url in unreachable:
            continue
        error = _send(http_client, job, timeout, policy)
        tried += 1
        if isinstance(error, _Unreachable):
            unreachable.add(job.url)
        _record(services, job, error, now)
    return tried


def run_dispatcher(
    services: Services,
    stop_event: threading.Event,
    *,
    interval: float = 1.0,
    scan_interval: float = 60.0,
    http_client: httpx.Client | None = None,
) -> None:
    """The worker loop: every `scan_interval` seconds queue review_deadline_near notices, every
    `interval` seconds send what is due, until `stop_event` is set. Errors are logged, not
    fatal."""
    client = http_client or httpx.Client(follow_redirects=False, trust_env=False)
    last_scan = float("-inf")
    try:
        while not stop_event.is_set():
            try:
                if time.monotonic() - last_scan >= scan_interval:
                    with transaction(services.sessions) as session:
                        scan_review_deadlines(
                            session, services.chain_id, now=services.clock.chain_time(),
                            lead_time=services.settings.webhook_review_lead_time,
                        )
                    last_scan = time.monotonic()
                dispatch_due(services, now=services.clock.service_time(), http_client=client)
            except Exception:
                logger.exception("webhook dispatcher round failed; trying again")
            stop_event.wait(interval)
    finally:
        if http_client is None:
            client.close()


def delivery_backlog(session: Session, chain_id: int) -> Backlog:
    """The webhook deliveries about `chain_id` (their event key is `<type>:<chain id>:...`) for
    `escrow status`: by status (`DELIVERY_STATUSES`, 0 included), how many are `pending`, and
    the oldest pending one by `created_at` (`about`: its event key, attempts so far)."""
    about_chain = WebhookDelivery.event_key.like(WebhookDelivery.event_type + f":{chain_id}:%")
    found = {
        str(status): int(count)
        for status, count in session.execute(
            select(WebhookDelivery.status, func.count())
            .where(about_chain)
            .group_by(WebhookDelivery.status)
        )
    }
    others = sorted(set(found) - set(DELIVERY_STATUSES))
    counts = {s: found.get(s, 0) for s in (*DELIVERY_STATUSES, *others)}
    oldest = session.scalars(
        select(WebhookDelivery)
        .where(about_chain, WebhookDelivery.status == "pending")
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        .limit(1)
    ).first()
    item = None if oldest is None else WaitingItem(
        oldest.id, oldest.status, int(oldest.created_at),
        f"{oldest.event_key}, {oldest.attempts} attempts",
    )
    return Backlog(counts, counts.get("pending", 0), item)

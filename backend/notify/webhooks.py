"""Webhook subscriptions and how a delivery is signed.

A subscription belongs to the address that proved itself with Sign-In with Ethereum; it names a
URL, a secret and the event types it wants. Every POST carries the raw JSON body signed with
HMAC-SHA256 under the secret (`X-Escrow-Signature: sha256=<hex>`), the delivery's id
(`X-Escrow-Delivery`, the same on every retry) and the event type (`X-Escrow-Event`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.db.models import WebhookDelivery, WebhookSubscription
from backend.errors import ForbiddenSignerError, NotFoundError, OutOfRangeError
from backend.inputs import MAX_URL_LENGTH, parse_http_url
from backend.notify.egress import EgressPolicy

DELIVERY_SUBMITTED = "delivery_submitted"
REVIEW_DEADLINE_NEAR = "review_deadline_near"
BREACH_REPORTED = "breach_reported"
MILESTONE_SETTLED = "milestone_settled"
CREDIT_AVAILABLE = "credit_available"
#: every event type a subscription may ask for, and who receives it
EVENT_TYPES: dict[str, str] = {
    DELIVERY_SUBMITTED: "the escrow's client: a milestone was delivered and awaits review",
    REVIEW_DEADLINE_NEAR: "the escrow's client: a delivered milestone's review window ends soon",
    BREACH_REPORTED: "the escrow's provider: a breach report it may challenge",
    MILESTONE_SETTLED: "both parties: a milestone was settled",
    CREDIT_AVAILABLE: "the credited party: money it can withdraw",
}

SIGNATURE_HEADER = "X-Escrow-Signature"
DELIVERY_HEADER = "X-Escrow-Delivery"
EVENT_HEADER = "X-Escrow-Event"
ATTEMPT_HEADER = "X-Escrow-Attempt"

MAX_URL = MAX_URL_LENGTH
MIN_SECRET, MAX_SECRET = 16, 128


# ------------------------------------------------------------------ signing


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON with sorted keys."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign_body(secret: str, body: bytes) -> str:
    """The `X-Escrow-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_body(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the HMAC over the raw body, compare in constant time."""
    return hmac.compare_digest(sign_body(secret, body), header)


# ------------------------------------------------------------------ validation


def validate_url(url: str, policy: EgressPolicy) -> str:
    """An absolute http(s) URL (`inputs.parse_http_url`: a host, no spaces, at most 2,048
    characters) whose host is not, and does not resolve to, an address off the public internet
    unless the operator allowed it (`EgressPolicy.check_subscription`); `OutOfRangeError`
    (422) otherwise, showing the URL without credentials, query or fragment."""
    policy.check_subscription(parse_http_url("url", url, max_length=MAX_URL))
    return url


def validate_events(events: list[str]) -> list[str]:
    """The distinct known event types, in the order `EVENT_TYPES` lists them."""
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        expected = f"a non-empty subset of {list(EVENT_TYPES)}"
        raise OutOfRangeError("events", unknown or events, expected)
    return [e for e in EVENT_TYPES if e in events]


def validate_secret(secret: str | None) -> str:
    """The given secret (16 to 128 printable characters) or a new random one."""
    if secret is None:
        return secrets.token_hex(32)
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or not secret.isprintable():
        raise OutOfRangeError(
            "secret", "<hidden>", f"{MIN_SECRET} to {MAX_SECRET} printable characters"
        )
    return secret


def url_origin(url: str) -> str:
    """scheme://host[:port] only: paths and queries of webhook URLs often hold tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


# ------------------------------------------------------------------ subscriptions


def create_subscription(
    session: Session,
    *,
    address: str,
    url: str,
    events: list[str],
    secret: str | None,
    now: int,
    limit: int,
    policy: EgressPolicy,
) -> WebhookSubscription:
    """A new active subscription of `address` (already proven); at most `limit` per address;
    its URL must reach the outside world under `policy` (`validate_url`)."""
    url, events = validate_url(url, policy), validate_events(events)
    secret = validate_secret(secret)
    address = to_checksum_address(address)
    count = session.scalar(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(WebhookSubscription.address == address, WebhookSubscription.active.is_(True))
    )
    if (count or 0) >= limit:
        raise OutOfRangeError("subscriptions", count, f"at most {limit} active per address")
    sub = WebhookSubscription(
        address=address, url=url, secret=secret, events=events, active=True, created_at=now
    )
    session.add(sub)
    session.flush()
    return sub


def list_subscriptions(session: Session, address: ChecksumAddress) -> list[WebhookSubscription]:
    return list(
        session.scalars(
            select(WebhookSubscription)
            .where(WebhookSubscription.address == address, WebhookSubscription.active.is_(True))
            .order_by(WebhookSubscription.id)
        )
    )


def delete_subscription(
    session: Session, subscription_id: int, *, address: ChecksumAddress
) -> WebhookSubscription:
    """Deactivates the subscription (its delivery log stays) and cancels what it still owed."""
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None or not sub.active:
        raise NotFoundError("webhook subscription", subscription_id)
    if sub.address != address:
        raise ForbiddenSignerError(address, sub.address)
    sub.active = False
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == sub.id, WebhookDelivery.status == "pending")
        .values(status="cancelled")
    )
    return sub


def subscription_json(sub: WebhookSubscription, *, with_secret: bool = False) -> dict[str, Any]:
    """The API form; the secret only once, in the answer to its creation."""
    out: dict[str, Any] = {
        "id": sub.id,
        "address": sub.address,
        "url": sub.url if with_secret else url_origin(sub.url),
        "events": list(sub.events),
        "active": sub.active,
        "created_at": sub.created_at,
    }
    if with_secret:
        out["secret"] = sub.secret
    return out

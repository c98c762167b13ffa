"""Sign-in nonces and webhook subscriptions: `GET /api/auth/nonce`, `POST /api/webhooks`,
`GET /api/webhooks?address=`, `DELETE /api/webhooks/{id}`.

Creating and deleting a subscription take a Sign-In with Ethereum message (EIP-4361) signed by
the address the subscription belongs to, carrying a nonce from `/api/auth/nonce`.
"""

from __future__ import annotations

from typing import Annotated, Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import NewSubscription, SignInNonce, SubscriptionList, refusals
from backend.inputs import ROW_IDS, Address, parse_row_id
from backend.notify.egress import EgressPolicy
from backend.notify.sign_in import MAX_MESSAGE, authenticate, issue_nonce
from backend.notify.webhooks import (
    create_subscription,
    delete_subscription,
    list_subscriptions,
    subscription_json,
    validate_events,
    validate_secret,
    validate_url,
)
from backend.services import Services

router = APIRouter(prefix="/api", tags=["webhooks"])

#: a subscription's id (`parse_row_id`): 404 for an id no subscription can have
SubscriptionId = Annotated[
    int,
    BeforeValidator(lambda value: parse_row_id("webhook subscription", value, "subscription_id")),
    WithJsonSchema({"type": "integer", "minimum": ROW_IDS.start, "maximum": ROW_IDS.stop - 1}),
]


class SignedRequest(BaseModel):
    """A Sign-In with Ethereum message and its `personal_sign` signature."""

    message: str = Field(max_length=MAX_MESSAGE)
    signature: str = Field(max_length=4_096)


class SubscriptionRequest(SignedRequest):
    url: str = Field(max_length=4_096)
    secret: str | None = Field(default=None, max_length=4_096)
    events: list[str] = Field(max_length=32)


def _domain(services: Services, request: Request) -> str:
    """The authority sign-in messages must name: ESCROW_SIWE_DOMAIN, else the Host header."""
    return services.settings.siwe_domain or request.headers.get("host") or request.url.netloc


def _prove(services: Services, session: SessionDep, request: Request, body: SignedRequest) -> str:
    return authenticate(
        session,
        body.message,
        body.signature,
        domain=_domain(services, request),
        chain_id=services.chain_id,
        now=services.clock.service_time(),
        w3=services.w3,
    )


@router.get("/auth/nonce", response_model=SignInNonce, responses=refusals())
def nonce(
    services: ServicesDep, session: SessionDep, request: Request, response: Response
) -> dict[str, Any]:
    """A single-use nonce for a sign-in message, with the domain and chain the message names."""
    response.headers["Cache-Control"] = "no-store"
    issued = issue_nonce(
        session, now=services.clock.service_time(), ttl=services.settings.siwe_nonce_ttl
    )
    domain = _domain(services, request)
    return {
        "nonce": issued.nonce,
        "expires_at": issued.expires_at,
        "domain": domain,
        "uri": f"{request.url.scheme}://{domain}",
        "chain_id": services.chain_id,
    }


@router.post(
    "/webhooks",
    status_code=201,
    response_model=NewSubscription,
    responses=refusals(400, 401, 422, 503),
)
def subscribe(
    services: ServicesDep, session: SessionDep, request: Request, body: SubscriptionRequest
) -> dict[str, Any]:
    """Subscribes the signed-in address; the answer holds the secret (the only time it is
    shown) that signs every delivery."""
    # the body's own checks first, so a bad request does not use up the sign-in nonce
    policy = EgressPolicy.from_settings(services.settings)
    validate_url(body.url, policy)
    validate_events(body.events)
    validate_secret(body.secret)
    address = _prove(services, session, request, body)
    sub = create_subscription(
        session,
        address=to_checksum_address(address),
        url=body.url,
        events=body.events,
        secret=body.secret,
        now=services.clock.service_time(),
        limit=services.settings.webhook_max_subscriptions,
        policy=policy,
    )
    return subscription_json(sub, with_secret=True)


@router.get("/webhooks", response_model=SubscriptionList, responses=refusals(400))
def subscriptions(session: SessionDep, address: Address) -> dict[str, Any]:
    """An address's active subscriptions, without secrets and with only the URLs' origins."""
    return {
        "address": address,
        "subscriptions": [subscription_json(s) for s in list_subscriptions(session, address)],
    }


@router.delete(
    "/webhooks/{subscription_id}",
    status_code=204,
    response_class=Response,
    responses=refusals(400, 401, 403, 404, 422, 503),
)
def unsubscribe(
    services: ServicesDep,
    session: SessionDep,
    request: Request,
    subscription_id: SubscriptionId,
    body: SignedRequest,
) -> Response:
    """Ends a subscription; only its own address, signed in again, may do so."""
    address = _prove(services, session, request, body)
    delete_subscription(session, subscription_id, address=to_checksum_address(address))
    return Response(status_code=204)

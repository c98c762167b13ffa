"""Dependencies, used through `Annotated` aliases so routes stay one-liners: the services, the
request's database session, a size-limited raw body, the measurement bearer token
(`MeasurementAuth`) and the service's own account addresses (`ServiceAccountsDep`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from backend.chain.errors import DeploymentGone
from backend.chain.probe import NodeNotAnswering
from backend.db.models import EscrowRow
from backend.errors import TooLargeError
from backend.escrows.wallet_config import ServiceAccounts, service_accounts
from backend.inputs import EscrowId
from backend.oracle.measurements import authenticate, bearer_token, find_escrow
from backend.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    """One database transaction per request: committed on success, rolled back on error."""
    with services.sessions() as session, session.begin():
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]

#: how often (seconds) reading requests re-read the deployment block's hash, at most; a request
#: that changes something always reads it
DEPLOYMENT_CHECK_SECONDS = 5.0


def live_deployment(request: Request, services: ServicesDep) -> None:
    """Refuses every request with 503 (`DeploymentGone`) once the chain no longer has the
    deployment this process serves, so nothing of an old deployment is acted on (a POST reads
    the chain first) or shown (a GET at most `DEPLOYMENT_CHECK_SECONDS` after the reset).

    The node is read through `services.probe`, one read at a time for all requests: a GET waits
    for it at most `ESCROW_HEALTH_NODE_TIMEOUT` seconds and then goes on with the last answer;
    a POST waits up to `ESCROW_RPC_TIMEOUT` and is refused with 503 (`NodeNotAnswering`) past
    it. A node that never answers holds no request longer than that."""
    reading = request.method in ("GET", "HEAD", "OPTIONS")
    settings = services.settings
    try:
        gone = services.probe.read(
            "deployment", lambda: services.deployment.recent(0.0),
            settings.health_node_timeout if reading else settings.rpc_timeout,
            what="deployment block", max_age=DEPLOYMENT_CHECK_SECONDS if reading else 0.0,
        )
    except NodeNotAnswering:
        if not reading:
            raise
        gone = services.deployment.gone
    if gone is not None:
        raise DeploymentGone(gone)
#: committed when the route function returns, so a 2xx never reaches the client before its row
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def limited_body(what: str, limit: int) -> Callable[[Request], Awaitable[bytes]]:
    """A dependency reading the raw request body, refused with 413 (`TooLargeError` naming
    `what`) as soon as it passes `limit` bytes: at once when `Content-Length` declares more, and
    while it streams in otherwise (a chunked body declares no length)."""

    async def read(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLargeError(what, int(declared), limit)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise TooLargeError(what, len(body), limit)
        return bytes(body)

    return read


class MeasurementBearer(HTTPBearer):
    """The `Authorization: Bearer <token>` of a measurement post: OpenAPI's HTTP bearer security
    scheme, so `/docs` shows the requirement, with the header read by the one parser
    `backend.oracle.measurements.bearer_token`. It never refuses by itself (a missing header, or
    one of another scheme, is `None`): `measurement_escrow` refuses, after the escrow is found."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return None
        return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


measurement_bearer = MeasurementBearer(
    scheme_name="MeasurementToken",
    description="A measurement token of the escrow (`escrow tokens issue`), as "
    "`Authorization: Bearer <token>`",
    auto_error=False,
)
MeasurementCredentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(measurement_bearer)
]


def measurement_escrow(
    escrow_id: EscrowId,
    session: SessionDep,
    services: ServicesDep,
    credentials: MeasurementCredentials,
) -> EscrowRow:
    """The indexed escrow `escrow_id`, once the request's bearer token is a live token of it.
    In this order: 404 `not_found` for an escrow not indexed, then 401 `token_refused` for a
    missing, unknown, revoked or foreign token."""
    escrow = find_escrow(session, services.chain_id, escrow_id)
    token = None if credentials is None else credentials.credentials
    authenticate(session, services.chain_id, escrow_id, token)
    return escrow


#: the escrow a measurement post is for, its bearer token checked (`measurement_escrow`)
MeasurementAuth = Annotated[EscrowRow, Depends(measurement_escrow)]


def get_service_accounts(request: Request, services: ServicesDep) -> ServiceAccounts:
    """The oracle's and relayer's addresses (`service_accounts`), derived once per app and kept
    on `app.state` (a keystore takes long to decrypt); two first requests at once both derive
    them, to the same answer."""
    accounts: ServiceAccounts | None = getattr(request.app.state, "service_accounts", None)
    if accounts is None:
        accounts = service_accounts(services)
        request.app.state.service_accounts = accounts
    return accounts


#: the service's own account addresses, never its keys (`get_service_accounts`)
ServiceAccountsDep = Annotated[ServiceAccounts, Depends(get_service_accounts)]

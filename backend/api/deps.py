"""Dependencies, used through `Annotated` aliases so routes stay one-liners: the services, the
request's database session, a size-limited raw body, the measurement bearer token
(`MeasurementAuth`) and the service's own account addresses (`ServiceAccountsDep`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from backend.api.admission import Admission
from backend.chain.errors import DeploymentGone
from backend.chain.probe import NodeNotAnswering
from backend.db.models import EscrowRow
from backend.errors import TooLargeError
from backend.escrows.wallet_config import ServiceAccounts, service_accounts
from backend.inputs import EscrowId
from backend.oracle.measurements import authenticate, bearer_token, find_escrow
from backend.services import Services

T = TypeVar("T")

#: `session.info` key: the request's transaction was committed by the route (`committed`)
COMMITTED = "committed_by_route"


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def admission_of(request: Request) -> Admission:
    """The app's `Admission` (`backend/api/admission.py`), made on first use from the
    services' settings."""
    admission: Admission | None = getattr(request.app.state, "admission", None)
    if admission is None:
        admission = Admission.from_settings(request.app.state.services.settings)
        request.app.state.admission = admission
    return admission


@asynccontextmanager
async def request_place(request: Request) -> AsyncIterator[None]:
    """Holds one of the process's places (`Admission.place`) for the request, once: a request
    that holds one already (`admitted`, then `get_session`) is not counted twice. 503
    `overloaded` when none frees up within `ESCROW_API_QUEUE_TIMEOUT` seconds."""
    if getattr(request.state, "admitted", False):
        yield
        return
    async with admission_of(request).place():
        request.state.admitted = True
        try:
            yield
        finally:
            request.state.admitted = False


async def admitted(request: Request) -> AsyncIterator[None]:
    """A router dependency, first of every API router but health and metrics
    (`backend.api.app.create_app`): the request takes its place before any other dependency
    runs (the deployment check) and before its session, so a request waits at most
    `ESCROW_API_QUEUE_TIMEOUT` seconds for anything before it starts or is refused.

    The body is read first, without a place (its size already bounded by `BodyBounds`; kept by
    Starlette for the route's own reading): a client sending its body slowly holds nothing
    that other requests wait for."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        await request.body()
    async with request_place(request):
        yield


async def get_session(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> AsyncIterator[Session]:
    """One database transaction per request, inside one of the process's places (`request_place`):
    committed on success, rolled back on error, and its connection returned to the pool before
    the place is given back and before the response leaves.

    The session is made on the event loop (no I/O: the connection is taken at the first
    statement, in the route's thread); the commit or rollback runs in a thread of its own
    (not one of the threadpool's), so ending a transaction never waits for a thread
    (backend/api/admission.py says why that stalled the service). A route that committed in
    its own thread (`committed`) has nothing left to end: the session is closed on the event
    loop, without I/O."""
    async with request_place(request):
        session = services.sessions()
        session.begin()
        try:
            yield session
        except BaseException as exc:
            # shielded: a cancelled request still rolls back and returns its connection
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    _end_transaction, session, exc,
                    limiter=anyio.CapacityLimiter(1),
                )
            raise
        if session.info.pop(COMMITTED, False) and not session.in_transaction():
            session.close()  # no I/O: its connection went back to the pool at the commit
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                _end_transaction, session, None, limiter=anyio.CapacityLimiter(1)
            )


async def committed(session: Session, work: Callable[[], T]) -> T:
    """For an `async def` route: `work()` (the route's blocking work on `session`, a
    `SessionDep`), then the commit, both in one thread of the threadpool; returns what `work`
    returned. A sync route takes three threads one after the other (its function, the check of
    its response against `response_model`, then the commit); this takes one, and the response
    is checked on the event loop. Raises what `work` or the commit raises (the request's
    transaction is then rolled back by `get_session`).

    The commit comes before the response is checked and does not depend on the client still
    waiting: what `work` returns must fit the route's `response_model` (a mismatch is a 500
    after the commit), and a client that hung up finds its write done (a confirmation's
    status is at `GET /api/confirmations/{id}`, and sending it again answers 409 with it)."""

    def work_then_commit() -> T:
        result = work()
        session.commit()
        session.info[COMMITTED] = True
        return result

    return await run_in_threadpool(work_then_commit)


def _end_transaction(session: Session, error: BaseException | None) -> None:
    """Commits (`error` None) or rolls back the request's transaction, then closes the session,
    returning its connection to the pool."""
    with session:
        if error is None:
            # the request's transaction, or the one a route began after `committed`; a
            # transaction that a failed flush left behind raises here
            session.commit()
        else:
            session.rollback()  # nothing to do for a transaction that ended already


ServicesDep = Annotated[Services, Depends(get_services)]

#: how often (seconds) reading requests re-read the deployment block's hash, at most; a request
#: that changes something always reads it
DEPLOYMENT_CHECK_SECONDS = 5.0


async def live_deployment(request: Request, services: ServicesDep) -> None:
    """Refuses every request with 503 (`DeploymentGone`) once the chain no longer has the
    deployment this process serves, so nothing of an old deployment is acted on (a POST reads
    the chain first) or shown (a GET at most `DEPLOYMENT_CHECK_SECONDS` after the reset).

    The node is read through `services.probe`, one read at a time for all requests, awaited on
    the event loop (no threadpool thread waits for the node): a GET waits
    for it at most `ESCROW_HEALTH_NODE_TIMEOUT` seconds and then goes on with the last answer;
    a POST waits up to `ESCROW_RPC_TIMEOUT` and is refused with 503 (`NodeNotAnswering`) past
    it. A node that never answers holds no request longer than that."""
    reading = request.method in ("GET", "HEAD", "OPTIONS")
    settings = services.settings
    try:
        gone = await services.probe.read_async(
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
#: committed when the route function returns (or by the route itself: `committed`), so a 2xx
#: never reaches the client before its row
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
#: one of the process's places (`admitted`), taken before anything else of the request runs
AdmittedDep = Depends(admitted, scope="function")


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

"""Dependencies, used through `Annotated` aliases so routes stay one-liners."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from backend.errors import TooLargeError
from backend.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    """One database transaction per request: committed on success, rolled back on error."""
    with services.sessions() as session, session.begin():
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
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

"""Dependencies, used through `Annotated` aliases so routes stay one-liners."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

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

"""Which database errors are an outage (503 `database_unavailable` with `Retry-After`) and which
stay a bug (500): `backend.db.session.database_unavailable`, mapped in backend/api/errors.py."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from backend.api.errors import install_error_handlers


class _Lost(Exception):
    """Stands for the DBAPI's own error."""


OUTAGES = {
    "operational": sa_exc.OperationalError("SELECT 1", {}, _Lost("server closed the connection")),
    "disconnect": sa_exc.InterfaceError(
        "SELECT 1", {}, _Lost("connection already closed"), connection_invalidated=True
    ),
    "pool": sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
}
BUGS = {
    "integrity": sa_exc.IntegrityError("INSERT", {}, _Lost("duplicate key value")),
    "programming": sa_exc.ProgrammingError("SELEC", {}, _Lost("syntax error")),
}


def client_raising(error: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("kind", sorted(OUTAGES))
def test_a_lost_database_answers_503_database_unavailable_with_retry_after(kind: str) -> None:
    answer = client_raising(OUTAGES[kind]).get("/boom")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    body = answer.json()
    assert body["error"] == "database_unavailable"
    assert "SELECT" not in body["detail"] and "127.0.0.1" not in body["detail"]


@pytest.mark.parametrize("kind", sorted(BUGS))
def test_a_database_error_that_is_no_outage_stays_a_500(kind: str) -> None:
    assert client_raising(BUGS[kind]).get("/boom").status_code == 500

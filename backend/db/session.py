"""Engines, sessions and migrations (Alembic, applied at start-up)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from backend.errors import UnavailableError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class DatabaseUnavailable(UnavailableError):
    """503 `database_unavailable` with `Retry-After`: the database did not answer (server down or
    restarting, the connection lost mid-request, no pooled connection within the pool's timeout).
    The request's transaction was rolled back as a whole (one transaction per request,
    `backend.api.deps.get_session`), or, when the connection broke during its COMMIT, either
    fully committed or not at all; asking again is safe."""

    code = "database_unavailable"
    retry_after = 2


def database_unavailable(exc: Exception) -> DatabaseUnavailable | None:
    """The `DatabaseUnavailable` a SQLAlchemy error means, or None for an error that is no
    outage (a constraint, a bad statement: a bug, left to propagate).

    An outage is: `OperationalError` (PEP 249: "errors related to the database's operation and
    not necessarily under the control of the programmer, e.g. an unexpected disconnect"),
    any DBAPI error SQLAlchemy recognised as a disconnect (`connection_invalidated`), and the
    pool's `TimeoutError` (every connection busy for `pool_timeout` s). The reason says which,
    never the statement, its parameters or the server's address."""
    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailable("database", "no connection free in the pool")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable("database", "the connection was lost")
    if isinstance(exc, sa_exc.OperationalError):
        return DatabaseUnavailable("database", "the server did not answer or broke off")
    return None


def conflict_insert(session: Session) -> Any:
    """The INSERT construct of the session's database, which has `on_conflict_do_nothing`
    (INSERT ... ON CONFLICT DO NOTHING, with RETURNING): PostgreSQL's, else SQLite's (the two
    databases the service runs on)."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite files get their folder created, WAL and foreign keys on.

    Other databases get `pool_pre_ping`: a pooled connection is tested (a cheap ping) before
    each checkout and replaced when the server dropped it, so after a database restart the
    service recovers by itself (tests/faults/test_pg_restart.py) instead of failing one request
    per stale pooled connection."""
    # a statement's parameters (webhook URLs and secrets, signatures) stay out of error messages,
    # so out of logs and tracebacks
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def pooled_engine(url: str, *, pool_size: int, pool_timeout: float, overflow: int = 0) -> Engine:
    """`make_engine` with a pool of `pool_size` connections (plus `overflow` opened beyond it
    while busy and closed after) and a checkout that waits at most `pool_timeout` seconds, then
    raises the pool's `TimeoutError` (`DatabaseUnavailable`, 503). An API process's pool is
    sized with its admission limit (`backend/api/admission.py`, ESCROW_DB_POOL_SIZE); the
    workers have one of their own (`backend.services.worker_services`). An in-memory SQLite
    database keeps its single connection per thread."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if url.startswith("sqlite") and path in ("", ":memory:"):
        return make_engine(url)
    return make_engine(
        url, pool_size=pool_size, max_overflow=overflow, pool_timeout=pool_timeout
    )


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: Engine) -> None:
    """Brings the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session

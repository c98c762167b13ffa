"""pytest plugin: databases for tests. Every test that touches the database runs twice, on a
fresh SQLite file and on real PostgreSQL (one throwaway database per session, emptied between
tests). PostgreSQL comes from ESCROW_TEST_PG_URL, default the local server's `postgres` login."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from backend.db.models import Base
from backend.db.session import make_engine, migrate

PG_ADMIN_URL = os.environ.get(
    "ESCROW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database named `<prefix>_<random>` on `ESCROW_TEST_PG_URL`'s server,
    migrated, dropped afterwards (its connections closed first). Skips without a server, and
    fails under CI, which must have one."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL at {PG_ADMIN_URL}: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated once, dropped at the end."""
    with fresh_pg_database("qe_test") as url:
        yield url


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'escrow.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()

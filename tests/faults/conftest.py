"""Fixtures of the fault suites: a fresh PostgreSQL database on the test server, a private
PostgreSQL cluster the tests may restart, and the zygote that forks service processes to kill.
Each starts real components and always stops them (and only them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.db_fixture import fresh_pg_database
from tests.faults.support import PrivateCluster, private_cluster


@pytest.fixture
def fault_pg() -> Iterator[str]:
    """A new migrated database on the test PostgreSQL server, for this test alone."""
    with fresh_pg_database("qe_faults") as url:
        yield url


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own (initdb in a temporary folder, another port, run
    as the `postgres` OS user), with a migrated database; stopped and removed afterwards. The
    test may restart or crash it; the system server at 5432 is never touched."""
    with private_cluster() as cluster:
        yield cluster

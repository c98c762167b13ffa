"""Session-wide fixtures. The in-process chain is deployed once per session and every test runs
inside a snapshot that is reverted afterwards, so tests stay independent and fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from backend.chain import devchain
from backend.chain.connect import connect, in_process_chain
from backend.chain.node import HardhatNode
from tests.api.support import Api, api_on
from tests.support import EscrowEnv, build_env, reset_chain

pytest_plugins = ["tests.hardhat_fixture", "tests.db_fixture"]

settings.register_profile(
    "ci",
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci")


#: the modules that take longest (`--durations`, 2026-12-01: from about two minutes down to
#: twenty seconds each), run first: split over pytest-xdist processes by module
#: (`scripts/test`), a long module that started last would keep one process busy alone at the end
SLOW_MODULES = (
    "tests/test_newcomer.py",
    "tests/faults/test_sigkill.py",
    "tests/contract/test_invariants.py",
    "tests/chain/test_compiler.py",
    "tests/cli/test_up.py",
    "tests/outbox/test_takeover.py",
    "tests/api/test_schemathesis.py",
    "tests/test_bench_relay.py",
    "tests/api/test_backpressure.py",
    "tests/web/test_full_story.py",
    "tests/faults/test_rpc_faults.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that needs the real node (`-m "not hardhat"` runs without one), and puts
    the `SLOW_MODULES` first, in that order (the rest keep theirs)."""
    for item in items:
        if "hardhat_node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.hardhat)
    rank = {module: i for i, module in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_MODULES)))


@pytest.fixture(scope="session")
def _tester_env() -> EscrowEnv:
    return build_env(in_process_chain())


@pytest.fixture
def env(_tester_env: EscrowEnv) -> Iterator[EscrowEnv]:
    """The deployed escrow on the in-process chain, rolled back after the test."""
    snap = devchain.snapshot(_tester_env.w3)
    _tester_env.escrow._params.clear()
    try:
        yield _tester_env
    finally:
        devchain.revert(_tester_env.w3, snap)
        _tester_env.escrow._params.clear()


@pytest.fixture(scope="session")
def _hardhat_env(hardhat_node: HardhatNode) -> EscrowEnv:
    return build_env(connect(hardhat_node.url))


@pytest.fixture
def hardhat_env(_hardhat_env: EscrowEnv) -> Iterator[EscrowEnv]:
    """The deployed escrow on the session's Hardhat node, rolled back after the test."""
    snap = devchain.snapshot(_hardhat_env.w3)
    _hardhat_env.escrow._params.clear()
    try:
        yield _hardhat_env
    finally:
        devchain.revert(_hardhat_env.w3, snap)
        _hardhat_env.escrow._params.clear()


@pytest.fixture
def spare_env(spare_hardhat_node: HardhatNode) -> EscrowEnv:
    """The escrow freshly deployed on a freshly reset spare Hardhat node (block 1, the same
    address every time), for tests that reset the chain again (`reset_chain`)."""
    w3 = connect(spare_hardhat_node.url)
    reset_chain(w3)
    return build_env(w3)


@pytest.fixture(params=["in-process", "hardhat"])
def any_env(request: pytest.FixtureRequest) -> EscrowEnv:
    """The same test on the in-process chain and on the real Hardhat node."""
    name = "env" if request.param == "in-process" else "hardhat_env"
    env: EscrowEnv = request.getfixturevalue(name)
    return env


@pytest.fixture
def api(env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The REST API on the in-process chain and a fresh database (SQLite and PostgreSQL)."""
    with api_on(env, database_url, tmp_path) as api:
        yield api

"""Session-wide fixtures. The in-process chain is deployed once per session and every test runs
inside a snapshot that is reverted afterwards, so tests stay independent and fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from backend.chain import devchain
from backend.chain.connect import in_process_chain
from tests.support import EscrowEnv, build_env

pytest_plugins = ["tests.hardhat_fixture"]

settings.register_profile(
    "ci",
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci")


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

"""Fixtures of the sender tests: `stack` (the service on a Hardhat node and each database) and
`case` (each sender in turn, see `support.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.outbox.support import CASES, Case, Stack
from tests.support import EscrowEnv


@pytest.fixture
def stack(hardhat_env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack.open(hardhat_env, database_url, tmp_path / "data") as built:
        yield built


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, stack: Stack) -> Case:
    """Each sender in turn, on a Hardhat node and each database."""
    return CASES[request.param](stack)

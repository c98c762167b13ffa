"""The ownership lock is named for the sender: one process per (sender, chain, account)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.outbox.owner import SenderBusyError, lock_key, ownership
from backend.services import Services
from tests.confirmations.support import relay_services
from tests.support import EscrowEnv

ACCOUNT = "0x" + "5a" * 20


@pytest.fixture
def two(env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[tuple[Services, Services]]:
    """Two processes' services on the same database and data dir."""
    first = relay_services(env, database_url, tmp_path / "data")
    second = relay_services(env, database_url, tmp_path / "data")
    try:
        yield first, second
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_a_second_owner_of_the_same_sender_and_account_is_refused_until_the_first_stops(
    two: tuple[Services, Services],
) -> None:
    first, second = two
    with (
        ownership(first, "oracle", ACCOUNT),
        pytest.raises(SenderBusyError) as refused,
        ownership(second, "oracle", ACCOUNT),
    ):
        pass
    assert (refused.value.sender, refused.value.account) == ("oracle", ACCOUNT)
    assert "another oracle already sends from" in str(refused.value)
    with ownership(second, "oracle", ACCOUNT):  # free again once the first one stopped
        pass


def test_each_sender_has_its_own_lock_even_on_the_same_account(
    two: tuple[Services, Services],
) -> None:
    first, second = two
    with ownership(first, "relayer", ACCOUNT), ownership(second, "oracle", ACCOUNT):
        assert lock_key("relayer", first.chain_id, ACCOUNT) != lock_key(
            "oracle", first.chain_id, ACCOUNT
        )
    if first.engine.dialect.name == "sqlite":
        names = sorted(p.name for p in first.settings.data_dir.glob("*.lock"))
        assert names == [
            f"oracle-{first.chain_id}-{ACCOUNT}.lock", f"relayer-{first.chain_id}-{ACCOUNT}.lock"
        ]

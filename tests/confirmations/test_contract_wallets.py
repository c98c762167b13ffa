"""Off-chain checks are never stricter than the contract: a contract-wallet client answers for
itself through EIP-1271 whatever its signature's length (a 2-of-2 Safe-style wallet signs 130
bytes), while a plain key's signature keeps the 65-byte low-s rules. On the Hardhat node and both
databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from backend.confirmations.verify import MAX_SIGNATURE_BYTES
from backend.services import Services
from tests.chain.support import multi_owner_escrow
from tests.confirmations.support import (
    TestClient,
    confirmation_body,
    outbox_count,
    post_confirmation,
    relayer,
    settled_events,
    sign,
    typed_data,
)
from tests.support import EscrowEnv


def _owners(env: EscrowEnv) -> list[LocalAccount]:
    """Two keys in ascending address order, as a Safe orders its owners' signatures."""
    return sorted([env.parties.client, env.parties.stranger], key=lambda a: int(a.address, 16))


def _multi_signature(owners: list[LocalAccount], prepared: dict[str, Any]) -> str:
    digest = HexBytes(prepared["digest"])
    parts = [bytes(owner.unsafe_sign_hash(digest).signature) for owner in owners]
    return "0x" + b"".join(parts).hex()


def test_a_2_of_2_wallet_signing_130_bytes_is_accepted_relayed_and_settles_the_milestone(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    owners = _owners(env)
    escrow_id, _ = multi_owner_escrow(env, [o.address for o in owners], 2)
    prepared = typed_data(client, escrow_id, 0, rating=5)
    signature = _multi_signature(owners, prepared)
    assert len(HexBytes(signature)) == 130

    response = post_confirmation(client, escrow_id, 0, confirmation_body(prepared, signature))

    assert response.status_code == 202, response.text
    report = relayer(services).run_until_idle()
    assert (report.mined, report.failed) == (1, 0)
    [event] = settled_events(services, escrow_id, 0)
    assert event["rating"] == 5


def test_a_2_of_2_wallet_signature_with_a_stranger_in_place_of_an_owner_is_refused_by_the_wallet(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    env = hardhat_env
    owners = _owners(env)
    # the wallet's owners are the client and the provider; the stranger signs in one's place
    wallet_owners = sorted([env.client, env.provider], key=lambda a: int(a, 16))
    escrow_id, _ = multi_owner_escrow(env, wallet_owners, 2)
    prepared = typed_data(client, escrow_id, 0, rating=5)

    response = post_confirmation(
        client, escrow_id, 0, confirmation_body(prepared, _multi_signature(owners, prepared))
    )

    assert (response.status_code, response.json()["error"]) == (403, "wallet_refused")
    assert outbox_count(services) == 0


def _doubled(signature: str) -> str:
    """A plain key's 65-byte signature twice over: 130 bytes, the length a 2-of-2 wallet signs."""
    return signature + signature[2:]


def _over_the_bound(_: str) -> str:
    return "0x" + "ab" * (MAX_SIGNATURE_BYTES + 1)


@pytest.mark.parametrize(
    ("signature_of", "status", "code"),
    [(_doubled, 400, "invalid_signature"), (_over_the_bound, 413, "too_large")],
    ids=["plain key signing 130 bytes", "signature over the bound"],
)
def test_a_plain_key_client_keeps_the_65_byte_rules_and_no_signature_passes_the_bound(
    hardhat_env: EscrowEnv, client: TestClient, services: Services,
    signature_of: Callable[[str], str], status: int, code: str,
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    prepared = typed_data(client, escrow_id, 0, rating=5)
    signature = signature_of(sign(env.parties.client, prepared))

    response = post_confirmation(client, escrow_id, 0, confirmation_body(prepared, signature))

    assert (response.status_code, response.json()["error"]) == (status, code)
    assert outbox_count(services) == 0

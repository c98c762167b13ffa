
"""confirmWithSig: anyone relays the client's EIP-712 Confirmation; the provider is paid whoever
sends it. Every forged, replayed, malleated or expired signature is refused and settles nothing.
Also the off-chain half in backend.chain.eip712 (digest, recovery, canonical-signature rules)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys import KeyAPI
from eth_utils import keccak

from backend.chain import eip712
from backend.chain import revert_types as rt
from backend.chain.deploy import deploy_contract
from backend.chain.eip712 import SECP256K1_N, Confirmation
from backend.chain.errors import InvalidSignature
from backend.chain.transactions import send
from backend.chain.types import BPS, MilestoneState, MilestoneView, SettledHow, Status
from tests.contract.support_core import (
    COMMENT,
    ZERO32,
    ahead,
    at_next_block,
    block_timestamp,
    create,
    create_active,
    deliver,
    event_names,
    settled_args,
    view,
)
from tests.support import ETH, PAYOUTS, REVIEW, EscrowEnv

SIGNED = SettledHow.SIGNED
ACCEPT, REJECT, REVERT = 0, 1, 2


def _sign_typed(account: LocalAccount, typed: dict[str, Any]) -> bytes:
    return bytes(account.sign_typed_data(full_message=typed).signature)


def _split(signature: bytes) -> tuple[int, int, int]:
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    return r, s, signature[64]


def _join(r: int, s: int, v: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def _malleate(signature: bytes) -> bytes:
    """The other valid signature of the same key and digest: s' = n - s, v flipped."""
    r, s, v = _split(signature)
    return _join(r, SECP256K1_N - s, 55 - v)


def _compact(signature: bytes) -> bytes:
    """EIP-2098 64-byte form: r ‖ (yParity << 255 | s)."""
    r, s, v = _split(signature)
    return r.to_bytes(32, "big") + ((v - 27) << 255 | s).to_bytes(32, "big")


def _bad_signatures(signature: bytes) -> dict[str, bytes | str]:
    _, s, v = _split(signature)
    return {
        "high_s": _malleate(signature),
        "v_as_parity": signature[:64] + bytes([v - 27]),  # 0/1, the key's own parity
        "v_as_other_parity": signature[:64] + bytes([28 - v]),
        "v29": signature[:64] + b"\x1d",
        "len64": _compact(signature),
        "len66": signature + b"\x00",
        "empty": b"",
        "r_zero": _join(0, s, v),
        "not_hex": "0xzz" + signature.hex()[4:],
    }


def _nothing_settled(env: EscrowEnv, escrow_id: int, milestone: int, before: Any) -> None:
    assert env.escrow.get_milestone(escrow_id, milestone) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.get_escrow(escrow_id) == before
    assert env.escrow.credits(env.provider) == 0
    assert env.escrow.credits(env.client) == 0


def _refused_signature(env: EscrowEnv, confirmation: Confirmation, signature: bytes) -> None:
    """Relaying `signature` for `confirmation` fails with EscrowInvalidSignature(client, digest)
    and settles nothing."""
    escrow_id = confirmation.escrow_id
    before = env.escrow.get_escrow(escrow_id)
    with pytest.raises(rt.EscrowInvalidSignature) as ei:
        env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    digest = env.escrow.confirmation_digest(confirmation)
    assert digest == confirmation.digest(env.escrow.chain_id, env.escrow.address)
    assert ei.value.fields == {"client": env.client, "digest": digest}
    _nothing_settled(env, escrow_id, confirmation.milestone, before)


# ------------------------------------------------------------------------------ success


@pytest.mark.parametrize("who", ["relayer", "stranger", "provider", "client"])
def test_confirmWithSig_pays_the_provider_whoever_relays(env: EscrowEnv, who: str) -> None:
    escrow_id = create_active(env, env.params((ETH, 2 * ETH)))
    confirmation = env.confirmation(escrow_id, 1, 3, COMMENT)
    sender = getattr(env.parties, who).address
    result = env.escrow.confirm_with_sig(confirmation, env.sign(confirmation), sender)
    to_provider = 2 * ETH * PAYOUTS[2] // BPS
    assert event_names(result) == ["MilestoneSettled"]
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, SIGNED, 3, COMMENT, to_provider, 2 * ETH - to_provider
    )
    assert env.escrow.credits(env.provider) == to_provider
    assert env.escrow.credits(env.client) == 2 * ETH - to_provider
    for other in ("relayer", "stranger"):
        assert env.escrow.credits(getattr(env.parties, other).address) == 0
    assert env.escrow.get_milestone(escrow_id, 1) == MilestoneView(
        MilestoneState.SETTLED, block_timestamp(env, result)
    )
    assert env.escrow.get_escrow(escrow_id) == view(Status.ACTIVE, ETH, ETH, 2, 1)


def test_confirmWithSig_accepts_a_hex_string_signature_and_a_zero_comment(env: EscrowEnv) -> None:
    escrow_id = create_active(env, env.params((ETH,)))
    confirmation = env.confirmation(escrow_id, 0, 5)
    signature = "0x" + env.sign(confirmation).hex()
    result = env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, SIGNED, 5, ZERO32, ETH, 0
    )
    assert env.escrow.get_escrow(escrow_id) == view(Status.CLOSED, 0, 0, 1, 1)


def test_confirmWithSig_is_allowed_at_exactly_the_deadline(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    deadline = ahead(env) + 600
    confirmation = env.confirmation(escrow_id, 0, 4, COMMENT, deadline)
    signature = env.sign(confirmation)
    at_next_block(env, deadline)
    result = env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    assert block_timestamp(env, result) == deadline
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, SIGNED, 4, COMMENT, ETH * 8_000 // BPS, ETH * 2_000 // BPS
    )


def test_confirmWithSig_works_inside_the_review_window(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    ahead(env)
    since = deliver(env, escrow_id, 0)
    confirmation = env.confirmation(escrow_id, 0, 2, COMMENT, since + REVIEW + 3_600)
    signature = env.sign(confirmation)
    at_next_block(env, since + REVIEW)
    result = env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 0, SIGNED, 2, COMMENT, ETH * 4_000 // BPS, ETH * 6_000 // BPS
    )


# ------------------------------------------------------------------ refused signatures


def test_confirmWithSig_refuses_a_signature_for_another_chain(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    typed = confirmation.typed_data(env.escrow.chain_id + 1, env.escrow.address)
    _refused_signature(env, confirmation, _sign_typed(env.parties.client, typed))


def test_confirmWithSig_refuses_a_signature_for_another_contract(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    typed = confirmation.typed_data(env.escrow.chain_id, env.token)
    _refused_signature(env, confirmation, _sign_typed(env.parties.client, typed))


@pytest.mark.parametrize("who", ["stranger", "provider", "relayer"])
def test_confirmWithSig_refuses_another_signer(env: EscrowEnv, who: str) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    _refused_signature(env, confirmation, env.sign(confirmation, getattr(env.parties, who)))


def test_confirmWithSig_refuses_a_signature_replayed_on_another_milestone(
    env: EscrowEnv,
) -> None:
    escrow_id = create_active(env)
    signed = env.confirmation(escrow_id, 0, 5)
    replayed = Confirmation(escrow_id, 1, 5, signed.comment_hash, signed.deadline)
    _refused_signature(env, replayed, env.sign(signed))


def test_confirmWithSig_refuses_a_signature_replayed_on_another_escrow(env: EscrowEnv) -> None:
    first = create_active(env)
    second = create_active(env)
    signed = env.confirmation(first, 0, 5)
    signature = env.sign(signed)
    env.escrow.confirm_with_sig(signed, signature, env.parties.relayer.address)
    replayed = Confirmation(second, 0, 5, signed.comment_hash, signed.deadline)
    before = env.escrow.get_escrow(second)
    with pytest.raises(rt.EscrowInvalidSignature) as ei:
        env.escrow.confirm_with_sig(replayed, signature, env.parties.relayer.address)
    assert ei.value.fields == {
        "client": env.client,
        "digest": env.escrow.confirmation_digest(replayed),
    }
    assert env.escrow.get_milestone(second, 0) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.get_escrow(second) == before


def test_confirmWithSig_refuses_the_same_signature_twice(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    signature = env.sign(confirmation)
    env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    with pytest.raises(rt.EscrowInvalidMilestoneState) as ei:
        env.escrow.confirm_with_sig(confirmation, signature, env.parties.stranger.address)
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "milestone": 0,
        "state": MilestoneState.SETTLED,
    }
    assert env.escrow.credits(env.provider) == ETH


def test_confirmWithSig_refuses_a_high_s_malleated_copy(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    signature = env.sign(confirmation)
    malleated = _malleate(signature)
    # the copy is a valid ECDSA signature of the client's key: only the low-s rule stops it
    r, s, v = _split(malleated)
    digest = confirmation.digest(env.escrow.chain_id, env.escrow.address)
    public_key = KeyAPI().Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    assert public_key.to_checksum_address() == env.client
    _refused_signature(env, confirmation, malleated)


@pytest.mark.parametrize("case", ["v_as_parity", "v_as_other_parity", "v29"])
def test_confirmWithSig_refuses_a_v_other_than_27_or_28(env: EscrowEnv, case: str) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    bad = _bad_signatures(env.sign(confirmation))[case]
    assert isinstance(bad, bytes)
    _refused_signature(env, confirmation, bad)


@pytest.mark.parametrize("shape", ["compact", "truncated", "padded", "empty"])
def test_confirmWithSig_refuses_a_signature_that_is_not_65_bytes(
    env: EscrowEnv, shape: str
) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    signature = env.sign(confirmation)
    malformed = {
        "compact": _compact(signature),
        "truncated": signature[:64],
        "padded": signature + b"\x00",
        "empty": b"",
    }[shape]
    _refused_signature(env, confirmation, malformed)


def test_confirmWithSig_refuses_an_expired_deadline(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    deadline = ahead(env) + 600
    confirmation = env.confirmation(escrow_id, 0, 5, COMMENT, deadline)
    signature = env.sign(confirmation)
    at_next_block(env, deadline + 1)
    before = env.escrow.get_escrow(escrow_id)
    with pytest.raises(rt.EscrowSignatureExpired) as ei:
        env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    assert ei.value.fields == {"deadline": deadline, "timestamp": deadline + 1}
    _nothing_settled(env, escrow_id, 0, before)


def test_confirmWithSig_refuses_a_tampered_rating(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    signed = env.confirmation(escrow_id, 0, 1, COMMENT)
    tampered = Confirmation(escrow_id, 0, 5, COMMENT, signed.deadline)
    _refused_signature(env, tampered, env.sign(signed))


def test_confirmWithSig_refuses_a_tampered_comment_hash(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    signed = env.confirmation(escrow_id, 0, 3, COMMENT)
    tampered = Confirmation(escrow_id, 0, 3, keccak(text="another review"), signed.deadline)
    _refused_signature(env, tampered, env.sign(signed))


def test_confirmWithSig_refuses_a_tampered_deadline(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    signed = env.confirmation(escrow_id, 0, 3, COMMENT)
    tampered = Confirmation(escrow_id, 0, 3, COMMENT, signed.deadline + 86_400)
    _refused_signature(env, tampered, env.sign(signed))


# ----------------------------------------------------------------- other refusals


@pytest.mark.parametrize("rating", [0, 6])
def test_confirmWithSig_refuses_a_signed_rating_outside_1_to_5(env: EscrowEnv, rating: int) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 0, rating)
    with pytest.raises(rt.EscrowInvalidRating) as ei:
        env.escrow.confirm_with_sig(
            confirmation, env.sign(confirmation), env.parties.relayer.address
        )
    assert ei.value.fields == {"rating": rating}


def test_confirmWithSig_refuses_after_the_review_window(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    ahead(env)
    since = deliver(env, escrow_id, 0)
    confirmation = env.confirmation(escrow_id, 0, 5, COMMENT, since + 2 * REVIEW)
    signature = env.sign(confirmation)
    at_next_block(env, since + REVIEW + 1)
    with pytest.raises(rt.EscrowWindowClosed) as ei:
        env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    assert ei.value.fields == {"endedAt": since + REVIEW, "timestamp": since + REVIEW + 1}
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.DELIVERED, since)


def test_confirmWithSig_refuses_a_proposed_escrow(env: EscrowEnv) -> None:
    escrow_id = create(env)
    confirmation = env.confirmation(escrow_id, 0, 5)
    with pytest.raises(rt.EscrowInvalidStatus) as ei:
        env.escrow.confirm_with_sig(
            confirmation, env.sign(confirmation), env.parties.relayer.address
        )
    assert ei.value.fields == {
        "escrowId": escrow_id,
        "status": Status.PROPOSED,
        "required": Status.ACTIVE,
    }


def test_confirmWithSig_refuses_a_milestone_out_of_range(env: EscrowEnv) -> None:
    escrow_id = create_active(env)
    confirmation = env.confirmation(escrow_id, 2, 5)
    with pytest.raises(rt.EscrowMilestoneOutOfRange) as ei:
        env.escrow.confirm_with_sig(
            confirmation, env.sign(confirmation), env.parties.relayer.address
        )
    assert ei.value.fields == {"milestone": 2, "count": 2}


# ------------------------------------------------------------------- ERC-1271 clients


def _wallet_escrow(env: EscrowEnv, mode: int) -> tuple[int, str]:
    """An active escrow whose client is a MockERC1271Wallet owned by the client's key."""
    wallet, _ = deploy_contract(env.w3, "MockERC1271Wallet", env.client)
    contract = env.contract("MockERC1271Wallet", wallet)
    p = env.params((ETH, 2 * ETH), client=wallet)
    data = env.escrow.contract.functions.createEscrow(p.to_abi())._encode_transaction_data()
    execute = contract.functions.execute(env.escrow.address, p.total, data)
    send(env.w3, contract, execute, env.client, value=p.total)
    escrow_id = env.escrow.escrow_count()
    assert env.escrow.params(escrow_id) == p  # read back from EscrowCreated
    env.escrow.accept(escrow_id, env.provider)
    contract.functions.setMode(mode).transact({"from": env.client})
    assert contract.functions.mode().call() == mode
    return escrow_id, wallet


@pytest.mark.parametrize("signature", [b"", b"\x00" * 65, b"\x01" * 7], ids=["empty", "65", "7"])
def test_confirmWithSig_settles_when_an_erc1271_client_accepts(
    env: EscrowEnv, signature: bytes
) -> None:
    escrow_id, wallet = _wallet_escrow(env, ACCEPT)
    confirmation = env.confirmation(escrow_id, 1, 2, COMMENT)
    result = env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
    to_provider = 2 * ETH * PAYOUTS[1] // BPS
    assert event_names(result) == ["MilestoneSettled"]
    assert result.event("MilestoneSettled").args == settled_args(
        escrow_id, 1, SIGNED, 2, COMMENT, to_provider, 2 * ETH - to_provider
    )
    assert env.escrow.credits(env.provider) == to_provider
    assert env.escrow.credits(wallet) == 2 * ETH - to_provider
    assert env.escrow.credits(env.client) == 0


@pytest.mark.parametrize("mode", [REJECT, REVERT], ids=["reject", "revert"])
def test_confirmWithSig_refuses_when_an_erc1271_client_does_not_accept(
    env: EscrowEnv, mode: int
) -> None:
    escrow_id, wallet = _wallet_escrow(env, mode)
    confirmation = env.confirmation(escrow_id, 0, 5)
    before = env.escrow.get_escrow(escrow_id)
    # even the wallet owner's own key does not speak for the wallet
    for signature in (env.sign(confirmation), b""):
        with pytest.raises(rt.EscrowInvalidSignature) as ei:
            env.escrow.confirm_with_sig(confirmation, signature, env.parties.relayer.address)
        assert ei.value.fields == {
            "client": wallet,
            "digest": env.escrow.confirmation_digest(confirmation),
        }
    assert env.escrow.get_milestone(escrow_id, 0) == MilestoneView(MilestoneState.NONE, 0)
    assert env.escrow.get_escrow(escrow_id) == before
    assert env.escrow.credits(env.provider) == 0
    assert env.escrow.credits(wallet) == 0


# --------------------------------------------------------------- off-chain (eip712.py)


def test_confirmWithSig_digest_is_the_same_in_python_in_eth_account_and_on_chain(
    env: EscrowEnv,
) -> None:
    confirmation = Confirmation(7, 3, 4, COMMENT, 1_900_000_000)
    chain_id, address = env.escrow.chain_id, env.escrow.address
    typed = confirmation.typed_data(chain_id, address)
    by_eth_account = _hash_eip191_message(encode_typed_data(full_message=typed))
    signable = encode_typed_data(full_message=typed)
    by_hand = keccak(b"\x19" + signable.version + signable.header + signable.body)
    on_chain = env.escrow.confirmation_digest(confirmation)
    assert confirmation.digest(chain_id, address) == on_chain == by_eth_account == by_hand
    other = Confirmation(7, 3, 5, COMMENT, 1_900_000_000)
    assert other.digest(chain_id, address) == env.escrow.confirmation_digest(other) != on_chain


def test_confirmWithSig_typehash_matches_the_contract(env: EscrowEnv) -> None:
    on_chain = env.escrow.contract.functions.CONFIRMATION_TYPEHASH().call()
    expected = keccak(
        text="Confirmation(uint256 escrowId,uint256 milestone,uint8 rating,bytes32 commentHash,"
        "uint256 deadline)"
    )
    assert bytes(on_chain) == expected
    assert expected == eip712.CONFIRMATION_TYPEHASH


def test_confirmWithSig_domain_separator_matches_the_contract(env: EscrowEnv) -> None:
    on_chain = env.escrow.domain_separator()
    assert on_chain == eip712.domain_separator(env.escrow.chain_id, env.escrow.address)
    assert on_chain != eip712.domain_separator(env.escrow.chain_id + 1, env.escrow.address)


def test_confirmWithSig_recover_signer_returns_the_client(env: EscrowEnv) -> None:
    confirmation = env.confirmation(1, 0, 5, COMMENT)
    digest = confirmation.digest(env.escrow.chain_id, env.escrow.address)
    assert eip712.recover_signer(digest, env.sign(confirmation)) == env.client
    signature = env.sign(confirmation, env.parties.stranger)
    assert eip712.recover_signer(digest, "0x" + signature.hex()) == env.parties.stranger.address


def test_confirmWithSig_parse_signature_splits_a_canonical_signature(env: EscrowEnv) -> None:
    signature = env.sign(env.confirmation(1, 0, 5))
    r, s, v = _split(signature)
    assert eip712.parse_signature(signature) == (v, r, s)
    assert eip712.parse_signature("0x" + signature.hex()) == (v, r, s)


@pytest.mark.parametrize(
    "case",
    [
        "high_s",
        "v_as_parity",
        "v_as_other_parity",
        "v29",
        "len64",
        "len66",
        "empty",
        "r_zero",
        "not_hex",
    ],
)
def test_confirmWithSig_parse_signature_refuses_what_the_contract_refuses(
    env: EscrowEnv, case: str
) -> None:
    confirmation = env.confirmation(1, 0, 5)
    bad = _bad_signatures(env.sign(confirmation))[case]
    with pytest.raises(InvalidSignature):
        eip712.parse_signature(bad)
    digest = confirmation.digest(env.escrow.chain_id, env.escrow.address)
    with pytest.raises(InvalidSignature):
        eip712.recover_signer(digest, bad)

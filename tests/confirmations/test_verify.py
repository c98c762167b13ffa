"""The signature check of a confirmation, without a node: a signature that recovers to someone
other than the client is refused with every signed field and the value the service expected."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import ChecksumAddress

from backend.chain.eip712 import Confirmation
from backend.confirmations.reviews import review_document
from backend.confirmations.verify import (
    Prepared,
    WalletRefusedError,
    WrongSignerError,
    check_signer,
    signed_fields,
)
from backend.escrows.payouts import MilestonePayout

CLIENT = Account.from_key("0x" + "21" * 32)
STRANGER = Account.from_key("0x" + "22" * 32)
CONTRACT: ChecksumAddress = Account.from_key("0x" + "23" * 32).address
CHAIN_ID = 31337


class _Chain:
    """The two questions `check_signer` asks the chain, answered from memory."""

    chain_id = CHAIN_ID
    contract = CONTRACT

    def __init__(self, *, wallet: bool = False, accepts: bool = False) -> None:
        self.wallet = wallet
        self.accepts = accepts

    def has_code(self, address: str) -> bool:
        return self.wallet

    def erc1271_accepts(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        return self.accepts


def _prepared(rating: int = 5, comment: str = "") -> Prepared:
    review = review_document(comment, [])
    confirmation = Confirmation(7, 1, rating, review.comment_hash, 1_900_000_000)
    return Prepared(
        confirmation=confirmation,
        params=None,  # type: ignore[arg-type]  # not read by the signature check
        review=review,
        typed_data=confirmation.typed_data(CHAIN_ID, CONTRACT),
        digest=confirmation.digest(CHAIN_ID, CONTRACT),
        payout=MilestonePayout(0, 0),  # not read by the signature check
    )


def _sign(account: Any, prepared: Prepared) -> bytes:
    signed = account.sign_message(encode_typed_data(full_message=prepared.typed_data))
    return bytes(signed.signature)


def test_the_clients_own_signature_passes() -> None:
    prepared = _prepared()
    signer, via = check_signer(_Chain(), CLIENT.address, prepared, _sign(CLIENT, prepared))  # type: ignore[arg-type]
    assert (signer, via) == (CLIENT.address, "ecdsa")


def test_a_signature_over_another_rating_names_every_field_the_service_expected() -> None:
    signed_over = _prepared(rating=4)
    checked = _prepared(rating=5, comment="fine")
    with pytest.raises(WrongSignerError) as caught:
        check_signer(_Chain(), CLIENT.address, checked, _sign(CLIENT, signed_over))  # type: ignore[arg-type]
    error = caught.value
    assert error.code == "forbidden_signer"
    assert error.expected == CLIENT.address
    assert error.signer not in (CLIENT.address, STRANGER.address)  # an unrelated address
    assert error.expected_fields == {
        "name": "'QualityEscrow'",
        "version": "'1'",
        "chainId": "31337",
        "verifyingContract": CONTRACT,
        "escrowId": "7",
        "milestone": "1",
        "rating": "5",
        "commentHash": f"0x{checked.review.comment_hash.hex()} "
        "(the review of a 4-character comment and 0 attachment(s))",
        "deadline": "1900000000",
    }
    for name, value in error.expected_fields.items():
        assert f"{name}={value}" in error.message
    assert f"not to the escrow's client {CLIENT.address}" in error.message


def test_the_fields_of_a_confirmation_without_review_name_the_zero_hash() -> None:
    fields = signed_fields(_prepared(), CHAIN_ID, CONTRACT)
    assert fields["commentHash"] == "0x" + "00" * 32 + " (no review: the zero hash)"


def test_a_strangers_signature_is_refused_naming_the_stranger() -> None:
    prepared = _prepared()
    with pytest.raises(WrongSignerError) as caught:
        check_signer(_Chain(), CLIENT.address, prepared, _sign(STRANGER, prepared))  # type: ignore[arg-type]
    assert caught.value.signer == STRANGER.address


def test_a_contract_wallet_client_is_asked_and_its_refusal_is_a_wallet_refusal() -> None:
    prepared = _prepared()
    wallet = CONTRACT
    assert check_signer(
        _Chain(wallet=True, accepts=True), wallet, prepared, b"\xab" * 80  # type: ignore[arg-type]
    ) == (wallet, "erc1271")
    with pytest.raises(WalletRefusedError) as caught:
        check_signer(_Chain(wallet=True), wallet, prepared, b"\xab" * 80)  # type: ignore[arg-type]
    assert caught.value.expected_fields == signed_fields(prepared, CHAIN_ID, CONTRACT)
    assert "deadline=1900000000" in caught.value.message

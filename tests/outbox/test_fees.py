"""The fee rules of `backend/outbox/fees.py`, without a chain: first fees (type 2 at 2 * base fee +
tip, legacy at the gas price, both under the ceiling), replacements (both caps at least 10% up,
rounded up, at least what the market asks, never over the ceiling, none when the ceiling leaves no
room) and signed bytes read back (legacy and EIP-1559) so a replacement carries the same call."""

from __future__ import annotations

import pytest
from eth_account import Account

from backend.outbox.fees import Fees, Market, Signed, bumped, initial_fees, replacement_fees

GWEI = 10**9
KEY = "0x" + "42" * 32
CEILING = 500 * GWEI


def test_ten_percent_up_is_rounded_up() -> None:
    assert [bumped(v) for v in (0, 1, 10, 11, 1_000_000_002)] == [0, 2, 11, 13, 1_100_000_003]


def test_first_fees_are_type_2_at_twice_the_base_fee_plus_tip_or_the_gas_price_on_legacy() -> None:
    assert initial_fees(Market(3 * GWEI, GWEI), CEILING) == Fees(7 * GWEI, GWEI)
    assert initial_fees(Market(None, 5 * GWEI), CEILING) == Fees(5 * GWEI, None)
    assert initial_fees(Market(3 * GWEI, GWEI), 2 * GWEI) == Fees(2 * GWEI, GWEI)  # capped
    assert initial_fees(Market(None, 5 * GWEI), 2 * GWEI) == Fees(2 * GWEI, None)
    assert Fees(7, 1).params() == {"maxFeePerGas": 7, "maxPriorityFeePerGas": 1}
    assert Fees(5, None).params() == {"gasPrice": 5}


def test_a_replacement_raises_both_caps_ten_percent_and_meets_the_market() -> None:
    current = Fees(GWEI + 2, GWEI)
    # a quiet market: exactly 10% up, rounded up
    assert replacement_fees(current, Market(1, GWEI), CEILING) == Fees(
        1_100_000_003, 11 * GWEI // 10
    )
    # the base fee rose: the max fee covers twice the base fee plus the tip
    assert replacement_fees(current, Market(3 * GWEI, GWEI), CEILING) == Fees(
        6 * GWEI + 11 * GWEI // 10, 11 * GWEI // 10
    )
    # the node suggests a higher tip than 10% up
    assert replacement_fees(current, Market(1, 2 * GWEI), CEILING) == Fees(2 * GWEI + 2, 2 * GWEI)
    # a legacy transaction on a legacy chain
    assert replacement_fees(Fees(10, None), Market(None, 1), CEILING) == Fees(11, None)
    # a legacy transaction replaced on a fee market: its gas price counts as both caps
    assert replacement_fees(Fees(10 * GWEI, None), Market(GWEI, GWEI), CEILING) == Fees(
        13 * GWEI, 11 * GWEI
    )


def test_a_replacement_stops_at_the_ceiling_and_none_is_made_without_room_for_ten_percent() -> None:
    current = Fees(GWEI, GWEI // 2)
    assert replacement_fees(current, Market(3 * GWEI, GWEI // 2), 2 * GWEI) == Fees(
        2 * GWEI, 11 * GWEI // 20
    )
    assert replacement_fees(Fees(2 * GWEI, GWEI), Market(3 * GWEI, GWEI), 2 * GWEI) is None
    # a ceiling just over, and just under, the 10% raise
    assert replacement_fees(Fees(GWEI, GWEI), Market(1, GWEI), 11 * GWEI // 10 + 5) == Fees(
        11 * GWEI // 10 + 2, 11 * GWEI // 10
    )
    assert replacement_fees(Fees(GWEI, GWEI), Market(1, GWEI), 11 * GWEI // 10 - 1) is None
    assert replacement_fees(Fees(10, None), Market(None, 1), 10) is None


def test_the_highest_of_several_versions_is_each_cap_at_its_highest() -> None:
    assert Fees.highest([Fees(5, 3), Fees(7, 1), Fees(6, None)]) == Fees(7, 3)
    assert Market(5, 1).under(Fees(4, 1)) and not Market(5, 1).under(Fees(5, 1))
    assert not Market(None, 1).under(Fees(1, None))


@pytest.mark.parametrize("dynamic", [True, False], ids=["eip1559", "legacy"])
def test_signed_bytes_read_back_give_the_same_call_with_other_fees(dynamic: bool) -> None:
    fees = Fees(3 * GWEI, GWEI) if dynamic else Fees(3 * GWEI, None)
    fields = {
        "to": "0x" + "33" * 20, "value": 7, "gas": 50_000, "nonce": 9, "chainId": 31337,
        "data": b"\x01\x02\x03", **fees.params(),
    }
    raw = bytes(Account.from_key(KEY).sign_transaction(fields).raw_transaction)
    signed = Signed.decode(raw)
    assert (signed.type, signed.chain_id, signed.nonce, signed.gas, signed.value) == (
        2 if dynamic else 0, 31337, 9, 50_000, 7
    )
    assert (signed.to, signed.data, signed.fees) == ("0x" + "33" * 20, b"\x01\x02\x03", fees)
    again = Signed.decode(bytes(
        Account.from_key(KEY).sign_transaction(signed.with_fees(Fees(4 * GWEI, 2 * GWEI)))
        .raw_transaction
    ))
    assert (again.type, again.nonce, again.gas, again.data, again.fees) == (
        2, 9, 50_000, b"\x01\x02\x03", Fees(4 * GWEI, 2 * GWEI)
    )

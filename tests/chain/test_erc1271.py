"""The one EIP-1271 check: a wallet's magic value accepts, everything else refuses, and a node
that does not answer is `NodeUnavailable`, never a refusal."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from backend.chain.erc1271 import MAGIC_VALUE, accepts_answer, has_code, is_valid_signature
from backend.chain.errors import NodeUnavailable
from tests.chain.support import OTHER_VALUE, mock_wallet, set_mode
from tests.support import EscrowEnv

DIGEST = b"\x11" * 32
SIGNATURE = b"\xab" * 80  # a wallet's own format: not a 65-byte ECDSA signature


def test_the_magic_value_is_the_selector_of_isValidSignature() -> None:
    from eth_utils import function_signature_to_4byte_selector

    assert function_signature_to_4byte_selector("isValidSignature(bytes32,bytes)") == MAGIC_VALUE
    assert MAGIC_VALUE.hex() == "1626ba7e"


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        (MAGIC_VALUE + bytes(28), True),  # the ABI-encoded bytes4
        (MAGIC_VALUE + bytes(28) + b"\x01" * 32, True),  # longer: the first word decides
        (MAGIC_VALUE, False),  # short: 4 bytes, not a word
        (MAGIC_VALUE + bytes(27), False),  # 31 bytes
        (b"", False),  # nothing (an address without code)
        (MAGIC_VALUE + b"\x01" + bytes(27), False),  # garbage after the selector
        (bytes(28) + MAGIC_VALUE, False),  # right-aligned, as a uint would be
        (bytes.fromhex("ffffffff") + bytes(28), False),  # another value
    ],
    ids=["word", "longer", "4-bytes", "31-bytes", "empty", "garbage", "right-aligned", "other"],
)
def test_only_a_first_word_holding_the_magic_value_left_aligned_accepts(
    answer: bytes, accepted: bool
) -> None:
    assert accepts_answer(answer) is accepted


@pytest.mark.parametrize(("mode", "accepted"), [(0, True), (1, False), (2, False)],
                         ids=["accepts", "other-value", "reverts"])
def test_a_wallet_is_asked_on_chain_and_its_answer_decides(
    env: EscrowEnv, mode: int, accepted: bool
) -> None:
    wallet = mock_wallet(env, mode)
    assert has_code(env.w3, wallet)
    assert is_valid_signature(env.w3, wallet, DIGEST, SIGNATURE) is accepted


def test_an_address_without_code_does_not_accept(env: EscrowEnv) -> None:
    assert not has_code(env.w3, env.client)
    assert is_valid_signature(env.w3, env.client, DIGEST, SIGNATURE) is False


def test_a_contract_without_the_function_does_not_accept(env: EscrowEnv) -> None:
    # the escrow contract has no isValidSignature and no fallback: the call reverts
    assert is_valid_signature(env.w3, env.escrow.address, DIGEST, SIGNATURE) is False


def test_the_answer_at_an_earlier_block_is_the_wallets_answer_then(env: EscrowEnv) -> None:
    wallet = mock_wallet(env, 0)
    accepted_at = env.w3.eth.block_number
    set_mode(env, wallet, OTHER_VALUE)
    assert is_valid_signature(env.w3, wallet, DIGEST, SIGNATURE) is False
    assert is_valid_signature(env.w3, wallet, DIGEST, SIGNATURE, block=accepted_at) is True


@pytest.mark.parametrize("method", ["call", "get_code"])
def test_a_node_that_does_not_answer_is_unavailable_not_a_refusal(
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    wallet = mock_wallet(env, 0)

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(env.w3.eth, method, down)
    with pytest.raises(NodeUnavailable, match="connection refused") as caught:
        if method == "call":
            is_valid_signature(env.w3, wallet, DIGEST, SIGNATURE)
        else:
            has_code(env.w3, wallet)
    assert caught.value.code == "unavailable"
    assert caught.value.retry_after > 0


@pytest.mark.parametrize("burn", [300_000, 35_000_000], ids=["300k", "35M"])
def test_a_wallet_burning_gas_only_for_the_escrow_passes_the_plain_check_but_not_the_real_call(
    hardhat_env: EscrowEnv, burn: int
) -> None:
    """Why the confirmations simulate the relayed `confirmWithSig`: the plain check
    (an `eth_call` from address 0) cannot see what the wallet does when the escrow asks."""
    from backend.chain.revert_types import EscrowInvalidSignature
    from backend.chain.transactions import GasOverCap, estimate_within
    from tests.confirmations.support import burning_wallet_escrow, set_burn

    env = hardhat_env
    escrow_id, wallet = burning_wallet_escrow(env, (1,))
    set_burn(env, wallet, burn)
    c = env.confirmation(escrow_id, 0)
    fn = env.escrow.function(
        "confirmWithSig", escrow_id, 0, c.rating, c.comment_hash, c.deadline, SIGNATURE
    )

    assert is_valid_signature(env.w3, wallet, c.digest(31337, env.escrow.address), SIGNATURE)
    with pytest.raises((GasOverCap, EscrowInvalidSignature)) as caught:
        estimate_within(fn, env.parties.stranger.address, 200_000, what="confirmWithSig",
                        setting="relay_max_gas")
    if burn == 300_000:  # within the 4x probe: the gas it needs is named
        assert isinstance(caught.value, GasOverCap)
        assert caught.value.needed is not None and burn < caught.value.needed < 400_000
    else:  # the wallet, starved of gas, answers no: the escrow reverts
        assert isinstance(caught.value, EscrowInvalidSignature)

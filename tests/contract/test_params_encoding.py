"""The parameters' commitment is checked by hashing calldata directly (a gas shortcut). These tests
pin down that the shortcut accepts every valid encoding and nothing else."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from backend.chain import revert_types
from backend.chain.transactions import as_chain_error
from backend.chain.types import Status
from tests.support import EscrowEnv

PARAMS_TYPE = (
    "(address,address,address,address,address,bytes32,uint256[],"
    "(uint16[5],uint16,uint16,uint16,uint16,uint32,uint32,uint32,uint64))"
)
HEAD = 20 * 32  # static head of the params tuple
ARGS = 4  # selector length


def _accept_calldata(env: EscrowEnv, escrow_id: int) -> bytearray:
    data = env.escrow.function("accept", escrow_id)._encode_transaction_data()
    return bytearray(bytes.fromhex(data.removeprefix("0x")))


def _send_raw(env: EscrowEnv, data: bytes, sender: str) -> None:
    try:
        tx = env.w3.eth.send_transaction({"from": sender, "to": env.escrow.address, "data": data})
    except Exception as exc:
        raise as_chain_error(exc) from exc
    assert env.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def test_hashParams_equals_keccak_of_abi_encode(env: EscrowEnv) -> None:
    p = env.params((5, 7, 11))
    expected = keccak(encode([PARAMS_TYPE], [p.to_abi()]))
    assert env.escrow.hash_params(p) == expected
    escrow_id = env.create(p)
    assert env.escrow.params_hash(escrow_id) == expected


def test_accept_takes_canonical_calldata(env: EscrowEnv) -> None:
    escrow_id = env.create()
    _send_raw(env, bytes(_accept_calldata(env, escrow_id)), env.provider)
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE


def test_accept_takes_a_non_canonical_array_offset_through_the_slow_path(env: EscrowEnv) -> None:
    escrow_id = env.create()
    data = _accept_calldata(env, escrow_id)
    tuple_start = ARGS + 2 * 32
    # move the milestone array one word further and point the offset at it
    offset_pos = tuple_start + 6 * 32
    assert int.from_bytes(data[offset_pos : offset_pos + 32], "big") == HEAD
    data[offset_pos : offset_pos + 32] = (HEAD + 32).to_bytes(32, "big")
    data[tuple_start + HEAD : tuple_start + HEAD] = b"\xee" * 32
    _send_raw(env, bytes(data), env.provider)
    assert env.escrow.get_escrow(escrow_id).status == Status.ACTIVE


@pytest.mark.parametrize(
    "word", [0, 1, 2, 3, 4], ids=["client", "provider", "token", "oracle", "arbiter"]
)
def test_accept_refuses_an_address_with_dirty_upper_bits(env: EscrowEnv, word: int) -> None:
    escrow_id = env.create()
    data = _accept_calldata(env, escrow_id)
    pos = ARGS + 2 * 32 + word * 32
    data[pos] = 0x01  # the address is unchanged, the padding is not
    with pytest.raises(revert_types.EscrowParamsMismatch) as info:
        _send_raw(env, bytes(data), env.provider)
    assert info.value.expected == env.escrow.params_hash(escrow_id)
    assert info.value.actual != info.value.expected
    assert env.escrow.get_escrow(escrow_id).status == Status.PROPOSED


def test_accept_refuses_a_milestone_array_longer_than_the_committed_one(env: EscrowEnv) -> None:
    escrow_id = env.create()
    data = _accept_calldata(env, escrow_id)
    length_pos = ARGS + 2 * 32 + HEAD
    data[length_pos : length_pos + 32] = (3).to_bytes(32, "big")
    data += (1).to_bytes(32, "big")
    with pytest.raises(revert_types.EscrowParamsMismatch):
        _send_raw(env, bytes(data), env.provider)

"""`backend.chain.bulk_rpc.receipts` reads receipts in JSON-RPC batches and shapes them as web3.py
formats `eth_getTransactionReceipt` (the senders settle from them, and the oracle decodes its
`BreachReported` from their logs), on the Hardhat node and on the in-process chain."""

from __future__ import annotations

from typing import Any

from web3.logs import DISCARD

from backend.chain import bulk_rpc
from tests.support import ETH, EscrowEnv

UNKNOWN = "0x" + "11" * 32


def _compare(ours: Any, theirs: Any) -> None:
    for key, value in ours.items():
        if key == "logs":
            assert len(value) == len(theirs["logs"])
            for mine, web3s in zip(value, theirs["logs"], strict=True):
                assert {k: mine[k] for k in mine} == {k: web3s[k] for k in mine}
        else:
            assert value == theirs[key], key


def _escrow_with_events(env: EscrowEnv) -> str:
    escrow_id, result = env.escrow.create_escrow(env.params((ETH, ETH)), env.client)
    assert escrow_id >= 0
    return result.tx_hash


def test_receipts_read_in_a_batch_match_web3s_own_and_decode_the_same_events(
    hardhat_env: EscrowEnv,
) -> None:
    env = hardhat_env
    mined = _escrow_with_events(env)

    found = bulk_rpc.receipts(env.w3, [mined, UNKNOWN])

    assert list(found) == [mined]  # a hash without a receipt is left out
    theirs = env.w3.eth.get_transaction_receipt(mined)  # type: ignore[arg-type]
    _compare(found[mined], theirs)
    assert found[mined]["logs"]  # the escrow's creation logs its events
    event = env.escrow.contract.events.EscrowCreated()
    ours = event.process_receipt(found[mined], errors=DISCARD)
    assert [dict(e["args"]) for e in ours] == [
        dict(e["args"]) for e in event.process_receipt(theirs, errors=DISCARD)
    ]


def test_receipts_on_the_in_process_chain_are_web3s_own(env: EscrowEnv) -> None:
    mined = _escrow_with_events(env)

    found = bulk_rpc.receipts(env.w3, [UNKNOWN, mined])

    assert list(found) == [mined]
    assert found[mined] == env.w3.eth.get_transaction_receipt(mined)  # type: ignore[arg-type]

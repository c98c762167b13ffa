"""The outbox discipline of every sender (the confirmation relayer and the oracle's submitter), on a
real Hardhat node and both databases: killed between any two steps and started again, a sender
loses no row and sends nothing twice; it broadcasts only the bytes it stored, resolves "already
known" / "nonce too low" by the transaction hash, re-signs when its nonce went elsewhere, settles
at the configured depth, records mined reverts with their decoded reason, and only one process
owns a (sender, account) at a time. On a fee market it replaces a transaction priced under the
base fee or unmined for `replace_after_blocks` (same nonce, fees 10% up, at most the ceiling, the
replacement stored before it is sent) and settles the row by whichever version is mined; a
receipt a reorg takes away before it is deep enough sends the transaction again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backend.db.models import OutboxTransaction, SenderNonce
from backend.outbox.fees import bumped
from backend.outbox.owner import SenderBusyError
from backend.outbox.sender import REPLACE_STEPS, STEPS
from backend.workers import SENDERS, start_workers
from tests.confirmations.support import relay_services
from tests.outbox.support import (
    GWEI,
    STATUS_AT_CRASH,
    Case,
    Crash,
    CrashOnceEverywhere,
    Stack,
    assert_crashed_everywhere,
    crash_at,
    fee_market,
    manual_mining,
    mine,
    mine_at,
    revert,
    run_through_crashes,
    running,
    set_base_fee,
    snapshot,
    spy_broadcasts,
    versions,
    wait_until_owned,
)

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ crash at every step


@pytest.mark.parametrize("step", STEPS)
def test_a_sender_killed_at_each_step_and_restarted_sends_the_row_exactly_once(
    case: Case, step: str
) -> None:
    escrow_id, [row_id] = case.queue()
    first_nonce = case.tx_count()

    with pytest.raises(Crash):
        case.sender(crash_at(step)).run_until_idle()
    at_crash = case.row(row_id)
    assert at_crash.status == STATUS_AT_CRASH[step]
    stored = None if step == "signing" else case.tx(row_id)

    case.stack.restart()
    case.sender().run_until_idle()

    row = case.row(row_id)
    tx = case.tx(row_id)
    assert (row.status, row.error, tx.status, tx.nonce) == ("mined", None, "mined", first_nonce)
    assert case.effects(escrow_id) == [tx.tx_hash]
    assert case.tx_count() == first_nonce + 1  # one transaction, ever
    assert len(case.transactions()) == 1
    if stored is not None:  # signed once: the bytes stored before the crash are the ones mined
        assert (tx.id, tx.raw_tx, tx.tx_hash) == (stored.id, stored.raw_tx, stored.tx_hash)
    with case.services.sessions() as session:
        nonce = session.get(SenderNonce, (case.services.chain_id, case.key().address))
        assert nonce is not None and nonce.next_nonce == first_nonce + 1


def test_a_sender_killed_once_at_every_boundary_of_a_busy_queue_sends_each_row_once(
    case: Case,
) -> None:
    escrow_id, ids = case.queue(3)
    first_nonce = case.tx_count()
    hook = CrashOnceEverywhere()

    run_through_crashes(case.stack, lambda: case.sender(hook).run_until_idle())

    assert_crashed_everywhere(hook, ids, STEPS, ("",))

    assert [case.row(i).status for i in ids] == ["mined"] * 3
    txs = [case.tx(i) for i in ids]
    assert sorted(t.nonce for t in txs) == [first_nonce, first_nonce + 1, first_nonce + 2]
    assert sorted(case.effects(escrow_id)) == sorted(t.tx_hash for t in txs)
    assert case.tx_count() == first_nonce + 3


def test_a_sender_process_killed_by_sigkill_after_broadcasting_is_finished_by_the_next_one(
    case: Case,
) -> None:
    stack = case.stack
    escrow_id, [row_id] = case.queue()
    first_nonce = case.tx_count()
    script = textwrap.dedent(
        """
        import os, signal, sys
        from backend.config import Settings
        from backend.services import build_services
        from backend.workers import SENDERS

        name, url, data_dir, db, contract, block = sys.argv[1:7]
        settings = Settings(rpc_url=url, data_dir=data_dir, database_url=db)
        services = build_services(settings, contract_address=contract,
                                  deployment_block=int(block))

        def die(step, row):
            if step == "broadcast":
                os.kill(os.getpid(), signal.SIGKILL)

        sender = SENDERS[name](services)
        sender.hook = die
        sender.run_until_idle()
        """
    )
    env = stack.env
    endpoint = env.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    args = [case.name, endpoint, str(stack.data_dir), stack.database_url, env.escrow.address,
            str(env.deployment_block)]
    child = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert case.row(row_id).status == "signed"  # the transaction is out, the row does not know
    at_kill = case.tx(row_id)
    assert case.tx_count() == first_nonce + 1

    stack.restart()
    sender = case.sender()
    outcomes = spy_broadcasts(sender)
    sender.run_until_idle()
    assert outcomes == ["known"]  # the node answered "nonce too low": found by its hash
    assert (case.row(row_id).status, case.tx(row_id).tx_hash) == ("mined", at_kill.tx_hash)
    assert case.effects(escrow_id) == [at_kill.tx_hash]
    assert case.tx_count() == first_nonce + 1


# ------------------------------------------------------------------ the node's answers


def test_a_rebroadcast_the_node_already_holds_is_taken_as_sent(case: Case) -> None:
    escrow_id, [row_id] = case.queue()
    with manual_mining(case.env):
        with pytest.raises(Crash):
            case.sender(crash_at("broadcast")).run_until_idle()  # in the mempool, row "signed"
        case.stack.restart()
        sender = case.sender()
        outcomes = spy_broadcasts(sender)
        sender.run_once()
        assert outcomes == ["known"]  # "Known transaction" from Hardhat
        assert case.row(row_id).status == "sent"
        mine(case.env)
        sender.run_until_idle()
    assert case.row(row_id).status == "mined"
    assert case.effects(escrow_id) == [case.tx(row_id).tx_hash]


def test_a_transaction_the_node_dropped_is_rebroadcast_from_the_same_bytes(case: Case) -> None:
    escrow_id, [row_id] = case.queue()
    with manual_mining(case.env):
        sender = case.sender()
        sender.run_once()
        sent = case.tx(row_id)
        assert (case.row(row_id).status, sent.status) == ("sent", "sent")
        provider: Any = case.env.w3.provider
        assert provider.make_request("hardhat_dropTransaction", [sent.tx_hash])["result"] is True

        outcomes = spy_broadcasts(sender)
        sender.run_once()
        assert outcomes == ["accepted"]
        mine(case.env)
        sender.run_until_idle()
    mined = case.tx(row_id)
    assert (case.row(row_id).status, mined.raw_tx, mined.tx_hash) == (
        "mined", sent.raw_tx, sent.tx_hash
    )
    assert case.effects(escrow_id) == [sent.tx_hash]


def test_a_mined_revert_marks_the_row_failed_with_the_decoded_error(case: Case) -> None:
    escrow_id, [row_id] = case.queue()
    first_nonce = case.tx_count()
    with pytest.raises(Crash):
        case.sender(crash_at("signed")).run_until_idle()
    case.preempt(escrow_id)  # the escrow moves on before the signed transaction is sent

    case.stack.restart()
    report = case.sender().run_until_idle()
    assert (report.broadcast, report.mined, report.failed) == (1, 0, 1)
    row, tx = case.row(row_id), case.tx(row_id)
    expected = case.reverted.format(escrow_id=escrow_id)
    assert (row.status, row.error) == ("failed", expected)
    assert (tx.status, tx.error) == ("reverted", expected)
    receipt = case.env.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
    assert receipt["status"] == 0
    assert case.tx_count() == first_nonce + 1


def test_a_nonce_taken_by_another_transaction_makes_the_sender_sign_anew(case: Case) -> None:
    escrow_id, [row_id] = case.queue()
    with pytest.raises(Crash):
        case.sender(crash_at("signed")).run_until_idle()
    stale = case.tx(row_id)
    # someone else spends the same nonce from the sender's account (the rule was broken)
    other = case.key().sign_transaction({
        "to": case.env.provider, "value": 1, "gas": 21_000, "nonce": stale.nonce,
        "chainId": 31337, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    })
    case.env.w3.eth.send_raw_transaction(other.raw_transaction)

    case.stack.restart()
    report = case.sender().run_until_idle()
    assert report.requeued == 1
    fresh = case.tx(row_id)
    assert (case.row(row_id).status, fresh.nonce) == ("mined", stale.nonce + 1)
    assert fresh.tx_hash != stale.tx_hash
    assert case.effects(escrow_id) == [fresh.tx_hash]
    # the unminable bytes stay on record, superseded
    assert [(t.id, t.status) for t in case.transactions()] == [
        (stale.id, "superseded"), (fresh.id, "mined")
    ]


def test_a_receipt_counts_only_once_it_is_as_deep_as_the_configured_confirmations(
    case: Case,
) -> None:
    _escrow_id, [row_id] = case.queue()
    sender = case.sender(confirmations=2)
    sender.run_until_idle()
    assert case.row(row_id).status == "sent"
    mine(case.env)
    sender.run_until_idle()
    assert case.row(row_id).status == "sent"
    mine(case.env)
    sender.run_until_idle()
    assert case.row(row_id).status == "mined"


# ------------------------------------------------------------------ one owner, one loop


def test_a_second_worker_of_the_same_sender_and_account_refuses_to_start(case: Case) -> None:
    with running(case.sender()):
        second = relay_services(case.env, case.stack.database_url, case.stack.data_dir)
        try:
            wait_until_owned(second, case.name, case.key().address)
        finally:
            second.engine.dispose()
        stop_second = threading.Event()
        stop_second.set()
        with pytest.raises(SenderBusyError):
            case.sender().run_forever(stop_second)


def test_the_worker_loop_sends_a_row_queued_while_it_runs(case: Case) -> None:
    with running(case.sender()):
        escrow_id, [row_id] = case.queue()
        deadline = time.monotonic() + 30
        while case.row(row_id).status != "mined":
            assert time.monotonic() < deadline, "the worker did not send in 30 s"
            time.sleep(0.05)
    assert len(case.effects(escrow_id)) == 1


def test_the_workers_run_every_sender_through_the_one_loop_each_under_its_own_lock(
    stack: Stack,
) -> None:
    workers = start_workers(stack.services, tuple(SENDERS))
    second = relay_services(stack.env, stack.database_url, stack.data_dir)
    try:
        for name, build in SENDERS.items():
            wait_until_owned(second, name, build(second).address)
    finally:
        second.engine.dispose()
        workers.shutdown(timeout=30)
    assert [t.name for t in workers.threads] == ["relayer", "oracle"]
    assert not any(t.is_alive() for t in workers.threads)


# ------------------------------------------------------------------ a fee market


def _fees(tx: OutboxTransaction) -> tuple[int, int]:
    assert tx.max_fee_per_gas is not None and tx.max_priority_fee_per_gas is not None
    return int(tx.max_fee_per_gas), int(tx.max_priority_fee_per_gas)


def test_an_underpriced_transaction_is_replaced_with_higher_fees_until_mined(case: Case) -> None:
    env = case.env
    escrow_id, [row_id] = case.queue()
    first_nonce = case.tx_count()
    with fee_market(env):
        set_base_fee(env, 1)
        sender = case.sender()
        sender.run_once()  # signed and sent at about 1 gwei (2 wei of base fee + 1 gwei tip)
        offered = case.tx(row_id)
        assert offered.raw_tx.startswith("0x02")  # EIP-1559, type 2
        assert _fees(offered)[0] < 3 * GWEI
        for _ in range(8):  # the base fee stays at 3 gwei for 8 blocks
            set_base_fee(env, 3 * GWEI)
            sender.run_once()
            mine(env)
            if case.row(row_id).status == "mined":
                break
        sender.run_until_idle()
    assert case.row(row_id).status == "mined"
    first, mined = versions(case, row_id)
    assert (first.id, first.status, mined.status) == (offered.id, "replaced", "mined")
    assert (mined.nonce, mined.replaces_id, mined.first_id) == (first.nonce, first.id, first.id)
    (max_fee, tip), (old_max_fee, old_tip) = _fees(mined), _fees(first)
    assert tip >= bumped(old_tip) and max_fee >= bumped(old_max_fee)
    assert max_fee >= 2 * 3 * GWEI + tip
    assert mined.raw_tx.startswith("0x02") and case.tx(row_id).id == mined.id
    assert case.effects(escrow_id) == [mined.tx_hash]
    assert case.tx_count() == first_nonce + 1


def test_a_transaction_unmined_for_the_configured_blocks_is_replaced_with_fees_ten_percent_up(
    case: Case,
) -> None:
    env = case.env
    escrow_id, [row_id] = case.queue()
    with fee_market(env):
        sender = case.sender(replace_after_blocks=2)
        for block in range(3):
            set_base_fee(env, 1)  # the sender always sees a cheap next block ...
            sender.run_once()
            assert len(versions(case, row_id)) == (1 if block < 2 else 2)
            set_base_fee(env, 3 * GWEI)  # ... which is never the one mined
            mine(env)
        set_base_fee(env, 1)
        mine(env)
        sender.run_until_idle()
    first, mined = versions(case, row_id)
    assert (first.status, mined.status, case.row(row_id).status) == ("replaced", "mined", "mined")
    (max_fee, tip), (old_max_fee, old_tip) = _fees(mined), _fees(first)
    assert (max_fee, tip) == (bumped(old_max_fee), bumped(old_tip))  # 10% up, rounded up
    assert case.effects(escrow_id) == [mined.tx_hash]


def test_replacements_stop_at_the_fee_ceiling_and_the_row_waits_for_the_base_fee_to_fall(
    case: Case,
) -> None:
    env = case.env
    escrow_id, [row_id] = case.queue()
    ceiling = 2 * GWEI
    with fee_market(env):
        set_base_fee(env, 1)
        sender = case.sender(max_fee_per_gas=ceiling)
        sender.run_once()
        for _ in range(4):
            set_base_fee(env, 3 * GWEI)
            sender.run_once()
            mine(env)
        waiting = case.row(row_id)
        assert waiting.status == "sent"
        assert "fee ceiling (2000000000 wei per gas)" in waiting.error
        set_base_fee(env, GWEI)
        mine(env)
        sender.run_until_idle()
    txs = versions(case, row_id)
    assert [t.status for t in txs] == ["replaced", "mined"]  # one raise, then the ceiling
    assert all(_fees(t)[0] <= ceiling for t in txs)
    assert (case.row(row_id).status, case.row(row_id).error) == ("mined", None)
    assert case.effects(escrow_id) == [txs[-1].tx_hash]


def test_a_sender_killed_once_at_every_boundary_of_a_replacement_sends_the_row_once(
    case: Case,
) -> None:
    env, stack = case.env, case.stack
    escrow_id, [row_id] = case.queue()
    first_nonce = case.tx_count()
    hook = CrashOnceEverywhere()
    with fee_market(env):
        set_base_fee(env, 1)
        run_through_crashes(stack, lambda: case.sender(hook).run_until_idle())
        set_base_fee(env, 3 * GWEI)
        run_through_crashes(stack, lambda: case.sender(hook).run_until_idle())
        mine(env)
        run_through_crashes(stack, lambda: case.sender(hook).run_until_idle())
    assert hook.crashed == {(step, row_id) for step in STEPS + REPLACE_STEPS}
    txs = versions(case, row_id)
    assert [(t.status, t.nonce) for t in txs] == [("replaced", first_nonce), ("mined", first_nonce)]
    assert case.row(row_id).status == "mined"
    assert case.effects(escrow_id) == [txs[-1].tx_hash]
    assert case.tx_count() == first_nonce + 1


def test_whichever_version_of_the_nonce_is_mined_settles_the_row(case: Case) -> None:
    env, stack = case.env, case.stack
    escrow_id, [row_id] = case.queue()
    with fee_market(env):
        set_base_fee(env, 1)
        case.sender().run_once()
        set_base_fee(env, 3 * GWEI)
        with pytest.raises(Crash):  # the replacement is stored, never broadcast ...
            case.sender(crash_at("replaced")).run_once()
        mine_at(env, 1)  # ... and the first version is mined after all
        stack.restart()
        sender = case.sender()
        outcomes = spy_broadcasts(sender)
        sender.run_until_idle()
    assert outcomes == ["known"]  # "nonce too low", and a version of the nonce has a receipt
    first, second = versions(case, row_id)
    assert (first.status, second.status) == ("mined", "superseded")
    assert (case.row(row_id).status, case.tx(row_id).id) == ("mined", first.id)
    assert case.effects(escrow_id) == [first.tx_hash]


# ------------------------------------------------------------------ reorgs


@pytest.mark.parametrize("nonce_taken", [False, True], ids=["same_bytes", "nonce_taken"])
def test_a_transaction_a_reorg_takes_away_before_it_is_deep_enough_is_sent_again(
    case: Case, nonce_taken: bool
) -> None:
    env = case.env
    escrow_id, [row_id] = case.queue()
    before = snapshot(env)
    sender = case.sender(confirmations=2)
    sender.run_until_idle()
    first = case.tx(row_id)
    receipt = env.w3.eth.get_transaction_receipt(first.tx_hash)  # type: ignore[arg-type]
    assert (case.row(row_id).status, first.block_number, first.block_hash) == (
        "sent", receipt["blockNumber"], "0x" + bytes(receipt["blockHash"]).hex()
    )
    revert(env, before)  # the block is gone, and the transaction with it
    if nonce_taken:  # and its nonce went to another transaction of the account meanwhile
        other = case.key().sign_transaction({
            "to": env.provider, "value": 1, "gas": 21_000, "nonce": first.nonce,
            "chainId": 31337, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
        })
        env.w3.eth.send_raw_transaction(other.raw_transaction)
    sender.run_until_idle()
    assert case.row(row_id).status == "sent"
    mine(env, 2)
    sender.run_until_idle()

    row, mined = case.row(row_id), case.tx(row_id)
    assert row.status == "mined"
    assert case.effects(escrow_id) == [mined.tx_hash]
    if nonce_taken:  # a fresh signature over the same call, linked to the old one
        assert (mined.nonce, mined.replaces_id) == (first.nonce + 1, first.id)
        assert [t.status for t in versions(case, row_id)] == ["superseded", "mined"]
    else:  # the stored bytes, broadcast again
        assert (mined.id, mined.tx_hash, mined.raw_tx) == (first.id, first.tx_hash, first.raw_tx)
        assert len(case.transactions()) == 1
    assert mined.block_number == int(env.w3.eth.get_transaction_receipt(
        mined.tx_hash  # type: ignore[arg-type]
    )["blockNumber"])

"""What is the relayer's own, on a real Hardhat node and both databases: the call it sends carries
the client's signed rating, a request whose mined transaction reverted can be confirmed again and
gets a new transaction, and a request for an escrow the chain does not have fails without using a
nonce. On a fee market an underpriced confirmation is replaced until mined (its status shows every
version), and one whose signed deadline passes while unmined fails with "sign again" while a no-op
takes its nonce; a confirmation a reorg takes off the chain is sent again, or accepted again, and
never refused as "already confirmed" by a stale row. The outbox discipline it shares with the
oracle (crashes at every step, SIGKILL, the node's answers, replacements, one owner) is tested over
both senders in tests/outbox/test_sender.py."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from backend.chain.types import MilestoneState
from backend.confirmations.outbox import enqueue, get_request, request_json
from backend.db.models import OutboxTransaction
from backend.outbox.sender import SendReport
from backend.outbox.versions import history
from backend.services import Services
from tests.confirmations.support import (
    api_client,
    confirmation_body,
    outbox_row,
    post_confirmation,
    relayer,
    relayer_key,
    relayer_tx_count,
    settled_events,
    sign,
    sign_and_confirm,
    typed_data,
)
from tests.outbox.support import (
    GWEI,
    fee_market,
    mine,
    mine_at,
    revert,
    set_base_fee,
    snapshot,
)
from tests.support import EscrowEnv


def test_a_relayed_confirmation_settles_the_milestone_with_the_clients_rating_from_the_relayer(
    hardhat_env: EscrowEnv, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    request_id = sign_and_confirm(api_client(services), env, escrow_id, 0, rating=4)["id"]

    report = relayer(services).run_until_idle()

    assert (report.signed, report.broadcast, report.mined) == (1, 1, 1)
    row = outbox_row(services, request_id)
    assert row.transaction is not None
    assert (row.transaction.sender, row.transaction.purpose) == ("relayer", "confirm")
    assert row.transaction.account == relayer_key(services).address
    [event] = settled_events(services, escrow_id, 0)
    assert (event["rating"], event["tx_hash"]) == (4, row.tx_hash)
    sent = env.w3.eth.get_transaction(row.tx_hash)  # type: ignore[arg-type]
    assert sent["from"] == relayer_key(services).address


def test_a_request_revived_after_a_mined_revert_gets_a_new_transaction_and_keeps_the_old_one(
    hardhat_env: EscrowEnv, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    client = api_client(services)
    request_id = sign_and_confirm(client, env, escrow_id, 0, rating=4)["id"]
    sender = relayer(services)
    signed = SendReport()
    sender.sign_pending(signed)  # signed and stored, not sent yet
    assert signed.signed == 1
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)  # the client was faster
    sender.run_until_idle()
    reverted = outbox_row(services, request_id)
    assert reverted.status == "failed" and reverted.transaction is not None
    assert reverted.transaction.status == "reverted"
    with services.sessions() as session:
        statuses = list(session.scalars(select(OutboxTransaction.status)))
    assert statuses == ["reverted"]
    # a later confirmation of the same milestone (the row is revived, not duplicated)
    with services.sessions() as session, session.begin():
        row = enqueue(
            session, chain_id=services.chain_id, escrow_id=escrow_id, milestone=0, rating=3,
            comment_hash="0x" + "00" * 32, deadline=int(time.time()) + 3600,
            signature="0x" + "11" * 65, signer=env.client,
        )
        assert (row.id, row.status) == (request_id, "pending")
    revived = outbox_row(services, request_id)
    assert (revived.transaction_id, revived.status) == (None, "pending")


def test_a_request_for_an_escrow_the_chain_does_not_have_fails_without_using_a_nonce(
    hardhat_env: EscrowEnv, services: Services
) -> None:
    with services.sessions() as session, session.begin():
        request_id = enqueue(
            session, chain_id=services.chain_id, escrow_id=10**6, milestone=0, rating=3,
            comment_hash="0x" + "00" * 32, deadline=int(time.time()) + 3600,
            signature="0x" + "11" * 65, signer=hardhat_env.client,
        ).id
    sent_before = relayer_tx_count(services)

    report = relayer(services).run_until_idle()

    assert (report.signed, report.failed) == (0, 1)
    row = outbox_row(services, request_id)
    assert (row.status, row.transaction_id) == ("failed", None)
    assert row.error is not None and "1000000" in row.error
    assert relayer_tx_count(services) == sent_before


# ------------------------------------------------------------------ a fee market


def test_an_underpriced_confirmation_is_replaced_with_a_higher_fee_until_mined(
    hardhat_env: EscrowEnv, services: Services
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    request_id = sign_and_confirm(api_client(services), env, escrow_id, 0, rating=4)["id"]
    with fee_market(env):
        set_base_fee(env, 1)
        sender = relayer(services)
        sender.run_once()  # offers about 1 gwei
        for _ in range(8):  # while the base fee stays at 3 gwei for 8 blocks
            set_base_fee(env, 3 * GWEI)
            sender.run_once()
            mine(env)
        sender.run_until_idle()

    with services.sessions() as session:
        status = request_json(get_request(session, request_id), full=True)
    [event] = settled_events(services, escrow_id, 0)
    assert (status["status"], status["tx_hash"], event["rating"]) == (
        "mined", event["tx_hash"], 4
    )
    first, mined = status["transactions"]  # every version, oldest first
    assert (first["status"], mined["status"]) == ("replaced", "mined")
    assert (first["nonce"], first["purpose"]) == (mined["nonce"], "confirm")
    assert int(first["max_fee_per_gas"]) < 3 * GWEI
    assert int(mined["max_fee_per_gas"]) >= 2 * 3 * GWEI + int(mined["max_priority_fee_per_gas"])
    receipt = env.w3.eth.get_transaction_receipt(mined["tx_hash"])
    assert (mined["block_number"], mined["block_hash"]) == (
        receipt["blockNumber"], "0x" + bytes(receipt["blockHash"]).hex()
    )
    assert receipt["type"] == 2


def test_a_confirmation_whose_deadline_passes_while_unmined_fails_and_a_no_op_takes_its_nonce(
    hardhat_env: EscrowEnv, services: Services
) -> None:
    env = hardhat_env
    client = api_client(services)
    expiring, queued = env.create_active(), env.create_active()
    deadline = max(env.now(), int(time.time())) + 600
    prepared = typed_data(client, expiring, 0, rating=4, deadline=deadline)
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    request_id = post_confirmation(client, expiring, 0, body).json()["id"]
    behind_id = sign_and_confirm(client, env, queued, 0, rating=5)["id"]  # the next nonce
    first_nonce = relayer_tx_count(services)
    with fee_market(env):
        set_base_fee(env, 1)
        sender = relayer(services)
        sender.run_once()  # both sent at about 1 gwei
        # the relayer is away while the base fee stays at 3 gwei and the deadline passes
        mine_at(env, 3 * GWEI, 3)
        set_base_fee(env, 3 * GWEI)
        env.advance(deadline + 1 - env.now())
        set_base_fee(env, 3 * GWEI)
        sender.run_once()
        filling = outbox_row(services, request_id)
        assert filling.status == "sent"
        assert filling.error is not None and filling.error.startswith(
            "deadline passed while unmined; a no-op transfer takes nonce"
        )
        mine_at(env, 3 * GWEI)
        sender.run_until_idle()

    failed = outbox_row(services, request_id)
    assert (failed.status, failed.error) == ("failed", "deadline passed while unmined; sign again")
    with services.sessions() as session:
        confirm, fill = history(session, failed.transaction)  # type: ignore[arg-type]
    assert (confirm.purpose, confirm.status, fill.purpose, fill.status) == (
        "confirm", "replaced", "fill", "mined"
    )
    assert (fill.nonce, fill.replaces_id, failed.transaction_id) == (
        confirm.nonce, confirm.id, confirm.id
    )
    filler = env.w3.eth.get_transaction(fill.tx_hash)  # type: ignore[arg-type]
    relayer_address = relayer_key(services).address
    assert (filler["to"], filler["value"], bytes(filler["input"])) == (relayer_address, 0, b"")
    assert settled_events(services, expiring, 0) == []  # nothing reverted on the chain
    assert outbox_row(services, behind_id).status == "mined"  # the nonce after it was not held
    assert relayer_tx_count(services) == first_nonce + 2

    again = sign_and_confirm(client, env, expiring, 0, rating=3)  # the client signs again
    assert again["id"] == request_id
    relayer(services).run_until_idle()
    [event] = settled_events(services, expiring, 0)
    assert event["rating"] == 3


# ------------------------------------------------------------------ reorgs


@pytest.mark.parametrize("depth", [0, 2], ids=["depth_0", "depth_2"])
def test_a_relayed_confirmation_a_reorg_takes_away_is_not_refused_as_already_confirmed_forever(
    hardhat_env: EscrowEnv, services: Services, depth: int
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    client = api_client(services)
    prepared = typed_data(client, escrow_id, 0, rating=4)
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    request_id = post_confirmation(client, escrow_id, 0, body).json()["id"]
    before = snapshot(env)
    sender = relayer(services, confirmations=depth)
    sender.run_until_idle()
    relayed = outbox_row(services, request_id)
    assert relayed.status == ("mined" if depth == 0 else "sent")  # final at depth 0

    revert(env, before)  # a reorg: the block with the confirmation is gone
    assert env.escrow.get_milestone(escrow_id, 0).state != MilestoneState.SETTLED
    again = post_confirmation(client, escrow_id, 0, body)
    if depth == 0:  # the chain, not the stale row, decides: the milestone is open again
        assert again.status_code == 202, again.text
        assert again.json() == {"id": request_id, "status": "pending", "tx_hash": None}
        with services.sessions() as session:
            gone = session.get(OutboxTransaction, relayed.transaction_id)
            assert gone is not None
            assert (gone.status, gone.error) == ("reorged", "no longer on the chain (reorg)")
    else:  # still live in the outbox: the relayer sends it again
        assert again.status_code == 409
        assert again.json()["error"] == "already_confirmed"
    sender.run_until_idle()
    mine(env, depth)
    sender.run_until_idle()

    row = outbox_row(services, request_id)
    [event] = settled_events(services, escrow_id, 0)
    assert (row.status, event["tx_hash"]) == ("mined", row.tx_hash)
    # its nonce was free again: the stored transaction went out again (at depth 0 re-signed,
    # which gives the very same bytes: same call, nonce and fees)
    assert (row.transaction_id, row.tx_hash) == (relayed.transaction_id, relayed.tx_hash)
    with services.sessions() as session:
        assert list(session.scalars(select(OutboxTransaction.status))) == ["mined"]
    assert post_confirmation(client, escrow_id, 0, body).status_code == 409

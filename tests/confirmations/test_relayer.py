"""What is the relayer's own, on a real Hardhat node and both databases: the call it sends carries
the client's signed rating, a request whose mined transaction reverted can be confirmed again and
gets a new transaction, and a request for an escrow the chain does not have fails without using a
nonce. The outbox discipline it shares with the oracle (crashes at every step, SIGKILL, the
node's answers, one owner) is tested over both senders in tests/outbox/test_sender.py."""

from __future__ import annotations

import time

from sqlalchemy import select

from backend.confirmations.outbox import enqueue
from backend.db.models import OutboxTransaction
from backend.outbox.sender import SendReport
from backend.services import Services
from tests.confirmations.support import (
    api_client,
    outbox_row,
    relayer,
    relayer_key,
    relayer_tx_count,
    settled_events,
    sign_and_confirm,
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
        assert (row.id, row.transaction_id, row.status) == (request_id, None, "pending")


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

"""A pass of a sender works in batches (docs/performance.md "Relay"): many rows are signed in one
database transaction with their simulations asked in one JSON-RPC batch, broadcast in one batch
without waiting for receipts, and settled with their receipts read in batches, so the node
requests and the database transactions of a pass do not grow with the number of rows. On a real
Hardhat node and both databases; the crash-safety of the same steps is in `test_sender.py`.

Observed before: every row cost about seven requests to the node (a nonce read, a simulation,
a broadcast, a head read at the broadcast and at the settlement, a receipt) and six database
transactions, one row after another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from backend.chain.keys import relayer_account
from backend.chain.transport import NodeTransport
from backend.confirmations.relayer import Relayer
from backend.db.models import ConfirmationRequest, OutboxTransaction
from backend.outbox.sender import SendReport
from tests.confirmations.support import api_client, sign_and_confirm
from tests.outbox.support import Stack
from tests.support import ETH

#: confirmations queued for one pass
ROWS = 24


@contextmanager
def counted(stack: Stack) -> Iterator[dict[str, int]]:
    """Counts, while the block runs, the HTTP requests to the node (`requests`: a JSON-RPC batch
    is one), the JSON-RPC calls they carry (`calls`) and the database commits (`commits`)."""
    counts = {"requests": 0, "calls": 0, "commits": 0}
    post = NodeTransport.make_post_request

    def counting_post(self: NodeTransport, url: Any, data: Any, **kwargs: Any) -> bytes:
        body = json.loads(data or b"null")
        counts["requests"] += 1
        counts["calls"] += len(body) if isinstance(body, list) else 1
        return post(self, url, data, **kwargs)

    def on_commit(_connection: Any) -> None:
        counts["commits"] += 1

    engine = stack.services.engine
    event.listen(engine, "commit", on_commit)
    NodeTransport.make_post_request = counting_post  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        NodeTransport.make_post_request = post  # type: ignore[method-assign]
        event.remove(engine, "commit", on_commit)


def queue(stack: Stack, count: int) -> list[int]:
    """`count` signed confirmations of one escrow's milestones, accepted by the API."""
    env = stack.env
    escrow_id = env.create_active(env.params((ETH // 100,) * count))
    client = api_client(stack.services)
    return [
        int(sign_and_confirm(client, env, escrow_id, m, rating=1 + m % 5)["id"])
        for m in range(count)
    ]


def test_one_relay_pass_settles_many_confirmations_with_a_bounded_number_of_requests(
    stack: Stack,
) -> None:
    ids = queue(stack, ROWS)
    services = stack.services
    relayer = Relayer(services, relayer_account(services.w3, services.settings))
    report = SendReport()

    with counted(stack) as counts:
        relayer.sign_pending(report)
        relayer.broadcast_signed(report)
        relayer.settle_sent(report)

    assert (report.signed, report.broadcast, report.mined, report.failed) == (ROWS, ROWS, ROWS, 0)
    with services.sessions() as session:
        statuses = set(session.scalars(
            select(ConfirmationRequest.status).where(ConfirmationRequest.id.in_(ids))
        ))
    assert statuses == {"mined"}
    # one request per transaction sent (back to back, nothing waits for a receipt), and a few per
    # pass: the nonce, the fee market, the simulations and the receipts in batches, the head;
    # the per-row relay made about 7 * ROWS = 168
    assert counts["requests"] <= ROWS + 10, counts
    assert counts["calls"] >= 3 * ROWS  # the work itself: a simulation, a broadcast, a receipt
    # one database transaction per step, not per row (about 6 * ROWS = 144 before)
    assert counts["commits"] <= 6, counts


def test_an_idle_relayer_pass_asks_the_node_nothing(stack: Stack) -> None:
    services = stack.services
    relayer = Relayer(services, relayer_account(services.w3, services.settings))
    relayer.run_until_idle()  # whatever an earlier test left

    with counted(stack) as counts:
        for _ in range(5):
            assert not relayer.run_once().busy

    assert counts["requests"] == 0, counts  # it polls five times a second: the database only


def test_a_broadcast_stops_at_a_refusal_unless_another_version_of_its_nonce_is_out(
    stack: Stack, monkeypatch: Any
) -> None:
    services = stack.services
    relayer = Relayer(services, relayer_account(services.w3, services.settings))
    # a row signed anew after its nonce went elsewhere replaces an older transaction (another
    # nonce): refused, nothing after it may go out; a refused fee replacement leaves the version
    # it replaces out there, and the later nonces go on
    txs = [OutboxTransaction(tx_hash="0x" + f"{n:064x}", nonce=n, raw_tx="0x00", replaces_id=7,
                             purpose="confirm") for n in range(1, 4)]
    sent: list[int] = []

    def send_one(tx: OutboxTransaction) -> str | None:
        sent.append(tx.nonce)
        return "insufficient funds for gas * price + value" if tx.nonce == 1 else None

    monkeypatch.setattr(relayer, "_send_one", send_one)

    outcomes = relayer.broadcast_all(txs, others_out=[False, False, False])
    assert (sent, [o for o, _ in outcomes]) == ([1], ["refused"])

    sent.clear()
    outcomes = relayer.broadcast_all(txs, others_out=[True, False, False])
    assert (sent, [o for o, _ in outcomes]) == ([1, 2, 3], ["refused", "accepted", "accepted"])

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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from sqlalchemy import event, select

from backend.chain.keys import relayer_account
from backend.confirmations.relayer import Relayer
from backend.db.models import ConfirmationRequest, OutboxTransaction
from backend.outbox.sender import OVERLAP_MIN_ROWS, SendReport
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
    post = requests.Session.post

    def counting_post(self: requests.Session, url: Any, *args: Any, **kwargs: Any) -> Any:
        body = json.loads(kwargs.get("data") or b"null")
        counts["requests"] += 1
        counts["calls"] += len(body) if isinstance(body, list) else 1
        return post(self, url, *args, **kwargs)

    def on_commit(_connection: Any) -> None:
        counts["commits"] += 1

    engine = stack.services.engine
    event.listen(engine, "commit", on_commit)
    requests.Session.post = counting_post  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        requests.Session.post = post  # type: ignore[method-assign]
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


def test_a_pass_with_many_due_rows_broadcasts_one_part_while_it_signs_the_next(
    stack: Stack, monkeypatch: Any
) -> None:
    """Signing is the relayer's own work and broadcasting mostly waits for the node: with at
    least 2 * OVERLAP_MIN_ROWS rows due, a pass broadcasts what it signed first (in a thread of
    its own) while it signs the rest, and still signs, sends and settles every row in that one
    pass, in nonce order. Before, every row was signed before the first was broadcast."""
    count = 2 * OVERLAP_MIN_ROWS
    ids = queue(stack, count)
    services = stack.services
    steps: list[tuple[str, int, str]] = []

    def record(step: str, row: Any) -> None:
        steps.append((step, int(row.id), threading.current_thread().name))

    relayer = Relayer(services, relayer_account(services.w3, services.settings), hook=record)
    send_one = relayer._send_one

    def sending(tx: OutboxTransaction) -> str | None:
        steps.append(("send", tx.nonce, threading.current_thread().name))
        return send_one(tx)

    monkeypatch.setattr(relayer, "_send_one", sending)
    report = relayer.run_once()

    assert (report.signed, report.broadcast, report.failed) == (count, count, 0)
    order = [(step, row_id) for step, row_id, _ in steps]
    first_send = order.index(next(s for s in order if s[0] == "send"))
    last_signing = max(i for i, s in enumerate(order) if s[0] == "signing")
    assert first_send < last_signing, order  # a part went out before the last was signed
    broadcasters = {name for step, _, name in steps if step in ("send", "broadcast", "sent")}
    assert broadcasters and threading.current_thread().name not in broadcasters
    signed = {row_id for step, row_id, _ in steps if step == "signed"}
    assert signed == set(ids) and len(steps) >= 5 * count  # signing, signed, send, broadcast, sent
    with services.sessions() as session:
        rows = {r.id: r for r in session.scalars(
            select(ConfirmationRequest).where(ConfirmationRequest.id.in_(ids))
        )}
        nonces = [rows[i].transaction.nonce for i in sorted(ids)]  # type: ignore[union-attr]
        statuses = {rows[i].status for i in ids}
    assert nonces == sorted(nonces) and len(set(nonces)) == count
    assert statuses <= {"sent", "mined"}, statuses


def test_when_signing_and_the_overlapped_broadcast_both_fail_the_broadcast_error_is_logged(
    stack: Stack, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The signing's error is raised once the broadcast under way has stopped, and the
    broadcast's own error is not lost: it is logged."""
    services = stack.services
    relayer = Relayer(services, relayer_account(services.w3, services.settings))
    signed_parts: list[list[int]] = []

    def sign_rows(ids: list[int], report: SendReport) -> None:
        signed_parts.append(ids)
        if len(signed_parts) == 2:
            raise RuntimeError("database away while signing")

    def broadcast_signed(report: SendReport) -> None:
        raise ConnectionError("node away while broadcasting")

    monkeypatch.setattr(relayer, "due", lambda session: list(range(1, 2 * OVERLAP_MIN_ROWS + 1)))
    monkeypatch.setattr(relayer, "sign_rows", sign_rows)
    monkeypatch.setattr(relayer, "broadcast_signed", broadcast_signed)

    with caplog.at_level("ERROR"), pytest.raises(RuntimeError, match="while signing"):
        relayer.sign_and_broadcast(SendReport())

    assert len(signed_parts) == 2
    assert any("node away while broadcasting" in r.getMessage() for r in caplog.records)


def test_a_failed_overlapped_broadcast_is_raised_once_and_stops_the_signing(
    stack: Stack, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A broadcast that fails while the signing goes well is the pass's error (raised, logged
    once by the worker loop), and no later part is signed after it."""
    services = stack.services
    relayer = Relayer(services, relayer_account(services.w3, services.settings))
    signed_parts: list[list[int]] = []

    def broadcast_signed(report: SendReport) -> None:
        raise ConnectionError("node away while broadcasting")

    monkeypatch.setattr(relayer, "due", lambda session: list(range(1, 4 * OVERLAP_MIN_ROWS + 1)))
    monkeypatch.setattr(relayer, "sign_rows", lambda ids, report: signed_parts.append(ids))
    monkeypatch.setattr(relayer, "broadcast_signed", broadcast_signed)

    with caplog.at_level("ERROR"), pytest.raises(ConnectionError, match="while broadcasting"):
        relayer.sign_and_broadcast(SendReport())

    assert len(signed_parts) == 2  # the first part's broadcast failed after the second was signed
    assert not [r for r in caplog.records if "failed too" in r.getMessage()]

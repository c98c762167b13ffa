"""What is the oracle's own in sending breach reports, on a real Hardhat node and both databases:
each finding is reported once with its evidence hash, is finalized after the challenge period
(surviving a crash at any step of that second transaction too), is watched (not finalized) when
challenged, and is never sent when the contract would refuse it. Whether a (kind, period) is
already reported is the chain's to say: a final report a reorg takes off the chain is reported
again, and a report only a stale index still holds is sent. The outbox discipline it shares with
the relayer is tested over both senders in tests/outbox/test_sender.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.chain.keys import oracle_account
from backend.chain.types import BreachState
from backend.db.models import BreachSubmission, EventLog
from backend.index.indexer import Indexer
from backend.oracle.outbox import enqueue_reports
from backend.oracle.submitter import FINALIZE_STEPS, STEPS
from backend.oracle.worker import Oracle
from backend.outbox.sender import Hook
from tests.outbox.support import (
    EVIDENCE,
    Crash,
    CrashOnceEverywhere,
    Found,
    Stack,
    assert_crashed_everywhere,
    crash_at,
    revert,
    run_through_crashes,
    snapshot,
)
from tests.support import CHALLENGE, ETH, EscrowEnv

#: kind 1 at 500 bps of the default 3 ETH escrow, as `_reserveFor` computes it
RESERVE_KIND_1 = 500 * 3 * ETH // 10_000


class OracleStack(Stack):
    """The outbox tests' stack with the oracle's key and the findings its evaluation returns."""

    def __init__(self, env: EscrowEnv, database_url: str, data_dir: Path) -> None:
        super().__init__(env, database_url, data_dir)
        self.key: LocalAccount = oracle_account(env.w3, self.services.settings)
        self.findings: list[Found] = []

    def sync(self) -> None:
        Indexer(self.services).sync()

    def oracle(self, hook: Hook[BreachSubmission] | None = None) -> Oracle:
        def evaluate(_session: Session, _chain_id: int) -> list[Found]:
            return list(self.findings)

        return Oracle(self.services, self.key, evaluate, hook=hook)

    def rows(self) -> list[BreachSubmission]:
        with self.services.sessions() as session:
            return list(session.scalars(select(BreachSubmission).order_by(BreachSubmission.id)))

    def row(self) -> BreachSubmission:
        [row] = self.rows()
        return row

    def tx_count(self) -> int:
        return int(self.env.w3.eth.get_transaction_count(self.key.address, "pending"))

    def reports(self, escrow_id: int) -> list[dict[str, Any]]:
        logs = self.services.escrow.contract.events.BreachReported.get_logs(
            from_block=0, to_block="latest", argument_filters={"escrowId": escrow_id}
        )
        return [
            {**dict(log["args"]), "tx_hash": "0x" + bytes(log["transactionHash"]).hex()}
            for log in logs
        ]

    def settlements(self, escrow_id: int) -> list[dict[str, Any]]:
        logs = self.services.escrow.contract.events.BreachSettled.get_logs(
            from_block=0, to_block="latest", argument_filters={"escrowId": escrow_id}
        )
        return [dict(log["args"]) for log in logs]


@pytest.fixture
def stack(hardhat_env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[OracleStack]:
    with OracleStack.open(hardhat_env, database_url, tmp_path / "data") as built:
        yield built


def active_escrow_with_finding(stack: OracleStack, kind: int = 1, period: int = 7) -> int:
    escrow_id = stack.env.create_active()
    stack.sync()
    stack.findings.append(Found(escrow_id, kind, period))
    return escrow_id


# ------------------------------------------------------------------ reporting


def test_the_oracle_key_is_dev_account_3_the_test_parties_oracle(stack: OracleStack) -> None:
    assert stack.key.address == stack.env.oracle


def test_a_finding_for_an_active_escrow_is_reported_with_its_evidence_and_the_contract_reserve(
    stack: OracleStack,
) -> None:
    escrow_id = active_escrow_with_finding(stack, kind=1, period=7)
    first_nonce = stack.tx_count()

    stack.oracle().run_until_idle()

    row = stack.row()
    assert (row.status, row.breach_id, row.follow_up, row.error) == ("mined", 0, "none", None)
    assert row.report_tx is not None
    assert (row.report_tx.sender, row.report_tx.purpose, row.report_tx.nonce) == (
        "oracle", "report", first_nonce
    )
    [event] = stack.reports(escrow_id)
    assert (event["breachId"], event["kind"], event["period"]) == (0, 1, 7)
    assert ("0x" + bytes(event["evidenceHash"]).hex(), event["reserved"]) == (
        EVIDENCE, RESERVE_KIND_1
    )
    assert event["tx_hash"] == row.tx_hash
    breach = stack.services.escrow.get_breach(escrow_id, 0)
    assert (breach.state, breach.reserve) == (BreachState.REPORTED, RESERVE_KIND_1)
    assert stack.tx_count() == first_nonce + 1


def test_enqueueing_the_same_finding_twice_writes_one_row(stack: OracleStack) -> None:
    escrow_id = active_escrow_with_finding(stack)
    finding = Found(escrow_id, 1, 7)
    with stack.services.sessions() as session, session.begin():
        first = enqueue_reports(session, stack.services.chain_id, [finding, finding],
                                stack.key.address, 1_000)
    with stack.services.sessions() as session, session.begin():
        second = enqueue_reports(session, stack.services.chain_id, [finding],
                                 stack.key.address, 2_000)
    assert (first, second) == (1, 0)
    assert [(r.status, r.created_at) for r in stack.rows()] == [("pending", 1_000)]


def test_a_finding_the_contract_refuses_on_simulation_fails_with_the_decoded_error(
    stack: OracleStack,
) -> None:
    active_escrow_with_finding(stack, kind=9, period=1)
    first_nonce = stack.tx_count()

    stack.oracle().run_until_idle()

    row = stack.row()
    assert (row.status, row.error, row.tx_hash) == (
        "failed", "EscrowInvalidBreachKind(kind=9)", None
    )
    assert stack.tx_count() == first_nonce


def test_an_oracle_killed_once_at_every_boundary_of_two_reports_sends_each_transaction_once(
    stack: OracleStack,
) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack, kind=1, period=1)
    stack.findings.append(Found(escrow_id, 3, 2))
    first_nonce = stack.tx_count()
    hook = CrashOnceEverywhere()

    run_through_crashes(stack, lambda: stack.oracle(hook).run_until_idle())
    env.advance(CHALLENGE + 1)
    run_through_crashes(stack, lambda: stack.oracle(hook).run_until_idle())

    ids = [r.id for r in stack.rows()]
    assert_crashed_everywhere(hook, ids, STEPS + FINALIZE_STEPS, ("", "finalize_"))
    rows = stack.rows()
    assert [(r.status, r.follow_up, r.kind) for r in rows] == [
        ("mined", "done", 1), ("mined", "done", 3)
    ]
    assert sorted(r.breach_id for r in rows if r.breach_id is not None) == [0, 1]
    assert sorted(r.report_tx.nonce for r in rows if r.report_tx is not None) == [
        first_nonce, first_nonce + 1
    ]
    assert len(stack.reports(escrow_id)) == 2
    assert sorted(s["toClient"] for s in stack.settlements(escrow_id)) == [
        RESERVE_KIND_1, 2_000 * 3 * ETH // 10_000
    ]
    assert stack.tx_count() == first_nonce + 4


@pytest.mark.parametrize("status", ["proposed", "closed"])
def test_a_finding_for_an_escrow_that_is_not_active_is_recorded_not_sent(
    stack: OracleStack, status: str
) -> None:
    env = stack.env
    escrow_id = env.create()
    if status == "closed":
        env.escrow.cancel(escrow_id, env.client)
    stack.sync()
    stack.findings.append(Found(escrow_id, 1, 7))
    first_nonce = stack.tx_count()

    stack.oracle().run_until_idle()

    row = stack.row()
    assert (row.status, row.error) == ("not_sent", f"escrow is {status}, not active")
    assert (row.report_tx_id, row.finalize_tx_id) == (None, None)
    assert stack.tx_count() == first_nonce


@pytest.mark.parametrize("indexed", [False, True], ids=["on_chain", "indexed"])
def test_a_kind_and_period_already_reported_on_chain_counts_as_done(
    stack: OracleStack, indexed: bool
) -> None:
    env = stack.env
    escrow_id = env.create_active()
    env.escrow.report_breach(escrow_id, 1, 3, b"\x01" * 32, env.oracle)  # breach 0
    env.escrow.report_breach(escrow_id, 1, 7, b"\x02" * 32, env.oracle)  # breach 1
    stack.sync()
    if not indexed:  # forget the reports, keep the escrow row: the chain must say it
        with stack.services.sessions() as session, session.begin():
            for log in session.scalars(
                select(EventLog).where(EventLog.event == "BreachReported")
            ):
                session.delete(log)
    stack.findings.append(Found(escrow_id, 1, 7))
    first_nonce = stack.tx_count()

    stack.oracle().run_until_idle()

    row = stack.row()
    assert (row.status, row.breach_id, row.tx_hash) == ("mined", 1, None)
    assert row.error == "already reported on chain"
    assert len(stack.reports(escrow_id)) == 2
    assert stack.tx_count() == first_nonce


# ------------------------------------------------------------------ follow-up


def test_after_the_challenge_period_the_oracle_finalizes_and_the_client_is_credited(
    stack: OracleStack,
) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack)
    oracle = stack.oracle()
    oracle.run_until_idle()
    credit = env.escrow.credits(env.client)

    oracle.run_until_idle()  # still inside the challenge period: nothing happens
    assert (stack.row().follow_up, stack.row().finalize_tx_id) == ("none", None)

    env.advance(CHALLENGE + 1)
    oracle.run_until_idle()

    row = stack.row()
    assert (row.status, row.follow_up, row.error) == ("mined", "done", None)
    assert row.finalize_tx is not None
    assert (row.finalize_tx.purpose, row.finalize_tx.status) == ("finalize", "mined")
    assert env.escrow.credits(env.client) == credit + RESERVE_KIND_1
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.FINALIZED
    [settled] = stack.settlements(escrow_id)
    assert (settled["outcome"], settled["toClient"]) == (1, RESERVE_KIND_1)


@pytest.mark.parametrize("step", FINALIZE_STEPS)
def test_an_oracle_killed_at_each_finalizing_step_and_restarted_finalizes_exactly_once(
    stack: OracleStack, step: str
) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack)
    stack.oracle().run_until_idle()
    env.advance(CHALLENGE + 1)
    nonce = stack.tx_count()
    credit = env.escrow.credits(env.client)

    with pytest.raises(Crash):
        stack.oracle(crash_at(step)).run_until_idle()
    at_crash = stack.row()

    stack.restart()
    stack.oracle().run_until_idle()

    row = stack.row()
    assert row.follow_up == "done"
    assert len(stack.settlements(escrow_id)) == 1
    assert env.escrow.credits(env.client) == credit + RESERVE_KIND_1
    assert stack.tx_count() == nonce + 1
    if step != "finalize_signing":
        assert row.finalize_tx is not None and at_crash.finalize_tx is not None
        assert row.finalize_tx.tx_hash == at_crash.finalize_tx.tx_hash


@pytest.mark.parametrize("indexed", [False, True], ids=["on_chain", "indexed"])
def test_a_challenged_report_is_not_finalized_and_is_followed_until_the_arbiter_resolves(
    stack: OracleStack, indexed: bool
) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack)
    oracle = stack.oracle()
    oracle.run_until_idle()
    env.escrow.challenge_breach(escrow_id, 0, env.provider)
    env.advance(CHALLENGE + 1)
    if indexed:
        stack.sync()
    nonce = stack.tx_count()

    oracle.run_until_idle()
    row = stack.row()
    assert (row.follow_up, row.finalize_tx_id) == ("challenged", None)
    assert stack.tx_count() == nonce

    env.escrow.resolve_breach(escrow_id, 0, True, env.arbiter)
    if indexed:
        stack.sync()
    oracle.run_until_idle()
    row = stack.row()
    assert (row.follow_up, row.finalize_tx_id) == ("resolved", None)
    assert stack.tx_count() == nonce
    [settled] = stack.settlements(escrow_id)
    assert settled["outcome"] == 2  # upheld, by the arbiter


def test_a_breach_someone_else_finalized_counts_as_done(stack: OracleStack) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack)
    oracle = stack.oracle()
    oracle.run_until_idle()
    env.advance(CHALLENGE + 1)
    env.escrow.finalize_breach(escrow_id, 0, env.client)
    nonce = stack.tx_count()

    oracle.run_until_idle()

    assert (stack.row().follow_up, stack.row().finalize_tx_id) == ("done", None)
    assert stack.tx_count() == nonce


# ------------------------------------------------------------------ the key and the account


def test_the_oracle_key_never_appears_in_the_logs(
    stack: OracleStack, caplog: pytest.LogCaptureFixture
) -> None:
    env = stack.env
    caplog.set_level(logging.DEBUG)
    active_escrow_with_finding(stack)
    closed = env.create()
    env.escrow.cancel(closed, env.client)
    stack.sync()
    stack.findings.append(Found(closed, 1, 1))
    oracle = stack.oracle()
    oracle.run_until_idle()
    env.advance(CHALLENGE + 1)
    oracle.run_until_idle()

    assert [r.status for r in stack.rows()] == ["mined", "not_sent"]
    assert caplog.records  # something was logged
    key_hex = bytes(stack.key.key).hex()
    assert key_hex not in caplog.text.lower()


# ------------------------------------------------------------------ reorgs


def test_a_final_report_a_reorg_takes_off_the_chain_is_reported_again(stack: OracleStack) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack)
    before = snapshot(env)
    oracle = stack.oracle()  # ESCROW_CONFIRMATIONS 0: mined is final at once
    oracle.run_until_idle()
    reported = stack.row()
    assert (reported.status, reported.breach_id) == ("mined", 0)

    revert(env, before)  # a reorg deeper than the confirmation depth
    assert stack.reports(escrow_id) == []
    oracle.run_until_idle()

    row = stack.row()
    [event] = stack.reports(escrow_id)
    assert (row.status, row.breach_id, row.follow_up, row.error) == ("mined", 0, "none", None)
    assert event["tx_hash"] == row.tx_hash
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.REPORTED
    # its nonce was free again, so the re-signed report is the very same stored transaction
    assert row.report_tx is not None and reported.report_tx is not None
    assert (row.report_tx.id, row.report_tx.status) == (reported.report_tx.id, "mined")


def test_an_indexed_report_the_chain_no_longer_has_is_not_taken_as_already_reported(
    stack: OracleStack,
) -> None:
    env = stack.env
    escrow_id = active_escrow_with_finding(stack, kind=1, period=7)
    before = snapshot(env)
    env.escrow.report_breach(escrow_id, 1, 7, b"\x02" * 32, env.oracle)  # someone reports it
    stack.sync()  # the index has the report ...
    revert(env, before)  # ... which a reorg takes away before the indexer runs again
    first_nonce = stack.tx_count()

    stack.oracle().run_until_idle()

    row = stack.row()
    [event] = stack.reports(escrow_id)
    assert (row.status, row.breach_id, row.error) == ("mined", 0, None)
    assert row.tx_hash is not None and event["tx_hash"] == row.tx_hash
    assert "0x" + bytes(event["evidenceHash"]).hex() == EVIDENCE
    assert stack.tx_count() == first_nonce + 1

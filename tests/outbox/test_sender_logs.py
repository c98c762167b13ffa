"""Operators see every sender work: a log line, with structured fields, for each transaction
sent and mined (with how deep it is), on the in-process chain and a SQLite file (the lines for
replacements, reverts and reorgs come from the same helpers, exercised by tests/outbox/)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.services import Services
from tests.confirmations.support import (
    api_client,
    outbox_row,
    relay_services,
    relayer,
    relayer_key,
    sign_and_confirm,
)
from tests.support import EscrowEnv

SENDER_LOGGER = "backend.outbox.sender"


@pytest.fixture
def services(env: EscrowEnv, tmp_path: Path) -> Iterator[Services]:
    built = relay_services(env, f"sqlite:///{tmp_path / 'escrow.db'}", tmp_path / "data")
    try:
        yield built
    finally:
        built.engine.dispose()


def sender_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SENDER_LOGGER]


def test_a_relayed_confirmation_logs_sent_then_mined_at_depth_with_its_fields(
    env: EscrowEnv, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    escrow_id = env.create_active()
    request_id = sign_and_confirm(api_client(services), env, escrow_id, 0, rating=4)["id"]
    sender = relayer(services, confirmations=2)
    caplog.set_level(logging.INFO, logger=SENDER_LOGGER)

    sender.run_until_idle()
    assert [getattr(r, "event", None) for r in sender_records(caplog)] == ["tx_sent"]
    env.w3.testing.mine(2)
    sender.run_until_idle()

    sent, mined = sender_records(caplog)
    row = outbox_row(services, request_id)
    assert row.status == "mined" and row.transaction is not None
    tx = row.transaction
    receipt = env.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
    common = {
        "sender": "relayer", "chain_id": services.chain_id,
        "account": relayer_key(services).address, "row_id": request_id,
        "escrow_id": escrow_id, "milestone": 0, "tx_hash": tx.tx_hash, "nonce": tx.nonce,
        "purpose": "confirm", "max_fee_gwei": int(tx.max_fee_per_gas or 0) / 1e9,
    }
    for record in (sent, mined):
        assert record.levelno == logging.INFO
        assert {k: getattr(record, k) for k in common} == common
        assert tx.tx_hash in record.getMessage()
        assert f"escrow {escrow_id} milestone 0" in record.getMessage()
    assert sent.getMessage().startswith(f"relayer sent {tx.tx_hash} (confirm, nonce {tx.nonce})")
    assert mined.event == "tx_mined"  # type: ignore[attr-defined]
    block = int(receipt["blockNumber"])
    assert (mined.block, mined.depth, mined.confirmations) == (  # type: ignore[attr-defined]
        block, 2, 2,
    )
    assert mined.gas_used == int(receipt["gasUsed"])  # type: ignore[attr-defined]
    assert mined.gas_price_gwei == int(receipt["effectiveGasPrice"]) / 1e9  # type: ignore[attr-defined]
    assert f"in block {block}, 2 blocks deep (ESCROW_CONFIRMATIONS 2)" in mined.getMessage()


def test_a_request_the_chain_refuses_logs_why_its_row_failed(
    env: EscrowEnv, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    escrow_id = env.create_active()
    request_id = sign_and_confirm(api_client(services), env, escrow_id, 0, rating=4)["id"]
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)  # the client was faster
    caplog.set_level(logging.INFO, logger=SENDER_LOGGER)

    relayer(services).run_until_idle()

    [failed] = sender_records(caplog)
    assert (failed.levelno, failed.event) == (logging.WARNING, "row_failed")  # type: ignore[attr-defined]
    assert (failed.row_id, failed.escrow_id, failed.milestone) == (  # type: ignore[attr-defined]
        request_id, escrow_id, 0,
    )
    assert "EscrowInvalidMilestoneState" in failed.reason  # type: ignore[attr-defined]

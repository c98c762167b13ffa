"""Operators see the oracle work: a `breach_found` line when the evaluation finds a breach (its
evidence stored), and a `breach_reported` line once the chain holds the report, each with the
escrow, the kind and the period as structured fields. On the in-process chain."""

from __future__ import annotations

import logging

import pytest

from backend.oracle.findings import evaluator
from backend.oracle.worker import Oracle
from tests.api.support import Api
from tests.oracle.test_findings import OUTAGE_DOC, kpi_escrow, store_samples
from tests.support import DAY


def test_a_breach_is_logged_when_found_and_when_reported(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    escrow_id, t0 = kpi_escrow(api, OUTAGE_DOC)
    api.env.advance(DAY + 60)
    store_samples(api, escrow_id, [("outage_minutes", 120.0, t0 + DAY + 30)])
    account = api.env.parties.oracle
    worker = Oracle(api.services, account, evaluate=evaluator(api.services, account.address))
    caplog.set_level(logging.INFO)

    worker.run_until_idle()

    by_event = {getattr(r, "event", None): r for r in caplog.records}
    found, reported = by_event["breach_found"], by_event["breach_reported"]
    for record in (found, reported):
        assert (record.escrow_id, record.kind, record.period) == (  # type: ignore[attr-defined]
            escrow_id, 3, 1,
        )
        assert record.kind_name == "MAJOR_INCIDENT"  # type: ignore[attr-defined]
    assert found.getMessage().startswith(f"breach found: escrow {escrow_id}, MAJOR_INCIDENT")
    assert reported.breach_id is not None  # type: ignore[attr-defined]
    assert reported.tx_hash in reported.getMessage()  # type: ignore[attr-defined]
    assert [getattr(r, "event", None) for r in caplog.records].count("tx_mined") == 1

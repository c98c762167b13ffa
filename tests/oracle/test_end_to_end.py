"""The oracle's whole path on a real Hardhat node: a day of bad uptime samples posted through the
API leads, with no other action, to a kind-1 report on-chain whose evidence hash matches the
served bundle, and to the client's credit once the challenge window has passed."""

from __future__ import annotations

from pathlib import Path

from eth_utils import keccak
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.chain.keys import oracle_account
from backend.chain.types import BreachState
from backend.config import Settings
from backend.db.models import EscrowRow, EvidenceBundle
from backend.index.indexer import Indexer
from backend.oracle.findings import evaluator
from backend.oracle.measurements import issue_token
from backend.oracle.worker import Oracle
from backend.services import build_services
from tests.support import CHALLENGE, DAY, ETH, EscrowEnv

TERMS = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": DAY,
    "grace_seconds": 3_600,
    "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
    "acceptance_criteria": ["reachable"],
}


def test_a_day_of_bad_uptime_is_reported_with_its_evidence_and_refunded(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    services = build_services(
        Settings(database_url=database_url, data_dir=tmp_path),
        w3=env.w3,
        contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )
    api = TestClient(create_app(services))
    stored = api.post("/api/terms", json=TERMS)
    assert stored.status_code in (200, 201), stored.text
    terms_hash = stored.json()["terms_hash"]
    assert terms_hash == "0x" + keccak(api.get(f"/api/terms/{terms_hash}").content).hex()

    escrow_id = env.create_active(env.params((ETH, 2 * ETH), terms_hash=terms_hash))
    Indexer(services).sync()
    with services.sessions() as session, session.begin():
        row = session.get(EscrowRow, (services.chain_id, escrow_id))
        assert row is not None and row.accepted_at is not None
        accepted = row.accepted_at
        token = issue_token(session, services.chain_id, escrow_id, env.now())

    env.advance(DAY + 3_600 + 60)  # period 0 has ended and its grace interval passed
    samples = [
        {"kpi": "uptime_pct", "value": 97.5, "observed_at": accepted + 1_800 + 3_600 * h}
        for h in range(24)
    ]
    posted = api.post(
        f"/api/escrows/{escrow_id}/measurements",
        json={"samples": samples},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert posted.status_code in (200, 201), posted.text

    key = oracle_account(env.w3, services.settings)
    oracle = Oracle(services, key, evaluate=evaluator(services, key.address))
    oracle.run_until_idle()

    breach = env.escrow.get_breach(escrow_id, 0)
    assert (breach.state, breach.kind, breach.period) == (BreachState.REPORTED, 1, 0)
    assert breach.reserve == 3 * ETH * 500 // 10_000
    (log,) = env.escrow.contract.events.BreachReported.get_logs(
        from_block=env.deployment_block, argument_filters={"escrowId": escrow_id}
    )
    evidence_hash = "0x" + bytes(log["args"]["evidenceHash"]).hex()
    served = api.get(f"/api/evidence/{evidence_hash}")
    assert served.status_code == 200
    assert "0x" + keccak(served.content).hex() == evidence_hash
    bundle = served.json()
    assert (bundle["escrow_id"], bundle["kind"], bundle["period"]) == (escrow_id, 1, 0)
    assert bundle["terms_hash"] == terms_hash
    assert len(bundle["kpis"][0]["samples"]) == 24
    assert bundle["kpis"][0]["value"] == 97.5
    with services.sessions() as session:
        assert session.get(EvidenceBundle, evidence_hash) is not None

    credit_before = env.escrow.credits(env.client)
    env.advance(CHALLENGE + 1)
    Indexer(services).sync()
    oracle.run_until_idle()
    assert env.escrow.get_breach(escrow_id, 0).state == BreachState.FINALIZED
    assert env.escrow.credits(env.client) == credit_before + breach.reserve

    oracle.run_until_idle()  # nothing more to do: no second report, no second finalize
    assert env.escrow.get_escrow(escrow_id).breach_count == 1
    services.engine.dispose()

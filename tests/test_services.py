"""A local chain that restarts under the service: the new deployment has the same chain id, the
same contract address and the same block numbers, and must inherit nothing of the old one (its
KPI samples, measurement tokens, confirmation requests, index), while the old data is kept aside
and listed. The running process refuses to serve or send anything once the chain lost its
deployment; the restart archives it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from web3.types import RPCEndpoint

from backend.db.deployments import ACTIVE, ARCHIVED, archived_rows, list_deployments
from backend.db.models import KpiSample, MeasurementToken
from backend.index.indexer import Indexer
from backend.oracle.measurements import issue_token
from backend.services import Services
from tests.confirmations.support import (
    api_client,
    confirmation_body,
    post_confirmation,
    relay_services,
    relayer,
    relayer_key,
    sign,
    typed_data,
)
from tests.support import DAY, ETH, EscrowEnv, build_env, reset_chain

TERMS = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": DAY,
    "grace_seconds": 3_600,
    "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
}


def _count(services: Services, model: type[object]) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _escrow_with_a_pending_confirmation(
    env: EscrowEnv, services: Services, terms_hash: str
) -> tuple[int, str]:
    """Escrow 1 delivered, with a KPI sample, a measurement token and a confirmation request
    stored (not yet relayed); returns (escrow id, token)."""
    client = api_client(services)
    escrow_id = env.create_active(env.params((ETH, 2 * ETH), terms_hash=terms_hash))
    env.deliver(escrow_id, 0)
    Indexer(services).sync()
    with services.sessions() as session, session.begin():
        token = issue_token(session, services.chain_id, escrow_id, env.now())
    posted = client.post(
        f"/api/escrows/{escrow_id}/measurements",
        json={"samples": [{"kpi": "uptime_pct", "value": 99.95, "observed_at": env.now()}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert posted.status_code in (200, 201), posted.text
    prepared = typed_data(client, escrow_id, 0, rating=4)
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    assert post_confirmation(client, escrow_id, 0, body).status_code == 202
    return escrow_id, token


def _reset_and_redeploy(env: EscrowEnv, terms_hash: str) -> EscrowEnv:
    """The node restarts: the contract comes back at the same address in the same block
    number (another hash), and a new escrow 1 is delivered there."""
    reset_chain(env.w3)
    env.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [3_600])
    again = build_env(env.w3)
    assert (again.escrow.address, again.deployment_block) == (
        env.escrow.address, env.deployment_block
    )
    assert again.create_active(again.params((ETH, 2 * ETH), terms_hash=terms_hash)) == 1
    again.deliver(1, 0)
    return again


def test_a_reset_chain_with_the_same_address_inherits_nothing_and_the_old_data_is_archived(
    spare_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env, data = spare_env, tmp_path / "data"
    old = relay_services(env, database_url, data)
    terms_hash = api_client(old).post("/api/terms", json=TERMS).json()["terms_hash"]
    escrow_id, old_token = _escrow_with_a_pending_confirmation(env, old, terms_hash)
    assert escrow_id == 1
    old.engine.dispose()
    again = _reset_and_redeploy(env, terms_hash)

    new = relay_services(again, database_url, data)  # `escrow up` after the reset
    try:
        [archived] = new.archived
        assert archived.archived_reason is not None
        assert archived.archived_reason.startswith("chain reset: block 1, where ")
        rows = dict(archived.archived_rows)
        assert rows.pop("indexed_block") >= 3  # the blocks of the 3 events, and the cursor's
        assert rows == {
            "confirmation_request": 1, "measurement_token": 1, "kpi_sample": 1,
            "event_log": 3, "escrow": 1, "chain_cursor": 1,
        }
        assert _count(new, KpiSample) == _count(new, MeasurementToken) == 0
        with new.sessions() as session:
            listed = list_deployments(session, 31337)
            [(table, request)] = archived_rows(session, archived.id, "confirmation_request")
        assert [(d.status, d.block_number) for d in listed] == [(ACTIVE, 1), (ARCHIVED, 1)]
        assert listed[0].block_hash != listed[1].block_hash
        assert (table, request["escrow_id"], request["milestone"], request["rating"]) == (
            "confirmation_request", 1, 0, 4
        )

        client = api_client(new)
        Indexer(new).sync()
        stale = client.post(
            "/api/escrows/1/measurements",
            json={"samples": [{"kpi": "uptime_pct", "value": 1.0, "observed_at": again.now()}]},
            headers={"Authorization": f"Bearer {old_token}"},
        )
        assert stale.status_code == 401
        kpis = client.get("/api/escrows/1/kpis")
        assert kpis.status_code == 200, kpis.text
        assert "99.95" not in kpis.text

        # the new escrow 1 is confirmed and relayed as if nothing came before it
        prepared = typed_data(client, 1, 0, rating=5)
        body = confirmation_body(prepared, sign(again.parties.client, prepared))
        accepted = post_confirmation(client, 1, 0, body)
        assert accepted.status_code == 202, accepted.text
        settled = relayer(new).run_until_idle()
        assert (settled.mined, settled.failed) == (1, 0)
        assert again.escrow.credits(again.provider) == ETH
    finally:
        new.engine.dispose()


def test_a_running_service_whose_chain_was_reset_neither_serves_nor_sends_the_old_data(
    spare_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = spare_env
    old = relay_services(env, database_url, tmp_path / "data")
    try:
        terms_hash = api_client(old).post("/api/terms", json=TERMS).json()["terms_hash"]
        _escrow_with_a_pending_confirmation(env, old, terms_hash)
        _reset_and_redeploy(env, terms_hash)

        client = api_client(old)
        refused = post_confirmation(client, 1, 0, {"rating": 5})
        assert refused.status_code == 503
        assert refused.json()["error"] == "deployment_gone"
        assert refused.headers["Retry-After"] == "30"
        assert client.get("/api/escrows/1").status_code == 503
        health = client.get("/api/health").json()
        assert health["status"] == "degraded"
        assert "restart the service to archive the old deployment's data" in health["reason"]

        report = relayer(old).run_once()  # the old request is never sent to the new chain
        assert (report.signed, report.broadcast) == (0, 0)
        assert env.w3.eth.get_transaction_count(relayer_key(old).address) == 0
        assert Indexer(old).sync() == 0
    finally:
        old.engine.dispose()

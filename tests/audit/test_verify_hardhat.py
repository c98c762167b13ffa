"""The verifier over HTTP against a real Hardhat node, where views are read in JSON-RPC batches."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.audit.verify import audit_all
from backend.config import Settings
from backend.index.indexer import Indexer
from backend.services import build_services
from tests.support import CHALLENGE, ETH, EscrowEnv


def test_audit_all_on_a_hardhat_node_passes_an_untouched_history(hardhat_env: EscrowEnv) -> None:
    env = hardhat_env
    e = env.escrow
    first = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(first, 0)
    signed = env.confirmation(first, 0, 4)
    e.confirm_with_sig(signed, env.sign(signed), env.parties.relayer.address)
    breach_id, _ = e.report_breach(first, 1, 0, b"\x01" * 32, env.oracle)
    env.advance(CHALLENGE + 1)
    e.finalize_breach(first, breach_id, env.client)
    second = env.create()
    e.cancel(second, env.client)

    report = audit_all(env.w3, e.address, from_block=env.deployment_block)
    assert report.consistent
    audited = {a.escrow_id: a for a in report.escrows}
    assert {first, second} <= set(audited)
    checks = {c.name: c.ok for c in audited[first].checks}
    assert checks["replay"] is True and checks["payouts"] is True
    assert checks["signatures"] is True and checks["bytecode"] is True
    assert {c.name: c.ok for c in report.contract_checks}["solvency"] is True
    # the batched views are what the replay compared against
    assert ("getEscrow", first) in report_views(env, first)


def report_views(env: EscrowEnv, escrow_id: int) -> dict[tuple[object, ...], object]:
    from backend.audit.verify import prefetch_views, read_chain

    snap = read_chain(env.w3, env.escrow.address, from_block=env.deployment_block)
    prefetch_views(snap, [escrow_id])
    assert snap.views[("getEscrow", escrow_id)] == env.escrow.get_escrow(escrow_id)
    for m in range(2):
        assert snap.views[("getMilestone", escrow_id, m)] == env.escrow.get_milestone(escrow_id, m)
    assert snap.views[("getBreach", escrow_id, 0)] == env.escrow.get_breach(escrow_id, 0)
    return snap.views


def test_the_audit_endpoint_reports_every_named_check_of_an_indexed_escrow(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    escrow_id = env.create_active()
    env.escrow.confirm(escrow_id, 0, 3, None, env.client)
    services = build_services(
        Settings(database_url=database_url, data_dir=tmp_path),
        w3=env.w3,
        contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )
    Indexer(services).sync()
    body = TestClient(create_app(services)).get(f"/api/escrows/{escrow_id}/audit").json()
    assert body["consistent"] is True
    checks = {c["name"]: c["ok"] for c in body["checks"]}
    assert checks["replay"] is True and checks["payouts"] is True and checks["index"] is True
    assert set(checks) >= {"bytecode", "replay", "signatures", "payouts", "documents", "index"}
    services.engine.dispose()

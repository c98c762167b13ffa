"""An escrow the contract never created is "unknown escrow" (404 / `NotFoundError`), not an
inconsistent history; a node that does not answer is a 503, not a verdict."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from backend.audit.verify import audit_all, audit_escrow
from backend.errors import NotFoundError
from tests.api.support import Api
from tests.support import EscrowEnv


@pytest.mark.parametrize("escrow_id", [999, 0, -1])
def test_auditing_an_escrow_without_events_is_unknown_escrow(
    env: EscrowEnv, escrow_id: int
) -> None:
    env.create_active()  # escrow 1 exists; the asked one does not
    with pytest.raises(NotFoundError, match=f"unknown escrow {escrow_id}$"):
        audit_escrow(env.w3, env.escrow.address, escrow_id, from_block=env.deployment_block)
    with pytest.raises(NotFoundError, match=f"unknown escrow {escrow_id}$"):
        audit_all(env.w3, env.escrow.address, from_block=env.deployment_block,
                  escrow_ids=[1, escrow_id])


def test_a_known_escrow_is_still_audited(env: EscrowEnv) -> None:
    escrow_id = env.create_active()
    report = audit_escrow(env.w3, env.escrow.address, escrow_id, from_block=env.deployment_block)
    assert report.escrow_id == escrow_id
    assert all(check.ok is not False for check in report.checks)


def test_the_audit_route_answers_404_unknown_escrow(api: Api) -> None:
    api.env.create_active()
    body = api.error("GET", "/api/escrows/999/audit", 404)
    assert body == {"error": "not_found", "detail": "unknown escrow 999"}


def test_the_audit_route_answers_503_with_a_retry_hint_when_the_node_does_not(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.env.create_active()

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(api.services.w3.manager, "request_blocking", down)
    response = api.http.get("/api/escrows/1/audit")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert "connection refused" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize("escrow_id", ["0", str(2**70)])
def test_the_audit_route_answers_404_for_ids_no_escrow_can_have(api: Api, escrow_id: str) -> None:
    body = api.error("GET", f"/api/escrows/{escrow_id}/audit", 404)
    assert body["error"] == "not_found"
    assert body["detail"].startswith("unknown escrow")

"""`POST /api/escrows/{id}/milestones/{m}/delivery`: the provider's delivery document (note and
uploaded attachments, RFC 8785 canonical, keccak256 = `deliveryHash`) stored and handed back with
the ready `deliver` transaction; the escrow detail shows it as the milestone's `delivery`. Every
test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak
from sqlalchemy import func, select

from backend.api.schemas import EscrowDetail, PreparedDelivery
from backend.db.models import MilestoneDocument
from tests.api.support import Api

TERMS_DOC = {"version": 1, "title": "Site build", "period_seconds": 86400,
             "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}]}
REPORT = b"load test: 1200 rps, p95 210 ms\n"


def _upload(api: Api, data: bytes = REPORT, name: str = "report.txt") -> dict[str, Any]:
    answer: dict[str, Any] = api.ok("POST", "/api/attachments", 201,
                                    files={"file": (name, data, "text/plain")})
    return answer


def _stored(api: Api) -> int:
    with api.services.sessions() as session:
        return int(session.scalar(
            select(func.count()).where(MilestoneDocument.kind == "delivery")
        ) or 0)


def _escrow(api: Api) -> int:
    terms_hash = api.ok("POST", "/api/terms", 201, json=TERMS_DOC)["terms_hash"]
    escrow_id = api.env.create_active(api.env.params(terms_hash=terms_hash))
    api.index()
    return escrow_id


def test_a_delivery_document_is_stored_and_sent_as_the_delivery_hash_the_detail_shows(
    api: Api,
) -> None:
    env = api.env
    escrow_id = _escrow(api)
    report = _upload(api)
    path = f"/api/escrows/{escrow_id}/milestones/1/delivery"

    answer = api.ok("POST", path, json={"note": "Staging → live ✓",
                                        "attachments": [report["sha256"].upper()]})

    canonical = (
        '{"attachments":[{"media_type":"text/plain","name":"report.txt","sha256":"'
        + report["sha256"] + '","size":' + str(len(REPORT)) + '}],"note":"Staging → live ✓"}'
    ).encode()
    delivery_hash = "0x" + keccak(canonical).hex()
    assert answer["delivery_hash"] == delivery_hash
    assert answer["document"] == {"note": "Staging → live ✓", "attachments": [report]}
    assert answer["tx"] == api.ok("POST", f"/api/escrows/{escrow_id}/tx/deliver",
                                  json={"milestone": 1, "deliveryHash": delivery_hash})
    PreparedDelivery.model_validate(answer)
    # the same document again: the same hash, stored once
    assert api.ok("POST", path, json={"note": "Staging → live ✓",
                                      "attachments": [report["sha256"]]}) == answer
    assert _stored(api) == 1

    api.send(env.provider, answer["tx"])
    api.index()
    detail = api.ok("GET", f"/api/escrows/{escrow_id}")
    first, second = detail["milestones"]
    assert (second["state"], second["delivery_hash"]) == ("delivered", delivery_hash)
    assert second["delivery"] == answer["document"]
    assert (first["delivery_hash"], first["delivery"]) == (None, None)
    EscrowDetail.model_validate(detail)
    assert env.escrow.get_milestone(escrow_id, 1).state.name == "DELIVERED"


def test_a_note_alone_is_a_delivery_and_attachments_alone_too(api: Api) -> None:
    escrow_id = _escrow(api)
    path = f"/api/escrows/{escrow_id}/milestones/0/delivery"
    note_only = api.ok("POST", path, json={"note": "done"})
    assert note_only["delivery_hash"] == "0x" + keccak(b'{"attachments":[],"note":"done"}').hex()
    report = _upload(api)
    files_only = api.ok("POST", path, json={"note": "", "attachments": [report["sha256"]]})
    assert files_only["document"] == {"note": "", "attachments": [report]}
    assert _stored(api) == 2


def test_a_document_stored_after_its_delivery_was_indexed_shows_up_at_once(api: Api) -> None:
    env = api.env
    escrow_id = _escrow(api)
    delivery_hash = "0x" + keccak(b'{"attachments":[],"note":"late paperwork"}').hex()
    api.send(env.provider, api.ok("POST", f"/api/escrows/{escrow_id}/tx/deliver",
                                  json={"milestone": 0, "deliveryHash": delivery_hash}))
    api.index()
    before = api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"][0]
    assert (before["delivery_hash"], before["delivery"]) == (delivery_hash, None)
    assert len(api.app.state.escrow_detail_cache) == 1  # the body is kept: terms are stored

    answer = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/0/delivery",
                    json={"note": "late paperwork"})
    assert answer["delivery_hash"] == delivery_hash
    after = api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"][0]
    assert after["delivery"] == {"note": "late paperwork", "attachments": []}


@pytest.mark.parametrize(
    ("body", "where", "status", "code", "detail"),
    [
        ({"note": ""}, "", 422, "out_of_range", "a note or at least one attachment"),
        ({"note": "  \n"}, "", 422, "out_of_range", "a note or at least one attachment"),
        ({"note": "x" * 2_001}, "", 413, "too_large", "note (characters) is 2001"),
        ({"note": "\ud800"}, "", 400, "malformed", "malformed note"),
        ({"note": "ok", "attachments": ["ab" * 32]}, "", 404, "not_found", "unknown attachment"),
        ({"note": "ok", "attachments": ["abc"]}, "", 422, "out_of_range", "attachments="),
        ({"note": "ok", "attachments": [f"{i:064x}" for i in range(11)]}, "", 413, "too_large",
         "attachments (count)"),
        ({"note": 5}, "", 422, "invalid", "note"),
        ({}, "", 400, "malformed", "note: the field is missing"),
        ({"note": "ok"}, "milestone 2", 404, "not_found", "unknown milestone 2 of escrow"),
        ({"note": "ok"}, "milestone 64", 404, "not_found", "unknown milestone 64"),
        ({"note": "ok"}, "escrow 999", 404, "not_found", "unknown escrow 999"),
    ],
    ids=["empty", "blank", "note-2001", "surrogate", "unknown-attachment", "malformed-digest",
         "11-attachments", "note-not-text", "no-note", "milestone-2", "milestone-64",
         "unknown-escrow"],
)
def test_a_refused_delivery_stores_nothing(
    api: Api, body: dict[str, Any], where: str, status: int, code: str, detail: str
) -> None:
    escrow_id = _escrow(api)
    milestone = 0
    if where.startswith("milestone"):
        milestone = int(where.split()[1])
    if where.startswith("escrow"):
        escrow_id = int(where.split()[1])
    path = f"/api/escrows/{escrow_id}/milestones/{milestone}/delivery"
    if body.get("note") == "\ud800":
        refused = api.error("POST", path, status, content=b'{"note": "\\ud800"}',
                            headers={"content-type": "application/json"})
    else:
        refused = api.error("POST", path, status, json=body)
    assert refused["error"] == code, refused
    assert detail in refused["detail"], refused
    assert _stored(api) == 0

"""`POST /api/escrows/{id}/milestones/{m}/dispute`: the client's dispute reason (text and uploaded
attachments, RFC 8785 canonical, keccak256 = `reasonHash`) stored and handed back with the ready
`dispute` transaction; the escrow detail shows it as the milestone's `dispute_reason`. It is the
delivery document's machinery (`backend.escrows.milestone_documents`) with another kind: a
document of one kind never shows behind the other's hash. Every test runs on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak
from sqlalchemy import func, select

from backend.api.schemas import EscrowDetail, PreparedDispute
from backend.db.models import MilestoneDocument
from tests.api.support import Api

REPORT = b"pages 12-40 are blank\n"


def _upload(api: Api, data: bytes = REPORT, name: str = "blank pages.txt") -> dict[str, Any]:
    answer: dict[str, Any] = api.ok("POST", "/api/attachments", 201,
                                    files={"file": (name, data, "text/plain")})
    return answer


def _stored(api: Api, kind: str = "dispute") -> int:
    with api.services.sessions() as session:
        return int(session.scalar(
            select(func.count()).where(MilestoneDocument.kind == kind)
        ) or 0)


def _delivered(api: Api) -> int:
    escrow_id = api.env.create_active()
    api.env.deliver(escrow_id, 1)
    api.index()
    return escrow_id


def test_a_dispute_reason_is_stored_and_sent_as_the_reason_hash_the_detail_shows(
    api: Api,
) -> None:
    env = api.env
    escrow_id = _delivered(api)
    report = _upload(api)
    path = f"/api/escrows/{escrow_id}/milestones/1/dispute"

    answer = api.ok("POST", path, json={"reason": "Половина страниц пуста",
                                        "attachments": [report["sha256"].upper()]})

    canonical = (
        '{"attachments":[{"media_type":"text/plain","name":"blank pages.txt","sha256":"'
        + report["sha256"] + '","size":' + str(len(REPORT))
        + '}],"reason":"Половина страниц пуста"}'
    ).encode()
    reason_hash = "0x" + keccak(canonical).hex()
    assert answer["reason_hash"] == reason_hash
    assert answer["document"] == {"reason": "Половина страниц пуста", "attachments": [report]}
    # the transaction is exactly what tx/dispute gives for that hash
    assert answer["tx"] == api.ok("POST", f"/api/escrows/{escrow_id}/tx/dispute",
                                  json={"milestone": 1, "reasonHash": reason_hash})
    PreparedDispute.model_validate(answer)
    # the same document again: the same hash, stored once
    assert api.ok("POST", path, json={"reason": "Половина страниц пуста",
                                      "attachments": [report["sha256"]]}) == answer
    assert (_stored(api), _stored(api, "delivery")) == (1, 0)

    api.send(env.client, answer["tx"])
    api.index()
    detail = api.ok("GET", f"/api/escrows/{escrow_id}")
    first, second = detail["milestones"]
    assert (second["state"], second["dispute_reason_hash"]) == ("disputed", reason_hash)
    assert second["dispute_reason"] == answer["document"]
    assert (first["dispute_reason_hash"], first["dispute_reason"]) == (None, None)
    EscrowDetail.model_validate(detail)
    assert env.escrow.get_milestone(escrow_id, 1).state.name == "DISPUTED"


def test_a_reason_alone_is_a_dispute_and_attachments_alone_too(api: Api) -> None:
    escrow_id = _delivered(api)
    path = f"/api/escrows/{escrow_id}/milestones/1/dispute"
    reason_only = api.ok("POST", path, json={"reason": "late"})
    assert reason_only["reason_hash"] == "0x" + keccak(b'{"attachments":[],"reason":"late"}').hex()
    report = _upload(api)
    files_only = api.ok("POST", path, json={"reason": "", "attachments": [report["sha256"]]})
    assert files_only["document"] == {"reason": "", "attachments": [report]}
    assert _stored(api) == 2


def test_a_document_shows_only_behind_a_hash_of_its_own_kind(api: Api) -> None:
    """A delivery document's hash sent as a reason hash (and the other way round) shows null:
    the detail reads each hash in its own kind."""
    env = api.env
    escrow_id = env.create_active()
    api.index()
    delivery = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/0/delivery",
                      json={"note": "done"})
    api.send(env.provider, delivery["tx"])
    # the client disputes citing the provider's own document: not a reason of ours
    api.send(env.client, api.ok("POST", f"/api/escrows/{escrow_id}/tx/dispute", json={
        "milestone": 0, "reasonHash": delivery["delivery_hash"]}))
    dispute = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/1/dispute",
                     json={"reason": "not delivered"})
    api.send(env.provider, api.ok("POST", f"/api/escrows/{escrow_id}/tx/deliver", json={
        "milestone": 1, "deliveryHash": dispute["reason_hash"]}))
    api.index()
    first, second = api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"]
    assert first["delivery"] == {"note": "done", "attachments": []}
    assert (first["dispute_reason_hash"], first["dispute_reason"]) == (
        delivery["delivery_hash"], None)
    assert (second["delivery_hash"], second["delivery"]) == (dispute["reason_hash"], None)


def test_a_reason_stored_after_its_dispute_was_indexed_shows_up_at_once(api: Api) -> None:
    env = api.env
    escrow_id = _delivered(api)
    reason_hash = "0x" + keccak(b'{"attachments":[],"reason":"sent by mail"}').hex()
    api.send(env.client, api.ok("POST", f"/api/escrows/{escrow_id}/tx/dispute",
                                json={"milestone": 1, "reasonHash": reason_hash}))
    api.index()
    before = api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"][1]
    assert (before["dispute_reason_hash"], before["dispute_reason"]) == (reason_hash, None)

    answer = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/1/dispute",
                    json={"reason": "sent by mail"})
    assert answer["reason_hash"] == reason_hash
    after = api.ok("GET", f"/api/escrows/{escrow_id}")["milestones"][1]
    assert after["dispute_reason"] == {"reason": "sent by mail", "attachments": []}


@pytest.mark.parametrize(
    ("body", "where", "status", "code", "detail"),
    [
        ({"reason": ""}, "", 422, "out_of_range", "a reason or at least one attachment"),
        ({"reason": " \n\t"}, "", 422, "out_of_range", "a reason or at least one attachment"),
        ({"reason": "x" * 2_001}, "", 413, "too_large", "reason (characters) is 2001"),
        ({"reason": "\ud800"}, "", 400, "malformed", "malformed reason"),
        ({"reason": "ok", "attachments": ["ab" * 32]}, "", 404, "not_found",
         "unknown attachment"),
        ({"reason": "ok", "attachments": ["abc"]}, "", 422, "out_of_range", "attachments="),
        ({"reason": "ok", "attachments": [f"{i:064x}" for i in range(11)]}, "", 413,
         "too_large", "attachments (count)"),
        ({"reason": 5}, "", 422, "invalid", "reason"),
        ({}, "", 400, "malformed", "reason: the field is missing"),
        ({"reason": "ok"}, "milestone 2", 404, "not_found", "unknown milestone 2 of escrow"),
        ({"reason": "ok"}, "milestone 64", 404, "not_found", "unknown milestone 64"),
        ({"reason": "ok"}, "escrow 999", 404, "not_found", "unknown escrow 999"),
    ],
    ids=["empty", "blank", "reason-2001", "surrogate", "unknown-attachment", "malformed-digest",
         "11-attachments", "reason-not-text", "no-reason", "milestone-2", "milestone-64",
         "unknown-escrow"],
)
def test_a_refused_dispute_stores_nothing(
    api: Api, body: dict[str, Any], where: str, status: int, code: str, detail: str
) -> None:
    escrow_id = _delivered(api)
    milestone = 1
    if where.startswith("milestone"):
        milestone = int(where.split()[1])
    if where.startswith("escrow"):
        escrow_id = int(where.split()[1])
    path = f"/api/escrows/{escrow_id}/milestones/{milestone}/dispute"
    if body.get("reason") == "\ud800":
        refused = api.error("POST", path, status, content=b'{"reason": "\\ud800"}',
                            headers={"content-type": "application/json"})
    else:
        refused = api.error("POST", path, status, json=body)
    assert refused["error"] == code, refused
    assert detail in refused["detail"], refused
    assert _stored(api) == 0


def test_the_2000th_character_and_the_10th_attachment_still_pass(api: Api) -> None:
    escrow_id = _delivered(api)
    files = [_upload(api, f"page {i}\n".encode(), f"page-{i}.txt")["sha256"] for i in range(10)]
    answer = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/1/dispute",
                    json={"reason": "x" * 2_000, "attachments": files})
    assert len(answer["document"]["attachments"]) == 10
    assert [a["sha256"] for a in answer["document"]["attachments"]] == files

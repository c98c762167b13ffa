"""The OpenAPI document describes every answer: each JSON route declares the schema of its 2xx
body, each other route its media type, and every error answer is a `RefusalBody`; the
measurement route shows its bearer scheme. Real answers fit their declared models exactly (the
models are strict and closed, and write the body back unchanged), and the models' fixed value
sets are the domain's own."""

from __future__ import annotations

import json
import time
from typing import Any, get_args

from eth_utils import keccak
from pydantic import BaseModel, TypeAdapter

from backend.api.schemas import (
    Attachment,
    BreachKindName,
    BreachOutcomeName,
    BreachRule,
    BreachStateName,
    ConfirmationStatus,
    EscrowDetail,
    EscrowPage,
    EscrowStatus,
    MilestoneStateName,
    PartyRole,
    PreparedDispute,
    SettledHowName,
    SubmissionStatus,
    TxStatus,
    WebhookEvent,
)
from backend.canonical import canonical_json
from backend.chain.types import BreachKind, BreachOutcome, BreachState, MilestoneState, SettledHow
from backend.confirmations import outbox as confirmation_outbox
from backend.confirmations.reviews import ALLOWED_MEDIA_TYPES
from backend.db.models import Review
from backend.escrows.listing import STATUSES
from backend.escrows.next_steps import ROLES
from backend.escrows.transactions import TX_STATUSES
from backend.notify.webhooks import EVENT_TYPES
from backend.oracle import outbox as oracle_outbox
from backend.oracle.evaluation import Sample, evaluate
from backend.oracle.terms import parse_terms
from tests.api.support import Api
from tests.support import DAY, ETH

REFUSAL = "#/components/schemas/RefusalBody"
#: the routes whose 2xx body is not JSON the route builds
NOT_JSON: dict[tuple[str, str], set[str]] = {
    ("get", "/metrics"): {"text/plain"},
    ("get", "/api/escrows/{escrow_id}/statement.csv"): {"text/csv"},
    ("get", "/api/accounts/{address}/ledger.csv"): {"text/csv"},
    ("get", "/api/escrows/{escrow_id}/milestones/{milestone}/act.pdf"): {"application/pdf"},
    ("get", "/api/attachments/{sha256}"): set(ALLOWED_MEDIA_TYPES),
    ("delete", "/api/webhooks/{subscription_id}"): set(),  # 204, no body
}
#: stored documents served as their canonical bytes: JSON, described as an object
CANONICAL = {("get", "/api/terms/{terms_hash}"), ("get", "/api/evidence/{evidence_hash}")}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items()
            for method, op in ops.items()]


def success(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {status: r for status, r in op["responses"].items() if status.startswith("2")}


def test_every_json_route_declares_the_schema_of_its_answer(api: Api) -> None:
    spec = api.app.openapi()
    schemas = spec["components"]["schemas"]
    json_routes = 0
    for method, path, op in operations(spec):
        answers = success(op)
        assert answers, (method, path)
        if (method, path) in NOT_JSON:
            for status, answer in answers.items():
                assert set(answer.get("content", {})) == NOT_JSON[method, path], (
                    method, path, status)
            continue
        json_routes += 1
        for status, answer in answers.items():
            assert status in {"200", "201", "202"}, (method, path, status)
            assert set(answer["content"]) == {"application/json"}, (method, path, status)
            schema = answer["content"]["application/json"]["schema"]
            assert schema, (method, path, status)
            if (method, path) in CANONICAL:
                assert schema["type"] == "object", (method, path)
                continue
            # a named model with its fields (or, for the terms schema, a named open object)
            name = schema["$ref"].removeprefix("#/components/schemas/")
            assert schemas[name].get("properties") or schemas[name]["type"] == "object", name
    assert json_routes == len(operations(spec)) - len(NOT_JSON) == 27


def test_every_error_answer_is_a_refusal_body(api: Api) -> None:
    spec = api.app.openapi()
    assert spec["components"]["schemas"]["RefusalBody"]["required"] == ["error", "detail"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's own 422
    for method, path, op in operations(spec):
        errors = {s: r for s, r in op["responses"].items() if not s.startswith("2")}
        if path != "/metrics":
            assert "default" in errors, (method, path)
        for status, answer in errors.items():
            assert status == "default" or 400 <= int(status) < 600, (method, path, status)
            assert answer["content"] == {"application/json": {"schema": {"$ref": REFUSAL}}}, (
                method, path, status)
            assert answer["description"], (method, path, status)
    measurements = spec["paths"]["/api/escrows/{escrow_id}/measurements"]["post"]
    assert {"401", "404", "413"} <= set(measurements["responses"])


def test_the_measurement_route_shows_its_bearer_scheme(api: Api) -> None:
    spec = api.app.openapi()
    assert spec["components"]["securitySchemes"]["MeasurementToken"]["scheme"] == "bearer"
    secured = [(m, p) for m, p, op in operations(spec) if op.get("security")]
    assert secured == [("post", "/api/escrows/{escrow_id}/measurements")]
    op = spec["paths"]["/api/escrows/{escrow_id}/measurements"]["post"]
    assert op["security"] == [{"MeasurementToken": []}]
    assert [p["name"] for p in op["parameters"]] == ["escrow_id"]  # no `authorization` header


def test_the_models_fixed_value_sets_are_the_domains() -> None:
    def names(enum: Any) -> tuple[str, ...]:
        return tuple(m.name.lower() for m in enum if m.name != "NONE")

    assert get_args(EscrowStatus) == STATUSES
    assert get_args(MilestoneStateName) == tuple(m.name.lower() for m in MilestoneState)
    assert get_args(SettledHowName) == names(SettledHow)
    assert get_args(BreachStateName) == names(BreachState)
    assert get_args(BreachKindName) == names(BreachKind)
    assert get_args(BreachOutcomeName) == names(BreachOutcome)
    assert get_args(ConfirmationStatus) == confirmation_outbox.STATUSES
    assert get_args(SubmissionStatus) == oracle_outbox.STATUSES
    assert get_args(WebhookEvent) == tuple(EVENT_TYPES)
    assert get_args(PartyRole) == ROLES
    assert get_args(TxStatus) == TX_STATUSES


def test_every_kind_of_finding_rule_fits_the_rule_model() -> None:
    terms = parse_terms({
        "version": 1, "title": "t", "period_seconds": 100, "grace_seconds": 0,
        "consecutive_periods": 2, "missing_data": "breach",
        "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
        "incident": {"kpi": "outage", "aggregate": "sum", "op": ">", "threshold": 60,
                     "note": "an unknown key, kept in the terms, left out of the rule"},
    })
    t0 = 1_700_000_000
    samples = [Sample("uptime", 90.0, t0 + 10), Sample("uptime", 80.0, t0 + 110),
               Sample("outage", 61.0, t0 + 120)]
    findings = evaluate(terms, t0, t0 + 300, samples).findings
    assert sorted({f.kind for f in findings}) == [1, 2, 3]
    adapter: TypeAdapter[Any] = TypeAdapter(BreachRule)
    for finding in findings:
        rule = adapter.validate_python(finding.rule)
        assert rule.model_dump(mode="json") == finding.rule
        assert list(rule.model_dump(mode="json")) == list(finding.rule)  # the same key order


# ------------------------------------------------------------------ real answers


def assert_fits(model: type[BaseModel], body: Any) -> None:
    """`body` fits `model` (strict and closed: no extra key, no converted value) and the model
    writes it back with the same keys and values of the same JSON types (a key a document may
    leave out, such as a review's `criteria`, stays out; `from_` is written `from`)."""
    written = model.model_validate(body).model_dump(
        mode="json", exclude_unset=True, by_alias=True
    )
    assert json.dumps(written, sort_keys=True) == json.dumps(body, sort_keys=True)


def test_the_escrow_list_and_detail_fit_their_declared_models(api: Api) -> None:
    env = api.env
    spec = api.app.openapi()
    declared = {"/api/escrows": "EscrowPage", "/api/escrows/{escrow_id}": "EscrowDetail"}
    for path, name in declared.items():
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert schema["schema"] == {"$ref": f"#/components/schemas/{name}"}

    # an ERC-20 escrow with its terms stored, a delivery, a rated milestone with a stored review
    # (an uploaded attachment), a reported breach and a milestone disputed with a stored reason;
    # and an ETH escrow still proposed
    terms_doc = {"version": 1, "title": "SLA", "period_seconds": DAY,
                 "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.5}]}
    terms_hash = api.ok("POST", "/api/terms", 201, json=terms_doc)["terms_hash"]
    upload = api.ok("POST", "/api/attachments", 201,
                    files={"file": ("notes.txt", b"all checks passed\n", "text/plain")})
    assert_fits(Attachment, upload)
    review = {"comment": "Looks good", "attachments": [upload]}
    comment_hash = "0x" + keccak(canonical_json(review)).hex()
    with api.services.sessions() as session, session.begin():
        session.add(Review(comment_hash=comment_hash, canonical=canonical_json(review).decode(),
                           created_at=int(time.time())))
    escrow_id = env.create_active(
        env.params((1_500_000, 2_500_000), token=env.token, terms_hash=terms_hash))
    env.deliver(escrow_id, 0)
    env.escrow.confirm(escrow_id, 0, 4, comment_hash, env.client)
    env.escrow.report_breach(escrow_id, 1, 0, b"\x44" * 32, env.oracle)
    env.deliver(escrow_id, 1)
    api.index()
    dispute = api.ok("POST", f"/api/escrows/{escrow_id}/milestones/1/dispute",
                     json={"reason": "Half done", "attachments": [upload["sha256"]]})
    assert_fits(PreparedDispute, dispute)
    api.send(env.client, dispute["tx"])
    proposed = env.create(env.params((ETH,)))
    api.index()

    page = api.ok("GET", "/api/escrows")
    assert [e["id"] for e in page["escrows"]] == [proposed, escrow_id]
    assert page["escrows"][0]["accepted_at"] is None and page["next_offset"] is None
    assert_fits(EscrowPage, page)
    assert_fits(EscrowPage, api.ok("GET", "/api/escrows?limit=1"))  # with a next_offset

    detail = api.ok("GET", f"/api/escrows/{escrow_id}")
    assert detail["milestones"][0]["review"] == review
    assert detail["milestones"][1]["dispute_reason"] == dispute["document"]
    assert detail["terms_document"] == terms_doc
    assert [b["kind_name"] for b in detail["breaches"]] == ["kpi_below_standard"]
    assert_fits(EscrowDetail, detail)
    assert_fits(EscrowDetail, api.ok("GET", f"/api/escrows/{proposed}"))

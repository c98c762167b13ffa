"""`POST /api/terms` and `GET /api/terms/{terms_hash}`: documents stored under the keccak256 of
their RFC 8785 form and served back byte for byte, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from eth_utils import keccak
from sqlalchemy import func, select

from backend.db.models import TermsDocument
from backend.oracle.terms_store import MAX_TERMS_BYTES
from tests.api.support import Api

DOC = {"version": 1, "title": "Managed hosting SLA", "period_seconds": 86400,
       "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
       "acceptance_criteria": ["déploiement réussi", "€"]}
CANONICAL = (
    '{"acceptance_criteria":["déploiement réussi","€"],"kpis":[{"aggregate":"mean","id":'
    '"uptime_pct","op":">=","threshold":99.9}],"period_seconds":86400,"title":'
    '"Managed hosting SLA","version":1}'
).encode()


def test_posting_terms_returns_201_with_the_keccak_of_the_canonical_form(api: Api) -> None:
    body = api.ok("POST", "/api/terms", 201, json=DOC)
    assert body == {"terms_hash": "0x" + keccak(CANONICAL).hex()}


def test_fetched_terms_are_the_canonical_bytes_that_rehash_to_the_terms_hash(api: Api) -> None:
    terms_hash = api.ok("POST", "/api/terms", 201, json=DOC)["terms_hash"]
    response = api.http.get(f"/api/terms/{terms_hash.upper().replace('0X', '0x')}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == CANONICAL
    assert "0x" + keccak(response.content).hex() == terms_hash
    assert response.json() == DOC


def test_storing_the_same_document_again_is_idempotent(api: Api) -> None:
    first = api.ok("POST", "/api/terms", 201, json=DOC)
    reordered = json.dumps(dict(reversed(list(DOC.items()))), indent=2).encode()
    second = api.ok("POST", "/api/terms", 201, content=reordered,
                    headers={"content-type": "application/json"})
    assert second == first
    with api.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TermsDocument)) == 1


def test_unknown_terms_are_404_and_a_malformed_hash_400(api: Api) -> None:
    unknown = "0x" + "ab" * 32
    assert api.error("GET", f"/api/terms/{unknown}", 404) == {
        "error": "not_found", "detail": f"unknown terms document {unknown}"
    }
    assert api.error("GET", "/api/terms/0x1234", 400)["error"] == "malformed"
    assert api.error("GET", f"/api/terms/{'ab' * 32}", 400)["error"] == "malformed"


def test_terms_over_64_kib_are_refused_with_413(api: Api) -> None:
    big = {"title": "x" * MAX_TERMS_BYTES}
    body = api.error("POST", "/api/terms", 413, json=big)
    assert body["error"] == "too_large"
    assert str(MAX_TERMS_BYTES) in body["detail"]
    # a chunked body declares no length: it is cut off while it streams in
    chunks = iter([b'{"title": "', b"x" * MAX_TERMS_BYTES, b'"}'])
    chunked = api.error("POST", "/api/terms", 413, content=chunks,
                        headers={"content-type": "application/json"})
    assert chunked["error"] == "too_large"
    # just under the limit is fine
    fits = {**DOC, "t": "x" * (MAX_TERMS_BYTES - 250)}
    assert len(json.dumps(fits, separators=(",", ":"))) <= MAX_TERMS_BYTES
    api.ok("POST", "/api/terms", 201, content=json.dumps(fits, separators=(",", ":")).encode())


def test_terms_that_are_not_a_json_object_are_refused(api: Api) -> None:
    headers = {"content-type": "application/json"}
    assert api.error("POST", "/api/terms", 400, content=b"{nope", headers=headers)["error"] == (
        "malformed"
    )
    assert api.error("POST", "/api/terms", 400, content=b"", headers=headers)["error"] == (
        "malformed"
    )
    assert api.error("POST", "/api/terms", 400, content=b'{"a": NaN}',
                     headers=headers)["error"] == "malformed"
    not_object = api.error("POST", "/api/terms", 422, json=[DOC])
    assert not_object == {
        "error": "out_of_range",
        "detail": "terms document='list' is out of range: expected a JSON object",
    }
    deep = b'{"a": ' + b"[" * 39 + b"]" * 39 + b"}"  # within the body bounds (64 levels)
    too_deep = api.error("POST", "/api/terms", 422, content=deep, headers=headers)
    assert too_deep["detail"] == (
        "terms document='nesting depth 40' is out of range: expected at most 32 levels"
    )
    # deeper than any body may be (backend/api/body_bounds.py): refused before it is parsed
    deeper = b'{"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"  # under the size limit
    assert api.error("POST", "/api/terms", 400, content=deeper, headers=headers) == {
        "error": "malformed", "detail": "malformed body: JSON nested deeper than 64 levels",
    }
    api.ok("POST", "/api/terms", 201, json={**DOC, "a": [[[[{"b": [1]}]]]]})
    # RFC 8785 cannot carry integers beyond 2^53 exactly
    assert api.error("POST", "/api/terms", 422, json={"n": 2**60})["error"] == "out_of_range"
    with api.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TermsDocument)) == 1


def test_posted_terms_are_checked_by_the_one_model_naming_the_field(api: Api) -> None:
    body = api.error("POST", "/api/terms", 422, json={**DOC, "consecutive_periods": 1})
    assert body == {
        "error": "out_of_range",
        "detail": "invalid terms document: consecutive_periods: Input should be greater than "
                  "or equal to 2",
    }


def test_the_served_schema_documents_fields_units_and_the_percentile_method(api: Api) -> None:
    schema = api.ok("GET", "/api/terms/schema")
    assert "nearest-rank" in schema["description"]
    assert "seconds" in schema["properties"]["period_seconds"]["description"]
    assert all(prop.get("description") for prop in schema["properties"].values())

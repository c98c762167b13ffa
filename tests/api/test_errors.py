"""Every refusal is `{"error", "detail"}` with its documented status: unknown paths, methods a
path does not take, and malformed bodies posted to every JSON POST route; never FastAPI's default
body, never a 5xx."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from backend.api.errors import field_location
from backend.api.routes import ROUTERS
from backend.errors import OutOfRangeError
from tests.api.support import Api

#: a value for each path parameter: ids that name nothing, so a route may answer 404
PATH_VALUES = {"escrow_id": "1", "milestone": "0", "action": "deliver", "subscription_id": "1"}


def test_unknown_paths_answer_not_found_in_the_api_shape(api: Api) -> None:
    for path in ("/nope", "/api/nope", "/api/escrows/1/nope", "/favicon.ico"):
        body = api.error("GET", path, 404)
        assert body == {"error": "not_found", "detail": f"no such path: GET {path}"}


def test_a_method_the_path_does_not_take_is_405_in_the_api_shape(api: Api) -> None:
    response = api.http.put("/api/escrows/prepare", json={})
    assert response.status_code == 405
    assert response.json() == {
        "error": "method_not_allowed",
        "detail": "method PUT is not allowed on /api/escrows/prepare (allowed: POST)",
    }
    assert response.headers["allow"] == "POST"
    assert api.error("DELETE", "/api/terms", 405)["error"] == "method_not_allowed"


def test_a_body_missing_fields_names_them_with_400_and_wrong_types_with_422(api: Api) -> None:
    missing = api.error("POST", "/api/webhooks", 400, json={"url": "https://x.test"})
    assert missing["error"] == "malformed"
    assert "message: the field is missing" in missing["detail"]
    wrong = api.error("POST", "/api/escrows/prepare", 400, json={"client": 5})
    assert "malformed client: 5 is not a 20-byte 0x address" in wrong["detail"]
    typed = api.error("GET", "/api/escrows?limit=many", 422)
    assert typed["error"] == "invalid" and typed["detail"].startswith("limit: ")
    not_json = api.error("POST", "/api/escrows/prepare", 400, content=b"{nope",
                         headers={"content-type": "application/json"})
    assert not_json["error"] == "malformed" and "not JSON" in not_json["detail"]


def test_error_locations_read_as_request_fields() -> None:
    assert field_location(("body", "rules", "rating_payout_bps", 2)) == "rules.rating_payout_bps[2]"
    assert field_location(("body", "milestone_amounts", 0)) == "milestone_amounts[0]"
    assert field_location(("query", "limit")) == "limit"
    assert field_location(("body",)) == "body"


def _json_post_routes() -> list[APIRoute]:
    """Every POST route the app mounts (`backend.api.routes.ROUTERS`, as `create_app` does)."""
    return sorted(
        (r for router in ROUTERS for r in router.routes
         if isinstance(r, APIRoute) and "POST" in r.methods),
        key=lambda r: r.path,
    )


def _path(route: APIRoute) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), route.path)


def _malformed_bodies(route: APIRoute) -> list[tuple[str, dict[str, Any]]]:
    """(name, request kwargs): not JSON, JSON of the wrong shape, every field of the body model
    with a wrong type, and each required field missing."""
    json_headers = {"content-type": "application/json"}
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("not JSON", {"content": b"{nope", "headers": json_headers}),
        ("empty", {"content": b"", "headers": json_headers}),
        ("a list", {"json": [1, 2]}),
        ("a string", {"json": "text"}),
        ("a 400-digit number", {"content": b"1" * 400, "headers": json_headers}),
        ("a 5000-digit number", {"content": b"1" * 5_000, "headers": json_headers}),
        ("null", {"content": b"null", "headers": json_headers}),
        ("an empty object", {"json": {}}),
        ("NaN", {"content": b'{"value": NaN}', "headers": json_headers}),
    ]
    fields = getattr(route.body_field.field_info.annotation, "model_fields", {}) if (
        route.body_field is not None
    ) else {}
    if fields:
        wrong = {n: [[{"x": None}]] for n in fields}
        bodies.append(("every field of a wrong type", {"json": wrong}))
        bodies.append(("every field a float", {"json": {n: 1.5e300 for n in fields}}))
        bodies.append(("every field a 400-digit integer",
                       {"content": ("{" + ",".join(f'"{n}": {"9" * 400}' for n in fields)
                                    + "}").encode(), "headers": json_headers}))
        for name, info in fields.items():
            if info.is_required():
                partial = {other: "1" for other in fields if other != name}
                bodies.append((f"{name} missing", {"json": partial}))
    return bodies


def test_the_sweep_covers_every_post_route_of_the_app(api: Api) -> None:
    # the app's own list of its routes, as its OpenAPI document states them
    mounted = {path for path, ops in api.app.openapi()["paths"].items() if "post" in ops}
    assert mounted == {route.path for route in _json_post_routes()}
    assert {"/api/terms", "/api/escrows/prepare", "/api/escrows/{escrow_id}/tx/{action}",
            "/api/escrows/{escrow_id}/measurements", "/api/webhooks"} <= mounted


@pytest.mark.parametrize("route", _json_post_routes(), ids=lambda r: r.path)
def test_malformed_bodies_get_a_4xx_with_error_and_detail_only(api: Api, route: APIRoute) -> None:
    client = TestClient(api.app, raise_server_exceptions=False)
    for name, kwargs in _malformed_bodies(route):
        response = client.post(_path(route), **kwargs)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        body = response.json()
        assert set(body) == {"error", "detail"}, (name, body)
        assert isinstance(body["error"], str) and body["detail"], (name, body)


def test_a_body_python_cannot_read_is_400_malformed(api: Api) -> None:
    # Python's JSON parser refuses integers of more than 4,300 digits with a ValueError of its own
    body = b'{"client": ' + b"9" * 5_000 + b"}"
    refused = api.error("POST", "/api/escrows/prepare", 400, content=body,
                        headers={"content-type": "application/json"})
    assert refused["error"] == "malformed"


def test_the_openapi_document_describes_the_parsed_kinds(api: Api) -> None:
    spec = api.app.openapi()
    prepare = spec["components"]["schemas"]["PrepareRequest"]["properties"]
    amount = prepare["milestoneAmounts"]["items"]  # snake_case is accepted too
    assert {"type": "integer", "minimum": 0, "maximum": 2**53 - 1} in amount["anyOf"]
    assert any(option["type"] == "string" for option in amount["anyOf"])
    detail = spec["paths"]["/api/escrows/{escrow_id}"]["get"]["parameters"][0]
    assert (detail["schema"]["minimum"], detail["schema"]["maximum"]) == (1, 2**63 - 1)


def test_a_huge_refused_value_is_not_echoed_back_whole() -> None:
    """Observed: a 1.5 MB string out of range came back whole in the 422 body."""
    error = OutOfRangeError("title", "x" * 1_500_000, "at most 200 characters")
    assert len(error.message) < 400
    assert "(1500002 characters)" in error.message

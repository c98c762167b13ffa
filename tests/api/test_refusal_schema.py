"""Error bodies match the OpenAPI schema: a real 422 (and the 400 and 413 of
the body bounds) validates against the schema the OpenAPI document declares for that status of
that operation, resolved from the document itself (FastAPI's own `HTTPValidationError`, a
`{"detail": [...]}` list, would fail here)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from backend.api.body_bounds import MAX_JSON_BODY_BYTES, MAX_JSON_DEPTH
from tests.api.support import Api


def declared_schema(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The JSON Schema of the `status` answer of the operation, its `$ref`s resolving in
    `spec` (the status's own entry, else `default`)."""
    responses = spec["paths"][path][method]["responses"]
    answer = responses.get(str(status)) or responses["default"]
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


def assert_fits(api: Api, method: str, path: str, template: str, status: int,
                **kwargs: Any) -> dict[str, Any]:
    response = api.http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    schema = declared_schema(api.app.openapi(), method.lower(), template, status)
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(body)]
    assert not errors, (method, path, body, errors)
    return body


def test_a_real_422_matches_the_schema_the_document_declares_for_it(api: Api) -> None:
    spec = api.app.openapi()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    body = assert_fits(api, "GET", "/api/escrows?status=lost", "/api/escrows", 422)
    assert body["error"] == "out_of_range" and "status" in body["detail"]
    refused = assert_fits(api, "POST", "/api/tx/withdraw", "/api/tx/withdraw", 422,
                          json={"token": "not an address"})
    assert "token" in refused["detail"]
    # the schema does refuse FastAPI's own 422 body: the check above can fail
    fastapi_default = {"detail": [{"loc": ["query", "status"], "msg": "bad", "type": "enum"}]}
    schema = declared_schema(spec, "get", "/api/escrows", 422)
    assert not jsonschema_rs.validator_for(schema).is_valid(fastapi_default)


def test_the_refusals_of_the_body_bounds_match_the_schema_of_every_operation_with_a_body(
    api: Api,
) -> None:
    spec = api.app.openapi()
    with_body = [(path, method) for path, ops in spec["paths"].items()
                 for method, op in ops.items() if "requestBody" in op]
    assert len(with_body) >= 12
    for path, method in with_body:
        assert {"400", "413"} <= set(spec["paths"][path][method]["responses"]), (method, path)
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    headers = {"Content-Type": "application/json"}
    assert_fits(api, "POST", "/api/tx/withdraw", "/api/tx/withdraw", 400, content=deep,
                headers=headers)
    assert_fits(api, "POST", "/api/tx/withdraw", "/api/tx/withdraw", 413,
                content=b" " * (MAX_JSON_BODY_BYTES + 1), headers=headers)

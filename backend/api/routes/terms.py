"""`POST /api/terms` and `GET /api/terms/{terms_hash}`: store and fetch terms documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from backend.api.deps import ServicesDep, SessionDep, limited_body
from backend.api.schemas import TermsStored, raw_body, refusals
from backend.oracle.terms_store import (
    MAX_TERMS_BYTES,
    get_terms_text,
    parse_terms_body,
    store_terms,
)

router = APIRouter(prefix="/api/terms", tags=["terms"])


#: the request body, 413 as soon as it passes `MAX_TERMS_BYTES`
TermsBody = Annotated[bytes, Depends(limited_body("terms document", MAX_TERMS_BYTES))]


_OBJECT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post(
    "",
    status_code=201,
    response_model=TermsStored,
    responses=refusals(400, 413, 422),
    openapi_extra=_OBJECT_BODY,
)
def post_terms(body: TermsBody, session: SessionDep, services: ServicesDep) -> dict[str, str]:
    """Stores a terms document (a JSON object, at most 64 KiB, that the terms model accepts: its
    schema is `GET /api/terms/schema`) under the keccak256 of its RFC 8785 canonical form;
    storing the same document again returns the same hash. 400 not JSON, 413 too large, 422
    naming each field the model refuses, 422 `period_too_short` for a `period_seconds` below
    the operator's minimum (`ESCROW_MIN_PERIOD_SECONDS`, default 3600)."""
    minimum = services.settings.min_period_seconds
    return {"terms_hash": store_terms(session, parse_terms_body(body), min_period_seconds=minimum)}


@router.get(
    "/{terms_hash}",
    response_class=Response,
    responses={
        **raw_body(
            "application/json",
            "The stored terms document as its RFC 8785 canonical bytes (docs/interface.md "
            "section 3.2): keccak256 of the body is `terms_hash`",
            {"type": "object"},
        ),
        **refusals(400, 404),
    },
)
def get_terms(terms_hash: str, session: SessionDep) -> Response:
    """The stored document as its canonical JSON: the body re-hashes to `terms_hash`."""
    return Response(get_terms_text(session, terms_hash), media_type="application/json")

"""`GET /api/terms/schema`: the JSON Schema of a terms document (registered before the terms
router, so `/api/terms/{terms_hash}` does not take `schema` for a hash)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.schemas import TermsJsonSchema, refusals
from backend.oracle.terms import terms_json_schema

router = APIRouter(prefix="/api/terms", tags=["terms"])


@router.get("/schema", response_model=TermsJsonSchema, responses=refusals())
def get_terms_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every document posted to `POST /api/terms` must fit."""
    return terms_json_schema()

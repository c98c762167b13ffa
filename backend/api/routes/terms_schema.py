"""`GET /api/terms/schema`: the JSON Schema of a terms document (registered before the terms
router, so `/api/terms/{terms_hash}` does not take `schema` for a hash)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.oracle.terms import terms_json_schema

router = APIRouter(tags=["terms"])


@router.get("/api/terms/schema")
def get_terms_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every document posted to `POST /api/terms` must fit."""
    return terms_json_schema()

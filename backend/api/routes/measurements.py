"""`POST /api/escrows/{id}/measurements`: KPI samples posted with the escrow's bearer token."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends

from backend.api.deps import MeasurementAuth, ServicesDep, SessionDep, limited_body
from backend.api.schemas import MeasurementsStored, refusals
from backend.errors import MalformedInputError, OutOfRangeError
from backend.oracle.measurements import escrow_terms, ingest, parse_samples

router = APIRouter(prefix="/api/escrows", tags=["measurements"])

#: a full batch (10,000 samples) with ISO timestamps fits easily
MAX_MEASUREMENTS_BYTES = 4 * 1024 * 1024


#: the request body, 413 as soon as it passes `MAX_MEASUREMENTS_BYTES`
MeasurementsBody = Annotated[
    bytes, Depends(limited_body("measurements body", MAX_MEASUREMENTS_BYTES))
]

_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["samples"],
                    "properties": {
                        "samples": {
                            "type": "array",
                            "maxItems": 10_000,
                            "items": {
                                "type": "object",
                                "required": ["kpi", "value", "observed_at"],
                                "properties": {
                                    "kpi": {"type": "string"},
                                    "value": {"type": "number"},
                                    "observed_at": {"type": ["integer", "string"]},
                                },
                            },
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/{escrow_id}/measurements",
    response_model=MeasurementsStored,
    responses=refusals(400, 401, 404, 409, 413, 422),
    openapi_extra=_BODY_SCHEMA,
)
def post_measurements(
    body: MeasurementsBody, escrow: MeasurementAuth, session: SessionDep, services: ServicesDep
) -> dict[str, int]:
    """Stores a batch of KPI samples, all or nothing: `{accepted, duplicates}`; samples already
    stored with the same value count as duplicates. Checked in this order: 413 a body over 4 MiB,
    404 unknown escrow, 401 without the escrow's bearer token (`MeasurementAuth`), 400 not JSON,
    then 409 terms document not stored or a stored sample with another value, 413 over 10,000
    samples, 422 naming the sample refused."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise MalformedInputError("measurements body", str(exc)) from exc
    if not isinstance(document, dict) or "samples" not in document:
        raise OutOfRangeError("measurements body", type(document).__name__, '{"samples": [...]}')
    samples = parse_samples(document["samples"])
    now = services.clock.now_or_service_time()
    result = ingest(session, escrow, escrow_terms(session, escrow), samples, now)
    return {"accepted": result.accepted, "duplicates": result.duplicates}

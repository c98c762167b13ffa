"""The one place that maps errors to HTTP statuses: `{"error": code, "detail": message}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.chain.errors import ChainError, ContractRevert, InvalidSignature
from backend.db.session import database_unavailable
from backend.errors import (
    AlreadyDoneError,
    DeadlinePassedError,
    ForbiddenSignerError,
    MalformedInputError,
    NotFoundError,
    OutOfRangeError,
    QualityEscrowError,
    TooLargeError,
    UnavailableError,
)
from backend.inputs import with_field
from backend.notify.errors import SignInRefusedError
from backend.oracle.measurements import MeasurementTokenRefusedError

STATUS_BY_CLASS: dict[type[QualityEscrowError], int] = {
    MalformedInputError: 400,
    InvalidSignature: 400,
    ForbiddenSignerError: 403,
    NotFoundError: 404,
    AlreadyDoneError: 409,
    DeadlinePassedError: 410,
    TooLargeError: 413,
    OutOfRangeError: 422,
    UnavailableError: 503,
    SignInRefusedError: 401,
    MeasurementTokenRefusedError: 401,
}

#: contract reverts that reach the API (the chain changed between our checks and the call)
STATUS_BY_REVERT: dict[str, int] = {
    "EscrowNotFound": 404,
    "EscrowMilestoneOutOfRange": 404,
    "EscrowBreachNotFound": 404,
    "EscrowInvalidMilestoneState": 409,
    "EscrowInvalidBreachState": 409,
    "EscrowInvalidStatus": 409,
    "EscrowBreachAlreadyReported": 409,
    "EscrowNothingToReclaim": 409,
    "EscrowNothingToWithdraw": 409,
    "EscrowSignatureExpired": 410,
    "EscrowWindowClosed": 410,
    "EscrowWindowOpen": 409,
    "EscrowInvalidSignature": 403,
    "EscrowUnauthorizedCaller": 403,
}


def status_for(exc: QualityEscrowError) -> int:
    if isinstance(exc, ContractRevert):
        return STATUS_BY_REVERT.get(exc.error_name, 422)
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_CLASS:
            return STATUS_BY_CLASS[cls]
    if isinstance(exc, ChainError):
        return 502
    return 500


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


class RefusalBody(BaseModel):
    """The body of every refusal (`error_body`), as the OpenAPI document names it for each error
    status of each route (`backend.api.schemas.refusals`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    error: str = Field(
        description="The refusal's code: a name of docs/interface.md section 4.2 (`not_found`, "
        "`malformed`, `token_refused`, ...) or the contract's revert name",
        examples=["not_found"],
    )
    detail: str = Field(
        description="What was wrong, naming the field at fault", examples=["unknown escrow 7"]
    )


#: the `error` code of a refusal by the framework itself: a body it cannot read (a JSON number of
#: more than 4,300 digits, which Python's parser refuses), an unknown path, a method the path
#: does not take
HTTP_ERROR_CODES: dict[int, str] = {
    400: "malformed",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
_LOCATIONS = ("body", "path", "query", "header", "cookie")


def field_location(loc: Sequence[int | str]) -> str:
    """A pydantic error location as the field's name in the request: `("body", "rules",
    "rating_payout_bps", 2)` -> `rules.rating_payout_bps[2]`; the whole body is `body`."""
    parts = list(loc[1:] if loc and loc[0] in _LOCATIONS else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "body"


@dataclass(frozen=True)
class Refusal:
    """One answer `{"error": code, "detail": detail}` (the body `RefusalBody` describes) with its
    HTTP status."""

    status: int
    code: str
    detail: str
    headers: dict[str, str] | None = None

    def response(self) -> JSONResponse:
        return JSONResponse(
            error_body(self.code, self.detail), status_code=self.status, headers=self.headers
        )


def refusal_of(exc: QualityEscrowError) -> Refusal:
    code = exc.error_name if isinstance(exc, ContractRevert) else exc.code
    # RFC 9110 section 10.2.3: when a client may ask again
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, UnavailableError) else None
    return Refusal(status_for(exc), code, exc.message, headers)


def _validation_refusal(err: Mapping[str, Any]) -> Refusal:
    where = field_location(err.get("loc", ()))
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, QualityEscrowError):
        # a parser of backend.inputs refused the value inside a pydantic validator (its input
        # errors are ValueErrors, which pydantic wraps): its own error, named after the field
        return refusal_of(with_field(cause, where))
    kind = err.get("type")
    if kind == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", err.get("msg"))
        return Refusal(400, "malformed", f"malformed body: not JSON ({reason})")
    if kind == "missing":
        return Refusal(400, "malformed", f"{where}: the field is missing")
    return Refusal(422, "invalid", f"{where}: {err.get('msg')}")


def validation_refusal(exc: RequestValidationError) -> Refusal:
    """The answer to a request pydantic refused: a body that is no JSON or lacks a field is 400
    `malformed`; a value a parser of `backend.inputs` refused gets that parser's status and
    code; any other value 422 `invalid`. The detail names every field at fault; the first 400
    (else the first refusal) gives the status."""
    refusals = [_validation_refusal(err) for err in exc.errors()]
    if not refusals:
        return Refusal(422, "invalid", "the request was refused")
    first = next((r for r in refusals if r.status == 400), refusals[0])
    detail = "; ".join(dict.fromkeys(r.detail for r in refusals))
    return Refusal(first.status, first.code, detail, first.headers)


def http_refusal(request: Request, exc: StarletteHTTPException) -> Refusal:
    """Starlette's own refusals (no route for the path: 404; a method the path does not take:
    405, keeping its `Allow` header) in the API's shape."""
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        detail = f"no such path: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        detail = f"method {request.method} is not allowed on {request.url.path}" + (
            f" (allowed: {allowed})" if allowed else ""
        )
    elif exc.status_code == 400:
        detail = f"malformed body: {exc.detail}"
    else:
        detail = str(exc.detail)
    return Refusal(exc.status_code, code, detail, dict(exc.headers) if exc.headers else None)


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal as `{"error", "detail"}`: the project's errors (`STATUS_BY_CLASS`), request
    validation (`validation_refusal`) and routing (`http_refusal`); FastAPI's default bodies
    never reach a client."""

    @app.exception_handler(QualityEscrowError)
    async def _domain_error(_request: Request, exc: QualityEscrowError) -> JSONResponse:
        return refusal_of(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_refusal(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_refusal(request, exc).response()

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        """A lost database (`backend.db.session.database_unavailable`): 503
        `database_unavailable` with `Retry-After`, never a 500; any other database error is a
        bug and stays one (re-raised: 500, logged with its traceback). The outage is logged as
        a warning naming the path and the driver's first line (never the statement)."""
        outage = database_unavailable(exc)
        if outage is None:
            raise exc
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        logging.getLogger(__name__).warning(
            "%s: %s (%s)", request.url.path, outage.message, cause[0] if cause else "",
            extra={"event": "database_unavailable"},
        )
        return refusal_of(outage).response()

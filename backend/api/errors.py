"""The one place that maps errors to HTTP statuses: `{"error": code, "detail": message}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.chain.errors import ChainError, ContractRevert, InvalidSignature
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(QualityEscrowError)
    async def _domain_error(_request: Request, exc: QualityEscrowError) -> JSONResponse:
        code = exc.error_name if isinstance(exc, ContractRevert) else exc.code
        return JSONResponse(error_body(code, exc.message), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        malformed = any(err.get("type") in ("json_invalid", "missing") for err in exc.errors())
        return JSONResponse(
            error_body("malformed" if malformed else "invalid", problems),
            status_code=400 if malformed else 422,
        )

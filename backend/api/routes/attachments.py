"""Review attachments: `POST /api/attachments` (multipart, field `file`) ->
`{sha256, name, media_type, size}`; `GET /api/attachments/{sha256}` serves the stored bytes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import Attachment, raw_body, refusals
from backend.confirmations.reviews import (
    ALLOWED_MEDIA_TYPES,
    MAX_ATTACHMENT_BYTES,
    attachment_json,
    attachment_path,
    find_attachment,
    store_attachment,
)
from backend.errors import MalformedInputError, NotFoundError, TooLargeError

router = APIRouter(prefix="/api/attachments", tags=["attachments"])

#: committed before the response leaves: a client that got its digest can use it at once

#: room for the multipart framing around the file itself
_ENVELOPE = 64 * 1024

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
        "description": (
            f"one file of at most {MAX_ATTACHMENT_BYTES} bytes: "
            + ", ".join(ALLOWED_MEDIA_TYPES)
        ),
    }
}


async def _read_upload(request: Request) -> tuple[bytes, str | None, str | None]:
    """The `file` part's bytes, file name and declared type; 413 as early as the size shows."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_ATTACHMENT_BYTES + _ENVELOPE:
        raise TooLargeError("request body", int(length), MAX_ATTACHMENT_BYTES)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise MalformedInputError("body", "expected multipart/form-data with a `file` part")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as exc:  # the multipart parser's own errors
        raise MalformedInputError("body", f"unreadable multipart form: {exc}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise MalformedInputError("body", "no `file` part")
        data = await upload.read(MAX_ATTACHMENT_BYTES + 1)
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise TooLargeError("attachment", upload.size or len(data), MAX_ATTACHMENT_BYTES)
        return data, upload.filename, upload.content_type
    finally:
        await form.close()


@router.post(
    "",
    status_code=201,
    response_model=Attachment,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": Attachment, "description": "The same file was stored before"},
        **refusals(400, 413, 422),
    },
)
async def upload_attachment(
    request: Request, response: Response, services: ServicesDep, session: SessionDep
) -> dict[str, Any]:
    """Stores a photo, PDF or text file content-addressed; the type is read from its bytes."""
    data, name, declared = await _read_upload(request)
    row, created = await run_in_threadpool(
        store_attachment,
        session,
        services.settings.data_dir,
        data,
        name=name,
        declared_type=declared,
    )
    if not created:
        response.status_code = 200
    return attachment_json(row)


@router.get(
    "/{sha256}",
    response_class=FileResponse,
    responses={
        **raw_body(
            ALLOWED_MEDIA_TYPES,
            "The stored bytes, with the media type detected at upload; images inline, others "
            "as an attachment",
        ),
        **refusals(404, 422),
    },
)
def download_attachment(sha256: str, services: ServicesDep, session: SessionDep) -> FileResponse:
    """The stored bytes, so anyone can re-hash a review's attachments."""
    row = find_attachment(session, sha256)
    path = attachment_path(services.settings.data_dir, row.sha256)
    if not path.is_file():
        raise NotFoundError("attachment file", row.sha256)
    return FileResponse(
        path,
        media_type=row.media_type,
        filename=row.name,
        content_disposition_type="inline" if row.media_type.startswith("image/") else "attachment",
        headers={"X-Content-Type-Options": "nosniff"},
    )

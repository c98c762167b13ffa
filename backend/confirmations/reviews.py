"""A client's review of a milestone: a comment plus uploaded attachments (photos of the result, a
signed acceptance act), bound on-chain as the confirmation's `commentHash` (`docs/interface.md`).

Attachments are stored content-addressed under `<data_dir>/attachments/<sha256>` with a size limit
and an allow-list of media types detected from the file's magic bytes (the declared type must
agree). A review is the RFC 8785 canonical JSON
`{"comment": "...", "attachments": [{"name", "media_type", "size", "sha256"}]}`; its keccak256 is
the `commentHash`, and `bytes32(0)` stands for "no review" (no comment and no attachments).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.canonical import canonical_json
from backend.chain.clock import service_time
from backend.db.models import Attachment, Review
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, TooLargeError

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS = 10
MAX_COMMENT_CHARS = 2_000
MAX_NAME_CHARS = 255
NO_REVIEW_HASH = b"\x00" * 32

PNG, JPEG, WEBP, GIF, PDF, TEXT = (
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "application/pdf",
    "text/plain",
)
ALLOWED_MEDIA_TYPES = (PNG, JPEG, WEBP, GIF, PDF, TEXT)
#: declared types that say nothing about the content: the detected type is used
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_ALIASES = {"image/jpg": JPEG, "image/pjpeg": JPEG, "application/x-pdf": PDF}
_SHA256 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
#: C0 controls a plain-text file may not hold (tab, LF, FF and CR are fine)
_TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 12, 13}


class UnsupportedMediaType(OutOfRangeError):
    """422: the content is none of the allowed types, or not the type it was declared as."""

    code = "unsupported_media_type"


# ------------------------------------------------------------------ media types


def sniff_media_type(data: bytes) -> str | None:
    """The allowed media type the bytes are, judged by their magic numbers (None: none of them).
    Plain text is valid UTF-8 with no control characters besides tab, newlines and form feed."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if b"%PDF-" in data[:1024]:
        return PDF
    if data and _is_plain_text(data):
        return TEXT
    return None


def _is_plain_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not _TEXT_CONTROLS.intersection(data)


def normalize_media_type(declared: str | None) -> str:
    """`Image/JPG; q=1` -> `image/jpeg`: lower case, no parameters, common aliases resolved."""
    base = (declared or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def resolve_media_type(data: bytes, declared: str | None) -> str:
    """The stored media type: the detected one, which a specific declared type must match."""
    detected = sniff_media_type(data)
    claimed = normalize_media_type(declared)
    if detected is None:
        allowed = ", ".join(ALLOWED_MEDIA_TYPES)
        raise UnsupportedMediaType("media_type", claimed or "unknown", f"content of {allowed}")
    agrees = (
        claimed in _GENERIC_TYPES
        or claimed == detected
        or (detected == TEXT and claimed.startswith("text/"))
    )
    if not agrees:
        raise UnsupportedMediaType("media_type", claimed, f"the detected type {detected}")
    return detected


def clean_name(name: str | None) -> str:
    """A display name safe to store and show: the last path segment, no control characters,
    at most 255 characters; `attachment` when nothing is left."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if base.strip(".") == "":
        return "attachment"
    return base[:MAX_NAME_CHARS]


# ------------------------------------------------------------------ attachments


def _insert_once(
    session: Session, model: type[Attachment] | type[Review], values: dict[str, Any]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (concurrent uploads of the same bytes, the same review
    twice); True when this call inserted the row."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key = Attachment.sha256 if model is Attachment else Review.comment_hash
    statement = insert(model).values(**values).on_conflict_do_nothing().returning(key)
    return session.execute(statement).first() is not None


def normalize_sha256(value: str) -> str:
    """64 lower-case hex digits (a `0x` prefix and upper case are accepted); 422 otherwise."""
    if not isinstance(value, str) or not _SHA256.match(value):
        raise OutOfRangeError("attachments", value, "a sha256 digest as 64 hex digits")
    return value.removeprefix("0x").lower()


def attachment_path(data_dir: Path, digest: str) -> Path:
    return data_dir / "attachments" / normalize_sha256(digest)


def attachment_json(row: Attachment) -> dict[str, Any]:
    return {"sha256": row.sha256, "name": row.name, "media_type": row.media_type, "size": row.size}


def _write_once(path: Path, data: bytes) -> None:
    """Writes `data` to `path` atomically (temp file + rename); an intact copy is kept as is."""
    if path.is_file() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_attachment(
    session: Session,
    data_dir: Path,
    data: bytes,
    *,
    name: str | None,
    declared_type: str | None,
    now: int | None = None,
) -> tuple[Attachment, bool]:
    """Checks and stores an uploaded file; returns its row and whether it is new.

    The same bytes uploaded again map to the same row: its first name and type stay, since reviews
    may already be bound to them."""
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise TooLargeError("attachment", len(data), MAX_ATTACHMENT_BYTES)
    if not data:
        raise OutOfRangeError("attachment", "empty file", "at least one byte")
    media_type = resolve_media_type(data, declared_type)
    digest = sha256(data).hexdigest()
    _write_once(attachment_path(data_dir, digest), data)
    values = {
        "sha256": digest,
        "name": clean_name(name),
        "media_type": media_type,
        "size": len(data),
        "created_at": service_time() if now is None else now,
    }
    created = _insert_once(session, Attachment, values)
    row = session.get(Attachment, digest)
    assert row is not None
    return row, created


def find_attachment(session: Session, digest: str) -> Attachment:
    row = session.get(Attachment, normalize_sha256(digest))
    if row is None:
        raise NotFoundError("attachment", normalize_sha256(digest))
    return row


# ------------------------------------------------------------------ reviews


@dataclass(frozen=True)
class ReviewDoc:
    """A review and its hash; `document` is None (hash zero) when there is nothing to review."""

    document: dict[str, Any] | None
    canonical: bytes | None
    comment_hash: bytes

    @property
    def comment_hash_hex(self) -> str:
        return "0x" + self.comment_hash.hex()


def check_comment(comment: str) -> None:
    """413 above 2,000 characters; 400 for text JSON can carry but UTF-8 cannot (lone
    surrogates), since such a comment has no canonical form to hash."""
    if len(comment) > MAX_COMMENT_CHARS:
        raise TooLargeError("comment (characters)", len(comment), MAX_COMMENT_CHARS)
    try:
        comment.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedInputError("comment", "not valid Unicode text (lone surrogate)") from exc


def check_attachment_list(digests: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """At most 10 well-formed, distinct digests, normalized; 413 / 422 otherwise."""
    if len(digests) > MAX_ATTACHMENTS:
        raise TooLargeError("attachments (count)", len(digests), MAX_ATTACHMENTS)
    normalized = tuple(normalize_sha256(d) for d in digests)
    if len(set(normalized)) != len(normalized):
        raise OutOfRangeError("attachments", list(digests), "distinct digests")
    return normalized


def review_document(comment: str, attachments: list[dict[str, Any]]) -> ReviewDoc:
    """The canonical review and its keccak256; the zero hash for an empty review."""
    if comment == "" and not attachments:
        return ReviewDoc(None, None, NO_REVIEW_HASH)
    document = {"comment": comment, "attachments": attachments}
    canonical = canonical_json(document)
    return ReviewDoc(document, canonical, keccak(canonical))


def build_review(session: Session, comment: str, digests: tuple[str, ...]) -> ReviewDoc:
    """The review of `comment` and the stored attachments `digests` (404 for an unknown one)."""
    check_comment(comment)
    known = check_attachment_list(digests)
    rows = {
        r.sha256: r for r in session.scalars(select(Attachment).where(Attachment.sha256.in_(known)))
    }
    for digest in known:
        if digest not in rows:
            raise NotFoundError("attachment", digest)
    return review_document(comment, [attachment_json(rows[d]) for d in known])


def store_review(session: Session, review: ReviewDoc, *, now: int | None = None) -> Review | None:
    """Keeps the review's canonical text under its hash (once); nothing for an empty review."""
    if review.canonical is None:
        return None
    key = review.comment_hash_hex
    values = {
        "comment_hash": key,
        "canonical": review.canonical.decode("utf-8"),
        "created_at": service_time() if now is None else now,
    }
    _insert_once(session, Review, values)
    return session.get(Review, key)


def load_review(session: Session, comment_hash: str) -> dict[str, Any] | None:
    """The stored review whose hash is `comment_hash` (for serving it back with the escrow)."""
    row = session.get(Review, comment_hash.lower())
    if row is None:
        return None
    document: dict[str, Any] = json.loads(row.canonical)
    return document

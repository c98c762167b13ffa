"""A client's review of a milestone: a comment plus uploaded attachments (photos of the result, a
signed acceptance act), bound on-chain as the confirmation's `commentHash` (`docs/interface.md`).

Attachments are stored content-addressed under `<data_dir>/attachments/<sha256>` with a size limit
and an allow-list of media types detected from the file's magic bytes (the declared type must
agree). A review is the RFC 8785 canonical JSON
`{"comment": "...", "attachments": [{"name", "media_type", "size", "sha256"}]}`; its keccak256 is
the `commentHash`, and `bytes32(0)` stands for "no review" (no comment and no attachments). When
the escrow's terms list `acceptance_criteria`, a review may add `"criteria": [{"index", "met",
"note"?}]` (one entry per criterion, in the terms' order); a review without it keeps the key out,
so it hashes as before.

The pieces every document with attachments shares (the delivery documents and dispute reasons of
`backend.escrows.milestone_documents` too): `check_text`, `check_attachment_list`,
`attachments_json`, `insert_once`.
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
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from backend.canonical import canonical_json
from backend.chain.clock import service_time
from backend.db.models import Attachment, Base, Review
from backend.db.session import conflict_insert
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, TooLargeError

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS = 10
MAX_COMMENT_CHARS = 2_000
#: the most characters of one acceptance criterion's `note` in a review
MAX_CRITERION_NOTE_CHARS = 500
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


def insert_once(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING for a content-addressed row (concurrent uploads of the
    same bytes, the same review or milestone document twice); True when this call inserted it."""
    [key] = inspect(model).primary_key
    statement = (
        conflict_insert(session)(model).values(**values).on_conflict_do_nothing().returning(key)
    )
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
    created = insert_once(session, Attachment, values)
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


@dataclass(frozen=True)
class CriterionAnswer:
    """The client's verdict on one acceptance criterion of the terms (`index` from 0)."""

    index: int
    met: bool
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """`{index, met, note?}`: `note` only when given."""
        out: dict[str, Any] = {"index": self.index, "met": self.met}
        if self.note is not None:
            out["note"] = self.note
        return out


def check_text(name: str, text: str, limit: int) -> None:
    """413 above `limit` characters; 400 for text JSON can carry but UTF-8 cannot (lone
    surrogates), since such text has no canonical form to hash. `name` is the field."""
    if len(text) > limit:
        raise TooLargeError(f"{name} (characters)", len(text), limit)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedInputError(name, "not valid Unicode text (lone surrogate)") from exc


def check_comment(comment: str) -> None:
    """413 above 2,000 characters; 400 for a lone surrogate (`check_text`)."""
    check_text("comment", comment, MAX_COMMENT_CHARS)


def check_attachment_list(digests: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """At most 10 well-formed, distinct digests, normalized; 413 / 422 otherwise."""
    if len(digests) > MAX_ATTACHMENTS:
        raise TooLargeError("attachments (count)", len(digests), MAX_ATTACHMENTS)
    normalized = tuple(normalize_sha256(d) for d in digests)
    if len(set(normalized)) != len(normalized):
        raise OutOfRangeError("attachments", list(digests), "distinct digests")
    return normalized


_CRITERION_KEYS = ("index", "met", "note")


def parse_criteria(raw: object) -> tuple[CriterionAnswer, ...] | None:
    """The `criteria` of a review request: None when absent (null), else a list of
    `{index, met, note?}` with `index` the entry's own position (0, 1, ...), `met` a JSON boolean
    and `note` a string of at most 500 characters (or null: none). Whether the count matches the
    terms is `check_criteria_count`'s question.

    Raises `OutOfRangeError` (422) naming the field (`criteria[1].met`), `TooLargeError` (413)
    for a long note and `MalformedInputError` (400) for a note with a lone surrogate, as for
    the comment."""
    if raw is None:
        return None
    if not isinstance(raw, list | tuple):
        raise OutOfRangeError("criteria", raw, "a list of {index, met, note?}, one per criterion")
    answers: list[CriterionAnswer] = []
    for i, entry in enumerate(raw):
        where = f"criteria[{i}]"
        if not isinstance(entry, dict):
            raise OutOfRangeError(where, entry, "an object {index, met, note?}")
        for key in entry:
            if key not in _CRITERION_KEYS:
                raise OutOfRangeError(f"{where}.{key}", entry[key], "only index, met and note")
        index = entry.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index != i:
            raise OutOfRangeError(
                f"{where}.index", index,
                f"{i}: one entry per acceptance criterion, in the terms' order",
            )
        met = entry.get("met")
        if not isinstance(met, bool):
            raise OutOfRangeError(f"{where}.met", met, "true or false (a JSON boolean)")
        note = entry.get("note")
        if note is not None:
            if not isinstance(note, str):
                raise OutOfRangeError(f"{where}.note", note, "a string")
            check_text(f"{where}.note", note, MAX_CRITERION_NOTE_CHARS)
        answers.append(CriterionAnswer(i, met, note))
    return tuple(answers)


def check_criteria_count(
    answers: tuple[CriterionAnswer, ...] | None, acceptance_criteria: list[str]
) -> None:
    """Given answers must cover the terms' `acceptance_criteria` exactly, one each (422
    naming `criteria` otherwise); answers given when the terms list none are refused too."""
    if answers is None:
        return
    count = len(acceptance_criteria)
    if count == 0:
        raise OutOfRangeError(
            "criteria", f"{len(answers)} entries",
            "no criteria: the escrow's terms list no acceptance_criteria",
        )
    if len(answers) != count:
        raise OutOfRangeError(
            "criteria", f"{len(answers)} entries",
            f"{count} entries, one per acceptance criterion of the terms, in their order",
        )


def attachments_json(session: Session, digests: tuple[str, ...]) -> list[dict[str, Any]]:
    """The stored attachments `digests` (normalized by `check_attachment_list`) as
    `attachment_json`, in the given order; 404 for an unknown one."""
    if not digests:
        return []
    rows = {
        r.sha256: r
        for r in session.scalars(select(Attachment).where(Attachment.sha256.in_(digests)))
    }
    for digest in digests:
        if digest not in rows:
            raise NotFoundError("attachment", digest)
    return [attachment_json(rows[d]) for d in digests]


def review_document(
    comment: str,
    attachments: list[dict[str, Any]],
    criteria: tuple[CriterionAnswer, ...] | None = None,
) -> ReviewDoc:
    """The canonical review and its keccak256; the zero hash for an empty review. `criteria`
    appear in the document only when given, so a review without them hashes as before."""
    if comment == "" and not attachments and criteria is None:
        return ReviewDoc(None, None, NO_REVIEW_HASH)
    document: dict[str, Any] = {"comment": comment, "attachments": attachments}
    if criteria is not None:
        document["criteria"] = [c.to_json() for c in criteria]
    canonical = canonical_json(document)
    return ReviewDoc(document, canonical, keccak(canonical))


def build_review(
    session: Session,
    comment: str,
    digests: tuple[str, ...],
    criteria: tuple[CriterionAnswer, ...] | None = None,
) -> ReviewDoc:
    """The review of `comment`, the stored attachments `digests` (404 for an unknown one) and
    the checked `criteria`."""
    check_comment(comment)
    known = check_attachment_list(digests)
    return review_document(comment, attachments_json(session, known), criteria)


def store_review(session: Session, review: ReviewDoc, *, now: int | None = None) -> str | None:
    """Keeps the review's canonical text under its hash (once); returns that hash (`0x` hex,
    the `review` row's key), None for an empty review, which is not stored."""
    if review.canonical is None:
        return None
    key = review.comment_hash_hex
    values = {
        "comment_hash": key,
        "canonical": review.canonical.decode("utf-8"),
        "created_at": service_time() if now is None else now,
    }
    insert_once(session, Review, values)
    return key


def load_review(session: Session, comment_hash: str) -> dict[str, Any] | None:
    """The stored review whose hash is `comment_hash` (for serving it back with the escrow)."""
    row = session.get(Review, comment_hash.lower())
    if row is None:
        return None
    document: dict[str, Any] = json.loads(row.canonical)
    return document

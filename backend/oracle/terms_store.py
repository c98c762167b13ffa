"""Terms documents: stored as their RFC 8785 canonical text under its keccak256 (the format is in
`docs/interface.md`), so what the API serves re-hashes to the `termsHash` on-chain.

Every document is checked by the one terms model (`backend.oracle.terms.parse_terms`) before it
is stored, whether it comes from `POST /api/terms` or inline in `POST /api/escrows/prepare`: a
stored document is one the measurement checks, the evaluation and the analytics can read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785
from eth_utils import keccak
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.canonical import canonical_json
from backend.chain.clock import service_time
from backend.db.models import TermsDocument
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, TooLargeError
from backend.inputs import parse_hash
from backend.oracle.terms import DEFAULT_MIN_PERIOD_SECONDS, parse_terms

MAX_TERMS_BYTES = 64 * 1024


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_terms_body(raw: bytes) -> dict[str, Any]:
    """A request body holding a terms document: at most `MAX_TERMS_BYTES` (413), JSON (400
    `malformed` otherwise; NaN and Infinity are not JSON). The document itself is checked by
    `store_terms`."""
    if len(raw) > MAX_TERMS_BYTES:
        raise TooLargeError("terms document", len(raw), MAX_TERMS_BYTES)
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedInputError("terms document", str(exc)) from exc
    if not isinstance(document, dict):
        raise OutOfRangeError("terms document", type(document).__name__, "a JSON object")
    return document


def canonical_terms(document: dict[str, Any]) -> tuple[str, bytes]:
    """(terms hash as 0x hex, canonical bytes); refuses what RFC 8785 cannot represent."""
    try:
        canonical = canonical_json(document)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise OutOfRangeError("terms document", "value", f"RFC 8785 JSON ({exc})") from exc
    if len(canonical) > MAX_TERMS_BYTES:
        raise TooLargeError("terms document", len(canonical), MAX_TERMS_BYTES)
    return "0x" + keccak(canonical).hex(), canonical


def store_terms(
    session: Session, document: Mapping[str, Any], *, where: str | None = None,
    min_period_seconds: int = DEFAULT_MIN_PERIOD_SECONDS,
) -> str:
    """Checks the document with the terms model (422 naming each field at fault, prefixed with
    `where` when given; 422 `period_too_short` when its `period_seconds` is below
    `min_period_seconds`, the operator's `ESCROW_MIN_PERIOD_SECONDS`), stores it (idempotent)
    and returns its terms hash."""
    parse_terms(document, where=where, min_period_seconds=min_period_seconds)
    terms_hash, canonical = canonical_terms(dict(document))
    if session.get(TermsDocument, terms_hash) is None:
        row = TermsDocument(
            terms_hash=terms_hash, canonical=canonical.decode("utf-8"), created_at=service_time()
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # stored at the same moment by another request: same content
            pass
    return terms_hash


def terms_text(session: Session, terms_hash: str) -> str | None:
    row = session.get(TermsDocument, terms_hash)
    return None if row is None else row.canonical


def get_terms_text(session: Session, terms_hash: str) -> str:
    """The canonical text of a stored document; 400 for a malformed hash, 404 if unknown."""
    key = parse_hash("terms_hash", terms_hash)
    text = terms_text(session, key)
    if text is None:
        raise NotFoundError("terms document", key)
    return text


def terms_document(session: Session, terms_hash: str) -> dict[str, Any] | None:
    text = terms_text(session, terms_hash)
    return None if text is None else dict(json.loads(text))

"""Terms documents: stored as their RFC 8785 canonical text under its keccak256 (DESIGN.md
section 3), so what the API serves re-hashes to the `termsHash` on-chain.

`POST /api/terms` (`parse_terms_body`) also checks the document against the terms model
(`backend.oracle.terms`); `store_terms` itself only needs a JSON object of at most
`MAX_TERMS_BYTES`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import rfc8785
from eth_utils import keccak
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.canonical import canonical_json
from backend.db.models import TermsDocument
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, TooLargeError
from backend.inputs import parse_hash
from backend.oracle.terms import parse_terms

MAX_TERMS_BYTES = 64 * 1024
#: nesting of objects and arrays; real terms need a handful of levels
MAX_TERMS_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_terms_body(raw: bytes) -> dict[str, Any]:
    """A request body holding a terms document: JSON, an object, at most `MAX_TERMS_BYTES`,
    valid against the terms model (422 naming the fields otherwise)."""
    if len(raw) > MAX_TERMS_BYTES:
        raise TooLargeError("terms document", len(raw), MAX_TERMS_BYTES)
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedInputError("terms document", str(exc)) from exc
    checked = check_terms(document)
    parse_terms(checked)
    return checked


def nesting_depth(value: object) -> int:
    """How deeply objects and arrays nest in `value` (iterative: any depth is safe to measure)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def check_terms(document: object) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise OutOfRangeError("terms document", type(document).__name__, "a JSON object")
    depth = nesting_depth(document)
    if depth > MAX_TERMS_DEPTH:
        raise OutOfRangeError(
            "terms document", f"nesting depth {depth}", f"at most {MAX_TERMS_DEPTH} levels"
        )
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


def store_terms(session: Session, document: dict[str, Any]) -> str:
    """Stores the document (idempotent) and returns its terms hash."""
    terms_hash, canonical = canonical_terms(check_terms(document))
    if session.get(TermsDocument, terms_hash) is None:
        row = TermsDocument(
            terms_hash=terms_hash, canonical=canonical.decode("utf-8"), created_at=int(time.time())
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

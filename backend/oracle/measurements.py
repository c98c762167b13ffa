"""KPI measurements: bearer tokens per escrow and the ingestion of sample batches.

A token is `secrets.token_urlsafe(32)`, shown once; only its sha256 is stored. A batch of samples
is all-or-nothing: every sample is checked (a KPI of the terms, a value that `parse_kpi_value`
accepts: finite and within `MAX_KPI_MAGNITUDE`, a time that `parse_time` accepts, observed
between the escrow's acceptance and now + `FUTURE_SKEW_SECONDS`) before any is stored. The API
and the CSV import (`backend.oracle.cli`) share these checks. Samples are unique per
(escrow, kpi, observed_at): the same value again counts as a duplicate and is ignored; a different
value for a stored key is refused with 409 (the first value stays: a measurement, once taken, is
not rewritten, since the evidence of a breach may already hold it).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.models import EscrowRow, KpiSample, MeasurementToken
from backend.errors import (
    AlreadyDoneError,
    ForbiddenSignerError,
    MalformedInputError,
    NotFoundError,
    OutOfRangeError,
    QualityEscrowError,
    TooLargeError,
)
from backend.inputs import (
    MalformedValueError,
    describe,
    parse_escrow_id,
    parse_kpi_value,
    parse_time,
)
from backend.oracle.terms import TermsModel, parse_terms
from backend.oracle.terms_store import terms_document

#: samples per batch (POST body or CSV file); more is refused with 413
MAX_BATCH = 10_000
#: seconds a sample's `observed_at` may lie ahead of the server's clock
FUTURE_SKEW_SECONDS = 300
SAMPLE_FIELDS = ("kpi", "value", "observed_at")


# ------------------------------------------------------------------ errors


class MeasurementTokenRefusedError(ForbiddenSignerError):
    """401: no bearer token, or one that is unknown, revoked or issued for another escrow."""

    code = "token_refused"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.signer = "bearer"
        self.expected = "a measurement token of this escrow"
        QualityEscrowError.__init__(self, f"measurement token refused: {reason}")


class SampleRefusedError(OutOfRangeError):
    """422: one sample of a batch is refused; names its index and field."""

    code = "sample_refused"

    def __init__(self, index: int, field: str, value: object, expected: str) -> None:
        self.index = index
        self.field = f"samples[{index}].{field}"
        self.value = value
        self.expected = expected
        QualityEscrowError.__init__(
            self, f"sample {index}: {field}={describe(value)} is refused: expected {expected}"
        )


class SampleConflictError(AlreadyDoneError):
    """409: a sample whose (kpi, observed_at) is already stored (or posted) with another value."""

    code = "sample_conflict"

    def __init__(self, index: int, kpi: str, observed_at: int, stored: float, posted: float):
        self.index = index
        self.what = f"sample {index} ({kpi} at {observed_at})"
        QualityEscrowError.__init__(
            self,
            f"sample {index}: {kpi} at {observed_at} is already stored with value {stored!r}, "
            f"not {posted!r}; stored samples are never rewritten",
        )


class TermsNotStoredError(AlreadyDoneError):
    """409: the escrow's terms document was never stored, so its KPIs are unknown."""

    code = "terms_not_stored"

    def __init__(self, escrow_id: int, terms_hash: str) -> None:
        self.what = f"terms of escrow {escrow_id}"
        QualityEscrowError.__init__(
            self,
            f"the terms document {terms_hash} of escrow {escrow_id} is not stored: "
            "POST it to /api/terms first",
        )


class EscrowNotAcceptedError(OutOfRangeError):
    """422: samples for an escrow the provider has not accepted yet (periods start there)."""

    code = "escrow_not_accepted"

    def __init__(self, escrow_id: int, status: str) -> None:
        self.field = "escrow"
        self.value = status
        self.expected = "an accepted escrow"
        QualityEscrowError.__init__(
            self, f"escrow {escrow_id} is {status}, not accepted yet: it takes no samples"
        )


# ------------------------------------------------------------------ tokens


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def find_escrow(session: Session, chain_id: int, escrow_id: int) -> EscrowRow:
    """The indexed escrow; 404 if the indexer has not seen it (or the id cannot be one)."""
    row = session.get(EscrowRow, (chain_id, parse_escrow_id(escrow_id)))
    if row is None:
        raise NotFoundError("escrow", escrow_id)
    return row


def issue_token(
    session: Session, chain_id: int, escrow_id: int, now: int, label: str | None = None
) -> str:
    """A new bearer token for the escrow's samples; the caller shows it once, it is not kept."""
    find_escrow(session, chain_id, escrow_id)
    token = secrets.token_urlsafe(32)
    session.add(
        MeasurementToken(
            chain_id=chain_id,
            escrow_id=escrow_id,
            token_sha256=token_sha256(token),
            label=label,
            created_at=now,
            revoked_at=None,
        )
    )
    session.flush()
    return token


def revoke_tokens(
    session: Session, chain_id: int, now: int, *, escrow_id: int | None = None,
    token: str | None = None,
) -> int:
    """Revokes one token (`token`) or every token of an escrow; returns how many were live."""
    if (escrow_id is None) == (token is None):
        raise MalformedInputError("revocation", "name either an escrow or one token, not both")
    if escrow_id is not None:
        escrow_id = parse_escrow_id(escrow_id)
    stmt = update(MeasurementToken).where(
        MeasurementToken.chain_id == chain_id, MeasurementToken.revoked_at.is_(None)
    )
    if token is not None:
        stmt = stmt.where(MeasurementToken.token_sha256 == token_sha256(token))
    else:
        stmt = stmt.where(MeasurementToken.escrow_id == escrow_id)
    result = session.execute(stmt.values(revoked_at=now).execution_options(
        synchronize_session=False
    ))
    return int(getattr(result, "rowcount", 0) or 0)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def authenticate(
    session: Session, chain_id: int, escrow_id: int, bearer: str | None
) -> MeasurementToken:
    """The live token row for this escrow; 401 otherwise."""
    if not bearer:
        raise MeasurementTokenRefusedError("missing Authorization: Bearer <token>")
    row = session.scalar(
        select(MeasurementToken).where(MeasurementToken.token_sha256 == token_sha256(bearer))
    )
    if row is None or row.chain_id != chain_id or row.escrow_id != escrow_id:
        raise MeasurementTokenRefusedError(f"not a token of escrow {escrow_id}")
    if row.revoked_at is not None:
        raise MeasurementTokenRefusedError("the token was revoked")
    return row


# ------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Sample:
    kpi: str
    value: float
    observed_at: int


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


def escrow_terms(session: Session, escrow: EscrowRow) -> TermsModel:
    """The escrow's terms, validated; 409 if its document is not stored."""
    document = terms_document(session, escrow.terms_hash)
    if document is None:
        raise TermsNotStoredError(escrow.escrow_id, escrow.terms_hash)
    return parse_terms(document)


T = TypeVar("T")


def _sample_field(index: int, field: str, raw: object, parse: Callable[[str, object], T]) -> T:
    """`parse(field, raw)`, its refusal raised as `SampleRefusedError` naming the sample."""
    try:
        return parse(field, raw)
    except (MalformedValueError, OutOfRangeError) as exc:
        raise SampleRefusedError(index, field, exc.value, exc.expected) from None


def parse_samples(items: object) -> list[Sample]:
    """Raw samples (dicts with kpi, value, observed_at) as `Sample`s; 413 over `MAX_BATCH`,
    422 naming the first sample and field that does not parse. Range checks come in `ingest`."""
    if not isinstance(items, list):
        raise OutOfRangeError("samples", type(items).__name__, "a list of samples")
    if len(items) > MAX_BATCH:
        raise TooLargeError("batch of samples", len(items), MAX_BATCH)
    samples = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise SampleRefusedError(index, "sample", type(item).__name__, "an object")
        for field in SAMPLE_FIELDS:
            if field not in item:
                raise SampleRefusedError(index, field, None, "a value (the field is missing)")
        kpi = item["kpi"]
        if not isinstance(kpi, str):
            raise SampleRefusedError(index, "kpi", kpi, "a KPI id of the terms")
        value = _sample_field(index, "value", item["value"], parse_kpi_value)
        observed_at = _sample_field(index, "observed_at", item["observed_at"], parse_time)
        samples.append(Sample(kpi, value, observed_at))
    return samples


def check_samples(
    samples: Sequence[Sample], escrow: EscrowRow, terms: TermsModel, now: int
) -> None:
    """422 naming the first sample out of range; the whole batch is refused with it."""
    if escrow.accepted_at is None:
        raise EscrowNotAcceptedError(escrow.escrow_id, escrow.status)
    known = terms.kpi_ids
    latest = now + FUTURE_SKEW_SECONDS
    for index, sample in enumerate(samples):
        if sample.kpi not in known:
            raise SampleRefusedError(
                index, "kpi", sample.kpi, f"one of the terms' KPIs {sorted(known)}"
            )
        _sample_field(index, "value", sample.value, parse_kpi_value)
        if sample.observed_at > latest:
            raise SampleRefusedError(
                index, "observed_at", sample.observed_at, f"not in the future (at most {latest})"
            )
        if sample.observed_at < escrow.accepted_at:
            raise SampleRefusedError(
                index,
                "observed_at",
                sample.observed_at,
                f"at or after the escrow's acceptance at {escrow.accepted_at}",
            )


def _stored_values(
    session: Session, escrow: EscrowRow, samples: Sequence[Sample]
) -> dict[tuple[str, int], float]:
    if not samples:
        return {}
    kpis = {s.kpi for s in samples}
    times = [s.observed_at for s in samples]
    rows = session.execute(
        select(KpiSample.kpi, KpiSample.observed_at, KpiSample.value).where(
            KpiSample.chain_id == escrow.chain_id,
            KpiSample.escrow_id == escrow.escrow_id,
            KpiSample.kpi.in_(kpis),
            KpiSample.observed_at.between(min(times), max(times)),
        )
    )
    return {(kpi, observed_at): value for kpi, observed_at, value in rows}


def ingest(
    session: Session, escrow: EscrowRow, terms: TermsModel, samples: Sequence[Sample], now: int
) -> IngestResult:
    """Checks and stores a batch, all or nothing (see the module docstring)."""
    if len(samples) > MAX_BATCH:
        raise TooLargeError("batch of samples", len(samples), MAX_BATCH)
    check_samples(samples, escrow, terms, now)
    seen = _stored_values(session, escrow, samples)
    rows: list[dict[str, Any]] = []
    duplicates = 0
    for index, sample in enumerate(samples):
        key = (sample.kpi, sample.observed_at)
        if key in seen:
            if seen[key] != sample.value:
                raise SampleConflictError(index, *key, seen[key], sample.value)
            duplicates += 1
            continue
        seen[key] = sample.value
        rows.append(
            {
                "chain_id": escrow.chain_id,
                "escrow_id": escrow.escrow_id,
                "kpi": sample.kpi,
                "value": sample.value,
                "observed_at": sample.observed_at,
                "received_at": now,
            }
        )
    if rows:
        try:
            with session.begin_nested():
                session.execute(insert(KpiSample), rows)
        except IntegrityError as exc:  # a concurrent batch stored one of these keys first
            raise AlreadyDoneError(
                "samples of this batch were stored meanwhile by another request; post it again"
            ) from exc
    return IngestResult(accepted=len(rows), duplicates=duplicates)


def ingest_raw(
    session: Session, chain_id: int, escrow_id: int, items: object, now: int
) -> IngestResult:
    """`ingest` from raw sample objects: 404 unknown escrow, 409 terms not stored, then the
    checks of `parse_samples` and `ingest`."""
    escrow = find_escrow(session, chain_id, escrow_id)
    samples = parse_samples(items)
    return ingest(session, escrow, escrow_terms(session, escrow), samples, now)

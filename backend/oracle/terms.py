"""The terms document as a pydantic model (DESIGN.md section 3): what the oracle evaluates.

The model only validates: the stored document stays the client's own JSON (extra keys included),
so its RFC 8785 hash (`backend.canonical.terms_hash`) is the `termsHash` the escrow was created
with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.errors import OutOfRangeError, QualityEscrowError

Aggregate = Literal["mean", "min", "max", "sum", "count", "p50", "p90", "p95", "p99", "ratio"]
Operator = Literal[">=", ">", "<=", "<"]
MissingData = Literal["ignore", "breach"]

AGGREGATES: tuple[str, ...] = get_args(Aggregate)
OPERATORS: tuple[str, ...] = get_args(Operator)
#: a KPI name as stored with each sample (`kpi_sample.kpi` is 64 characters)
KPI_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
DEFAULT_GRACE_SECONDS = 3_600


class _Open(BaseModel):
    """Unknown keys are allowed and kept; numbers must be numbers (no "1" for 1)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class KpiRule(_Open):
    """A KPI checked once per closed period: `aggregate(samples) op threshold` must hold."""

    id: str = Field(pattern=KPI_ID_PATTERN)
    aggregate: Aggregate
    op: Operator
    threshold: float = Field(allow_inf_nan=False)


class IncidentRule(_Open):
    """A major outage or error, checked as samples arrive (not waiting for the period to close):
    the incident fires when `aggregate(samples of kpi in the period) op threshold`."""

    kpi: str = Field(pattern=KPI_ID_PATTERN)
    aggregate: Aggregate
    op: Operator
    threshold: float = Field(allow_inf_nan=False)


class TermsModel(_Open):
    version: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=500)
    period_seconds: int = Field(gt=0)
    kpis: list[KpiRule] = Field(min_length=1)
    #: N periods in a row failing a KPI report kind 2; unset: no streak rule
    consecutive_periods: int | None = Field(default=None, ge=2)
    incident: IncidentRule | None = None
    #: a period with no samples is a breach (`breach`) or only shown as missing data (`ignore`)
    missing_data: MissingData = "ignore"
    #: seconds after a period's end during which late samples are still taken into account
    grace_seconds: int = Field(default=DEFAULT_GRACE_SECONDS, ge=0)
    acceptance_criteria: list[str] = Field(default_factory=list)

    @field_validator("kpis")
    @classmethod
    def _kpi_ids_are_unique(cls, kpis: list[KpiRule]) -> list[KpiRule]:
        seen: set[str] = set()
        for kpi in kpis:
            if kpi.id in seen:
                raise ValueError(f"KPI id {kpi.id!r} appears twice")
            seen.add(kpi.id)
        return kpis

    @property
    def kpi_ids(self) -> frozenset[str]:
        """Every KPI samples may be posted for: the terms' KPIs and the incident's."""
        ids = {kpi.id for kpi in self.kpis}
        if self.incident is not None:
            ids.add(self.incident.kpi)
        return frozenset(ids)


class TermsInvalidError(OutOfRangeError):
    """422 (`out_of_range`): a terms document that does not fit the model; names every field at
    fault."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        self.field = problems[0][0] if problems else "terms document"
        self.value = None
        self.expected = problems[0][1] if problems else "a terms document"
        listed = "; ".join(f"{field}: {reason}" for field, reason in problems)
        QualityEscrowError.__init__(self, f"invalid terms document: {listed}")


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "terms document"
        problems.append((field, str(err["msg"])))
    return problems


def parse_terms(document: Mapping[str, Any]) -> TermsModel:
    """The validated terms; `TermsInvalidError` (422) naming each field otherwise."""
    try:
        return TermsModel.model_validate(dict(document))
    except ValidationError as exc:
        raise TermsInvalidError(_problems(exc)) from None


def terms_json_schema() -> dict[str, Any]:
    """The JSON Schema of a terms document (served at `GET /api/terms/schema`)."""
    schema = TermsModel.model_json_schema()
    schema["title"] = "Quality Escrow terms document"
    schema["description"] = (
        "Hashed as keccak256 of its RFC 8785 canonical JSON into the escrow's termsHash; "
        "unknown keys are allowed and kept."
    )
    return schema

"""The terms document as a pydantic model (the format is in `docs/interface.md`): the one parser
of a terms document. `POST /api/terms`, the inline document of `POST /api/escrows/prepare`, the
measurement checks, the oracle's evaluation and the analytics all read a document through
`parse_terms`, so a document one of them accepts, every one of them accepts.

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
#: the percentile of each percentile aggregate (`p95` -> 95)
PERCENTILES: dict[str, int] = {a: int(a[1:]) for a in AGGREGATES if a[0] == "p"}
#: a KPI name as stored with each sample (`kpi_sample.kpi` is 64 characters)
KPI_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
DEFAULT_GRACE_SECONDS = 3_600
#: nesting of objects and arrays in a document (extra keys included); real terms need a handful
MAX_TERMS_DEPTH = 32
#: the shortest `period_seconds` the service accepts and evaluates, unless the operator sets
#: `ESCROW_MIN_PERIOD_SECONDS` (`Settings.min_period_seconds`): one period is one possible
#: report per rule, and one entry of every per-period series, so a period of 1 s made 86,400
#: of each per escrow-day (docs/reliability.md)
DEFAULT_MIN_PERIOD_SECONDS = 3_600

#: how the evaluation (`backend.oracle.evaluation`) computes each aggregate of a period's samples
AGGREGATE_METHOD = (
    "Aggregates of the samples of one KPI in one period: `mean` = math.fsum(values) / n; `min`, "
    "`max`; `sum` = math.fsum(values) (correctly rounded); `count` = n; `p50`, `p90`, `p95`, "
    "`p99` by the nearest-rank method: the value at 1-based rank ceil(p * n / 100) (at least 1) "
    "of the samples sorted in ascending order, so a percentile is always one of the samples (no "
    "interpolation); `ratio` = the share of samples that are non-zero (probes recorded as 1 = "
    "success, 0 = failure), from 0 to 1. Comparisons are exact float comparisons without "
    "epsilon: a value equal to a `>=` threshold passes, equal to a `>` threshold fails. A KPI "
    "with fewer samples in a period than its `min_samples` (by default 20 for `p95`, 100 for "
    "`p99`: see `min_samples`) has no value in that period: it counts as missing data "
    "(`missing_data`), like a KPI without samples. Every aggregate is a finite number (sample "
    "values are at most 1e100 in magnitude)."
)
_AGGREGATE_FIELD = "How the period's samples are combined; see the document's description."
_OP_FIELD = "`aggregate op threshold` must hold (KPIs) or fires the rule (incident)."
_THRESHOLD_FIELD = "A finite number in the KPI's own unit (the unit of its samples' values)."
_MIN_SAMPLES_FIELD = (
    "The fewest samples of a period the aggregate is judged on; a period with fewer counts as "
    "missing data (`missing_data`; for the incident rule: not met). Optional: the default keeps "
    "a percentile from degenerating into the maximum, ceil(100 / (100 - p)) samples for `pP` "
    "(`p50` 2, `p90` 10, `p95` 20, `p99` 100: below that the nearest rank is the largest "
    "sample), and 1 for `mean`, `min`, `max`, `sum`, `count` and `ratio`. Set it to 1 to judge "
    "a percentile on any number of samples."
)


def default_min_samples(aggregate: str) -> int:
    """`min_samples` when the document leaves it out: ceil(100 / (100 - p)) for a percentile
    `pP` (the fewest samples whose nearest-rank P-th percentile is not the maximum: 20 for p95,
    100 for p99), 1 otherwise. Integer arithmetic: 1 / (1 - 0.99) is 100.00000000000009 in
    floats, whose ceiling would be 101."""
    p = PERCENTILES.get(aggregate)
    if p is None:
        return 1
    return -(-100 // (100 - p))


#: `min_samples` by aggregate, when the document leaves it out
DEFAULT_MIN_SAMPLES: dict[str, int] = {a: default_min_samples(a) for a in AGGREGATES}


class _Open(BaseModel):
    """Unknown keys are allowed and kept; numbers must be numbers (no "1" for 1)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class _Rule(_Open):
    """`aggregate(samples) op threshold`: what a KPI and the incident rule share."""

    aggregate: Aggregate = Field(description=_AGGREGATE_FIELD)
    op: Operator = Field(description=_OP_FIELD)
    threshold: float = Field(allow_inf_nan=False, description=_THRESHOLD_FIELD)
    min_samples: int | None = Field(
        default=None,
        ge=1,
        description=_MIN_SAMPLES_FIELD,
        json_schema_extra={"x-defaults": dict(DEFAULT_MIN_SAMPLES)},
    )

    @property
    def required_samples(self) -> int:
        """`min_samples`, or its default for the aggregate when the document leaves it out."""
        if self.min_samples is not None:
            return self.min_samples
        return DEFAULT_MIN_SAMPLES[self.aggregate]

    def as_dict(self) -> dict[str, Any]:
        """The rule's comparison `{aggregate, op, threshold}` (and the incident's `kpi`), as
        findings and evidence bundles quote it: no extra keys, and no `min_samples`, which each
        KPI result of a bundle states as applied."""
        return self.model_dump(exclude={*(self.model_extra or ()), "min_samples"})


class KpiRule(_Rule):
    """A KPI checked once per closed period: `aggregate(samples) op threshold` must hold."""

    id: str = Field(
        pattern=KPI_ID_PATTERN,
        description="The KPI's name, as samples are posted under it (1 to 64 of A-Z a-z 0-9 "
                    "_ . : -).",
    )


class IncidentRule(_Rule):
    """A major outage or error, checked as samples arrive (not waiting for the period to close):
    the incident fires when `aggregate(samples of kpi in the period) op threshold`."""

    kpi: str = Field(
        pattern=KPI_ID_PATTERN,
        description="The KPI whose samples the rule reads (it need not be one of `kpis`).",
    )


class TermsModel(_Open):
    version: int = Field(ge=1, description="The format version of the document: 1.")
    title: str = Field(min_length=1, max_length=500, description="What the escrow is for.")
    period_seconds: int = Field(
        gt=0,
        description="Length of one evaluation period in seconds. Period k covers "
                    "[accepted_at + k * period_seconds, accepted_at + (k + 1) * period_seconds), "
                    "accepted_at being the escrow's acceptance time (unix seconds, chain time).",
    )
    kpis: list[KpiRule] = Field(
        min_length=1,
        description="The KPIs checked for every closed period (ids unique). A period fails when "
                    "a KPI fails; a failing period is a breach of kind 1.",
    )
    consecutive_periods: int | None = Field(
        default=None,
        ge=2,
        description="N >= 2: N failing closed periods in a row are a breach of kind 2, reported "
                    "for the period that completes the streak; the streak then restarts. Unset: "
                    "no streak rule.",
    )
    incident: IncidentRule | None = Field(
        default=None,
        description="A rule checked on a period's samples so far, closed or not: when it "
                    "holds, a breach of kind 3 for that period. Unset: no incident rule.",
    )
    missing_data: MissingData = Field(
        default="ignore",
        description="A KPI without samples in a closed period: `breach` makes the period fail; "
                    "`ignore` (default) marks it missing, which raises no breach and breaks a "
                    "streak.",
    )
    grace_seconds: int = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        description="Seconds after a period's end during which samples observed inside the "
                    "period still count; the period closes at end + grace_seconds.",
    )
    acceptance_criteria: list[str] = Field(
        default_factory=list, description="Free text: what the client checks before rating."
    )

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


class PeriodTooShortError(OutOfRangeError):
    """422 (`period_too_short`): terms whose `period_seconds` is below the operator's minimum
    (`ESCROW_MIN_PERIOD_SECONDS`, default `DEFAULT_MIN_PERIOD_SECONDS`). Raised when terms are
    accepted (`POST /api/terms`, `POST /api/escrows/prepare`); terms stored or committed on
    chain before the minimum are not evaluated, for the same reason (`too_short_reason`)."""

    code = "period_too_short"

    def __init__(self, period_seconds: int, minimum: int, *, where: str | None = None) -> None:
        self.field = f"{where}.period_seconds" if where else "period_seconds"
        self.value = period_seconds
        self.minimum = minimum
        self.expected = f"at least {minimum} seconds (ESCROW_MIN_PERIOD_SECONDS)"
        QualityEscrowError.__init__(
            self,
            f"{self.field} {period_seconds} is too short: the minimum period is {minimum} "
            "seconds (ESCROW_MIN_PERIOD_SECONDS)",
        )


def too_short_reason(terms: TermsModel, minimum: int) -> str | None:
    """Why the oracle and the KPI views do not evaluate these terms (their period is below
    `minimum` seconds), or None when they do. Such terms were stored or committed before the
    minimum was enforced; evaluating them at another granularity would report periods the
    terms do not define, so they are refused with this reason instead."""
    if terms.period_seconds >= minimum:
        return None
    return (f"period_seconds {terms.period_seconds} is below the minimum period of {minimum} "
            "seconds (ESCROW_MIN_PERIOD_SECONDS): the terms are not evaluated")


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


def _problems(exc: ValidationError, where: str | None) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"])
        if where is not None:
            field = f"{where}.{field}" if field else where
        problems.append((field or "terms document", str(err["msg"])))
    return problems


def parse_terms(
    document: object, *, where: str | None = None, min_period_seconds: int | None = None
) -> TermsModel:
    """The validated terms of a JSON document (already decoded): a JSON object, nested at most
    `MAX_TERMS_DEPTH` levels, that fits `TermsModel`. Raises `OutOfRangeError` (422) for a value
    that is no object or nests too deeply, and `TermsInvalidError` (422) naming each field at
    fault otherwise, prefixed with `where` (`terms_document.kpis`) when given. With
    `min_period_seconds` (where terms are accepted: the operator's `ESCROW_MIN_PERIOD_SECONDS`),
    a shorter `period_seconds` raises `PeriodTooShortError` (422, `period_too_short`)."""
    name = where or "terms document"
    if not isinstance(document, Mapping):
        raise OutOfRangeError(name, type(document).__name__, "a JSON object")
    depth = nesting_depth(dict(document))
    if depth > MAX_TERMS_DEPTH:
        raise OutOfRangeError(name, f"nesting depth {depth}", f"at most {MAX_TERMS_DEPTH} levels")
    try:
        terms = TermsModel.model_validate(dict(document))
    except ValidationError as exc:
        raise TermsInvalidError(_problems(exc, where)) from None
    if min_period_seconds is not None and terms.period_seconds < min_period_seconds:
        raise PeriodTooShortError(terms.period_seconds, min_period_seconds, where=where)
    return terms


def terms_json_schema() -> dict[str, Any]:
    """The JSON Schema of a terms document (served at `GET /api/terms/schema`)."""
    schema = TermsModel.model_json_schema()
    schema["title"] = "Quality Escrow terms document"
    schema["description"] = (
        "Hashed as keccak256 of its RFC 8785 canonical JSON into the escrow's termsHash; "
        "unknown keys are allowed and kept. Units: times and durations in seconds (unix "
        "seconds for instants, chain time); thresholds and sample values in each KPI's own "
        f"unit. {AGGREGATE_METHOD}"
    )
    return schema

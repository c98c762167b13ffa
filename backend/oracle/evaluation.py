"""Evaluation of an escrow's KPI samples against its terms: per-period values and verdicts, and
the breach findings of the three triggers. Pure functions, no I/O. The terms come parsed by the
one terms model (`backend.oracle.terms.parse_terms`), whose JSON Schema states the aggregate
rules below (`backend.oracle.terms.AGGREGATE_METHOD`; a test keeps both in step with `AGGREGATES`).

Choices (documented here because the contract and the evidence depend on them):

- Periods start at the escrow's acceptance time: period k covers
  `[accepted_at + k*P, accepted_at + (k+1)*P)`. It is *closed* once `now >= end + grace`, so
  late samples observed inside the period but received within the grace interval still count.
- Aggregates: `mean` (math.fsum / n), `min`, `max`, `sum` (math.fsum), `count`; `p50`, `p90`,
  `p95`, `p99` by the **nearest-rank** method (the value at 1-based rank `ceil(p/100 * n)` of
  the sorted samples, so the result is always one of the samples); `ratio` is the **share of
  samples that are non-zero** (probes recorded as 1 = success, 0 = failure).
- Comparisons are exact float comparisons, no epsilon: a value equal to a `>=` threshold
  passes, a value equal to a `>` threshold fails.
- Every aggregate is finite: values are bounded at ingestion (`backend.inputs.MAX_KPI_MAGNITUDE`,
  1e100, so a sum of n values is at most n * 1e100, finite for any n below 1e208), `mean` is
  computed without overflow even for larger stored values, and a value that still cannot be
  aggregated (a stored sample that is not finite; a `sum` beyond the largest float) raises
  `AggregationError` naming the KPI and period instead of producing an infinity or NaN. The
  caller (`backend.oracle.findings`) isolates that escrow.
- `min_samples` (the terms model's `required_samples`: by default ceil(100 / (100 - p)) for a
  percentile pP, 1 otherwise): a KPI with fewer samples in a period has no value there and is
  `missing`, exactly like a KPI without samples; the incident rule is not met on fewer samples.
- A KPI with no samples in a period is `missing`. A period fails when any KPI fails, or, with
  `"missing_data": "breach"`, when any KPI is missing; with the default `"ignore"` a period
  with a missing KPI (and none failing) is `missing`: neither failing nor passing, it raises no
  kind-1 breach and **breaks** a streak.
- Trigger 1: every failing closed period -> kind 1 for that period.
- Trigger 2: `consecutive_periods` = N failing closed periods in a row -> kind 2 for the period
  in which the streak reaches N; the streak then restarts (six bad periods, N = 3 -> kind 2 at
  periods 2 and 5).
- Trigger 3: the incident rule is *met* when its comparison holds (e.g. sum of outage minutes
  `> 60`), evaluated on the samples of a period so far, closed or not -> kind 3 for that period.
  A period without samples of the incident KPI does not meet it.
- Each (kind, period) appears at most once.
- A window of periods (`first_period`, `last_period`) evaluates only those periods, reading only
  their samples: what the oracle's incremental passes and the paginated KPI view use, so their
  cost follows the periods asked for, not the escrow's age. A streak is counted from
  `first_period`, so a window gives the findings of the whole history only when it starts where
  a streak starts: at period 0, or right after a period that ends a streak (one not failing, or
  one completing a streak); `streak_start` finds that point in a list of verdicts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from backend.oracle.terms import IncidentRule, TermsModel, default_min_samples

Verdict = Literal["pass", "fail", "missing"]

KIND_KPI = 1
KIND_STREAK = 2
KIND_INCIDENT = 3

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
}


class AggregationError(ArithmeticError):
    """A period's samples that cannot be aggregated into a finite number (a stored sample that
    is not finite, a sum beyond the largest float). The escrow cannot be evaluated until the
    sample is removed; `backend.oracle.findings` records it and goes on with the others."""

    def __init__(self, kpi: str, period: int, aggregate: str, reason: str) -> None:
        self.kpi, self.period, self.aggregate, self.reason = kpi, period, aggregate, reason
        super().__init__(f"KPI {kpi!r}, period {period}: {aggregate} cannot be computed: {reason}")


def _rank(p: int, n: int) -> int:
    """The 1-based nearest rank of the p-th percentile of n values."""
    return max(1, -(-p * n // 100))  # ceil(p * n / 100) in integers


def _percentile(p: int) -> Callable[[Sequence[float]], float]:
    def nearest_rank(values: Sequence[float]) -> float:
        ordered = sorted(values)
        return ordered[_rank(p, len(ordered)) - 1]

    return nearest_rank


def _sum(values: Sequence[float]) -> float:
    """`math.fsum`, with an overflow reported as an infinity (checked by `aggregate`)."""
    try:
        return math.fsum(values)
    except OverflowError:  # an intermediate partial sum beyond the largest float
        return math.inf


def _mean(values: Sequence[float]) -> float:
    """`math.fsum(values) / n`; when that sum overflows (only values stored beyond the ingestion
    bound can make it), the sum of the values each divided by n, which cannot."""
    n = len(values)
    total = _sum(values)
    if math.isfinite(total):
        return total / n
    return math.fsum(v / n for v in values)


AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": _mean,
    "min": min,
    "max": max,
    "sum": _sum,
    "count": lambda v: float(len(v)),
    "p50": _percentile(50),
    "p90": _percentile(90),
    "p95": _percentile(95),
    "p99": _percentile(99),
    "ratio": lambda v: sum(1 for x in v if x != 0) / len(v),
}

#: how each aggregate is computed, as evidence bundles state it (n: the sample count)
METHODS: dict[str, str] = {
    "mean": "arithmetic mean: math.fsum(values) / n",
    "min": "the smallest value",
    "max": "the largest value",
    "sum": "math.fsum(values) (correctly rounded sum)",
    "count": "n, the number of samples",
    **{
        f"p{p}": f"nearest-rank percentile: the value at 1-based rank max(1, ceil({p} * n / 100))"
                 " of the values in ascending order (no interpolation)"
        for p in (50, 90, 95, 99)
    },
    "ratio": "the share of non-zero values (probes: 1 success, 0 failure), from 0 to 1",
}


def aggregate(name: str, values: Sequence[float], *, kpi: str = "", period: int = 0) -> float:
    """The aggregate `name` of a non-empty list of values, always finite; `AggregationError`
    (naming `kpi` and `period`) when the values do not allow it."""
    for v in values:
        if not math.isfinite(v):
            raise AggregationError(kpi, period, name, f"a sample value is {v!r}, not finite")
    value = AGGREGATES[name](values)
    if not math.isfinite(value):
        raise AggregationError(kpi, period, name,
                               f"the result of {len(values)} samples exceeds the largest float")
    return value


# --- results -----------------------------------------------------------------------------


class Sample(NamedTuple):
    """One measured value (a tuple: cheap to build by the million)."""

    kpi: str
    value: float
    observed_at: int


@dataclass(frozen=True)
class KpiResult:
    """One KPI (or the incident rule) in one period: its value against its threshold."""

    id: str
    aggregate: str
    op: str
    threshold: float
    period: int
    value: float | None
    verdict: Verdict
    samples: tuple[Sample, ...]
    #: the fewest samples the value is judged on; fewer: `value` None, verdict `missing`
    min_samples: int = 1

    @property
    def method(self) -> str:
        """How `value` is computed from the samples (`METHODS`)."""
        return METHODS[self.aggregate]


@dataclass(frozen=True)
class PeriodResult:
    period: int
    start: int
    end: int
    closed: bool
    verdict: Verdict
    kpis: tuple[KpiResult, ...]


@dataclass(frozen=True)
class Finding:
    """A breach the oracle reports: `reportBreach(kind, period)` with this evidence."""

    kind: int
    period: int
    period_start: int
    period_end: int
    rule: dict[str, Any]
    kpis: tuple[KpiResult, ...]


@dataclass(frozen=True)
class Evaluation:
    periods: list[PeriodResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


# --- evaluation --------------------------------------------------------------------------


def period_bounds(accepted_at: int, period_seconds: int, period: int) -> tuple[int, int]:
    start = accepted_at + period * period_seconds
    return start, start + period_seconds


def is_closed(end: int, grace_seconds: int, now: int) -> bool:
    return now >= end + grace_seconds


def _judge(rule_id: str, agg: str, op: str, threshold: float, period: int,
           samples: list[Sample], min_samples: int | None = None) -> KpiResult:
    """One KPI in one period: `missing` without samples or with fewer than `min_samples`
    (default: `backend.oracle.terms.default_min_samples`), else its value against the
    threshold."""
    required = default_min_samples(agg) if min_samples is None else min_samples
    if len(samples) < required:
        return KpiResult(rule_id, agg, op, threshold, period, None, "missing", tuple(samples),
                         required)
    value = aggregate(agg, [s.value for s in samples], kpi=rule_id, period=period)
    verdict: Verdict = "pass" if OPS[op](value, threshold) else "fail"
    return KpiResult(rule_id, agg, op, threshold, period, value, verdict, tuple(samples),
                     required)


def _period_verdict(kpis: Sequence[KpiResult], missing_data: str) -> Verdict:
    if any(k.verdict == "fail" for k in kpis):
        return "fail"
    if any(k.verdict == "missing" for k in kpis):
        return "fail" if missing_data == "breach" else "missing"
    return "pass"


def current_period(terms: TermsModel, accepted_at: int, now: int) -> int:
    """The period `now` falls in (-1 before acceptance): periods 0..current have started."""
    if now < accepted_at:
        return -1
    return (now - accepted_at) // terms.period_seconds


def closed_periods(terms: TermsModel, accepted_at: int, now: int) -> int:
    """How many periods are closed at `now` (periods 0..n-1: `end + grace_seconds <= now`)."""
    if now < accepted_at + terms.period_seconds + terms.grace_seconds:
        return 0
    return (now - accepted_at - terms.grace_seconds) // terms.period_seconds


def streak_start(terms: TermsModel, verdicts: Sequence[Verdict], before: int) -> int:
    """The period from which a window ending after `before` must be evaluated so that its
    streaks (kind 2) are those of the whole history, given the verdicts of closed periods
    0..len(verdicts)-1 (`before` <= len(verdicts)): the first period of the failing run that
    ends at `before - 1`, advanced past every streak that run already completed; `before`
    itself when there is no streak rule or period `before - 1` did not fail."""
    n = terms.consecutive_periods
    if n is None:
        return before
    start = before
    while start > 0 and verdicts[start - 1] == "fail":
        start -= 1
    return start + (before - start) // n * n


def evaluate(
    terms: TermsModel, accepted_at: int, now: int, samples: Iterable[Sample], *,
    first_period: int = 0, last_period: int | None = None,
) -> Evaluation:
    """Per-period results for every period started by `now` (or those from `first_period` to
    `last_period`, both included), and their findings at `now`, a streak counted from
    `first_period` (see the module docstring: a window).

    Samples observed before `accepted_at` or after `now`, outside the window, and samples of
    KPIs the terms do not name, are ignored."""
    if now < accepted_at:
        return Evaluation()
    size = terms.period_seconds
    wanted = {k.id for k in terms.kpis}
    if terms.incident is not None:
        wanted.add(terms.incident.kpi)
    grouped: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    current = current_period(terms, accepted_at, now)
    last = current if last_period is None else min(current, last_period)
    first = max(0, first_period)
    for s in samples:
        if s.kpi in wanted and accepted_at <= s.observed_at <= now:
            k = (s.observed_at - accepted_at) // size
            if first <= k <= last:
                grouped[(s.kpi, k)].append(s)
    for group in grouped.values():
        group.sort(key=lambda s: s.observed_at)
    return _evaluate_grouped(terms, accepted_at, now, grouped, first, last)


def _evaluate_grouped(
    terms: TermsModel, accepted_at: int, now: int,
    grouped: Mapping[tuple[str, int], list[Sample]], first: int, last: int,
) -> Evaluation:
    size = terms.period_seconds
    result = Evaluation()
    streak: list[PeriodResult] = []
    for k in range(first, last + 1):
        start, end = period_bounds(accepted_at, size, k)
        closed = is_closed(end, terms.grace_seconds, now)
        kpis = tuple(
            _judge(r.id, r.aggregate, r.op, r.threshold, k, grouped.get((r.id, k), []),
                   r.required_samples)
            for r in terms.kpis
        )
        verdict = _period_verdict(kpis, terms.missing_data)
        period = PeriodResult(k, start, end, closed, verdict, kpis)
        result.periods.append(period)
        if closed:
            _closed_period_findings(terms, period, streak, result.findings)
        if terms.incident is not None:
            finding = _incident(terms.incident, period, grouped.get((terms.incident.kpi, k), []))
            if finding is not None:
                result.findings.append(finding)
    return result


def _closed_period_findings(
    terms: TermsModel, period: PeriodResult, streak: list[PeriodResult], out: list[Finding]
) -> None:
    if period.verdict != "fail":
        streak.clear()
        return
    failing = [k.id for k in period.kpis if k.verdict != "pass"]
    out.append(Finding(KIND_KPI, period.period, period.start, period.end,
                       {"kind": KIND_KPI, "name": "kpi_below_standard", "kpis": failing,
                        "missing_data": terms.missing_data},
                       period.kpis))
    n = terms.consecutive_periods
    if n is None:
        return
    streak.append(period)
    if len(streak) == n:
        out.append(Finding(KIND_STREAK, period.period, period.start, period.end,
                           {"kind": KIND_STREAK, "name": "consecutive_underperformance",
                            "consecutive_periods": n,
                            "periods": [p.period for p in streak],
                            "missing_data": terms.missing_data},
                           tuple(k for p in streak for k in p.kpis)))
        streak.clear()


def incident_result(rule: IncidentRule, period: int, samples: list[Sample]) -> KpiResult:
    """The incident rule on a period's samples so far: verdict `fail` when the rule is met
    (the incident happened), `pass` when not, `missing` without samples or with fewer than its
    `min_samples` (then it is not met)."""
    result = _judge(rule.kpi, rule.aggregate, rule.op, rule.threshold, period, samples,
                    rule.required_samples)
    if result.verdict == "missing":
        return result
    met = result.verdict == "pass"  # the comparison holds: the incident is met
    return KpiResult(rule.kpi, rule.aggregate, rule.op, rule.threshold, period, result.value,
                     "fail" if met else "pass", result.samples, result.min_samples)


def _incident(rule: IncidentRule, period: PeriodResult, samples: list[Sample]) -> Finding | None:
    hit = incident_result(rule, period.period, samples)
    if hit.verdict != "fail":
        return None
    return Finding(KIND_INCIDENT, period.period, period.start, period.end,
                   {"kind": KIND_INCIDENT, "name": "incident", **rule.as_dict()}, (hit,))

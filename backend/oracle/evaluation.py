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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from backend.oracle.terms import IncidentRule, TermsModel

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


def _percentile(p: int) -> Callable[[Sequence[float]], float]:
    def nearest_rank(values: Sequence[float]) -> float:
        ordered = sorted(values)
        rank = max(1, math.ceil(p * len(ordered) / 100))
        return ordered[rank - 1]

    return nearest_rank


AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": lambda v: math.fsum(v) / len(v),
    "min": min,
    "max": max,
    "sum": math.fsum,
    "count": lambda v: float(len(v)),
    "p50": _percentile(50),
    "p90": _percentile(90),
    "p95": _percentile(95),
    "p99": _percentile(99),
    "ratio": lambda v: sum(1 for x in v if x != 0) / len(v),
}


def aggregate(name: str, values: Sequence[float]) -> float:
    """The aggregate `name` of a non-empty list of values."""
    return AGGREGATES[name](values)


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
           samples: list[Sample]) -> KpiResult:
    if not samples:
        return KpiResult(rule_id, agg, op, threshold, period, None, "missing", ())
    value = aggregate(agg, [s.value for s in samples])
    verdict: Verdict = "pass" if OPS[op](value, threshold) else "fail"
    return KpiResult(rule_id, agg, op, threshold, period, value, verdict, tuple(samples))


def _period_verdict(kpis: Sequence[KpiResult], missing_data: str) -> Verdict:
    if any(k.verdict == "fail" for k in kpis):
        return "fail"
    if any(k.verdict == "missing" for k in kpis):
        return "fail" if missing_data == "breach" else "missing"
    return "pass"


def evaluate(
    terms: TermsModel, accepted_at: int, now: int, samples: Iterable[Sample]
) -> Evaluation:
    """Per-period results for every period started by `now`, and the findings at `now`.

    Samples observed before `accepted_at` or after `now`, and samples of KPIs the terms do not
    name, are ignored."""
    if now < accepted_at:
        return Evaluation()
    size = terms.period_seconds
    wanted = {k.id for k in terms.kpis}
    if terms.incident is not None:
        wanted.add(terms.incident.kpi)
    grouped: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for s in samples:
        if s.kpi in wanted and accepted_at <= s.observed_at <= now:
            grouped[(s.kpi, (s.observed_at - accepted_at) // size)].append(s)
    for group in grouped.values():
        group.sort(key=lambda s: s.observed_at)
    return _evaluate_grouped(terms, accepted_at, now, grouped)


def _evaluate_grouped(
    terms: TermsModel, accepted_at: int, now: int, grouped: Mapping[tuple[str, int], list[Sample]]
) -> Evaluation:
    size = terms.period_seconds
    result = Evaluation()
    streak: list[PeriodResult] = []
    current = (now - accepted_at) // size
    for k in range(current + 1):
        start, end = period_bounds(accepted_at, size, k)
        closed = is_closed(end, terms.grace_seconds, now)
        kpis = tuple(
            _judge(r.id, r.aggregate, r.op, r.threshold, k, grouped.get((r.id, k), []))
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


def _incident(rule: IncidentRule, period: PeriodResult, samples: list[Sample]) -> Finding | None:
    if not samples:
        return None
    value = aggregate(rule.aggregate, [s.value for s in samples])
    if not OPS[rule.op](value, rule.threshold):
        return None
    hit = KpiResult(rule.kpi, rule.aggregate, rule.op, rule.threshold, period.period, value,
                    "fail", tuple(samples))
    return Finding(KIND_INCIDENT, period.period, period.start, period.end,
                   {"kind": KIND_INCIDENT, "name": "incident", **rule.as_dict()}, (hit,))

"""Evaluation of KPI samples: aggregates, exact boundaries, the three triggers, late samples and
missing data."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.inputs import MAX_KPI_MAGNITUDE
from backend.oracle.evaluation import Evaluation, Sample, aggregate, evaluate
from backend.oracle.terms import AGGREGATES, TermsInvalidError, TermsModel, parse_terms

DAY = 86_400
T0 = 1_700_000_000
GRACE = 3_600
FEW = settings(max_examples=25)


def terms(**extra: Any) -> TermsModel:
    doc: dict[str, Any] = {
        "version": 1,
        "title": "Hosting",
        "period_seconds": DAY,
        "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.5}],
        "grace_seconds": GRACE,
    }
    doc.update(extra)
    return parse_terms(doc)


def daily(values: list[float], kpi: str = "uptime") -> list[Sample]:
    """One sample per period, in the middle of the day."""
    return [Sample(kpi, v, T0 + k * DAY + DAY // 2) for k, v in enumerate(values)]


def after(periods: int) -> int:
    """The first moment at which `periods` periods are closed."""
    return T0 + periods * DAY + GRACE


def kinds(ev: Evaluation) -> list[tuple[int, int]]:
    return [(f.kind, f.period) for f in ev.findings]


def test_percentiles_use_the_nearest_rank_of_the_sorted_samples() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100..1, unsorted
    assert aggregate("p50", values) == 50.0
    assert aggregate("p90", values) == 90.0
    assert aggregate("p95", values) == 95.0
    assert aggregate("p99", values) == 99.0
    assert aggregate("p95", [7.0, 1.0, 3.0]) == 7.0  # rank ceil(2.85) = 3
    assert aggregate("p50", [4.0, 1.0, 3.0, 2.0]) == 2.0  # rank 2
    assert aggregate("p99", [5.0]) == 5.0


def test_the_other_aggregates_give_exact_values() -> None:
    values = [1.0, 0.0, 3.0, 0.0]
    assert aggregate("mean", values) == 1.0
    assert aggregate("min", values) == 0.0
    assert aggregate("max", values) == 3.0
    assert aggregate("sum", values) == 4.0
    assert aggregate("count", values) == 4.0
    assert aggregate("ratio", values) == 0.5  # share of non-zero samples
    assert aggregate("sum", [0.1] * 10) == 1.0  # fsum: correctly rounded


def test_a_value_equal_to_a_ge_threshold_passes() -> None:
    samples = [Sample("uptime", 99.0, T0 + 5), Sample("uptime", 100.0, T0 + 10)]
    ev = evaluate(terms(), T0, after(1), samples)
    assert ev.periods[0].kpis[0].value == 99.5
    assert ev.periods[0].verdict == "pass"
    assert ev.findings == []


def test_a_value_equal_to_a_gt_threshold_fails_with_kind_1() -> None:
    t = terms(kpis=[{"id": "uptime", "aggregate": "min", "op": ">", "threshold": 99.5}])
    ev = evaluate(t, T0, after(1), daily([99.5]))
    assert ev.periods[0].kpis[0].verdict == "fail"
    assert kinds(ev) == [(1, 0)]
    finding = ev.findings[0]
    assert (finding.period_start, finding.period_end) == (T0, T0 + DAY)
    assert finding.rule["kpis"] == ["uptime"]
    assert finding.kpis[0].samples == (Sample("uptime", 99.5, T0 + DAY // 2),)


@pytest.mark.parametrize(("op", "value", "verdict"), [
    ("<=", 300.0, "pass"), ("<=", 300.5, "fail"), ("<", 300.0, "fail"), ("<", 299.5, "pass"),
])
def test_upper_bounds_are_exact(op: str, value: float, verdict: str) -> None:
    t = terms(kpis=[{"id": "lat", "aggregate": "p95", "op": op, "threshold": 300,
                     "min_samples": 1}])  # one sample judged: its own p95
    ev = evaluate(t, T0, after(1), daily([value], "lat"))
    assert ev.periods[0].kpis[0].verdict == verdict


def test_one_bad_period_among_good_ones_reports_kind_1_for_that_period_only() -> None:
    ev = evaluate(terms(), T0, after(4), daily([100.0, 90.0, 100.0, 100.0]))
    assert kinds(ev) == [(1, 1)]
    assert [p.verdict for p in ev.periods] == ["pass", "fail", "pass", "pass", "missing"]
    assert [p.closed for p in ev.periods] == [True, True, True, True, False]


def test_six_bad_periods_with_n_3_report_kind_2_twice() -> None:
    ev = evaluate(terms(consecutive_periods=3), T0, after(6), daily([90.0] * 6))
    streaks = [f for f in ev.findings if f.kind == 2]
    assert [f.period for f in streaks] == [2, 5]
    assert streaks[0].rule["periods"] == [0, 1, 2]
    assert [k.period for k in streaks[1].kpis] == [3, 4, 5]
    assert sum(f.kind == 1 for f in ev.findings) == 6


def test_a_streak_is_broken_by_one_good_period() -> None:
    ev = evaluate(terms(consecutive_periods=3), T0, after(6),
                  daily([90.0, 90.0, 100.0, 90.0, 90.0, 90.0]))
    assert [f.period for f in ev.findings if f.kind == 2] == [5]


def test_missing_data_is_not_a_breach_by_default_and_breaks_the_streak() -> None:
    samples = [s for s in daily([90.0] * 4) if s.observed_at < T0 + 2 * DAY] + daily(
        [90.0] * 4)[3:]
    ev = evaluate(terms(consecutive_periods=3), T0, after(4), samples)
    assert [p.verdict for p in ev.periods[:4]] == ["fail", "fail", "missing", "fail"]
    assert ev.periods[2].kpis[0].value is None
    assert ev.periods[2].kpis[0].samples == ()
    assert kinds(ev) == [(1, 0), (1, 1), (1, 3)]


def test_missing_data_is_a_breach_when_the_terms_say_so() -> None:
    ev = evaluate(terms(consecutive_periods=3, missing_data="breach"), T0, after(3),
                  daily([90.0]))
    assert kinds(ev) == [(1, 0), (1, 1), (1, 2), (2, 2)]
    assert ev.findings[1].kpis[0].verdict == "missing"
    assert ev.findings[1].rule["kpis"] == ["uptime"]


def test_a_late_sample_inside_the_grace_interval_counts_and_the_period_stays_open() -> None:
    late = Sample("uptime", 90.0, T0 + DAY - 1)  # observed at the period's last second
    ev = evaluate(terms(), T0, T0 + DAY + GRACE - 1, [*daily([100.0]), late])
    assert ev.periods[0].closed is False
    assert ev.periods[0].kpis[0].value == 95.0
    assert ev.findings == []
    ev = evaluate(terms(), T0, T0 + DAY + GRACE, [*daily([100.0]), late])
    assert ev.periods[0].closed is True
    assert kinds(ev) == [(1, 0)]


def test_a_sample_at_the_period_end_belongs_to_the_next_period() -> None:
    ev = evaluate(terms(), T0, after(2), [Sample("uptime", 90.0, T0 + DAY)])
    assert ev.periods[0].verdict == "missing"
    assert kinds(ev) == [(1, 1)]


def test_the_incident_fires_before_the_period_closes_once_its_rule_is_met() -> None:
    t = terms(incident={"kpi": "outage_minutes", "aggregate": "sum", "op": ">",
                        "threshold": 60})
    outages = [Sample("outage_minutes", 30.0, T0 + 100), Sample("outage_minutes", 30.0, T0 + 200)]
    ev = evaluate(t, T0, T0 + 300, outages)
    assert ev.findings == []  # exactly 60: not more than 60
    outages.append(Sample("outage_minutes", 1.0, T0 + 300))
    ev = evaluate(t, T0, T0 + 300, outages)
    assert kinds(ev) == [(3, 0)]
    assert ev.periods[0].closed is False
    assert ev.findings[0].kpis[0].value == 61.0
    assert ev.findings[0].rule == {"kind": 3, "name": "incident", "kpi": "outage_minutes",
                                   "aggregate": "sum", "op": ">", "threshold": 60.0}


def test_samples_before_acceptance_or_of_unknown_kpis_are_ignored() -> None:
    ev = evaluate(terms(), T0, after(1), [Sample("uptime", 1.0, T0 - 1),
                                          Sample("other", 1.0, T0 + 5),
                                          Sample("uptime", 100.0, T0 + 5)])
    assert ev.periods[0].kpis[0].samples == (Sample("uptime", 100.0, T0 + 5),)
    assert ev.findings == []


def test_nothing_is_evaluated_before_acceptance() -> None:
    assert evaluate(terms(), T0, T0 - 1, []) == Evaluation()


@pytest.mark.parametrize("doc", [
    {"period_seconds": 0, "kpis": [{"id": "a", "aggregate": "mean", "op": ">=", "threshold": 1}]},
    {"period_seconds": 60, "kpis": []},
    {"period_seconds": 60, "kpis": [{"id": "a", "aggregate": "p42", "op": ">=", "threshold": 1}]},
    {"period_seconds": 60, "kpis": [{"id": "a", "aggregate": "mean", "op": "==", "threshold": 1}]},
    {"period_seconds": 60, "kpis": [{"id": "a", "aggregate": "mean", "op": ">=",
                                     "threshold": float("nan")}]},
    {"period_seconds": 60, "kpis": [{"id": "a", "aggregate": "mean", "op": ">=", "threshold": 1}],
     "missing_data": "maybe"},
])
def test_malformed_terms_are_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(TermsInvalidError):
        parse_terms({"version": 1, "title": "t", **doc})


def test_the_evaluation_consumes_the_terms_model_with_its_defaults_and_extra_keys() -> None:
    document = {"version": 1, "title": "t", "period_seconds": DAY, "sla_owner": "ops",
                "kpis": [{"id": "uptime", "aggregate": "p95", "op": ">=", "threshold": 99,
                          "unit": "%", "min_samples": 1}],
                "consecutive_periods": 2}
    model = parse_terms(document)
    assert isinstance(model, TermsModel) and model.grace_seconds == 3_600  # the model's default
    ev = evaluate(model, T0, T0 + 2 * DAY + 3_600, daily([90.0, 90.0]))
    assert kinds(ev) == [(1, 0), (1, 1), (2, 1)]
    assert ev.findings[2].rule["consecutive_periods"] == 2


def test_a_streak_of_one_cannot_reach_the_evaluation() -> None:
    with pytest.raises(TermsInvalidError, match="consecutive_periods"):
        terms(consecutive_periods=1)


def test_percentiles_follow_the_method_the_terms_schema_states() -> None:
    # nearest rank: rank ceil(p * n / 100), at least 1, of the ascending samples
    values = [float(v) for v in range(100, 0, -1)]
    assert [aggregate(p, values) for p in ("p50", "p90", "p95", "p99")] == [50, 90, 95, 99]
    assert aggregate("p99", [3.0, 1.0, 2.0]) == 3.0  # ceil(2.97) = 3
    assert aggregate("p50", [7.0]) == 7.0


# ------------------------------------------------------------- values that cannot be aggregated


def test_a_mean_of_values_stored_beyond_the_ingestion_bound_is_computed_without_overflow() -> None:
    assert aggregate("mean", [1.5e308, 1.5e308]) == 1.5e308
    assert aggregate("mean", [1.5e308, -1.5e308, 1.0]) == pytest.approx(1 / 3)


def test_a_sum_beyond_the_largest_float_is_refused_naming_the_kpi_and_period() -> None:
    t = terms(kpis=[{"id": "errors", "aggregate": "sum", "op": "<=", "threshold": 100}])
    samples = [Sample("errors", 1.5e308, T0 + DAY + 10), Sample("errors", 1.5e308, T0 + DAY + 20)]
    with pytest.raises(ArithmeticError) as caught:
        evaluate(t, T0, after(2), samples)
    assert str(caught.value) == (
        "KPI 'errors', period 1: sum cannot be computed: the result of 2 samples exceeds the "
        "largest float")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_stored_sample_that_is_not_finite_is_refused_by_every_aggregate(value: float) -> None:
    for name in AGGREGATES:
        t = terms(kpis=[{"id": "k", "aggregate": name, "op": "<=", "threshold": 1,
                         "min_samples": 1}])
        with pytest.raises(ArithmeticError, match=r"a sample value is .*, not finite"):
            evaluate(t, T0, after(1), [Sample("k", 1.0, T0 + 1), Sample("k", value, T0 + 2)])


@FEW
@given(st.lists(st.floats(min_value=-MAX_KPI_MAGNITUDE, max_value=MAX_KPI_MAGNITUDE),
                min_size=1, max_size=40))
def test_every_aggregate_of_values_within_the_bound_is_finite(values: list[float]) -> None:
    for name in AGGREGATES:
        assert math.isfinite(aggregate(name, values))
        assert math.isfinite(aggregate(name, values * 500))  # 20,000 samples in a period


def test_the_bound_keeps_a_sum_over_any_number_of_stored_samples_finite() -> None:
    # sample ids are signed 64-bit: no period holds 2**63 samples; |sum| <= n * 1e100 < 1e119
    assert MAX_KPI_MAGNITUDE * 2**63 < 1e119 < 1.7e308
    assert aggregate("sum", [MAX_KPI_MAGNITUDE] * 100_000) == pytest.approx(1e105)


# ------------------------------------------------------------------ min_samples


def latency(values: list[float], period: int = 0) -> list[Sample]:
    """Latency samples spread over one period."""
    return [Sample("lat", v, T0 + period * DAY + 60 * (i + 1)) for i, v in enumerate(values)]


def p95_terms(**rule: Any) -> TermsModel:
    return terms(kpis=[{"id": "lat", "aggregate": "p95", "op": "<=", "threshold": 300, **rule}])


def test_a_p95_of_10_samples_with_one_slow_is_missing_data_not_a_refund() -> None:
    samples = latency([120.0] * 9 + [900.0])  # nearest rank ceil(9.5) = 10: the maximum
    ev = evaluate(p95_terms(), T0, after(1), samples)
    assert ev.findings == []
    assert ev.periods[0].verdict == "missing"
    result = ev.periods[0].kpis[0]
    assert (result.value, result.verdict) == (None, "missing")
    assert result.samples == tuple(samples)  # the samples are kept: the count shows why
    assert result.min_samples == 20


def test_too_few_samples_count_as_missing_data_under_the_terms_rule() -> None:
    ev = evaluate(
        terms(missing_data="breach",
              kpis=[{"id": "lat", "aggregate": "p95", "op": "<=", "threshold": 300}]),
        T0, after(1), latency([120.0] * 19))
    assert kinds(ev) == [(1, 0)]  # a breach for missing data, with 19 good samples
    assert ev.findings[0].kpis[0].verdict == "missing"
    assert ev.findings[0].rule["kpis"] == ["lat"]


def test_from_20_samples_a_p95_is_judged_and_one_slow_sample_is_not_the_p95() -> None:
    ev = evaluate(p95_terms(), T0, after(1), latency([120.0] * 19 + [900.0]))
    result = ev.periods[0].kpis[0]
    assert (result.value, result.verdict) == (120.0, "pass")  # rank 19 of 20
    ev = evaluate(p95_terms(), T0, after(1), latency([120.0] * 18 + [900.0, 900.0]))
    assert ev.periods[0].kpis[0].verdict == "fail" and kinds(ev) == [(1, 0)]


def test_an_explicit_min_samples_overrides_the_default() -> None:
    ev = evaluate(terms(kpis=[{"id": "uptime", "aggregate": "mean", "op": ">=",
                               "threshold": 99.5, "min_samples": 3}]),
                  T0, after(1), daily([90.0]))
    assert ev.periods[0].kpis[0].verdict == "missing"
    ev = evaluate(p95_terms(min_samples=5), T0, after(1), latency([120.0] * 9 + [900.0]))
    assert kinds(ev) == [(1, 0)]  # what the parties chose
    assert (ev.periods[0].kpis[0].value, ev.periods[0].kpis[0].min_samples) == (900.0, 5)


def test_the_incident_rule_is_not_met_on_fewer_samples_than_its_min_samples() -> None:
    rule = {"kpi": "lat", "aggregate": "p99", "op": ">", "threshold": 1000}
    ev = evaluate(terms(incident=rule), T0, T0 + DAY - 1, latency([5000.0] * 99))
    assert ev.findings == []  # 99 samples: the p99 would be the maximum
    ev = evaluate(terms(incident={**rule, "min_samples": 1}), T0, T0 + 100, latency([5000.0]))
    assert kinds(ev) == [(3, 0)]
    ev = evaluate(terms(incident=rule), T0, T0 + DAY - 1, latency([5000.0] * 100))
    assert kinds(ev) == [(3, 0)]
    assert ev.findings[0].kpis[0].min_samples == 100


def test_a_terms_document_with_a_p95_and_no_min_samples_evaluates_as_before_from_20() -> None:
    # existing documents stay valid (same hash); only periods of fewer samples change verdict
    values = [float(v) for v in range(1, 101)]
    ev = evaluate(p95_terms(), T0, after(1), latency(values))
    assert ev.periods[0].kpis[0].value == 95.0

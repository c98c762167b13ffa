"""The terms document model: what it accepts, what it refuses (naming the field), its JSON Schema,
and that validation leaves the hashed document untouched."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from eth_utils import keccak

from backend.canonical import canonical_json, terms_hash
from backend.errors import OutOfRangeError
from backend.oracle.terms import (
    AGGREGATES,
    DEFAULT_GRACE_SECONDS,
    OPERATORS,
    TermsInvalidError,
    parse_terms,
    terms_json_schema,
)

SLA: dict[str, Any] = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": 86400,
    "kpis": [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
        {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300},
    ],
    "consecutive_periods": 3,
    "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60},
    "acceptance_criteria": ["deployment verified"],
}


def with_(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(SLA)
    document.update(changes)
    return document


def kpi(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 1}
    base.update(changes)
    return base


def refusal(document: Any) -> str:
    with pytest.raises(TermsInvalidError) as caught:
        parse_terms(document)
    return caught.value.message


def test_the_design_example_parses_with_its_defaults() -> None:
    terms = parse_terms(SLA)
    assert terms.period_seconds == 86400
    assert [(k.id, k.aggregate, k.op, k.threshold) for k in terms.kpis] == [
        ("uptime_pct", "mean", ">=", 99.9),
        ("p95_latency_ms", "p95", "<=", 300.0),
    ]
    assert terms.consecutive_periods == 3
    assert terms.incident is not None and terms.incident.threshold == 60.0
    assert terms.missing_data == "ignore"
    assert terms.grace_seconds == DEFAULT_GRACE_SECONDS == 3600
    assert terms.kpi_ids == {"uptime_pct", "p95_latency_ms", "outage_minutes"}


def test_a_minimal_document_needs_version_title_period_and_one_kpi() -> None:
    terms = parse_terms({"version": 1, "title": "t", "period_seconds": 1, "kpis": [kpi()]})
    assert (terms.consecutive_periods, terms.incident) == (None, None)
    assert terms.acceptance_criteria == []
    assert terms.kpi_ids == {"uptime_pct"}


def test_every_aggregate_and_operator_is_known() -> None:
    assert AGGREGATES == ("mean", "min", "max", "sum", "count", "p50", "p90", "p95", "p99", "ratio")
    assert OPERATORS == (">=", ">", "<=", "<")
    for aggregate in AGGREGATES:
        for op in OPERATORS:
            terms = parse_terms(with_(kpis=[kpi(aggregate=aggregate, op=op)]))
            assert (terms.kpis[0].aggregate, terms.kpis[0].op) == (aggregate, op)


def test_extra_keys_are_allowed_kept_and_do_not_change_the_hash() -> None:
    document = with_(currency_note="EUR", sla_owner={"team": "ops"})
    document["kpis"][0]["unit"] = "%"
    before = canonical_json(document)
    terms = parse_terms(document)
    assert terms.model_extra == {"currency_note": "EUR", "sla_owner": {"team": "ops"}}
    assert terms.kpis[0].model_extra == {"unit": "%"}
    assert canonical_json(document) == before
    assert terms_hash(document) == keccak(before)


def test_the_hash_is_keccak_of_the_rfc8785_form() -> None:
    document = {"version": 1, "title": "é", "period_seconds": 60, "kpis": [kpi(threshold=99.9)]}
    parse_terms(document)
    expected = (
        '{"kpis":[{"aggregate":"mean","id":"uptime_pct","op":">=","threshold":99.9}],'
        '"period_seconds":60,"title":"é","version":1}'
    ).encode()
    assert terms_hash(document) == keccak(expected)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"period_seconds": 0}, "period_seconds: Input should be greater than 0"),
        ({"period_seconds": -86400}, "period_seconds: Input should be greater than 0"),
        ({"period_seconds": "86400"}, "period_seconds: Input should be a valid integer"),
        ({"period_seconds": 1.5}, "period_seconds: Input should be a valid integer"),
        ({"kpis": []}, "kpis: List should have at least 1 item after validation, not 0"),
        ({"version": True}, "version: Input should be a valid integer"),
        ({"version": 0}, "version: Input should be greater than or equal to 1"),
        ({"title": ""}, "title: String should have at least 1 character"),
        ({"consecutive_periods": 1}, "consecutive_periods: Input should be greater than or "
                                     "equal to 2"),
        ({"missing_data": "skip"}, "missing_data: Input should be 'ignore' or 'breach'"),
        ({"grace_seconds": -1}, "grace_seconds: Input should be greater than or equal to 0"),
        ({"acceptance_criteria": "all good"}, "acceptance_criteria: Input should be a valid list"),
    ],
)
def test_a_bad_top_level_field_is_refused_naming_it(
    changes: dict[str, Any], message: str
) -> None:
    assert refusal(with_(**changes)) == f"invalid terms document: {message}"


def test_a_bad_kpi_is_refused_naming_its_index_and_field() -> None:
    message = refusal(with_(kpis=[kpi(), kpi(id="lat", aggregate="avg", op="=>")]))
    assert message == (
        "invalid terms document: kpis.1.aggregate: Input should be 'mean', 'min', 'max', 'sum', "
        "'count', 'p50', 'p90', 'p95', 'p99' or 'ratio'; kpis.1.op: Input should be '>=', '>', "
        "'<=' or '<'"
    )


def test_thresholds_must_be_finite_numbers() -> None:
    assert refusal(with_(kpis=[kpi(threshold=float("nan"))])) == (
        "invalid terms document: kpis.0.threshold: Input should be a finite number"
    )
    assert "kpis.0.threshold: Input should be a finite number" in refusal(
        with_(kpis=[kpi(threshold=float("inf"))])
    )
    assert "kpis.0.threshold: Input should be a valid number" in refusal(
        with_(kpis=[kpi(threshold="99.9")])
    )


def test_missing_fields_and_duplicate_kpis_are_refused() -> None:
    assert refusal({"title": "t"}) == (
        "invalid terms document: version: Field required; period_seconds: Field required; "
        "kpis: Field required"
    )
    assert refusal(with_(kpis=[kpi(), kpi(op="<")])) == (
        "invalid terms document: kpis: Value error, KPI id 'uptime_pct' appears twice"
    )
    assert "kpis.0.id: String should match pattern" in refusal(with_(kpis=[kpi(id="a b")]))
    assert "incident.op: Field required" in refusal(
        with_(incident={"kpi": "outage_minutes", "aggregate": "sum", "threshold": 60})
    )


def test_the_refusal_is_an_out_of_range_error_naming_the_first_field() -> None:
    with pytest.raises(TermsInvalidError) as caught:
        parse_terms(with_(period_seconds=0))
    assert (caught.value.code, caught.value.field) == ("out_of_range", "period_seconds")


def test_the_json_schema_lists_the_fields_and_the_enums() -> None:
    schema = terms_json_schema()
    assert schema["title"] == "Quality Escrow terms document"
    assert schema["required"] == ["version", "title", "period_seconds", "kpis"]
    assert schema["properties"]["period_seconds"]["exclusiveMinimum"] == 0
    assert schema["properties"]["kpis"]["minItems"] == 1
    rule = schema["$defs"]["KpiRule"]
    assert rule["properties"]["aggregate"]["enum"] == list(AGGREGATES)
    assert rule["properties"]["op"]["enum"] == list(OPERATORS)
    assert rule["additionalProperties"] is True


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {f"TermsModel.{k}": v for k, v in schema["properties"].items()}
    for model, definition in schema["$defs"].items():
        found.update({f"{model}.{k}": v for k, v in definition["properties"].items()})
    return found


def test_the_json_schema_documents_every_field() -> None:
    properties = _properties(terms_json_schema())
    assert len(properties) == 9 + 5 + 5  # the document, KpiRule, IncidentRule
    undocumented = [name for name, prop in properties.items() if not prop.get("description")]
    assert undocumented == []


def test_the_json_schema_states_the_units_and_the_evaluations_percentile_method() -> None:
    schema = terms_json_schema()
    described = schema["description"]
    assert "nearest-rank" in described and "ceil(p * n / 100)" in described
    assert "no interpolation" in described
    assert "seconds" in schema["properties"]["period_seconds"]["description"]
    assert "seconds" in schema["properties"]["grace_seconds"]["description"]
    assert "unit" in schema["$defs"]["KpiRule"]["properties"]["threshold"]["description"]
    for aggregate in AGGREGATES:
        assert f"`{aggregate}`" in described


def test_the_evaluation_computes_exactly_the_aggregates_the_model_names() -> None:
    from backend.oracle.evaluation import AGGREGATES as COMPUTED
    from backend.oracle.evaluation import OPS

    assert tuple(COMPUTED) == AGGREGATES
    assert tuple(OPS) == OPERATORS


def test_terms_nested_too_deeply_or_not_an_object_are_refused() -> None:
    with pytest.raises(OutOfRangeError, match="expected at most 32 levels"):
        parse_terms(with_(note=json.loads("[" * 40 + "]" * 40)))
    with pytest.raises(OutOfRangeError, match="expected a JSON object"):
        parse_terms([SLA])


def test_fields_are_named_inside_the_request_that_carries_the_document() -> None:
    with pytest.raises(TermsInvalidError) as caught:
        parse_terms(with_(kpis=[]), where="terms_document")
    assert caught.value.field == "terms_document.kpis"


def test_min_samples_defaults_keep_a_percentile_from_being_the_maximum() -> None:
    terms = parse_terms(with_(kpis=[kpi(id=a, aggregate=a) for a in AGGREGATES]))
    required = {k.aggregate: k.required_samples for k in terms.kpis}
    assert required == {"mean": 1, "min": 1, "max": 1, "sum": 1, "count": 1, "p50": 2,
                        "p90": 10, "p95": 20, "p99": 100, "ratio": 1}
    for aggregate, n in required.items():
        if aggregate.startswith("p"):  # ceil(1 / (1 - p)): the fewest with rank below n
            p = int(aggregate[1:])
            assert -(-p * n // 100) < n and -(-p * (n - 1) // 100) == n - 1
    assert parse_terms(with_(incident={"kpi": "lat", "aggregate": "p99", "op": ">",
                                       "threshold": 1})).incident.required_samples == 100


def test_min_samples_is_optional_so_existing_documents_and_their_hashes_stay_valid() -> None:
    before = copy.deepcopy(SLA)
    terms = parse_terms(SLA)
    assert before == SLA and terms_hash(SLA) == terms_hash(before)
    assert [k.min_samples for k in terms.kpis] == [None, None]
    chosen = parse_terms(with_(kpis=[kpi(aggregate="p95", min_samples=5)]))
    assert chosen.kpis[0].required_samples == 5
    assert chosen.kpis[0].as_dict() == {"aggregate": "p95", "op": ">=", "threshold": 1.0,
                                        "id": "uptime_pct"}  # rules are quoted as before


@pytest.mark.parametrize("value", [0, -1, "20", 2.5, True])
def test_a_min_samples_that_is_no_positive_integer_is_refused(value: Any) -> None:
    assert "kpis.0.min_samples" in refusal(with_(kpis=[kpi(min_samples=value)]))


def test_the_json_schema_describes_min_samples_and_its_defaults() -> None:
    schema = terms_json_schema()
    for rule in ("KpiRule", "IncidentRule"):
        prop = schema["$defs"][rule]["properties"]["min_samples"]
        assert rule not in schema["$defs"][rule].get("required", [])
        assert prop["x-defaults"]["p95"] == 20 and prop["x-defaults"]["p99"] == 100
        assert prop["x-defaults"]["mean"] == 1
        assert {"type": "integer", "minimum": 1} in prop["anyOf"]
        assert "`p95` 20, `p99` 100" in prop["description"]
        assert "missing data" in prop["description"]
    assert "min_samples" in schema["description"]

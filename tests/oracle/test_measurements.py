"""KPI measurements: bearer tokens per escrow, `POST /api/escrows/{id}/measurements` and the CSV
import; batches are all-or-nothing and deduplicated by (escrow, kpi, observed_at). Escrows live on
the in-process chain, indexed into SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from backend.canonical import terms_hash
from backend.db.models import EscrowRow, KpiSample, MeasurementToken
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, TooLargeError
from backend.oracle.cli import import_csv, issue_token_command, revoke_command
from backend.oracle.measurements import (
    FUTURE_SKEW_SECONDS,
    MAX_BATCH,
    Sample,
    SampleRefusedError,
    check_samples,
    token_sha256,
)
from backend.oracle.terms import parse_terms
from backend.oracle.terms_store import store_terms
from tests.api.support import Api

DOC: dict[str, Any] = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": 86400,
    "kpis": [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
        {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300},
    ],
    "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60},
}
REFUSED = 401  # a missing, unknown, revoked or foreign bearer token


@dataclass
class Escrow:
    id: int
    accepted_at: int
    token: str


def open_escrow(api: Api, *, accept: bool = True, store: bool = True) -> Escrow:
    """An escrow bound to DOC, indexed, its terms stored and a token issued."""
    params = api.env.params(terms_hash=terms_hash(DOC))
    escrow_id = api.env.create_active(params) if accept else api.env.create(params)
    api.index()
    if store:
        with api.services.sessions() as session, session.begin():
            store_terms(session, DOC)
    token = issue_token_command(api.services.settings, escrow_id, services=api.services)
    with api.services.sessions() as session:
        row = session.get(EscrowRow, (api.services.chain_id, escrow_id))
        assert row is not None
        accepted_at = row.accepted_at
    return Escrow(escrow_id, accepted_at or 0, token)


def post(api: Api, escrow: Escrow, samples: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or escrow.token}"}
    return api.http.post(
        f"/api/escrows/{escrow.id}/measurements", json={"samples": samples}, headers=headers
    )


def stored(api: Api, escrow_id: int) -> list[tuple[str, float, int]]:
    with api.services.sessions() as session:
        rows = session.execute(
            select(KpiSample.kpi, KpiSample.value, KpiSample.observed_at)
            .where(KpiSample.escrow_id == escrow_id)
            .order_by(KpiSample.kpi, KpiSample.observed_at)
        )
        return [(kpi, value, at) for kpi, value, at in rows]


def sample(kpi: str, value: Any, observed_at: Any) -> dict[str, Any]:
    return {"kpi": kpi, "value": value, "observed_at": observed_at}


def test_posted_samples_are_stored_and_counted(api: Api) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    batch = [sample("uptime_pct", 99.95, t), sample("uptime_pct", 100, t + 60),
             sample("p95_latency_ms", 250.5, t + 60), sample("outage_minutes", 0, t + 120)]
    response = post(api, escrow, batch)
    assert (response.status_code, response.json()) == (200, {"accepted": 4, "duplicates": 0})
    assert stored(api, escrow.id) == [
        ("outage_minutes", 0.0, t + 120),
        ("p95_latency_ms", 250.5, t + 60),
        ("uptime_pct", 99.95, t),
        ("uptime_pct", 100.0, t + 60),
    ]


def test_the_same_samples_again_are_duplicates_and_change_nothing(api: Api) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    batch = [sample("uptime_pct", 99.5, t + 1), sample("uptime_pct", 99.0, t + 2)]
    assert post(api, escrow, batch).json() == {"accepted": 2, "duplicates": 0}
    again = [*batch, sample("uptime_pct", 98.0, t + 3), sample("uptime_pct", 98.0, t + 3)]
    assert post(api, escrow, again).json() == {"accepted": 1, "duplicates": 3}
    assert [v for _, v, _ in stored(api, escrow.id)] == [99.5, 99.0, 98.0]


def test_another_value_for_a_stored_sample_is_409_and_the_batch_is_refused(api: Api) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    assert post(api, escrow, [sample("uptime_pct", 99.5, t + 1)]).status_code == 200
    response = post(api, escrow, [sample("uptime_pct", 97.0, t + 5),
                                  sample("uptime_pct", 90.0, t + 1)])
    assert response.status_code == 409
    assert response.json() == {
        "error": "sample_conflict",
        "detail": f"sample 1: uptime_pct at {t + 1} is already stored with value 99.5, "
                  "not 90.0; stored samples are never rewritten",
    }
    assert stored(api, escrow.id) == [("uptime_pct", 99.5, t + 1)]
    in_batch = post(api, escrow, [sample("uptime_pct", 1, t + 9), sample("uptime_pct", 2, t + 9)])
    assert in_batch.status_code == 409
    assert in_batch.json()["detail"].startswith(f"sample 1: uptime_pct at {t + 9}")


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (sample("latency", 1, 0), "sample 1: kpi='latency' is refused: expected one of the "
                                  "terms' KPIs ['outage_minutes', 'p95_latency_ms', 'uptime_pct']"),
        (sample("uptime_pct", "nan", 0), "sample 1: value=nan is refused: expected a finite "
                                         "number"),
        (sample("uptime_pct", "-Infinity", 0), "sample 1: value=-inf is refused: expected a "
                                               "finite number"),
        (sample("uptime_pct", True, 0), "sample 1: value=True is refused: expected a number"),
        (sample("uptime_pct", None, 0), "sample 1: value=None is refused: expected a number"),
        ({"kpi": "uptime_pct", "value": 1}, "sample 1: observed_at=None is refused: expected a "
                                            "value (the field is missing)"),
        (sample("uptime_pct", 1, "yesterday"), "sample 1: observed_at='yesterday' is refused: "
                                               "expected unix seconds or ISO 8601 with a zone"),
        ({"kpi": 7, "value": 1, "observed_at": 0},
         "sample 1: kpi=7 is refused: expected a KPI id of the terms"),
        ("uptime_pct", "sample 1: sample='str' is refused: expected an object"),
    ],
)
def test_a_bad_sample_is_422_naming_it_and_nothing_is_stored(
    api: Api, bad: dict[str, Any], detail: str
) -> None:
    escrow = open_escrow(api)
    if isinstance(bad, dict) and bad.get("observed_at") == 0:
        bad["observed_at"] = escrow.accepted_at + 10
    response = post(api, escrow, [sample("uptime_pct", 99.9, escrow.accepted_at), bad])
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "sample_refused", "detail": detail}
    assert stored(api, escrow.id) == []


def test_non_finite_json_numbers_are_refused(api: Api) -> None:
    escrow = open_escrow(api)
    at = escrow.accepted_at
    body = f'{{"samples": [{{"kpi": "uptime_pct", "value": NaN, "observed_at": {at}}}]}}'
    response = api.http.post(
        f"/api/escrows/{escrow.id}/measurements", content=body.encode(),
        headers={"Authorization": f"Bearer {escrow.token}", "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "sample 0: value=nan is refused: expected a finite number"


def test_timestamps_before_acceptance_or_in_the_future_are_refused(api: Api) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    before = post(api, escrow, [sample("uptime_pct", 99, t - 1)])
    assert before.status_code == 422
    assert before.json()["detail"] == (
        f"sample 0: observed_at={t - 1} is refused: expected at or after the escrow's "
        f"acceptance at {t}"
    )
    far = max(int(time.time()), api.env.now()) + FUTURE_SKEW_SECONDS + 600
    future = post(api, escrow, [sample("uptime_pct", 99, far)])
    assert future.status_code == 422
    assert future.json()["detail"].startswith(f"sample 0: observed_at={far} is refused: "
                                              "expected not in the future (at most ")
    iso = post(api, escrow, [sample("uptime_pct", 99, time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)))])
    assert iso.json() == {"accepted": 1, "duplicates": 0}
    assert stored(api, escrow.id) == [("uptime_pct", 99.0, t)]


def test_the_future_bound_allows_the_clock_skew_exactly(api: Api) -> None:
    escrow = open_escrow(api)
    now = escrow.accepted_at + 1000
    with api.services.sessions() as session:
        row = session.get(EscrowRow, (api.services.chain_id, escrow.id))
        assert row is not None
        terms = parse_terms(DOC)
        check_samples([Sample("uptime_pct", 1.0, now + FUTURE_SKEW_SECONDS)], row, terms, now)
        with pytest.raises(SampleRefusedError) as caught:
            check_samples([Sample("uptime_pct", 1.0, now + FUTURE_SKEW_SECONDS + 1)], row, terms,
                          now)
        assert caught.value.field == "samples[0].observed_at"


def test_an_escrow_not_yet_accepted_takes_no_samples(api: Api) -> None:
    escrow = open_escrow(api, accept=False)
    response = post(api, escrow, [sample("uptime_pct", 99, int(time.time()))])
    assert response.status_code == 422
    assert response.json() == {
        "error": "escrow_not_accepted",
        "detail": f"escrow {escrow.id} is proposed, not accepted yet: it takes no samples",
    }


def test_tokens_are_per_escrow_stored_as_sha256_and_revocable(api: Api) -> None:
    first, second = open_escrow(api), open_escrow(api)
    with api.services.sessions() as session:
        hashes = session.scalars(select(MeasurementToken.token_sha256)).all()
    assert sorted(hashes) == sorted([token_sha256(first.token), token_sha256(second.token)])
    assert first.token not in hashes and len(first.token) >= 43
    one = [sample("uptime_pct", 99, first.accepted_at)]
    cases = {
        "missing": api.http.post(f"/api/escrows/{first.id}/measurements", json={"samples": one}),
        "wrong scheme": api.http.post(f"/api/escrows/{first.id}/measurements",
                                      json={"samples": one},
                                      headers={"Authorization": f"Basic {first.token}"}),
        "unknown": post(api, first, one, token="not-a-token"),
        "other escrow": post(api, first, one, token=second.token),
    }
    for name, response in cases.items():
        assert response.status_code == REFUSED, name
        assert response.json()["error"] == "token_refused", name
    assert cases["other escrow"].json()["detail"] == (
        f"measurement token refused: not a token of escrow {first.id}"
    )
    assert post(api, first, one).status_code == 200
    assert revoke_command(api.services.settings, token=first.token, services=api.services) == 1
    revoked = post(api, first, one)
    assert (revoked.status_code, revoked.json()["detail"]) == (
        REFUSED, "measurement token refused: the token was revoked"
    )
    assert post(api, second, [sample("uptime_pct", 99, second.accepted_at)]).status_code == 200
    assert revoke_command(api.services.settings, escrow_id=second.id, services=api.services) == 1
    assert revoke_command(api.services.settings, escrow_id=second.id, services=api.services) == 0
    assert post(api, second, [sample("uptime_pct", 98, second.accepted_at)]).status_code == (
        REFUSED
    )


def test_unknown_escrow_404_and_unstored_terms_409(api: Api) -> None:
    escrow = open_escrow(api, store=False)
    missing = post(api, escrow, [sample("uptime_pct", 99, escrow.accepted_at)])
    assert missing.status_code == 409
    assert missing.json() == {
        "error": "terms_not_stored",
        "detail": f"the terms document 0x{terms_hash(DOC).hex()} of escrow {escrow.id} is not "
                  "stored: POST it to /api/terms first",
    }
    unknown = api.http.post("/api/escrows/999/measurements", json={"samples": []},
                            headers={"Authorization": f"Bearer {escrow.token}"})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "detail": "unknown escrow 999"}
    huge = api.http.post(f"/api/escrows/{2**64}/measurements", json={"samples": []},
                         headers={"Authorization": f"Bearer {escrow.token}"})
    assert huge.status_code == 404
    with pytest.raises(NotFoundError):
        issue_token_command(api.services.settings, 999, services=api.services)


def test_bodies_that_are_not_a_batch_are_refused(api: Api) -> None:
    escrow = open_escrow(api)
    url = f"/api/escrows/{escrow.id}/measurements"
    headers = {"Authorization": f"Bearer {escrow.token}", "content-type": "application/json"}
    assert api.error("POST", url, 400, content=b"{nope", headers=headers)["error"] == "malformed"
    assert api.error("POST", url, 422, json={"sample": []}, headers=headers)["error"] == (
        "out_of_range"
    )
    assert api.error("POST", url, 422, json={"samples": {}}, headers=headers)["error"] == (
        "out_of_range"
    )
    assert post(api, escrow, []).json() == {"accepted": 0, "duplicates": 0}


def test_a_batch_over_the_limit_is_413(api: Api) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    batch = [sample("uptime_pct", 99, t + i) for i in range(MAX_BATCH + 1)]
    response = post(api, escrow, batch)
    assert response.status_code == 413
    assert response.json() == {
        "error": "too_large",
        "detail": f"batch of samples is {MAX_BATCH + 1}, over the limit of {MAX_BATCH}",
    }
    api.env.advance(MAX_BATCH)  # chain time, so the last sample is not in the future
    full = post(api, escrow, batch[:MAX_BATCH])
    assert full.json() == {"accepted": MAX_BATCH, "duplicates": 0}


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_csv_import_checks_like_the_api_and_is_all_or_nothing(api: Api, tmp_path: Path) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    settings = api.services.settings
    good = write_csv(tmp_path / "good.csv", [
        "kpi,value,observed_at,note",
        f"uptime_pct,99.9,{t},first",
        "",
        f"p95_latency_ms,310,{t + 60},",
        f"uptime_pct,99.9,{t},again",
    ])
    result = import_csv(settings, escrow.id, good, services=api.services)
    assert (result.escrow_id, result.accepted, result.duplicates) == (escrow.id, 2, 1)
    bad = write_csv(tmp_path / "bad.csv", [
        "kpi,value,observed_at",
        f"uptime_pct,98,{t + 1}",
        f"uptime_pct,inf,{t + 2}",
    ])
    with pytest.raises(SampleRefusedError) as caught:
        import_csv(settings, escrow.id, bad, services=api.services)
    assert caught.value.message == "sample 1: value=inf is refused: expected a finite number"
    assert stored(api, escrow.id) == [("p95_latency_ms", 310.0, t + 60), ("uptime_pct", 99.9, t)]
    headless = write_csv(tmp_path / "headless.csv", ["kpi,value", "uptime_pct,1"])
    with pytest.raises(MalformedInputError, match="the header lacks observed_at"):
        import_csv(settings, escrow.id, headless, services=api.services)
    big = write_csv(tmp_path / "big.csv", ["kpi,value,observed_at"]
                    + [f"uptime_pct,1,{t + i}" for i in range(MAX_BATCH + 1)])
    with pytest.raises(TooLargeError):
        import_csv(settings, escrow.id, big, services=api.services)
    with pytest.raises(OutOfRangeError):
        import_csv(settings, escrow.id, write_csv(tmp_path / "early.csv", [
            "kpi,value,observed_at", f"uptime_pct,1,{t - 10}"]), services=api.services)
    assert len(stored(api, escrow.id)) == 2


def test_the_terms_schema_route_is_not_taken_for_a_hash(api: Api) -> None:
    schema = api.ok("GET", "/api/terms/schema")
    assert schema["title"] == "Quality Escrow terms document"
    assert schema["required"] == ["version", "title", "period_seconds", "kpis"]
    refused = api.error("POST", "/api/terms", 422, json={**DOC, "period_seconds": 0})
    assert refused == {
        "error": "out_of_range",
        "detail": "invalid terms document: period_seconds: Input should be greater than 0",
    }
    body = json.dumps(DOC).encode()
    assert api.ok("POST", "/api/terms", 201, content=body) == {
        "terms_hash": "0x" + terms_hash(DOC).hex()
    }


def test_a_sample_whose_value_is_a_400_digit_json_integer_is_422_not_500(api: Api) -> None:
    escrow = open_escrow(api)
    at = escrow.accepted_at
    for value in ("9" * 400, "-" + "9" * 400, "1e400"):
        body = f'{{"samples": [{{"kpi": "uptime_pct", "value": {value}, "observed_at": {at}}}]}}'
        response = api.http.post(
            f"/api/escrows/{escrow.id}/measurements", content=body.encode(),
            headers={"Authorization": f"Bearer {escrow.token}",
                     "content-type": "application/json"},
        )
        assert response.status_code == 422, (value, response.text)
        error = response.json()
        assert set(error) == {"error", "detail"}
        assert error["error"] == "sample_refused"
        assert error["detail"].startswith("sample 0: value=")
        assert len(error["detail"]) < 200  # the value is shortened, not echoed in full
    assert stored(api, escrow.id) == []


def test_kpi_values_beyond_the_bound_are_refused_so_every_aggregate_stays_finite(
    api: Api, tmp_path: Path
) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    response = post(api, escrow, [sample("uptime_pct", 1e300, t)])
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "sample 0: value=1e+300 is refused: expected a number from -1e+100 to 1e+100"
    )
    huge = write_csv(tmp_path / "huge.csv",
                     ["kpi,value,observed_at", f"uptime_pct,{'9' * 400},{t}"])
    with pytest.raises(SampleRefusedError):
        import_csv(api.services.settings, escrow.id, huge, services=api.services)
    bounds = [sample("uptime_pct", 1e100, t), sample("uptime_pct", -1e100, t + 1)]
    accepted = post(api, escrow, bounds)
    assert accepted.json() == {"accepted": 2, "duplicates": 0}


def test_an_observed_at_beyond_a_64_bit_time_is_refused_before_the_database(api: Api) -> None:
    escrow = open_escrow(api)
    response = post(api, escrow, [sample("uptime_pct", 1, 10**30)])
    assert response.status_code == 422
    assert response.json()["error"] == "sample_refused"
    assert response.json()["detail"].startswith("sample 0: observed_at=")


def test_two_samples_of_1_5e308_are_refused_naming_the_sample_and_nothing_is_stored(
    api: Api, tmp_path: Path
) -> None:
    escrow = open_escrow(api)
    t = escrow.accepted_at
    batch = [sample("outage_minutes", 10, t), sample("outage_minutes", 1.5e308, t + 1),
             sample("outage_minutes", 1.5e308, t + 2)]
    response = post(api, escrow, batch)
    assert response.status_code == 422
    assert response.json() == {
        "error": "sample_refused",
        "detail": "sample 1: value=1.5e+308 is refused: expected a number from -1e+100 to "
                  "1e+100"}
    as_text = write_csv(tmp_path / "huge.csv", ["kpi,value,observed_at",
                                                f"outage_minutes,1.5e308,{t + 1}"])
    with pytest.raises(SampleRefusedError) as caught:
        import_csv(api.services.settings, escrow.id, as_text, services=api.services)
    assert caught.value.field == "samples[0].value"
    assert stored(api, escrow.id) == []

"""Evidence bundles: content, and a hash that is keccak256 of the RFC 8785 canonical JSON."""

from __future__ import annotations

import json
from typing import Any

from eth_utils import keccak

from backend.oracle.evaluation import Sample, evaluate
from backend.oracle.evidence import FORMAT, bundle_hash, evidence_bundle
from backend.oracle.terms import parse_terms

T0 = 1_700_000_000
CONTRACT = "0x" + "ab" * 20
ORACLE = "0x" + "cd" * 20
TERMS_HASH = "0x" + "12" * 32


def bundle() -> dict[str, Any]:
    terms = parse_terms({
        "version": 1, "title": "t", "period_seconds": 100, "grace_seconds": 10,
        "kpis": [{"id": "uptime", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
    })
    samples = [Sample("uptime", 99.0, T0 + 5), Sample("uptime", 98.5, T0 + 50)]
    (finding,) = evaluate(terms, T0, T0 + 110, samples).findings
    return evidence_bundle(finding, chain_id=31337, contract=CONTRACT, escrow_id=7,
                           terms_hash_hex=TERMS_HASH, oracle=ORACLE)


def test_a_bundle_names_the_escrow_period_terms_rule_oracle_and_raw_samples() -> None:
    b = bundle()
    assert b["format"] == FORMAT and b["format_version"] == 2
    assert (b["chain_id"], b["escrow_id"], b["kind"], b["period"]) == (31337, 7, 1, 0)
    assert (b["period_start"], b["period_end"]) == (T0, T0 + 100)
    assert b["terms_hash"] == TERMS_HASH
    assert b["contract"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert b["oracle"] == "0xCdCDCdCdcdcdcdCdcDcDCdcDcDCdCdcdCdcDCDcD"
    assert b["rule"]["kpis"] == ["uptime"]
    assert b["kpis"] == [{
        "id": "uptime", "period": 0, "aggregate": "mean", "op": ">=", "threshold": 99.9,
        "value": 98.75, "verdict": "fail",
        "method": "arithmetic mean: math.fsum(values) / n", "sample_count": 2, "min_samples": 1,
        "samples": [{"kpi": "uptime", "value": 99.0, "observed_at": T0 + 5},
                    {"kpi": "uptime", "value": 98.5, "observed_at": T0 + 50}],
    }]


def test_the_hash_is_keccak_of_the_canonical_json() -> None:
    b = bundle()
    canonical = json.dumps(b, sort_keys=True, separators=(",", ":")).encode()
    canonical = canonical.replace(b"99.0}", b"99}")  # RFC 8785 writes integral floats bare
    assert bundle_hash(b) == "0x" + keccak(canonical).hex()


def test_the_hash_does_not_depend_on_key_order() -> None:
    b = bundle()
    reordered = json.loads(json.dumps(dict(reversed(list(b.items())))))
    assert list(reordered) != list(b)
    assert bundle_hash(reordered) == bundle_hash(b)
    reordered["period"] = 1
    assert bundle_hash(reordered) != bundle_hash(b)


def test_a_bundle_states_the_method_and_the_sample_count_of_every_kpi_and_period() -> None:
    terms = parse_terms({
        "version": 1, "title": "t", "period_seconds": 100, "grace_seconds": 0,
        "consecutive_periods": 2, "missing_data": "breach",
        "kpis": [{"id": "lat", "aggregate": "p95", "op": "<=", "threshold": 300},
                 {"id": "up", "aggregate": "mean", "op": ">=", "threshold": 99}],
    })
    samples = [Sample("lat", 100.0, T0 + 1 + i) for i in range(25)]  # period 0: 25 samples
    samples += [Sample("lat", 100.0, T0 + 101 + i) for i in range(3)]  # period 1: only 3
    samples += [Sample("up", 90.0, T0 + 50), Sample("up", 90.0, T0 + 150)]
    findings = evaluate(terms, T0, T0 + 200, samples).findings
    (streak,) = [f for f in findings if f.kind == 2]
    b = evidence_bundle(streak, chain_id=31337, contract=CONTRACT, escrow_id=7,
                        terms_hash_hex=TERMS_HASH, oracle=ORACLE)
    assert b["format_version"] == 2
    assert [(k["id"], k["period"], k["sample_count"], k["min_samples"], k["verdict"])
            for k in b["kpis"]] == [("lat", 0, 25, 20, "pass"), ("up", 0, 1, 1, "fail"),
                                     ("lat", 1, 3, 20, "missing"), ("up", 1, 1, 1, "fail")]
    lat = b["kpis"][0]
    assert lat["method"].startswith("nearest-rank percentile")
    assert "ceil(95 * n / 100)" in lat["method"]
    assert b["kpis"][2]["value"] is None and len(b["kpis"][2]["samples"]) == 3
    assert b["kpis"][1]["method"] == "arithmetic mean: math.fsum(values) / n"
    assert bundle_hash(json.loads(json.dumps(b))) == bundle_hash(b)

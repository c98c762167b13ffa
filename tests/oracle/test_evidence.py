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
    assert b["format"] == FORMAT and b["format_version"] == 1
    assert (b["chain_id"], b["escrow_id"], b["kind"], b["period"]) == (31337, 7, 1, 0)
    assert (b["period_start"], b["period_end"]) == (T0, T0 + 100)
    assert b["terms_hash"] == TERMS_HASH
    assert b["contract"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert b["oracle"] == "0xCdCDCdCdcdcdcdCdcDcDCdcDcDCdCdcdCdcDCDcD"
    assert b["rule"]["kpis"] == ["uptime"]
    assert b["kpis"] == [{
        "id": "uptime", "period": 0, "aggregate": "mean", "op": ">=", "threshold": 99.9,
        "value": 98.75, "verdict": "fail",
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

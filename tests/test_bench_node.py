"""`scripts/bench_node.py` reports the node's CPU per JSON-RPC method of a confirmation.

Run once as a subprocess with a few milestones (its own Hardhat node) under a hard time bound;
its JSON document is checked for its shape and the relations of its figures, never for
hard-coded figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hardhat

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_node.py"
COUNT = 6


def test_every_method_of_a_confirmation_is_measured_on_the_node() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", str(COUNT), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    methods = {figure["method"]: figure for figure in report["methods"]}
    assert len(methods) == 8
    sends = methods["eth_sendRawTransaction (automine), one at a time"]
    assert sends["count"] == COUNT
    assert methods["eth_blockNumber"]["count"] == 300
    for figure in methods.values():
        assert figure["wall_ms"] > 0
        assert figure["node_cpu_ms"] is not None and figure["node_cpu_ms"] >= 0
    assert methods["eth_getTransactionReceipt, one batch"]["count"] == COUNT
    assert report["mined"] == COUNT  # every transaction sent was mined and succeeded
    client = report["client_cpu_ms"]
    assert set(client) == {"service provider (backend/chain/connect.py)", "plain http.client"}
    assert all(ms > 0 for ms in client.values())

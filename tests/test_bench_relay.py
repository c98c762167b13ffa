"""`scripts/bench_relay.py` reports the relay's settlement beside the node's raw capacity.

The benchmark runs once as a subprocess with a small burst (8 confirmations, SQLite, its own
Hardhat node and stack) under a hard time bound; its JSON document is checked for its shape and
for the relations between its figures, never for hard-coded figures. Whatever happens, the
subprocess is told to stop (SIGTERM: it stops its node, its stack and its database) and killed
with its process group if it does not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import load_script

pytestmark = pytest.mark.hardhat

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_relay.py"
COUNT = 8
#: seconds the whole benchmark run may take
BOUND = 85.0


bench = load_script(SCRIPT)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM (the script unwinds and stops what it started), then SIGKILL of its group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--count", str(COUNT), "--db", "sqlite", "--json",
         "--timeout", "30"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        _stop(process)
        out, err = process.communicate()
        pytest.fail(f"the benchmark took more than {BOUND:.0f} s:\n{err[-3000:]}")
    finally:
        _stop(process)
    assert process.returncode == 0, err[-3000:]
    yield json.loads(out)


def _ordered(figures: dict[str, Any]) -> None:
    assert figures["p50"] is not None
    assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"]


def test_every_confirmation_is_answered_accepted_and_settled(report: dict[str, Any]) -> None:
    relay = report["relay"]
    assert report["count"] == COUNT and report["db"] == "sqlite"
    assert "separate processes" in report["mode"]
    assert relay["answers"] == {"2xx": COUNT, "503": 0, "4xx": 0, "5xx": 0, "error": 0}
    assert relay["accepted"] == relay["settled"] == COUNT
    assert relay["failed"] == relay["unsettled"] == 0
    _ordered(relay["post_ms"])
    _ordered(relay["settlement_s"])
    assert set(relay["server_post"]) == {"p50", "p99", "max"}
    assert 0 < relay["first_settled_s"] <= relay["seconds"]
    # the rate counts from the first sending to the last settlement seen
    assert relay["settled_per_s"] == pytest.approx(COUNT / relay["seconds"])
    assert relay["seconds"] >= relay["settlement_s"]["max"] > 0


def test_the_relay_alone_works_off_what_was_queued_while_it_was_stopped(
    report: dict[str, Any],
) -> None:
    """The relay's own pace: as many more confirmations queued with the relayer stopped, then
    settled by a relayer started afresh; the rate counts from its start to the last one."""
    alone, node = report["relay_alone"], report["node"]
    assert alone["queued"] == alone["settled"] == COUNT and alone["failed"] == 0
    assert alone["answers"] == {"2xx": COUNT, "503": 0, "4xx": 0, "5xx": 0, "error": 0}
    _ordered(alone["settlement_s"])
    assert alone["seconds"] == alone["settlement_s"]["max"] > 0
    assert alone["settled_per_s"] == pytest.approx(COUNT / alone["seconds"])
    assert alone["ratio"] == pytest.approx(alone["settled_per_s"] / node["capacity_per_s"])
    assert f"ratio {alone['ratio']:.2f} to the node" in bench.text_report(report)


def test_the_node_capacity_is_measured_on_successful_transactions(
    report: dict[str, Any],
) -> None:
    node = report["node"]
    assert node["transactions"] == node["mined"] == node["status_1"] == COUNT
    assert node["statuses"] == [1] * COUNT
    assert node["capacity_per_s"] > 0
    assert node["capacity_per_s"] == pytest.approx(COUNT / node["seconds"])
    assert 0 < node["send_seconds"] <= node["seconds"]


def test_the_ratio_and_the_verdicts_follow_from_the_figures(report: dict[str, Any]) -> None:
    relay, node, targets = report["relay"], report["node"], report["targets"]
    assert report["ratio"] == pytest.approx(relay["settled_per_s"] / node["capacity_per_s"])
    assert targets["ratio"]["verdict"] == (
        "met" if report["ratio"] >= bench.TARGET_RATIO else "missed")
    assert targets["settlement_p99_s"]["verdict"] == (
        "met" if relay["settlement_s"]["p99"] < bench.TARGET_SETTLEMENT_P99_S else "missed")
    machine = report["machine"]
    assert machine["cpus"] >= 1 and len(machine["load_before"]) == len(machine["load_after"]) == 3


def test_the_written_table_carries_the_run(report: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"## Relay\n\n{bench.BEGIN}\nold\n{bench.END}\n\n## KPI evaluation\n")
    monkeypatch.setattr(bench, "DOC", doc)
    bench.write_doc(bench.markdown(report))
    text = doc.read_text()
    assert "old" not in text and text.endswith("## KPI evaluation\n")
    block = text.split(bench.BEGIN)[1].split(bench.END)[0]
    row = next(line for line in block.splitlines() if line.startswith("| sqlite |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(COUNT) and cells[2] == str(COUNT)
    assert cells[-1] == f"{report['ratio']:.2f}"
    assert f"--count {COUNT} --db sqlite" in block


def test_each_process_is_charged_its_cpu_per_settled_confirmation(report: dict[str, Any]) -> None:
    """From the first POST to the last settlement: the API, the relayer, the indexer, the node,
    PostgreSQL's processes and the load generator, each in milliseconds per settlement."""
    cpu = report["relay"]["cpu_ms_per_settled"]
    assert {"serve", "relay", "index", "node", "load generator"} == set(cpu)  # SQLite: no server
    assert all(value >= 0 for value in cpu.values())
    assert cpu["serve"] > 0 and cpu["node"] > 0  # both worked for every confirmation
    assert "CPU ms per settled confirmation" in bench.text_report(report)


def test_a_process_is_charged_the_cpu_of_the_processes_it_started() -> None:
    """`escrow serve --workers N`'s API processes are its children: their CPU is its own, while
    they run (read from their own /proc entries) and once they ended (the parent's share of its
    waited-for children)."""
    running = subprocess.Popen(
        [sys.executable, "-c", "import sys\nwhile True: pass"], stdin=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        own, table = os.times(), bench.processes()
        alive = bench.cpu_seconds(os.getpid(), table)
        child = table[running.pid].cpu
        assert alive is not None and child > 0
        # the running child is counted, beside this process's own time and its ended children
        assert alive >= own.user + own.system + own.children_user + own.children_system \
            + child - 0.05
    finally:
        running.kill()
        running.wait()
    before = bench.cpu_seconds(os.getpid())
    child = subprocess.run(
        [sys.executable, "-c",
         "import time, os\nend = time.process_time() + 0.4\n"
         "while time.process_time() < end: pass\nt = os.times(); print(t.user + t.system)"],
        capture_output=True, text=True, check=True,
    )
    after = bench.cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= float(child.stdout) * 0.9
    assert bench.cpu_seconds(2**22 + 12345) is None  # no such process

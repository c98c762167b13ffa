"""The node behind a faulty connection: the service (API and workers, on PostgreSQL) speaks to the
Hardhat node through `tcp_proxy.FaultProxy`, which in seeded order drops, delays, cuts
(mid-answer, after the node acted) and freezes connections, each fault for `PHASE` seconds with
`PAUSE` seconds of health between, `ROUNDS` times. Meanwhile clients post signed confirmations,
bad KPI days wait for the oracle, new escrows for the indexer, and a prober asks the API.

Checked: the service keeps answering (every probe within `PROBE_LIMIT` s, never a 500), and once
the faults stop it accepts confirmations again (a client following `Retry-After`, within
`RECOVERY_LIMIT` s) and everything settles with nothing lost or done twice
(`check_nothing_lost_or_twice`: one settlement per confirmation, one report per bad day, nonces
without a gap, the audit consistent)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.confirmations.support import relay_services
from tests.faults.support import (
    SETTLE_LIMIT,
    Work,
    check_nothing_lost_or_twice,
    prepare_work,
    rng,
    service_in_process,
)
from tests.faults.tcp_proxy import FAULTS, fault_proxy
from tests.support import EscrowEnv, wait_for

#: seconds each fault lasts, seconds of a healthy connection between two, rounds of all four
PHASE, PAUSE, ROUNDS = 1.5, 0.5, 2
#: the longest any API answer may take while the faults go on, in s
PROBE_LIMIT = 5.0
#: once the faults stop, the API accepts confirmations again within this long, in s
RECOVERY_LIMIT = 15.0


def in_thread(body: Any, stop: threading.Event, every: float) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            body()
            stop.wait(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_service_rides_out_dropped_delayed_cut_and_frozen_node_connections(
    hardhat_env: EscrowEnv, fault_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = hardhat_env
    random = rng("rpc-faults")
    started = time.monotonic()
    services = relay_services(env, fault_pg, tmp_path / "data")
    work: Work = prepare_work(env, services, escrows=2, milestones=8, breaches=4)
    node = urlsplit(str(env.w3.provider.endpoint_uri))  # type: ignore[attr-defined]
    probes: list[tuple[str, str, float]] = []
    late: list[str] = []  # 503s after the faults stopped: "<seconds after>: <detail>"
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        with fault_proxy((node.hostname or "127.0.0.1", node.port or 8545)) as proxy, \
                service_in_process(env, fault_pg, tmp_path / "data", monkeypatch,
                                   rpc_url=proxy.url) as live, \
                httpx.Client(base_url=live.url) as http:
            watched = work.items[0].escrow_id

            def probe() -> None:
                for path in ("/api/health", f"/api/escrows/{watched}"):
                    begun = time.monotonic()
                    try:
                        answer = str(http.get(path, timeout=PROBE_LIMIT).status_code)
                    except httpx.HTTPError as exc:
                        answer = type(exc).__name__
                    probes.append((path, answer, time.monotonic() - begun))

            def post() -> None:
                todo = work.todo()
                if todo:
                    work.post(http, random.choice(todo), timeout=PROBE_LIMIT)

            def chain() -> None:
                work.create_escrow()
                work.ingest_bad_day()

            threads = [in_thread(probe, stop, 0.1), in_thread(post, stop, 0.05),
                       in_thread(chain, stop, 1.0)]
            schedule = [kind for _ in range(ROUNDS) for kind in random.sample(FAULTS, 4)]
            for kind in schedule:
                proxy.mode = kind
                time.sleep(PHASE)
                proxy.mode = "pass"
                time.sleep(PAUSE)
            faults = dict(proxy.counts)
            stop.set()
            for thread in threads:
                thread.join(PROBE_LIMIT * 3)
            ended = time.monotonic()
            for item in work.todo():  # what the faults refused, asked again as a client would:
                while True:  # after the Retry-After of a 503, until RECOVERY_LIMIT
                    answer = http.post(item.path, json=item.body, timeout=10)
                    item.answers.append(str(answer.status_code))
                    if answer.status_code in (202, 409):
                        break
                    assert answer.status_code == 503, answer.text
                    assert time.monotonic() - ended < RECOVERY_LIMIT, (answer.text, late)
                    late.append(f"{time.monotonic() - ended:.1f} s: {answer.json()['detail']}")
                    time.sleep(min(float(answer.headers["Retry-After"]), 1.0))
            while work.ingest_bad_day() is not None:
                pass
            wait_for("everything settled", work.settled, SETTLE_LIMIT, 0.2)
        totals = check_nothing_lost_or_twice(work)
    finally:
        stop.set()
        services.engine.dispose()
    answers = Counter(a for i in work.items for a in i.answers)
    slowest = max(p[2] for p in probes)
    print(f"faults {schedule}: requests hit {faults}; confirmations answered {dict(answers)}; "
          f"{len(probes)} probes, answers {dict(Counter(p[1] for p in probes))}, slowest "
          f"{slowest:.2f} s; 503 after the faults {late}; {totals}; "
          f"{time.monotonic() - started:.1f} s")
    assert all(faults.get(kind, 0) > 0 for kind in FAULTS), faults
    assert all(p[1] in ("200", "503") for p in probes), Counter(p[1] for p in probes)
    assert slowest < PROBE_LIMIT
    assert "500" not in answers

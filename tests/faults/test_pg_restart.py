"""PostgreSQL restarted under load: the service (API and workers) runs on a private PostgreSQL
cluster (its own folder and port; the system server is never touched) while client threads read
escrows and post signed confirmations and new escrows and bad KPI days arrive; the cluster is
restarted twice, once cleanly (`pg_ctl stop -m fast`: sessions terminated) and once as a crash
(`-m immediate`: recovery from the write-ahead log at the next start).

Checked: every answer is a success, a refusal of the request itself (409), or 503
`database_unavailable` with `Retry-After` (never a 500); requests were in flight at each stop;
the service recovers by itself (the pool pre-pings its connections: no request that begins a
moment after the server is back fails, `RECOVERY_LIMIT`); nothing is half-written (a
confirmation is stored with its review or not at all) and, once the load stops, everything
settles with nothing lost or done twice (`check_nothing_lost_or_twice`)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.confirmations.support import relay_services
from tests.faults.support import (
    SETTLE_LIMIT,
    PrivateCluster,
    check_nothing_lost_or_twice,
    prepare_work,
    rng,
    service_in_process,
)
from tests.support import EscrowEnv, wait_for

#: how the cluster is stopped before each start
RESTARTS = ("fast", "immediate")
#: seconds of load before the first restart and after each one
LOAD_BEFORE, LOAD_AFTER = 1.0, 2.0
#: reading clients (one more posts confirmations)
READERS = 3
#: a request that begins this long after the server is back must succeed, in s
RECOVERY_LIMIT = 1.0


@dataclass(frozen=True)
class Answer:
    path: str
    begun: float
    ended: float
    status: str
    retry_after: str | None = None
    code: str | None = None


def ask(http: httpx.Client, method: str, path: str, **kwargs: object) -> Answer:
    begun = time.monotonic()
    try:
        response = http.request(method, path, timeout=10, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        return Answer(path, begun, time.monotonic(), type(exc).__name__)
    code = None
    if response.status_code >= 400:
        try:
            code = response.json().get("error")
        except ValueError:  # not the API's refusal body (a 500's plain text)
            code = response.text[:80]
    return Answer(path, begun, time.monotonic(), str(response.status_code),
                  response.headers.get("Retry-After"), code)


def test_requests_in_flight_when_postgresql_restarts_answer_503_and_the_service_recovers(
    hardhat_env: EscrowEnv, private_pg: PrivateCluster, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = hardhat_env
    random = rng("pg-restart")
    started = time.monotonic()
    services = relay_services(env, private_pg.url, tmp_path / "data")
    work = prepare_work(env, services, escrows=2, milestones=10, breaches=2)
    answers: list[Answer] = []
    downs: list[tuple[float, float, float]] = []  # stop asked, stopped, started again
    stop = threading.Event()
    try:
        with service_in_process(env, private_pg.url, tmp_path / "data", monkeypatch) as live:
            paths = ["/api/health", "/api/escrows"] + [
                f"/api/escrows/{e}" for e in {i.escrow_id for i in work.items}
            ]

            def read() -> None:
                with httpx.Client(base_url=live.url) as http:
                    while not stop.is_set():
                        answers.append(ask(http, "GET", random.choice(paths)))

            def post() -> None:
                with httpx.Client(base_url=live.url) as http:
                    while not stop.is_set() and work.todo():
                        item = work.todo()[0]
                        answer = ask(http, "POST", item.path, json=item.body)
                        item.answers.append(answer.status)
                        answers.append(answer)
                        stop.wait(0.05)

            threads = [threading.Thread(target=read, daemon=True) for _ in range(READERS)]
            threads.append(threading.Thread(target=post, daemon=True))
            for thread in threads:
                thread.start()
            time.sleep(LOAD_BEFORE)
            for mode in RESTARTS:
                asked = time.monotonic()
                private_pg.stop(mode)
                stopped = time.monotonic()
                private_pg.start()
                downs.append((asked, stopped, time.monotonic()))
                time.sleep(LOAD_AFTER)
            stop.set()
            load_ended = time.monotonic()
            for thread in threads:
                thread.join(15)
            assert not any(t.is_alive() for t in threads)

            # nothing half-written, then everything settles once the load stops
            with httpx.Client(base_url=live.url) as http:
                for item in work.todo():
                    status = ask(http, "POST", item.path, json=item.body).status
                    item.answers.append(status)
                    assert status in ("202", "409"), status
            work.create_escrow()
            while work.ingest_bad_day() is not None:
                pass
            wait_for("everything settled", work.settled, SETTLE_LIMIT, 0.2)
            alive = [t.name for t in live.threads if t.is_alive()]
        totals = check_nothing_lost_or_twice(work)
    finally:
        stop.set()
        services.engine.dispose()

    statuses = Counter(a.status for a in answers)
    refused = [a for a in answers if a.status == "503"]
    in_flight = [sum(a.begun < stopped and a.ended > asked for a in answers)
                 for asked, stopped, _ in downs]
    recovery = []
    for _, _, back in downs:
        first_ok = min((a.ended for a in answers if a.begun >= back and a.status < "300"),
                       default=float("inf"))
        recovery.append(first_ok - back)
    ends = [asked for asked, _, _ in downs[1:]] + [load_ended]
    late = [a for (_, _, back), end in zip(downs, ends, strict=True) for a in answers
            if a.status == "503" and back + RECOVERY_LIMIT <= a.begun and a.ended < end]
    print(f"restarts {RESTARTS}: {len(answers)} requests, answers {dict(statuses)}; in flight "
          f"at each stop {in_flight}; 503 {len(refused)}; down for "
          f"{[round(b - a, 2) for a, _, b in downs]} s; first success "
          f"{[round(r, 2) for r in recovery]} s after each start; workers alive {alive}; "
          f"{totals}; {time.monotonic() - started:.1f} s")
    assert set(statuses) <= {"200", "202", "409", "503"}, statuses
    assert all(a.retry_after == "2" and a.code == "database_unavailable" for a in refused), [
        (a.path, a.retry_after, a.code) for a in refused if a.code != "database_unavailable"]
    assert all(n > 0 for n in in_flight) and refused
    assert all(r < RECOVERY_LIMIT for r in recovery), recovery
    assert not late, [(a.path, round(a.begun - downs[0][2], 2)) for a in late]
    assert len(alive) == len(live.threads)

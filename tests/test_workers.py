"""The workers' threads under `backend.workers.supervise`: a worker that stops with an error is
started again after a bounded exponential backoff, and `/api/health` says so meanwhile (degraded,
naming the worker, its error, its restarts and the next attempt), ok again once it runs. A sender
with no key configured is not started and reported `off`."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.chain.keys import KeyNotConfigured
from backend.config import Settings
from backend.services import Services, WorkerBoard, build_services
from backend.workers import RestartPolicy, start_workers, supervise
from tests.support import EscrowEnv


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def test_restart_delays_double_from_the_base_up_to_the_cap() -> None:
    policy = RestartPolicy(base=1.0, cap=60.0)
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10_000) == 60


def test_a_worker_that_raises_is_started_again_with_backoff_and_its_state_kept() -> None:
    board = WorkerBoard()
    stop = threading.Event()
    started: list[float] = []

    def run() -> None:
        started.append(time.monotonic())
        if len(started) <= 3:
            raise RuntimeError(f"boom {len(started)}")
        stop.wait()

    thread = threading.Thread(
        target=supervise("indexer", run, stop, board, RestartPolicy(base=0.1, cap=0.3))
    )
    thread.start()
    try:
        wait_for(lambda: len(started) == 4)
        wait_for(lambda: board.get("indexer") is not None
                 and board.get("indexer").state == "running")  # type: ignore[union-attr]
        status = board.get("indexer")
        assert status is not None
        assert (status.state, status.restarts, status.error, status.next_attempt_at) == (
            "running", 3, "RuntimeError: boom 3", None
        )
    finally:
        stop.set()
        thread.join(5)
    gaps = [b - a for a, b in itertools.pairwise(started)]
    print(f"\nrestart gaps (base 0.1 s, cap 0.3 s): {', '.join(f'{g:.3f}' for g in gaps)} s")
    for gap, delay in zip(gaps, (0.1, 0.2, 0.3), strict=True):  # doubling, capped at 0.3
        assert delay <= gap < delay + 0.25, gaps
    assert board.get("indexer").state == "stopped"  # type: ignore[union-attr]


# ------------------------------------------------------------------ in the service


@pytest.fixture
def services(env: EscrowEnv, tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path, contract_address=env.escrow.address,
        database_url=f"sqlite:///{tmp_path / 'escrow.db'}", index_poll_interval=0.05,
        worker_restart_base=0.5, worker_restart_max=2.0, health_node_timeout=2.0,
    )
    built = build_services(settings, w3=env.w3, deployment_block=env.deployment_block)
    try:
        yield built
    finally:
        built.engine.dispose()


def health(services: Services) -> dict[str, Any]:
    response = TestClient(create_app(services)).get("/api/health")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_a_crashed_indexer_is_restarted_and_health_is_degraded_until_it_runs_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend import workers

    real = workers.run_index_worker
    crashes = [RuntimeError("the indexer exploded")] * 2

    def flaky(services: Services, stop: threading.Event) -> None:
        if crashes:
            raise crashes.pop()
        real(services, stop)

    monkeypatch.setattr(workers, "run_index_worker", flaky)
    running = start_workers(services, ("indexer",))
    try:
        wait_for(lambda: (services.workers.get("indexer") or _never()).state == "restarting")
        body = health(services)
        assert body["status"] == "degraded"
        (worker,) = body["workers"]
        assert worker["name"] == "indexer" and worker["state"] == "restarting"
        assert worker["error"] == "RuntimeError: the indexer exploded"
        assert worker["next_attempt_at"] > time.time() - 1
        assert (
            "worker indexer stopped with an error (RuntimeError: the indexer exploded); "
            f"restarted {worker['restarts']} times so far, next attempt in "
        ) in body["reason"]
        start = time.monotonic()
        wait_for(lambda: health(services)["status"] == "ok")
        print(f"\nhealth ok again {time.monotonic() - start:.2f} s after the degraded answer "
              "(two crashes, restarts after 0.5 s and 1.0 s)")
        body = health(services)
        assert body["workers"] == [{
            "name": "indexer", "state": "running", "error": "RuntimeError: the indexer exploded",
            "restarts": 2, "next_attempt_at": None,
        }]
    finally:
        running.shutdown()
    assert (services.workers.get("indexer") or _never()).state == "stopped"


def test_a_sender_without_a_key_is_off_and_health_says_so(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend import workers

    def no_key(services: Services) -> Any:
        raise KeyNotConfigured("relayer", 1)

    monkeypatch.setitem(workers.SENDERS, "relayer", no_key)
    running = start_workers(services, ("relayer",))
    try:
        assert running.threads == []
        body = health(services)
    finally:
        running.shutdown()
    assert body["workers"] == [{
        "name": "relayer", "state": "off", "restarts": 0, "next_attempt_at": None,
        "error": "no relayer key: set ESCROW_RELAYER_KEYSTORE and its password (development "
                 "keys are accepted only on chain id 31337, this is 1)",
    }]
    assert body["status"] == "degraded"
    assert "worker relayer is off: no relayer key" in body["reason"]


def _never() -> Any:
    raise AssertionError("the worker was never reported")

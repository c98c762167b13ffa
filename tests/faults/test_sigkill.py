"""SIGKILL drill on PostgreSQL and a Hardhat node: the whole service (`escrow serve`: the API, the
indexer, the relayer, the oracle and the webhook dispatcher in one process) is killed with SIGKILL
`CYCLES` times while clients post signed confirmations, bad KPI days wait for the oracle and new
escrows wait for the indexer; each time it is started again on the same database. Then it runs
until idle and nothing may be lost or done twice: every confirmation a client was told is queued
mined exactly once, every breach reported exactly once, each sender's nonces without a gap and
nothing pending, every escrow indexed, and the chain-only audit consistent.

Where each cycle kills is seeded (`ESCROW_FAULT_SEED`, printed; the kill point of every cycle is
printed too): during start-up, at a random moment of work, as soon as a transaction is signed but
not yet broadcast, or as soon as one is sent but not yet settled. The processes are forked from
a zygote that has the service's imports done (tests/faults/zygote.py), which keeps thirty
restarts within the suite's time budget."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path

import httpx

from backend.services import Services
from tests.confirmations.support import relay_services
from tests.faults.support import (
    ROOT,
    SETTLE_LIMIT,
    START_LIMIT,
    Work,
    Zygote,
    answers,
    check_nothing_lost_or_twice,
    free_port,
    prepare_work,
    rng,
)
from tests.support import EscrowEnv, wait_for

#: service processes killed (the issue asks for at least 30)
CYCLES = int(os.environ.get("ESCROW_FAULT_KILLS", "30"))
#: the work: confirmations (escrows x milestones) and breach escrows (one bad day each)
ESCROWS, MILESTONES, BREACHES = 5, 12, 15
#: how each cycle picks its kill point, with weights
KILL_POINTS = {"startup": 1, "random": 3, "signed": 2, "sent": 2}
#: the longest a cycle waits for a signed (sent) transaction before killing anyway, in s
CATCH_LIMIT = 4.0


def environ(env: EscrowEnv, url: str, data_dir: Path) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    return {
        **kept,
        "PYTHONPATH": str(ROOT),
        "ESCROW_RPC_URL": str(env.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        "ESCROW_DATA_DIR": str(data_dir),
        "ESCROW_DATABASE_URL": url,
        "ESCROW_CONTRACT_ADDRESS": env.escrow.address,
        "ESCROW_LEASE_POLL_INTERVAL": "0.1",
        "ESCROW_INDEX_POLL_INTERVAL": "0.2",
        "ESCROW_FAULT_SENDER_INTERVAL": "0.2",
    }


def poster(work: Work, url: str, count: int, stop: threading.Event) -> threading.Thread:
    """A client thread: once the service answers, posts up to `count` confirmations not yet
    queued, one after the other, until told to stop (the kill cuts it short)."""

    def run() -> None:
        with httpx.Client(base_url=url) as http:
            while not stop.is_set() and not answers(url, 0.5):
                stop.wait(0.05)
            for item in work.todo()[:count]:
                if stop.is_set():
                    return
                work.post(http, item, timeout=5)

    thread = threading.Thread(target=run, name="poster", daemon=True)
    thread.start()
    return thread


def in_flight(work: Work) -> int:
    """Outbox transactions signed or sent but not settled."""
    s = work.statuses()["transactions"]
    return s.get("signed", 0) + s.get("sent", 0)


def test_the_service_killed_thirty_times_loses_nothing_and_sends_nothing_twice(
    hardhat_env: EscrowEnv, fault_pg: str, tmp_path: Path
) -> None:
    env = hardhat_env
    random = rng("sigkill")
    started = time.monotonic()
    services: Services = relay_services(env, fault_pg, tmp_path / "data")
    logs = tmp_path / "logs"
    logs.mkdir()
    zygote = Zygote(environ(env, fault_pg, tmp_path / "data"), logs)
    try:
        work = prepare_work(env, services, escrows=ESCROWS, milestones=MILESTONES,
                            breaches=BREACHES)
        per_cycle = -(-len(work.items) // CYCLES)  # every confirmation posted before the end
        kinds = list(KILL_POINTS)
        points: Counter[str] = Counter()
        mid_send = rows_at_kills = 0
        print(f"prepared in {time.monotonic() - started:.1f} s: {len(work.items)} "
              f"confirmations, {BREACHES} breach escrows")
        for cycle in range(CYCLES):
            if cycle % 2 == 0:
                work.ingest_bad_day()
            work.create_escrow()
            point = random.choices(kinds, [KILL_POINTS[k] for k in kinds])[0]
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            stop = threading.Event()
            begun = time.monotonic()
            pid = zygote.start(["serve", "--port", str(port), "--standby"],
                               logs / f"serve-{cycle}.log")
            up = None
            client = poster(work, url, per_cycle, stop)
            if point == "startup":
                time.sleep(random.uniform(0.1, 1.5))
            else:
                wait_for("the service answers", partial(answers, url, 0.5), START_LIMIT)
                up = time.monotonic() - begun
                if point == "random":
                    time.sleep(random.uniform(0.0, 2.0))
                else:
                    deadline = time.monotonic() + CATCH_LIMIT
                    wanted = point
                    while time.monotonic() < deadline:
                        if work.statuses()["transactions"].get(wanted, 0):
                            break
                        time.sleep(0.005)
            code = zygote.kill(pid)
            assert code == -9, (cycle, code)
            stop.set()
            client.join(15)
            assert not client.is_alive()
            at_kill = in_flight(work)
            mid_send += at_kill > 0
            rows_at_kills += at_kill
            points[point] += 1
            print(f"cycle {cycle}: killed at {point} after {time.monotonic() - begun:.2f} s "
                  + (f"(answering after {up:.2f} s)" if up else "")
                  + f", {at_kill} transactions signed or sent; answers so far "
                  f"{dict(Counter(a for i in work.items for a in i.answers))}")

        # the last start: post what is left, run until idle, stop cleanly
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        pid = zygote.start(["serve", "--port", str(port), "--standby"], logs / "serve-last.log")
        wait_for("the service answers", lambda: answers(url, 0.5), START_LIMIT)
        while work.ingest_bad_day() is not None:
            pass
        with httpx.Client(base_url=url) as http:
            for item in work.todo():
                assert work.post(http, item) in ("202", "409"), item.answers
        wait_for("everything settled", work.settled, SETTLE_LIMIT, 0.2)
        assert zygote.stop(pid) == 0, (logs / "serve-last.log").read_text()[-3000:]
        totals = check_nothing_lost_or_twice(work)
        print(f"{CYCLES} SIGKILLs {dict(points)}; {mid_send} with transactions signed or sent "
              f"at the kill ({rows_at_kills} in all); confirmations answered "
              f"{dict(Counter(a for i in work.items for a in i.answers))}; {totals}; "
              f"{time.monotonic() - started:.1f} s")
        assert mid_send >= CYCLES // 4  # the drill did kill senders mid-send
    finally:
        zygote.close()
        services.engine.dispose()

"""Worker takeover on real PostgreSQL and a Hardhat node, with work in flight: two `escrow relay`
(or `escrow oracle`) processes on one fresh database, one active and one on standby; the active
one is SIGKILLed after a seeded number of its transactions are out but before they are settled;
the standby takes the lease within seconds (printed) and finishes the work. At the end every
confirmation (breach report) is settled exactly once: one event on the chain per milestone
(escrow), every row mined, one transaction per row, the account's nonces without a gap. And the
API serves from several processes (`escrow serve --no-workers --workers 2`).

The kill point is `random.Random(ESCROW_TAKEOVER_SEED).randint(...)` rows sent (default seed 11);
every wait is bounded."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import Engine, create_engine, select, text

from backend.chain.keys import oracle_account, relayer_account
from backend.confirmations.outbox import enqueue
from backend.db.models import BreachSubmission, ConfirmationRequest, EscrowRow, OutboxTransaction
from backend.index.indexer import Indexer
from backend.oracle.measurements import ingest_raw
from backend.oracle.terms_store import store_terms
from backend.outbox.owner import lock_key
from backend.services import Services
from tests.confirmations.support import relay_services
from tests.db_fixture import fresh_pg_database
from tests.support import DAY, ETH, EscrowEnv, wait_for

ROOT = Path(__file__).resolve().parents[2]
ESCROW = [sys.executable, "-c", "from backend.cli import app; app()"]
SEED = int(os.environ.get("ESCROW_TAKEOVER_SEED", "11"))
#: ESCROW_LEASE_POLL_INTERVAL of the worker processes
POLL = 0.25
#: the most a standby may take to become active after the holder's death, in seconds
TAKEOVER_LIMIT = 10.0
#: a process's start (imports, migrations, keys) may take this long
START_LIMIT = 90.0
#: confirmations (rows) queued for the relayer, escrows with a bad day for the oracle
CONFIRMATIONS = 20
BREACHES = 10

TERMS = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": DAY,
    "grace_seconds": 3_600,
    "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
    "acceptance_criteria": ["reachable"],
}



@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A new PostgreSQL database (migrated) for this test alone, dropped afterwards."""
    with fresh_pg_database("qe_takeover") as url:
        yield url


class Process:
    """An `escrow` command in a process of its own, its output in a file."""

    def __init__(self, args: list[str], environ: dict[str, str], log: Path) -> None:
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.popen = subprocess.Popen(
            [*ESCROW, *args], cwd=ROOT, env=environ, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        finally:
            self._out.close()

    def ensure_dead(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._out.close()


class Leases:
    """What PostgreSQL says about the workers' leases in the test database."""

    def __init__(self, url: str, chain_id: int) -> None:
        self.engine: Engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.chain_id = chain_id

    def holder(self, worker: str, subject: str) -> int | None:
        """The OS pid of the process holding the lease (its lease connection's name)."""
        key = lock_key(worker, self.chain_id, subject)
        with self.engine.connect() as conn:
            name = conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1"
                " AND l.database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ), {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar()
        found = re.search(r"pid (\d+)", name or "")
        return int(found.group(1)) if found else None

    def connected(self, worker: str, pid: int) -> bool:
        """Whether the process has its lease connection open (a standby polls on it)."""
        with self.engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = :n"
            ), {"n": f"escrow {worker} pid {pid}"}).scalar())


@dataclass
class Drill:
    """The service of one takeover drill: the chain, the fresh database, the processes."""

    env: EscrowEnv
    url: str
    data_dir: Path
    services: Services
    leases: Leases
    logs: Path

    def environ(self) -> dict[str, str]:
        kept = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
        return {
            **kept,
            "PYTHONPATH": str(ROOT),
            "ESCROW_RPC_URL": str(self.env.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
            "ESCROW_DATA_DIR": str(self.data_dir),
            "ESCROW_DATABASE_URL": self.url,
            "ESCROW_CONTRACT_ADDRESS": self.env.escrow.address,
            "ESCROW_LEASE_POLL_INTERVAL": str(POLL),
        }

    def start(self, args: list[str], label: str) -> Process:
        return Process(args, self.environ(), self.logs / f"{label}.log")

    def takeover(
        self, command: str, worker: str, subject: str, queue: Callable[[], int],
        statuses: Callable[[], list[str]],
    ) -> tuple[float, list[str]]:
        """Starts the active and the standby process, queues the work (`queue()`: how many rows
        it makes), kills the active one after a seeded number of rows are sent, and waits for
        the standby to settle everything. Returns (takeover seconds, statuses at the kill)."""
        first = self.start([command], f"{command}-first")
        second: Process | None = None
        try:
            wait_for(f"the first {command} holds the lease",
                     lambda: self.leases.holder(worker, subject) == first.pid, START_LIMIT, 0.1)
            second = self.start([command], f"{command}-second")
            standby = second
            wait_for(f"the second {command} stands by",
                     lambda: self.leases.connected(worker, standby.pid)
                     and "standby: another" in standby.output(), START_LIMIT, 0.1)
            assert self.leases.holder(worker, subject) == first.pid
            rows = queue()
            sent_before_kill = random.Random(SEED).randint(3, rows // 2)
            wait_for(f"{sent_before_kill} rows sent",
                     lambda: sum(s in ("sent", "mined") for s in statuses()) >= sent_before_kill,
                     60, 0.005)
            first.popen.kill()
            killed = time.monotonic()
            assert first.stop(timeout=10) == -signal.SIGKILL
            at_kill = statuses()
            wait_for("the standby takes the lease",
                     lambda: self.leases.holder(worker, subject) == standby.pid,
                     TAKEOVER_LIMIT, 0.01)
            took = time.monotonic() - killed
            counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(at_kill).items()))
            print(f"\n{command}: SIGKILL once {sent_before_kill} of {rows} rows were sent (seed "
                  f"{SEED}; rows then: {counts}); the standby was active {took:.2f} s later "
                  f"(lease poll {POLL} s)")
            wait_for("every row settled",
                     lambda: (s := statuses()) and len(s) == rows
                     and all(x == "mined" for x in s), 60, 0.1)
            assert "active: the" in standby.output()
            assert standby.stop(signal.SIGTERM, 30) == 0, standby.output()[-3000:]
            assert standby.output().rstrip().endswith("stopped"), standby.output()[-3000:]
            return took, at_kill
        finally:
            first.ensure_dead()
            if second is not None:
                second.ensure_dead()

    def transactions(self, sender: str) -> list[OutboxTransaction]:
        with self.services.sessions() as session:
            return list(session.scalars(
                select(OutboxTransaction).where(OutboxTransaction.sender == sender)
                .order_by(OutboxTransaction.id)
            ))


@pytest.fixture
def drill(hardhat_env: EscrowEnv, fresh_pg: str, tmp_path: Path) -> Iterator[Drill]:
    services = relay_services(hardhat_env, fresh_pg, tmp_path / "data")
    leases = Leases(fresh_pg, services.chain_id)
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        yield Drill(hardhat_env, fresh_pg, tmp_path / "data", services, leases, logs)
    finally:
        leases.engine.dispose()
        services.engine.dispose()


def assert_one_transaction_per_row(
    drill: Drill, sender: str, account: str, first_nonce: int, rows: int, linked: list[int]
) -> None:
    """Each row's own mined transaction, the account's nonces from `first_nonce` without a gap,
    and nothing else the account sent."""
    w3 = drill.env.w3
    checksum = w3.to_checksum_address(account)
    assert w3.eth.get_transaction_count(checksum, "latest") == first_nonce + rows  # no duplicate
    assert w3.eth.get_transaction_count(checksum, "pending") == first_nonce + rows  # none stuck
    txs = drill.transactions(sender)
    mined = [t for t in txs if t.status == "mined"]
    assert sorted(t.nonce for t in mined) == list(range(first_nonce, first_nonce + rows))
    assert sorted(t.id for t in mined) == sorted(linked)  # every row points at its own
    assert all(t.status == "mined" for t in txs), [(t.nonce, t.status) for t in txs]


def test_a_standby_relayer_takes_over_a_killed_one_and_relays_every_confirmation_once(
    drill: Drill,
) -> None:
    env, services = drill.env, drill.services
    relayer = relayer_account(env.w3, services.settings).address
    first_nonce = env.w3.eth.get_transaction_count(relayer, "latest")
    escrow_id = env.create_active(env.params((ETH,) * CONFIRMATIONS))
    Indexer(services).sync()

    def queue() -> int:
        """The confirmations, as the API writes them (one database transaction)."""
        with services.sessions() as session, session.begin():
            for milestone in range(CONFIRMATIONS):
                c = env.confirmation(escrow_id, milestone, rating=1 + milestone % 5)
                enqueue(
                    session, chain_id=services.chain_id, escrow_id=escrow_id,
                    milestone=milestone, rating=c.rating, comment_hash="0x" + c.comment_hash.hex(),
                    deadline=c.deadline, signature="0x" + env.sign(c).hex(), signer=env.client,
                )
        return CONFIRMATIONS

    def statuses() -> list[str]:
        with services.sessions() as session:
            return list(session.scalars(
                select(ConfirmationRequest.status).order_by(ConfirmationRequest.milestone)
            ))

    took, at_kill = drill.takeover("relay", "relayer", relayer, queue, statuses)
    assert took < TAKEOVER_LIMIT
    assert any(s != "mined" for s in at_kill)  # killed with work in flight

    logs = env.escrow.contract.events.MilestoneSettled.get_logs(
        from_block=env.deployment_block, to_block="latest", argument_filters={"escrowId": escrow_id}
    )
    settled = sorted(int(log["args"]["milestone"]) for log in logs)
    assert settled == list(range(CONFIRMATIONS))  # each milestone confirmed exactly once
    with services.sessions() as session:
        rows = list(session.scalars(select(ConfirmationRequest)))
    assert {r.status for r in rows} == {"mined"} and len(rows) == CONFIRMATIONS
    by_tx = {"0x" + bytes(log["transactionHash"]).hex() for log in logs}
    assert {t.tx_hash for t in drill.transactions("relayer")} == by_tx
    linked = [r.transaction_id for r in rows if r.transaction_id is not None]
    assert_one_transaction_per_row(drill, "relayer", relayer, first_nonce, CONFIRMATIONS, linked)


def test_a_standby_oracle_takes_over_a_killed_one_and_reports_every_breach_once(
    drill: Drill,
) -> None:
    env, services = drill.env, drill.services
    oracle = oracle_account(env.w3, services.settings).address
    with services.sessions() as session, session.begin():
        terms_hash = store_terms(session, TERMS)
    escrows = [
        env.create_active(env.params((ETH,), terms_hash=terms_hash)) for _ in range(BREACHES)
    ]
    Indexer(services).sync()
    env.advance(DAY + 3_600 + 60)  # every escrow's first day and its grace interval are over
    first_nonce = env.w3.eth.get_transaction_count(oracle, "latest")

    def queue() -> int:
        """A day of bad uptime for every escrow, stored as the API stores it (one database
        transaction): the oracle finds one breach each."""
        now = env.now()
        with services.sessions() as session, session.begin():
            for escrow_id in escrows:
                row = session.get(EscrowRow, (services.chain_id, escrow_id))
                assert row is not None and row.accepted_at is not None
                samples = [
                    {"kpi": "uptime_pct", "value": 97.5,
                     "observed_at": row.accepted_at + 1_800 + 3_600 * hour}
                    for hour in range(24)
                ]
                ingest_raw(session, services.chain_id, escrow_id, samples, now)
        return BREACHES

    def statuses() -> list[str]:
        with services.sessions() as session:
            return list(session.scalars(
                select(BreachSubmission.status).order_by(BreachSubmission.escrow_id)
            ))

    took, at_kill = drill.takeover("oracle", "oracle", oracle, queue, statuses)
    assert took < TAKEOVER_LIMIT
    assert any(s != "mined" for s in at_kill)  # killed with work in flight

    for escrow_id in escrows:
        logs = env.escrow.contract.events.BreachReported.get_logs(
            from_block=env.deployment_block, to_block="latest",
            argument_filters={"escrowId": escrow_id},
        )
        assert len(logs) == 1, (escrow_id, len(logs))  # reported exactly once
    with services.sessions() as session:
        rows = list(session.scalars(select(BreachSubmission)))
    assert sorted(r.escrow_id for r in rows) == sorted(escrows)
    assert {(r.status, r.period, r.kind) for r in rows} == {("mined", 0, 1)}
    linked = [r.report_tx_id for r in rows if r.report_tx_id is not None]
    assert_one_transaction_per_row(drill, "oracle", oracle, first_nonce, BREACHES, linked)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api_processes(pid: int) -> list[int]:
    """The API processes uvicorn's supervisor `pid` spawned (not multiprocessing's helpers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    found = []
    for child in (path.read_text().split() if path.exists() else []):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:  # gone meanwhile
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_the_api_serves_from_several_processes_on_postgresql(drill: Drill) -> None:
    port = _free_port()
    serve = drill.start(["serve", "--no-workers", "--workers", "2", "--port", str(port)], "serve")
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the API answers", healthy, START_LIMIT, 0.2)
        processes = wait_for(
            "two API processes", lambda: len(p := _api_processes(serve.pid)) == 2 and p, 30, 0.1
        )
        for _ in range(20):  # a new connection each time: the processes share the socket
            answer = httpx.get(f"{base}/api/config", timeout=10)
            assert answer.status_code == 200
            assert answer.json()["contract"] == drill.env.escrow.address
        assert serve.stop(signal.SIGTERM, 30) == 0, serve.output()[-3000:]
        wait_for("the API processes stop", lambda: not any(map(_alive, processes)), 10, 0.1)
    finally:
        serve.ensure_dead()

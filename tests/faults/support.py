"""Scaffolding of the fault suites: seeds, bounded waits, the zygote that forks service processes
(`zygote.py`), a private PostgreSQL cluster, the work the service is given (signed confirmations,
bad KPI days, new escrows) and the checks run once the faults stop: nothing lost, nothing sent
twice, no nonce gap, the chain-only audit consistent."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from backend.api.app import create_app
from backend.audit.verify import audit_all
from backend.chain.keys import oracle_account, relayer_account
from backend.db.models import (
    BreachSubmission,
    ConfirmationRequest,
    EscrowRow,
    OutboxTransaction,
    Review,
)
from backend.db.session import make_engine, migrate
from backend.index.indexer import Indexer
from backend.oracle.measurements import ingest_raw
from backend.oracle.terms_store import store_terms
from backend.services import Services
from tests.confirmations.support import TestClient, sign
from tests.support import DAY, ETH, EscrowEnv

ROOT = Path(__file__).resolve().parents[2]
#: the seed of every fault suite (`ESCROW_FAULT_SEED`); each test derives its own from it
SEED = int(os.environ.get("ESCROW_FAULT_SEED", "12"))
#: a service process's start (fork, settings, migrations check, keys) may take this long, in s
START_LIMIT = 60.0
#: once the faults stop, everything queued must be settled within this long, in s
SETTLE_LIMIT = 90.0

TERMS = {
    "version": 1,
    "title": "Managed hosting SLA",
    "period_seconds": DAY,
    "grace_seconds": 3_600,
    "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9}],
    "acceptance_criteria": ["reachable"],
}


def rng(test: str) -> random.Random:
    """The test's own seeded generator (`ESCROW_FAULT_SEED`, default 12), printed to rerun it."""
    print(f"\n{test}: seed {SEED} (ESCROW_FAULT_SEED)")
    return random.Random(f"{SEED}:{test}")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether the service at `url` answers its health route (any status)."""
    try:
        httpx.get(f"{url}/api/health", timeout=timeout)
        return True
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------- service processes


def _zombie_or_gone(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


class Zygote:
    """`python -m tests.faults.zygote`: forks `escrow` processes that have the service's imports
    already done (see zygote.py). Every child it started is killed by `close`."""

    def __init__(self, environ: dict[str, str], logs: Path) -> None:
        self.logs = logs
        self._err: IO[bytes] = (logs / "zygote.log").open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.zygote"], cwd=ROOT, env=environ,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
        )
        self.children: set[int] = set()
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died: " + (self.logs / "zygote.log").read_text())
        return line.strip()

    def _ask(self, command: str) -> str:
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()
        return self._read()

    def start(self, args: list[str], log: Path) -> int:
        """Forks `escrow <args>` (output in `log`); its pid."""
        pid = int(self._ask(f"start {log} {' '.join(args)}"))
        self.children.add(pid)
        return pid

    def reap(self, pid: int) -> int:
        """Waits for the child (it must be ending): its exit code, or -signal."""
        code = int(self._ask(f"reap {pid}"))
        self.children.discard(pid)
        return code

    def kill(self, pid: int) -> int:
        os.kill(pid, signal.SIGKILL)
        return self.reap(pid)

    def stop(self, pid: int, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout` s; the exit code."""
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not _zombie_or_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _zombie_or_gone(pid):
            os.kill(pid, signal.SIGKILL)
        return self.reap(pid)

    def close(self) -> None:
        try:
            for pid in list(self.children):
                self.kill(pid)
        finally:
            if self.popen.stdin is not None:
                self.popen.stdin.close()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
            self._err.close()


# ---------------------------------------------------------------------- private PostgreSQL


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of one test: data in `data`, listening on 127.0.0.1:`port` only."""

    bin: Path
    data: Path
    port: int
    url: str = ""

    @property
    def log(self) -> Path:
        return self.data.parent / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:  # the server refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{tool} {args}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent} "
                   "-c fsync=off -c full_page_writes=off -c max_connections=60")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stops it: `fast` (sessions terminated, a clean shutdown) or `immediate` (as a crash:
        the next start recovers from the write-ahead log)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    pg_bin = _pg_bin()
    if pg_bin is None or (shutil.which("runuser") is None and os.geteuid() == 0):
        if os.environ.get("CI"):
            pytest.fail("CI needs PostgreSQL's binaries under /usr/lib/postgresql", pytrace=False)
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql")
    base = Path(tempfile.mkdtemp(prefix="qe-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    cluster = PrivateCluster(pg_bin, base / "data", free_port())
    started = False
    try:
        cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
                     "--no-sync", "-E", "UTF8")
        cluster.start()
        started = True
        admin = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "escrow"'))
        admin.dispose()
        cluster.url = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/escrow"
        engine = make_engine(cluster.url)
        migrate(engine)
        engine.dispose()
        yield cluster
    finally:
        if started:
            with suppress(AssertionError):  # already down
                cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------- the work


@dataclass
class Item:
    """One signed confirmation, as a client posts it, and what the service answered so far."""

    escrow_id: int
    milestone: int
    body: dict[str, Any]
    #: the answers, in order: an HTTP status, or the name of the transport error
    answers: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/api/escrows/{self.escrow_id}/milestones/{self.milestone}/confirmations"

    @property
    def done(self) -> bool:
        """Definitely stored: queued now (202) or before (409: an answer lost to a fault)."""
        return any(a in ("202", "409") for a in self.answers)


@dataclass
class Work:
    """What the service is given during a fault drill, and the baseline to check it against."""

    env: EscrowEnv
    #: the test's own services on the node directly (for setup and checks)
    services: Services
    items: list[Item]
    breach_escrows: list[int]
    first_nonce: dict[str, int]
    addresses: dict[str, str]
    #: breach escrows with their bad day stored
    ingested: list[int] = field(default_factory=list)
    #: escrows created while the drill ran (events for the indexer)
    created: list[int] = field(default_factory=list)

    def todo(self) -> list[Item]:
        return [item for item in self.items if not item.done]

    def post(self, http: httpx.Client, item: Item, timeout: float = 10) -> str:
        """Posts one confirmation; its answer (a status, or the transport error's name)."""
        try:
            answer = str(http.post(item.path, json=item.body, timeout=timeout).status_code)
        except httpx.HTTPError as exc:
            answer = type(exc).__name__
        item.answers.append(answer)
        return answer

    def ingest_bad_day(self) -> int | None:
        """Stores a day of bad uptime for the next breach escrow (as the measurement API does):
        the oracle finds one breach there. None when every escrow has had its day."""
        left = [e for e in self.breach_escrows if e not in self.ingested]
        if not left:
            return None
        escrow_id = left[0]
        services = self.services
        with services.sessions() as session, session.begin():
            row = session.get(EscrowRow, (services.chain_id, escrow_id))
            assert row is not None and row.accepted_at is not None
            samples = [
                {"kpi": "uptime_pct", "value": 97.5,
                 "observed_at": row.accepted_at + 1_800 + 3_600 * hour}
                for hour in range(24)
            ]
            ingest_raw(session, services.chain_id, escrow_id, samples, self.env.now())
        self.ingested.append(escrow_id)
        return escrow_id

    def create_escrow(self) -> int:
        """A new escrow on the chain (created and accepted: two events to index)."""
        escrow_id = self.env.create_active(self.env.params((ETH // 1_000,)))
        self.created.append(escrow_id)
        return escrow_id

    def statuses(self) -> dict[str, Counter[str]]:
        """Counts by status of the outbox transactions, confirmation rows and breach rows."""
        with self.services.sessions() as session:
            return {
                name: Counter({str(k): int(n) for k, n in session.execute(
                    select(col, func.count()).group_by(col)
                ).all()})
                for name, col in (
                    ("transactions", OutboxTransaction.status),
                    ("confirmations", ConfirmationRequest.status),
                    ("breaches", BreachSubmission.status),
                )
            }

    def settled(self) -> bool:
        """Every posted confirmation and every ingested bad day settled on the chain, and every
        escrow created meanwhile indexed."""
        s = self.statuses()
        done = [i for i in self.items if i.done]
        with self.services.sessions() as session:
            indexed = set(session.scalars(select(EscrowRow.escrow_id)))
        return (
            sum(s["confirmations"].values()) >= len(done)
            and set(s["confirmations"]) <= {"mined", "failed"}
            and s["breaches"].get("mined", 0) >= len(self.ingested)
            and set(s["breaches"]) <= {"mined", "failed"}
            and not {"signed", "sent"} & set(s["transactions"])
            and set(self.created) <= indexed
        )


def prepare_work(
    env: EscrowEnv, services: Services, *, escrows: int, milestones: int, breaches: int
) -> Work:
    """On the test chain: `escrows` active escrows of `milestones` milestones (one signed
    confirmation each, typed data from the app itself), `breaches` escrows under KPI terms
    whose first day is over; indexed in the database, the time advanced past the first day and
    its grace interval. The service's accounts' nonces are noted."""
    with services.sessions() as session, session.begin():
        terms_hash = store_terms(session, TERMS)
    confirmed = [env.create_active(env.params((ETH // 100,) * milestones))
                 for _ in range(escrows)]
    measured = [env.create_active(env.params((ETH // 10,), terms_hash=terms_hash))
                for _ in range(breaches)]
    Indexer(services).sync()
    env.advance(DAY + 3_600 + 60)
    deadline = env.now() + 6 * 3_600
    client = TestClient(create_app(services))
    items = []
    for escrow_id in confirmed:
        for milestone in range(milestones):
            body: dict[str, Any] = {
                "rating": 1 + (escrow_id + milestone) % 5,
                "comment": f"fault drill {escrow_id}/{milestone}",
                "deadline": deadline,
            }
            answer = client.post(
                f"/api/escrows/{escrow_id}/milestones/{milestone}/typed-data", json=body
            )
            assert answer.status_code == 200, answer.text
            body["signature"] = sign(env.parties.client, answer.json())
            items.append(Item(escrow_id, milestone, body))
    addresses: dict[str, str] = {
        "relayer": relayer_account(env.w3, services.settings).address,
        "oracle": oracle_account(env.w3, services.settings).address,
    }
    first_nonce = {
        name: int(env.w3.eth.get_transaction_count(env.w3.to_checksum_address(address), "latest"))
        for name, address in addresses.items()
    }
    return Work(env, services, items, measured, first_nonce, addresses)


# ---------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class Totals:
    """What the final check counted (for docs/reliability.md)."""

    confirmations: int
    breaches: int
    transactions: dict[str, int]
    escrows_indexed: int
    escrows_audited: int

    def __str__(self) -> str:
        return (f"{self.confirmations} confirmations and {self.breaches} breach reports settled "
                f"once each, transactions mined per sender {self.transactions} (nonces without "
                f"a gap), {self.escrows_indexed} escrows indexed, {self.escrows_audited} escrows "
                "audited consistent")


def check_nothing_lost_or_twice(work: Work) -> Totals:
    """After the faults, with the service idle: every confirmation a client posted (and was
    told 202 or, asking again, 409) is mined exactly once (one `MilestoneSettled` per milestone,
    one row per milestone, one transaction per row), every bad day is reported exactly once
    (one `BreachReported` per escrow), each sender's nonces follow without a gap with nothing
    pending and nothing sent beyond its rows' transactions, no request half-written (each
    confirmation row has its review), every escrow indexed, and the chain-only audit
    (backend/audit/, with the database's index) consistent for every escrow."""
    env, services = work.env, work.services
    contract = env.escrow.contract
    with services.sessions() as session:
        rows = list(session.scalars(select(ConfirmationRequest)))
        breaches = list(session.scalars(select(BreachSubmission)))
        txs = list(session.scalars(select(OutboxTransaction).order_by(OutboxTransaction.id)))
        reviews = set(session.scalars(select(Review.comment_hash)))
        indexed = set(session.scalars(select(EscrowRow.escrow_id)))

    # confirmations: every one posted is stored once, mined once, settled once on the chain
    by_milestone = Counter((r.escrow_id, r.milestone) for r in rows)
    assert all(n == 1 for n in by_milestone.values()), by_milestone.most_common(3)
    posted = {(i.escrow_id, i.milestone) for i in work.items if i.done}
    assert posted <= set(by_milestone), sorted(posted - set(by_milestone))[:5]
    assert {r.status for r in rows} <= {"mined"}, Counter(r.status for r in rows)
    assert all(r.comment_hash in reviews for r in rows)  # nothing half-written
    settled = Counter(
        (int(log["args"]["escrowId"]), int(log["args"]["milestone"]))
        for log in contract.events.MilestoneSettled.get_logs(
            from_block=env.deployment_block, to_block="latest")
    )
    assert settled == Counter(set(by_milestone)), "a milestone settled twice or not at all"

    # breaches: each bad day reported once
    reported = Counter(
        int(log["args"]["escrowId"])
        for log in contract.events.BreachReported.get_logs(
            from_block=env.deployment_block, to_block="latest")
    )
    assert reported == Counter(work.ingested), (reported, work.ingested)
    assert sorted(b.escrow_id for b in breaches) == sorted(work.ingested)
    assert {b.status for b in breaches} <= {"mined"}, Counter(b.status for b in breaches)

    # transactions: one mined per row and phase, nonces without a gap, nothing else sent
    linked = {r.transaction_id for r in rows} | {b.report_tx_id for b in breaches}
    mined_count: dict[str, int] = {}
    for sender, address in work.addresses.items():
        mined = [t for t in txs if t.sender == sender and t.status == "mined"]
        first = work.first_nonce[sender]
        assert sorted(t.nonce for t in mined) == list(range(first, first + len(mined)))
        assert {t.id for t in mined} <= linked
        assert len({t.tx_hash for t in mined}) == len(mined)
        for block in ("latest", "pending"):
            assert env.w3.eth.get_transaction_count(
                env.w3.to_checksum_address(address), block) == first + len(mined), (sender, block)
        mined_count[sender] = len(mined)
    assert not [t for t in txs if t.status in ("signed", "sent")]
    assert mined_count.get("relayer", 0) == len(rows)
    assert mined_count.get("oracle", 0) == len(breaches)

    # the indexer: every escrow of the chain, and the audit from the chain alone
    assert set(work.created) <= indexed
    with services.sessions() as session:
        report = audit_all(env.w3, env.escrow.address, from_block=env.deployment_block,
                           session=session)
    failed = [(a.escrow_id, c.name, c.detail) for a in report.escrows for c in a.checks
              if c.ok is False] + [(None, c.name, c.detail) for c in report.contract_checks
                                   if c.ok is False]
    assert report.consistent, failed[:5]
    return Totals(len(rows), len(breaches), mined_count, len(indexed), len(report.escrows))


# ---------------------------------------------------------------------- the service in-process


@dataclass
class InProcess:
    """The app and its workers in this process, served on `url`."""

    url: str
    services: Services
    threads: list[Any]


@contextmanager
def service_in_process(
    env: EscrowEnv, database_url: str, data_dir: Path, monkeypatch: Any, *,
    rpc_url: str | None = None,
) -> Iterator[InProcess]:
    """The app and every worker on the test chain and `database_url`, served on a free port,
    the senders passing every 0.2 s; through `rpc_url` (a proxy) when given, else on the test's
    own connection to the node. Fails when a worker thread died meanwhile."""
    from backend.chain.connect import connect
    from backend.config import Settings
    from backend.confirmations.relayer import Relayer
    from backend.oracle.worker import Oracle
    from backend.services import build_services
    from backend.workers import start_workers
    from tests.web.support import serve

    for sender in (Relayer, Oracle):
        monkeypatch.setattr(sender, "interval", 0.2)
    config = Settings(
        rpc_url=rpc_url or "http://127.0.0.1:1", data_dir=data_dir, database_url=database_url,
        index_poll_interval=0.2, lease_poll_interval=0.1,
    )
    services = build_services(
        config, w3=connect(rpc_url) if rpc_url else env.w3, contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )
    running = start_workers(services)
    try:
        with serve(create_app(services), name="fault-service") as url:
            yield InProcess(url, services, running.threads)
        dead = [t.name for t in running.threads if not t.is_alive()]
        assert not dead, f"workers stopped with an error (see the log): {dead}"
    finally:
        running.shutdown()
        services.engine.dispose()

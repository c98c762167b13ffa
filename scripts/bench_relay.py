"""Relay benchmark: how fast signed confirmations settle on chain through the service, beside
what the node itself can mine.

Starts a fresh Hardhat node, deploys the escrow (`tests.support.build_env`, the deployment recorded
in a throwaway data folder as `escrow deploy` records it), creates active ETH escrows of
`--milestones` milestones each (4 by default), enough for 3 x N milestones (N = `--count`), and a
fresh database (a throwaway PostgreSQL database, or a SQLite file) in which the escrows are indexed
in process. 2 x N confirmations are signed for the service as `scripts/bench_api.py` signs its
bursts (typed data from the app, the client's key signs), then the stack runs as an operator
scales it out, each part its own process on loopback: `escrow serve --no-workers` (the API),
`escrow relay` and `escrow index` (`--one-process`: `escrow serve` with its workers in threads
instead). Once `/api/health` answers 200 and the relayer has logged that it started, one
typed-data request warms the API up (`warm_up`), then the first N confirmation POSTs are
sent at once (a minimal asyncio HTTP client, N connections) while the database is polled every 20
ms for the confirmation requests' status; each POST is timed from its sending to its answer, and to
the first poll that saw its request mined (or settled by someone else's transaction).

Then the relay alone (not with `--one-process`): the relayer is stopped, the other N
confirmations are POSTed and queued, and a new `escrow relay` works them off, timed from its
"started" line to the last settlement (`relay_alone`).

Then, on the last N milestones, the node's raw pipelined capacity in the same run: N
`confirmWithSig` transactions signed beforehand from a funded development account the service does
not use (dev key #6; the relayer is #5), consecutive nonces, a fixed 200,000 gas and fees from the
node, sent back to back by a plain `http.client` JSON-RPC loop on one kept-alive connection
(`PlainRpc`: none of the service's code, so the baseline does not move with it) without waiting for
receipts, then every receipt awaited in JSON-RPC batches: capacity = N / (last receipt seen - first
send). Until 2026-12-02 they were sent with web3.py's `eth.send_raw_transaction` and one
`eth_getTransactionReceipt` each, about 1 ms of Python per transaction: the same node then read
277-292/s, against 550-627/s sent plainly. The ratio of the service's settled-per-second to that
capacity, and the POST-to-settlement p99, are printed beside their targets (ratio >= 0.5, p99 < 3
s), and the relay alone's rate beside the same capacity. A benchmark, not a test: it reports what it
measured and never fails on a missed target.

    .venv/bin/python scripts/bench_relay.py [--count 200] [--db postgresql|sqlite]
        [--one-process] [--api-processes 1] [--milestones 4] [--timeout 120] [--json]
        [--write] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from bench_api import (
    Post,
    answer_class,
    burst_milestones,
    database,
    quantile,
    server_buckets,
    server_quantile,
    sign_confirmations,
)
from sqlalchemy import select

from backend.chain.artifacts import load_artifact
from backend.chain.connect import connect
from backend.chain.deploy import Deployment, write_deployment
from backend.chain.node import find_free_port, start_hardhat_node
from backend.config import Settings
from backend.db.models import ConfirmationRequest
from backend.db.session import make_engine
from backend.services import build_services
from tests.support import EscrowEnv, build_env

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- relay:begin -->", "<!-- relay:end -->"
#: statuses of a confirmation request whose milestone the chain has settled, and the final refusal
SETTLED = ("mined", "settled")
FAILED = "failed"
#: seconds between two reads of the confirmation requests' status
POLL_INTERVAL = 0.02
#: milestones per escrow by default: an escrow of a few milestones, as the service's users make
#: them (64, the contract's maximum, is the worst case: every call carries all their amounts)
MILESTONES = 4
#: gas limit of each raw `confirmWithSig` (the relayer's default cap, `ESCROW_RELAY_MAX_GAS`)
RAW_GAS = 200_000
#: the development key the raw transactions are sent from (#5 is the relayer)
RAW_SENDER_INDEX = 6
#: targets printed beside the figures
TARGET_RATIO = 0.5
TARGET_SETTLEMENT_P99_S = 3.0
#: seconds each part of the stack may take to start
START_TIMEOUT = 60.0
#: what the relayer logs once it holds its lease and sends (`backend/outbox/sender.py`)
RELAY_STARTED = re.compile(r"\brelayer 0x[0-9a-fA-F]{40} started\b")

Progress = Callable[[str], None]


# ------------------------------------------------------------------ figures


def spread(values: list[float]) -> dict[str, float | None]:
    return {"p50": quantile(values, 0.5), "p99": quantile(values, 0.99),
            "max": max(values) if values else None}


def verdict(met: bool) -> str:
    return "met" if met else "missed"


# ------------------------------------------------------------------ the stack


def escrow_command() -> list[str]:
    """The venv's `escrow` entry point, else the same command through this interpreter."""
    found = shutil.which("escrow", path=str(Path(sys.executable).parent))
    if found:
        return [found]
    return [sys.executable, "-c", "from backend.cli import app; app()"]


def record_deployment(env: EscrowEnv, data_dir: Path) -> None:
    """Records the escrow's deployment under `data_dir` as `escrow deploy` does, so the stack's
    processes find the contract and its deployment block the way an operator's do."""
    w3 = env.w3
    block = w3.eth.get_block(env.deployment_block)
    for item in block["transactions"]:
        tx_hash = item if isinstance(item, bytes) else item["hash"]
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        if receipt["contractAddress"] == env.escrow.address:
            write_deployment(data_dir, Deployment(
                address=env.escrow.address, chain_id=int(w3.eth.chain_id),
                block=env.deployment_block, tx_hash="0x" + bytes(tx_hash).hex(),
                deployer=env.parties.deployer.address,
                sources_hash=load_artifact("QualityEscrow").sources_hash,
            ))
            return
    raise RuntimeError(f"no deployment of {env.escrow.address} in block {env.deployment_block}")


@dataclass
class Part:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def started_relaying(self) -> bool:
        """Whether its log says the relayer holds its lease and sends (`RELAY_STARTED`)."""
        return bool(RELAY_STARTED.search(self.log.read_text(errors="replace")))

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"`escrow {self.name}` exited with {self.process.returncode}:\n"
                               f"{self.tail()}")


def wait_until(what: str, ready: Callable[[], bool], parts: list[Part],
               timeout: float = START_TIMEOUT, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for part in parts:
            part.check()
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in parts)
            raise RuntimeError(f"{what}: not within {timeout:.0f} s\n{tails}")
        time.sleep(poll)


def warm_up(url: str, escrow_id: int, milestone: int) -> None:
    """One typed-data request before the burst: a process routes its first request through
    every router (FastAPI builds each router's route table on first use, ~0.2 s here), which a
    service that has been up for a while has done long ago. Nothing is stored."""
    response = httpx.post(f"{url}/api/escrows/{escrow_id}/milestones/{milestone}/typed-data",
                          json={"rating": 3}, timeout=30)
    response.raise_for_status()


def healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    return False


@dataclass
class Running:
    """The stack `stack` started: the API's URL, its processes, and `start` to start one more
    (`escrow <arguments>` with the stack's environment, logging to `<name>.log`)."""

    url: str
    parts: list[Part]
    start: Callable[[str, list[str]], Part]


@contextlib.contextmanager
def stack(rpc_url: str, database_url: str, workdir: Path, *, one_process: bool,
          progress: Progress, keep_logs: Path | None = None,
          api_processes: int = 1) -> Iterator[Running]:
    """The service on loopback: `escrow serve --no-workers`, `escrow relay` and `escrow index`,
    each its own process (or `escrow serve` with its workers in threads), started one after the
    other; yields the API's URL once it is healthy and the relayer has started. Every process is
    stopped on the way out (SIGTERM, then SIGKILL after 15 s), and its log copied into
    `keep_logs` when given. `api_processes` > 1: `escrow serve --workers` (PostgreSQL)."""
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, ESCROW_RPC_URL=rpc_url, ESCROW_DATABASE_URL=database_url,
               ESCROW_DATA_DIR=str(workdir), ESCROW_LOG_LEVEL="INFO")
    env.pop("ESCROW_CONTRACT_ADDRESS", None)
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if api_processes > 1:
        serve += ["--workers", str(api_processes)]
    commands = ([("serve", serve)] if one_process else [
        ("serve", [*serve, "--no-workers"]), ("relay", ["relay", "--no-standby"]),
        ("index", ["index", "--no-standby"]),
    ])
    parts: list[Part] = []

    def start(name: str, arguments: list[str]) -> Part:
        log = workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([*escrow_command(), *arguments], stdout=out,
                                       stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        part = Part(name, process, log)
        parts.append(part)
        progress(f"started `escrow {' '.join(arguments)}` (pid {process.pid})")
        return part

    try:
        for name, arguments in commands:
            start(name, arguments)
            if name == "serve":
                wait_until("/api/health 200", lambda: healthy(url), parts)
        relay = parts[0] if one_process else parts[1]
        wait_until("the relayer's start", relay.started_relaying, parts)
        progress(f"the stack is up at {url}: health 200, relayer started")
        yield Running(url, parts, start)
    finally:
        for part in reversed(parts):
            if part.process.poll() is None:
                part.process.terminate()
        for part in reversed(parts):
            try:
                part.process.wait(15)
            except subprocess.TimeoutExpired:
                part.process.kill()
                part.process.wait(5)
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for part in parts:
                shutil.copy(part.log, keep_logs / part.log.name)


# ------------------------------------------------------------------ the burst


@dataclass
class Answer:
    escrow_id: int
    milestone: int
    sent: float
    answered: float | None = None
    status: int | None = None

    @property
    def category(self) -> str:
        return "error" if self.status is None else answer_class(self.status)


@dataclass
class Watch:
    """What the database poller saw: when each request was first seen settled or failed."""

    settled: dict[tuple[int, int], float] = field(default_factory=dict)
    failed: dict[tuple[int, int], float] = field(default_factory=dict)
    polls: int = 0
    errors: int = 0


def watch_requests(database_url: str, watch: Watch, stop: threading.Event, deadline: float
                   ) -> None:
    """Reads the confirmation requests' status every `POLL_INTERVAL` s until `stop` or
    `deadline` (perf_counter), noting when each was first seen settled or failed."""
    engine = make_engine(database_url)
    query = select(ConfirmationRequest.escrow_id, ConfirmationRequest.milestone,
                   ConfirmationRequest.status).where(
        ConfirmationRequest.status.in_((*SETTLED, FAILED)))
    try:
        while not stop.is_set() and time.perf_counter() < deadline:
            try:
                with engine.connect() as conn:
                    rows = conn.execute(query).all()
            except Exception:  # a busy SQLite file: read again at the next poll
                watch.errors += 1
                rows = []
            seen = time.perf_counter()
            watch.polls += 1
            for escrow_id, milestone, status in rows:
                key = (int(escrow_id), int(milestone))
                target = watch.failed if status == FAILED else watch.settled
                if key not in watch.settled and key not in watch.failed:
                    target[key] = seen
            stop.wait(POLL_INTERVAL)
    finally:
        engine.dispose()


async def send_all(url: str, posts: list[Post], answers: list[Answer]) -> None:
    """Sends every POST at once, each on a connection of its own, with a minimal HTTP/1.1 client
    on asyncio streams (the body encoded beforehand, `Connection: close`, the whole answer read
    to its end). The load generator shares the machine with the stack it measures: httpx's
    asyncio client took 1.7 s of CPU per 4 s of a 200-POST burst, more than the relay."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raw = []
    for path, body in posts:
        data = json.dumps(body).encode()
        raw.append(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode() + data
        )

    async def one(request: bytes, answer: Answer) -> None:
        answer.sent = time.perf_counter()
        try:
            async with asyncio.timeout(60):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(request)
                    await writer.drain()
                    status_line = await reader.readline()
                    await reader.read()  # to the end: the server closes after its answer
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            return
        fields = status_line.split()
        if len(fields) < 2 or not fields[1].isdigit():
            return
        answer.answered = time.perf_counter()
        answer.status = int(fields[1])

    await asyncio.gather(*(one(request, answer)
                           for request, answer in zip(raw, answers, strict=True)))


Key = tuple[int, int]


def answer_counts(answers: list[Answer]) -> dict[str, int]:
    """How `answers` were answered, by class: 2xx, 503, 4xx, 5xx and error (no answer)."""
    counts = {"2xx": 0, "503": 0, "4xx": 0, "5xx": 0, "error": 0}
    for answer in answers:
        counts[answer.category] = counts.get(answer.category, 0) + 1
    return counts


def post_all(url: str, posts: list[Post], milestones: list[Key]
             ) -> tuple[list[Answer], set[Key]]:
    """Every POST sent at once (`send_all`): the answers, and the (escrow, milestone) accepted."""
    answers = [Answer(escrow_id, milestone, 0.0) for escrow_id, milestone in milestones]
    asyncio.run(send_all(url, posts, answers))
    return answers, {(a.escrow_id, a.milestone) for a in answers if a.category == "2xx"}


@contextlib.contextmanager
def watching(database_url: str, timeout: float
             ) -> Iterator[tuple[Watch, Callable[[set[Key]], None]]]:
    """The database polled (`watch_requests`) from now for at most `timeout` seconds; yields what
    it sees and `until_done(keys)`, which waits until every one of `keys` is settled or failed
    (or the polling ends). The poller is stopped on the way out."""
    watch = Watch()
    stop = threading.Event()
    poller = threading.Thread(target=watch_requests,
                              args=(database_url, watch, stop, time.perf_counter() + timeout),
                              name="poller", daemon=True)
    poller.start()

    def until_done(keys: set[Key]) -> None:
        while poller.is_alive() and not keys <= (watch.settled.keys() | watch.failed.keys()):
            poller.join(0.05)

    try:
        yield watch, until_done
    finally:
        stop.set()
        poller.join(10)


def burst(url: str, database_url: str, posts: list[Post], milestones: list[Key],
          timeout: float, progress: Progress, pids: dict[str, int] | None = None
          ) -> dict[str, Any]:
    """Sends every POST at once and follows the accepted ones to settlement (at most `timeout`
    seconds from the first sending). `pids`: the processes whose CPU time the burst is charged
    with (`cpu_seconds`), besides this one (the load generator) and PostgreSQL's."""
    before = server_buckets(url)
    postgres = database_url.startswith("postgresql")
    with watching(database_url, timeout) as (watch, until_done):
        cpu_before = cpu_of(pids or {}, postgres)
        answers, accepted = post_all(url, posts, milestones)
        after = server_buckets(url)
        first_sent = min(a.sent for a in answers)
        progress(f"{len(posts)} POSTs answered in {time.perf_counter() - first_sent:.1f} s, "
                 f"{len(accepted)} accepted; waiting for their settlement", )
        until_done(accepted)
        cpu_after = cpu_of(pids or {}, postgres)
    counts = answer_counts(answers)
    post_s = [a.answered - a.sent for a in answers if a.answered is not None]
    settlement = [watch.settled[(a.escrow_id, a.milestone)] - a.sent for a in answers
                  if (a.escrow_id, a.milestone) in accepted
                  and (a.escrow_id, a.milestone) in watch.settled]
    settled = sum(1 for key in accepted if key in watch.settled)
    failed = sum(1 for key in accepted if key in watch.failed)
    last = max((watch.settled[key] for key in accepted if key in watch.settled), default=None)
    first = min((watch.settled[key] for key in accepted if key in watch.settled), default=None)
    rate = settled / (last - first_sent) if last is not None and last > first_sent else 0.0
    return {
        "answers": counts,
        "post_ms": {k: None if v is None else v * 1000 for k, v in spread(post_s).items()},
        # the same POSTs as the server timed them (`/metrics` histogram bucket bounds), without
        # the time the load generator takes to open its connections and send
        "server_post": {name: server_quantile(before, after, q)
                        for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))},
        "settlement_s": spread(settlement),
        "accepted": len(accepted),
        "settled": settled,
        "failed": failed,
        "unsettled": len(accepted) - settled - failed,
        "settled_per_s": rate,
        "seconds": (last - first_sent) if last is not None else None,
        #: from the first sending to the first settlement seen
        "first_settled_s": (first - first_sent) if first is not None else None,
        "polls": watch.polls,
        "poll_errors": watch.errors,
        #: CPU milliseconds (user + system) per settled confirmation, per process, from the
        #: first POST to the last settlement
        "cpu_ms_per_settled": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / settled, 1)
            for name in cpu_before if name in cpu_after and settled
        },
    }


#: clock ticks per second of /proc's CPU times
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Process:
    """One process as /proc/PID/stat shows it (proc(5))."""

    parent: int
    name: str
    #: user + system CPU seconds of the process and of its children that ended and were waited
    #: for (fields 14 to 17)
    cpu: float


def processes() -> dict[int, Process]:
    """Every process of the machine by pid, read once from /proc (empty where there is none)."""
    found: dict[int, Process] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else []:
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name, _, rest = stat.partition(" (")[2].rpartition(")")
        fields = rest.split()  # after the command name, which may hold spaces and parentheses
        ticks = sum(int(field) for field in fields[11:15])  # utime stime cutime cstime
        found[int(entry.name)] = Process(int(fields[1]), name, ticks / CLOCK_TICKS)
    return found


def cpu_seconds(pid: int, table: dict[int, Process] | None = None) -> float | None:
    """CPU seconds `pid` and the processes it started (`escrow serve --workers N`'s API
    processes) have used so far, those that ended included (`Process.cpu`), or None when the
    process is gone or /proc is not there. `table`: a reading of `processes()` to use."""
    table = processes() if table is None else table
    if pid not in table:
        return None
    family, grown = {pid}, True
    while grown:
        children = {child for child, seen in table.items() if seen.parent in family}
        grown = not children <= family
        family |= children
    return sum(table[member].cpu for member in family)


def postgres_cpu_seconds(table: dict[int, Process]) -> float | None:
    """CPU seconds of every PostgreSQL process of the machine in `table` (the server, its
    backends: the service's and the benchmark's poller), those that ended included (a backend's
    time moves to the server's waited-for children's fields when it exits), or None when there
    is none. Other clients of the same server are counted too: run nothing else beside."""
    found = [seen.cpu for seen in table.values() if seen.name.startswith("postgres")]
    return sum(found) if found else None


def cpu_of(pids: dict[str, int], postgres: bool) -> dict[str, float]:
    """CPU seconds so far of each named process, of PostgreSQL (`postgresql`, when the run
    uses it) and of this process (`load generator`: the POSTs, the database poller; read first,
    so the reading of /proc is not charged to it), from one reading of /proc; a process that is
    gone is left out."""
    own = os.times()
    table = processes()
    seen = {name: cpu_seconds(pid, table) for name, pid in pids.items()}
    if postgres:
        seen["postgresql"] = postgres_cpu_seconds(table)
    seen["load generator"] = own.user + own.system
    return {name: value for name, value in seen.items() if value is not None}


def relay_alone(running: Running, database_url: str, posts: list[Post], milestones: list[Key],
                timeout: float, progress: Progress) -> dict[str, Any]:
    """The relay's own pace, without the API in front of it: the relayer is stopped, the POSTs
    are accepted (queued, nothing sent), then a new `escrow relay` starts and works them off.
    Counted from the moment it logs that it started (read every 10 ms) to the last settlement
    seen."""
    relay = next(part for part in running.parts if part.name == "relay")
    relay.process.terminate()
    relay.process.wait(30)
    answers, accepted = post_all(running.url, posts, milestones)
    counts = answer_counts(answers)
    progress(f"{len(accepted)} of {len(posts)} POSTs queued with the relayer stopped "
             f"(answers: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
             "starting it")
    again = running.start("relay-alone", ["relay", "--no-standby"])
    wait_until("the relayer's start", again.started_relaying,
               [part for part in running.parts if part is not relay], poll=0.01)
    began = time.perf_counter()
    with watching(database_url, timeout) as (watch, until_done):
        until_done(accepted)
    settled = [watch.settled[key] - began for key in accepted if key in watch.settled]
    last = max(settled, default=None)
    return {
        #: how the queued POSTs were answered, by class (2xx, 503, 4xx, 5xx, error)
        "answers": counts,
        "queued": len(accepted),
        "settled": len(settled),
        "failed": sum(1 for key in accepted if key in watch.failed),
        "seconds": last,
        "settled_per_s": len(settled) / last if last else 0.0,
        "settlement_s": spread(settled),
    }


# ------------------------------------------------------------------ the node's capacity


class PlainRpc:
    """A minimal JSON-RPC client for the node's capacity: `http.client` over one kept-alive
    connection, nothing of the service's code."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1",
                                                     parts.port or 80, timeout=timeout)
        self.path = parts.path or "/"
        self.ids = 0

    def _post(self, body: Any) -> Any:
        self.connection.request("POST", self.path, json.dumps(body).encode(),
                                {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"the node answered HTTP {response.status}: {payload[:200]!r}")
        return json.loads(payload)

    def call(self, method: str, params: list[Any]) -> Any:
        self.ids += 1
        reply = self._post({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params})
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results of `calls` in their order (a JSON-RPC batch may answer in any)."""
        first = self.ids + 1
        self.ids += len(calls)
        replies = self._post([{"jsonrpc": "2.0", "id": first + n, "method": method,
                               "params": params} for n, (method, params) in enumerate(calls)])
        if not isinstance(replies, list):  # the batch as a whole refused: one error object
            raise RuntimeError(f"batch refused: {replies.get('error', replies)}")
        by_id = {reply["id"]: reply for reply in replies}
        for reply in replies:
            if "error" in reply:
                raise RuntimeError(f"batch: {reply['error']}")
        return [by_id[first + n].get("result") for n in range(len(calls))]

    def close(self) -> None:
        self.connection.close()


def node_capacity(env: EscrowEnv, milestones: list[tuple[int, int]], timeout: float,
                  progress: Progress) -> dict[str, Any]:
    """Signs a `confirmWithSig` per milestone from dev key #6 (consecutive nonces, fixed gas,
    fees from the node), sends them back to back, then waits for every receipt: capacity =
    transactions / (last receipt seen - first send). Sent by `PlainRpc` (`http.client`, one
    kept-alive connection, receipts in JSON-RPC batches), not through the service's own
    transport: what the node can mine, not what a Python client can send, and the same
    whatever the service's code does."""
    w3 = env.w3
    sender = env.parties.stranger  # dev key #6 (`tests.support.Parties`), never the service's
    deadline = env.now() + 6 * 3_600
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
    tip = int(w3.eth.max_priority_fee)
    nonce = int(w3.eth.get_transaction_count(sender.address, "pending"))
    chain_id = int(w3.eth.chain_id)
    raw: list[bytes] = []
    for n, (escrow_id, milestone) in enumerate(milestones):
        rating = 1 + n % 5
        comment_hash = b"\x00" * 32
        confirmation = env.confirmation(escrow_id, milestone, rating, comment_hash, deadline)
        call = env.escrow.tx_for("confirmWithSig", escrow_id, milestone, rating, comment_hash,
                                 deadline, env.sign(confirmation))
        signed = sender.sign_transaction({
            "type": 2, "chainId": chain_id, "nonce": nonce + n, "to": call["to"],
            "data": call["data"], "value": 0, "gas": RAW_GAS,
            "maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip,
        })
        raw.append(bytes(signed.raw_transaction))
    progress(f"{len(raw)} raw confirmWithSig transactions signed from {sender.address}; sending")
    node = PlainRpc(str(w3.provider.endpoint_uri), timeout)  # type: ignore[attr-defined]
    began = time.perf_counter()
    hashes = [node.call("eth_sendRawTransaction", ["0x" + tx.hex()]) for tx in raw]
    sent = time.perf_counter()
    statuses: dict[int, int] = {}
    last = began
    stop_at = began + timeout
    while len(statuses) < len(hashes) and time.perf_counter() < stop_at:
        waiting = [i for i in range(len(hashes)) if i not in statuses]
        receipts = node.batch([("eth_getTransactionReceipt", [hashes[i]]) for i in waiting])
        for i, receipt in zip(waiting, receipts, strict=True):
            if receipt is not None:
                statuses[i] = int(receipt["status"], 16)
                last = time.perf_counter()
        if len(statuses) < len(hashes):
            time.sleep(POLL_INTERVAL)
    node.close()
    seconds = last - began
    mined = len(statuses)
    return {
        "transactions": len(hashes),
        "mined": mined,
        "status_1": sum(1 for s in statuses.values() if s == 1),
        "statuses": [statuses.get(i) for i in range(len(hashes))],
        "send_seconds": sent - began,
        "seconds": seconds,
        "capacity_per_s": mined / seconds if seconds > 0 else 0.0,
        "sender": sender.address,
        "gas": RAW_GAS,
        "sent_with": "http.client eth_sendRawTransaction, one request each on one "
                     "kept-alive connection, no waiting; receipts in JSON-RPC batches",
    }


# ------------------------------------------------------------------ the run


def run(count: int, db: str, one_process: bool, timeout: float, progress: Progress,
        keep_logs: Path | None = None, api_processes: int = 1,
        per_escrow: int = MILESTONES) -> dict[str, Any]:
    started = time.perf_counter()
    load_before = os.getloadavg()
    mode = "one process (serve with worker threads)" if one_process else \
        "separate processes (serve --no-workers, relay, index)"
    if api_processes > 1:
        mode += f", {api_processes} API processes"
    mode += f", escrows of {per_escrow} milestones"
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp, \
            start_hardhat_node() as node:
        workdir = Path(tmp)
        progress(f"Hardhat node at {node.url}; deploying")
        env = build_env(connect(node.url))
        record_deployment(env, workdir)
        progress(f"creating escrows for {3 * count} milestones ...")
        milestones = burst_milestones(env, 3 * count, per_escrow)
        ours, queued = milestones[:count], milestones[count:2 * count]
        raw = milestones[2 * count:]
        with database(db, workdir) as url:
            services = build_services(
                Settings(rpc_url=node.url, database_url=url, data_dir=workdir), w3=env.w3)
            try:
                progress(f"{db}: indexing and signing {2 * count} confirmations ...")
                signed = sign_confirmations(env, services, ours + queued)
                posts, queued_posts = signed[:count], signed[count:]
            finally:
                services.engine.dispose()
            with stack(node.url, url, workdir, one_process=one_process, progress=progress,
                       keep_logs=keep_logs, api_processes=api_processes) as running:
                warm_up(running.url, *ours[0])
                progress(f"sending {count} confirmation POSTs at once ...")
                pids = {part.name: part.process.pid for part in running.parts}
                pids["node"] = node.process.pid
                relay = burst(running.url, url, posts, ours, timeout, progress, pids)
                progress(f"relay: {relay['settled']} settled, {relay['failed']} failed, "
                         f"{relay['unsettled']} unsettled, {relay['settled_per_s']:.1f}/s")
                alone = None
                if not one_process:
                    alone = relay_alone(running, url, queued_posts, queued, timeout, progress)
                    progress(f"relay alone: {alone['settled']} of {alone['queued']} settled, "
                             f"{alone['settled_per_s']:.1f}/s")
            node_figures = node_capacity(env, raw, timeout, progress)
            progress(f"node: {node_figures['mined']} mined, "
                     f"{node_figures['capacity_per_s']:.1f}/s")
    capacity = node_figures["capacity_per_s"]
    ratio = relay["settled_per_s"] / capacity if capacity > 0 else 0.0
    if alone is not None:
        alone["ratio"] = alone["settled_per_s"] / capacity if capacity > 0 else 0.0
    p99 = relay["settlement_s"]["p99"]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "python": f"{platform.python_implementation()} {platform.python_version()}",
        },
        "db": db,
        "mode": mode,
        "count": count,
        "relay": relay,
        #: the relay's own pace on rows queued with it stopped (None with --one-process)
        "relay_alone": alone,
        "node": node_figures,
        "ratio": ratio,
        "targets": {
            "ratio": {"target": f">= {TARGET_RATIO}", "verdict": verdict(ratio >= TARGET_RATIO)},
            "settlement_p99_s": {"target": f"< {TARGET_SETTLEMENT_P99_S:g}",
                                 "verdict": verdict(p99 is not None
                                                    and p99 < TARGET_SETTLEMENT_P99_S)},
        },
        "seconds": time.perf_counter() - started,
    }


# ------------------------------------------------------------------ report


def _f(value: float | None, digits: int = 0, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:,.{digits}f}"


def text_report(r: dict[str, Any]) -> str:
    relay, node, targets, m = r["relay"], r["node"], r["targets"], r["machine"]
    a, post, settle = relay["answers"], relay["post_ms"], relay["settlement_s"]
    return "\n".join([
        f"{r['count']} confirmations, {r['db']}, {r['mode']}",
        f"  answers: 2xx {a['2xx']}, 503 {a['503']}, other 4xx {a['4xx']}, 5xx {a['5xx']}, "
        f"errors {a['error']}",
        f"  POST latency: p50 {_f(post['p50'])} ms, p99 {_f(post['p99'])} ms (server: p50 "
        f"{relay['server_post']['p50']}, p99 {relay['server_post']['p99']}, max "
        f"{relay['server_post']['max']})",
        f"  POST to settlement: p50 {_f(settle['p50'], 2)} s, p99 {_f(settle['p99'], 2)} s, "
        f"max {_f(settle['max'], 2)} s (target p99 < {TARGET_SETTLEMENT_P99_S:g} s: "
        f"{targets['settlement_p99_s']['verdict']})",
        f"  settled {relay['settled']} of {relay['accepted']} accepted, failed "
        f"{relay['failed']}, unsettled {relay['unsettled']}: {relay['settled_per_s']:.1f} "
        f"settled/s (first settled {_f(relay['first_settled_s'], 2)} s after the first POST)",
        f"  node capacity: {node['mined']} of {node['transactions']} raw confirmWithSig mined "
        f"(status 1: {node['status_1']}) in {node['seconds']:.2f} s: "
        f"{node['capacity_per_s']:.1f}/s",
        f"  ratio {r['ratio']:.2f} (target >= {TARGET_RATIO}: {targets['ratio']['verdict']})",
        *cpu_lines(r),
        *alone_lines(r),
        f"  {m['cpus']} CPUs, load average {m['load_before'][0]:.2f} to "
        f"{m['load_after'][0]:.2f}, {m['python']}, run {r['seconds']:.0f} s",
    ])


def cpu_lines(r: dict[str, Any]) -> list[str]:
    cpu = r["relay"].get("cpu_ms_per_settled") or {}
    if not cpu:
        return []
    return ["  CPU ms per settled confirmation, first POST to last settlement: " + ", ".join(
        f"{name} {value:.1f}" for name, value in cpu.items())]


def alone_lines(r: dict[str, Any]) -> list[str]:
    alone = r.get("relay_alone")
    if alone is None:
        return []
    return [
        f"  relay alone ({alone['queued']} queued with the relayer stopped, then worked off): "
        f"{alone['settled']} settled in {_f(alone['seconds'], 2)} s, "
        f"{alone['settled_per_s']:.1f}/s, ratio {alone['ratio']:.2f} to the node "
        f"(p50 / p99 {_f(alone['settlement_s']['p50'], 2)} / "
        f"{_f(alone['settlement_s']['p99'], 2)} s after its start)",
    ]


def fill(paragraph: str) -> str:
    """A paragraph wrapped as docs/performance.md wraps its prose (100 columns)."""
    return textwrap.fill(paragraph, width=100, break_long_words=False, break_on_hyphens=False)


def markdown(r: dict[str, Any]) -> str:
    relay, node, targets, m = r["relay"], r["node"], r["targets"], r["machine"]
    a, post, settle = relay["answers"], relay["post_ms"], relay["settlement_s"]
    return "\n".join([
        fill(f"Measured on {r['date']} by `scripts/bench_relay.py --count {r['count']} "
        f"--db {r['db']}{' --one-process' if 'one process' in r['mode'] else ''}`: {r['mode']}, "
        f"{m['cpus']} CPUs shared by the node, the service and the load generator (load average "
        f"{m['load_before'][0]:.2f} before, {m['load_after'][0]:.2f} after), {m['python']}."),
        "",
        "| database | N | 2xx | 503 | other 4xx | 5xx | errors | POST p50 / p99 ms "
        "| server POST p50 / p99 | POST to settled p50 / p99 / max s | settled | failed "
        "| settled/s | node capacity/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
        f"| {r['db']} | {r['count']} | {a['2xx']} | {a['503']} | {a['4xx']} | {a['5xx']} "
        f"| {a['error']} | {_f(post['p50'])} / {_f(post['p99'])} "
        f"| {relay['server_post']['p50']} / {relay['server_post']['p99']} "
        f"| {_f(settle['p50'], 2)} / {_f(settle['p99'], 2)} / {_f(settle['max'], 2)} "
        f"| {relay['settled']} | {relay['failed']} | {relay['settled_per_s']:.1f} "
        f"| {node['capacity_per_s']:.1f} | {r['ratio']:.2f} |",
        "",
        fill(f"Targets: ratio >= {TARGET_RATIO} **{targets['ratio']['verdict']}**; "
        f"POST-to-settlement p99 < {TARGET_SETTLEMENT_P99_S:g} s "
        f"**{targets['settlement_p99_s']['verdict']}**. "
        f"Node capacity: {node['transactions']} raw `confirmWithSig` from one account sent back "
        f"to back, {node['status_1']} receipts with status 1."),
        *(["", fill(line.strip() + ".")] if (line := "".join(cpu_lines(r))) else []),
        *(["", fill(line.strip().replace("relay alone", "Relay alone", 1) + ".")]
          if (line := "".join(alone_lines(r))) else []),
    ])


def write_doc(body: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block under '## Relay'")
    block = f"{BEGIN}\n{body}\n{END}"
    DOC.write_text(re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: block, text,
                          flags=re.S))


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so the node, the stack and the database are stopped."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200,
                        help="confirmations sent to the service (and as many raw transactions)")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--one-process", action="store_true",
                        help="`escrow serve` with its workers in threads, not separate processes")
    parser.add_argument("--milestones", type=int, default=MILESTONES,
                        help="milestones per escrow (1 to 64): each call carries the escrow's "
                        "parameters, its milestone amounts included")
    parser.add_argument("--api-processes", type=int, default=1,
                        help="API processes (`escrow serve --workers`; PostgreSQL only)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the settlements (and for the raw receipts)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--write", action="store_true", help="record in docs/performance.md")
    parser.add_argument("--logs", type=Path, default=None,
                        help="a folder to keep the stack's logs in (serve.log, relay.log ...)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.api_processes < 1 or (args.api_processes > 1 and args.db != "postgresql"):
        parser.error("--api-processes: at least 1, and more than 1 needs --db postgresql")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    out = sys.stderr if args.json else sys.stdout

    def progress(line: str) -> None:
        print(line, file=out, flush=True)

    if not 1 <= args.milestones <= 64:
        parser.error("--milestones must be 1 to 64 (the contract's maximum)")
    report = run(args.count, args.db, args.one_process, args.timeout, progress, args.logs,
                 args.api_processes, args.milestones)
    if args.json:
        print(json.dumps(report, indent=2), flush=True)
    else:
        print(text_report(report), flush=True)
    if args.write:
        write_doc(markdown(report))
        progress(f"written to {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

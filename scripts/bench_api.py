"""API load benchmark: `GET /api/escrows/{id}` under concurrent load, and bursts of concurrent
confirmation POSTs, one uvicorn worker.

Starts a fresh Hardhat node, deploys the escrow, creates escrows in several states, indexes them
into a database (SQLite file, or a throwaway PostgreSQL database), serves the API with uvicorn
(one worker, in a subprocess on a free port) and drives it with N concurrent connections: `wrk`
when it is installed, else an asyncio httpx client. Prints requests per second and p50/p90/p99
latency; `--write` records them in docs/performance.md between the api markers.

`--burst 64,256,500` (the default) then sends, for each N, N signed confirmation POSTs at once
from N clients (`POST /api/escrows/{id}/milestones/{m}/confirmations`, each a fresh milestone)
to a server running its background workers (the relayer sends them meanwhile), while one more
client, in a thread of its own (`HealthWatch`: the burst's client would delay its answers in
their shared event loop), asks `/api/health` every 0.25 s; it prints the burst's throughput,
p50/p99 latency and
the answers counted as 2xx, 503 (refused when saturated, with `Retry-After`), other 4xx, 5xx and
transport errors, and the slowest health answer. `--burst ""` skips it. A benchmark, not a
test: it reports, it does not pass or fail.

    .venv/bin/python scripts/bench_api.py [--db sqlite|postgresql|both] [--connections 64,256,500]
        [--duration 10] [--escrows 100] [--client auto|wrk|httpx] [--burst 64,256,500]
        [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import create_engine, text

from backend.canonical import canonical_json, terms_hash
from backend.chain.connect import connect
from backend.chain.node import find_free_port, start_hardhat_node
from backend.config import Settings
from backend.db.models import Review
from backend.index.indexer import Indexer, escrow_events
from backend.oracle.terms_store import store_terms
from backend.services import Services, build_services
from tests.confirmations.support import TestClient, sign
from tests.support import CHALLENGE, ETH, EscrowEnv, build_env

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- api:begin -->", "<!-- api:end -->"
TERMS = {"version": 1, "title": "Managed hosting SLA", "period_seconds": 86400,
         "kpis": [{"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
                  {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300}],
         "consecutive_periods": 3,
         "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60}}
REVIEW = {"comment": "Deployed and verified, one minor issue.", "attachments": []}
PG_ADMIN_URL = os.environ.get(
    "ESCROW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Result:
    database: str
    cache: str
    client: str
    connections: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    #: CPU time the server process spent per request (user + system), when /proc tells it
    cpu_ms: float | None
    #: answers the server counted as 503 (refused by admission control, `overloaded`)
    refused: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


# ------------------------------------------------------------------ chain data


def populate(env: EscrowEnv, count: int) -> int:
    """Creates `count` escrows in a mix of states; returns the id of the richest one (4
    milestones: two settled, one delivered, one breach reported), the one the load asks for."""
    e = env.escrow
    hashed = terms_hash(TERMS)
    for i in range(count - 1):
        p = env.params(terms_hash=hashed)
        escrow_id = env.create_active(p) if i % 2 else env.create(p)
        if i % 4 == 1:
            e.confirm(escrow_id, 0, 4, None, env.client)
    rich = env.create_active(env.params((ETH, ETH, ETH, ETH), terms_hash=hashed))
    env.deliver(rich, 0)
    e.confirm(rich, 0, 4, terms_hash(REVIEW), env.client)
    e.confirm(rich, 1, 5, None, env.client)
    env.deliver(rich, 2)
    e.report_breach(rich, 1, 0, b"\x44" * 32, env.oracle)
    env.advance(CHALLENGE // 2)
    return rich


def store_documents(services: Services) -> None:
    """The terms document and the review the escrows refer to, as the API would have stored
    them (`POST /api/terms`, the confirmation relay)."""
    with services.sessions() as session, session.begin():
        store_terms(session, TERMS)
        session.add(Review(comment_hash="0x" + terms_hash(REVIEW).hex(),
                           canonical=canonical_json(REVIEW).decode(), created_at=int(time.time())))


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"qe_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ------------------------------------------------------------------ server


def serve(args: argparse.Namespace) -> None:
    """The server side (run in a subprocess): the API app, one uvicorn worker."""
    import uvicorn

    from backend.api.app import create_app
    from backend.api.routes.metrics import install_metrics

    settings = Settings(
        rpc_url=args.rpc_url, database_url=args.database_url, data_dir=Path(args.data_dir)
    )
    services = build_services(
        settings, contract_address=args.contract, deployment_block=args.deployment_block
    )
    app = create_app(services)
    install_metrics(app)
    running = None
    if args.with_workers:
        from backend.workers import start_workers

        running = start_workers(services)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_level="warning",
                    access_log=False)
    finally:
        if running is not None:
            running.shutdown()


@contextlib.contextmanager
def server(rpc_url: str, database_url: str, contract: str, block: int, workdir: Path,
           *, cache: bool, workers: bool = False) -> Iterator[tuple[str, int]]:
    port = find_free_port()
    command = [
        sys.executable, __file__, "serve", "--rpc-url", rpc_url, "--database-url", database_url,
        "--contract", contract, "--deployment-block", str(block), "--port", str(port),
        "--data-dir", str(workdir),
    ] + (["--with-workers"] if workers else [])
    log = (workdir / f"uvicorn-{port}.log").open("wb")
    env = dict(os.environ)
    if not cache:
        env["ESCROW_API_DETAIL_CACHE_SIZE"] = "0"
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = (workdir / f"uvicorn-{port}.log").read_text()
                raise RuntimeError(f"uvicorn exited: {output}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not answer within 60 s")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# ------------------------------------------------------------------ load


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: (requests, errors, elapsed seconds, p50, p90, p99 in ms)
Load = tuple[int, int, float, float, float, float]


def run_wrk(url: str, connections: int, seconds: float) -> Load:
    """(requests, errors, elapsed, p50, p90, p99 in ms) from `wrk --latency`."""
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{int(seconds)}s", "--latency",
         "--timeout", "10s", url],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    assert match is not None, out
    requests = int(match.group(1))
    elapsed = float(match.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(3)]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())

    def pct(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert m is not None, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return requests, errors, elapsed, pct("50"), pct("90"), pct("99")


async def _httpx_load(url: str, connections: int, seconds: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    response = await client.get(url)
                except httpx.TransportError:  # a connection refused, reset or timed out
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return latencies, errors, elapsed


def quantile(values: list[float], q: float) -> float | None:
    """The `q` quantile of `values` (0.5, 0.99 ...), interpolated inclusively so it stays
    within their range (the default, exclusive method puts a small sample's p99 above its
    maximum); None if there are none."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]
    return min(max(cut, ordered[0]), ordered[-1])  # not past them by a rounding error either


def run_httpx(url: str, connections: int, seconds: float) -> Load:
    latencies, errors, elapsed = asyncio.run(_httpx_load(url, connections, seconds))
    ms = [x * 1000 for x in latencies] or [0.0]
    p50, p90, p99 = (quantile(ms, q) or 0.0 for q in (0.5, 0.9, 0.99))
    return len(latencies), errors, elapsed, p50, p90, p99


def load(url: str, client: str, connections: int, seconds: float) -> Load:
    if client == "wrk":
        return run_wrk(url, connections, seconds)
    return run_httpx(url, connections, seconds)


# ------------------------------------------------------------------ confirmation bursts

#: a confirmation POST ready to send: (path, body)
Post = tuple[str, dict[str, object]]
#: milestones per escrow of the confirmation bursts (the contract's maximum)
BURST_MILESTONES = 64


@dataclass
class Burst:
    """One burst: `clients` signed confirmation POSTs sent at once, one per client."""

    database: str
    clients: int
    seconds: float
    #: answers by class: "2xx", "503", "4xx" (other refusals), "5xx" (503 excepted), "error"
    #: (a transport error or no answer within the client's 60 s)
    counts: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: the slowest `/api/health` answer during the burst, and how many were not 200
    health_max_ms: float
    health_failures: int
    #: p50, p99 and the slowest as the server measured them (`server_quantile`)
    server_p50: str = "n/a"
    server_p99: str = "n/a"
    server_max: str = "n/a"

    @property
    def rps(self) -> float:
        return self.clients / self.seconds


def burst_milestones(
    env: EscrowEnv, count: int, per_escrow: int = BURST_MILESTONES
) -> list[tuple[int, int]]:
    """`count` fresh milestones, (escrow id, milestone): active escrows of `per_escrow`
    milestones each (by default `BURST_MILESTONES`), created for them."""
    escrows = [env.create_active(env.params((ETH // 1000,) * per_escrow))
               for _ in range(-(-count // per_escrow))]
    return [(escrows[n // per_escrow], n % per_escrow) for n in range(count)]


def sign_confirmations(env: EscrowEnv, services: Services,
                       milestones: list[tuple[int, int]]) -> list[Post]:
    """A confirmation POST ready to send, (path, body), for each of `milestones`: the escrows
    indexed first, typed data from the app itself (in process), signed by the client."""
    Indexer(services).sync()
    from backend.api.app import create_app

    client = TestClient(create_app(services))
    deadline = env.now() + 6 * 3_600
    posts = []
    for n, (escrow_id, milestone) in enumerate(milestones):
        body: dict[str, object] = {"rating": 1 + n % 5, "comment": f"burst {n}",
                                   "deadline": deadline}
        base = f"/api/escrows/{escrow_id}/milestones/{milestone}"
        answer = client.post(f"{base}/typed-data", json=body)
        assert answer.status_code == 200, answer.text
        body["signature"] = sign(env.parties.client, answer.json())
        posts.append((f"{base}/confirmations", body))
    return posts


def signed_confirmations(env: EscrowEnv, services: Services, count: int) -> list[Post]:
    """`count` confirmation POSTs ready to send, (path, body), each for a milestone of its own
    (`burst_milestones`, `sign_confirmations`)."""
    return sign_confirmations(env, services, burst_milestones(env, count))


def answer_class(status: int) -> str:
    if status == 503:
        return "503"
    return f"{status // 100}xx" if status // 100 in (2, 4, 5) else "other"


class HealthWatch:
    """Asks `/api/health` every 0.25 s from a thread of its own, over its own kept-alive
    `http.client` connection, while `watching` runs: the answers' latencies are the server's,
    not delayed by the burst's own client, which shares this process's event loop."""

    def __init__(self, base: str) -> None:
        parts = urllib.parse.urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    connection.request("GET", "/api/health")
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    connection.close()
                    ok = False
                self.latencies.append(time.perf_counter() - start)
                self.failures += not ok
                self._stop.wait(0.25)
        finally:
            connection.close()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(70)


async def _burst(base: str, posts: list[Post]) -> tuple[list[float], dict[str, int], float]:
    latencies: list[float] = []
    counts = {"2xx": 0, "503": 0, "4xx": 0, "5xx": 0, "error": 0}
    limits = httpx.Limits(max_connections=len(posts), max_keepalive_connections=len(posts))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def one(path: str, body: dict[str, object]) -> None:
            start = time.perf_counter()
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError:
                counts["error"] += 1
                return
            latencies.append(time.perf_counter() - start)
            counts[answer_class(response.status_code)] = counts.get(
                answer_class(response.status_code), 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one(path, body) for path, body in posts))
        elapsed = time.perf_counter() - began
    return latencies, counts, elapsed


#: the route of the confirmation POSTs, as `/metrics` names it
CONFIRM_ROUTE = "/api/escrows/{escrow_id}/milestones/{milestone}/confirmations"


def server_buckets(base: str) -> dict[float, float]:
    """The server's own latency histogram of the confirmation POSTs (`/metrics`,
    `escrow_http_request_duration_seconds`): cumulative count per bucket bound, in seconds.
    It starts when the server has read the request's headers, so it leaves out the time the
    load generator takes to open its connections and send."""
    text_ = httpx.get(f"{base}/metrics", timeout=30).text
    found: dict[float, float] = {}
    for line in text_.splitlines():
        if (line.startswith("escrow_http_request_duration_seconds_bucket{")
                and 'method="POST"' in line and f'route="{CONFIRM_ROUTE}"' in line):
            bound = re.search(r'le="([^"]+)"', line)
            assert bound is not None, line
            found[float(bound.group(1))] = float(line.rsplit(" ", 1)[1])
    return found


def server_statuses(base: str, method: str, route: str) -> dict[str, float]:
    """Requests the server answered on `route`, by status (`/metrics`, `escrow_http_requests`)."""
    found: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
        if (line.startswith("escrow_http_requests_total{") and f'method="{method}"' in line
                and f'route="{route}"' in line):
            status = re.search(r'status="(\d+)"', line)
            assert status is not None, line
            found[status.group(1)] = float(line.rsplit(" ", 1)[1])
    return found


def server_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The bucket bound under which a fraction `q` of the burst's requests were served, as the
    server measured them: "<= 2.5 s", or "> 10 s" beyond the last bound."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= q * total:
            return f"> {bounds[-2]:g} s" if bound == float("inf") else f"<= {bound:g} s"
    return "n/a"


def burst(base: str, kind: str, posts: list[Post]) -> Burst:
    before = server_buckets(base)
    watch = HealthWatch(base)
    with watch.watching():
        latencies, counts, elapsed = asyncio.run(_burst(base, posts))
    health, health_failures = watch.latencies, watch.failures
    after = server_buckets(base)
    ms = sorted(x * 1000 for x in latencies) or [0.0]
    b = Burst(kind, len(posts), elapsed, counts, quantile(ms, 0.5) or 0.0,
              quantile(ms, 0.99) or 0.0, ms[-1],
              max(health, default=0.0) * 1000, health_failures,
              server_quantile(before, after, 0.5), server_quantile(before, after, 0.99),
              server_quantile(before, after, 1.0))
    print(f"{kind} / burst of {b.clients} confirmation POSTs: {b.rps:,.0f} answers/s, "
          f"p50 {b.p50_ms:.0f} ms, p99 {b.p99_ms:.0f} ms, max {b.max_ms:.0f} ms (server: p50 "
          f"{b.server_p50}, p99 {b.server_p99}, max {b.server_max}), {counts}, "
          f"health slowest {b.health_max_ms:.0f} ms ({health_failures} not 200), "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    return b


def burst_table(bursts: list[Burst], load_avg: str) -> str:
    lines = [
        f"Bursts of N signed confirmation POSTs sent at once by N clients (one per client, each "
        f"a milestone of its own), the server running its workers (the relayer sends them "
        f"meanwhile), `/api/health` asked every 0.25 s by one more client in a thread of its "
        f"own (until 2026-12-02 it shared the burst's event loop, which delayed its answers by "
        f"seconds); latencies as the "
        f"load generator saw them (it opens N connections at once), and as the server measured "
        f"them (`/metrics` histogram bucket bounds); same machine (load average {load_avg}).",
        "",
        "| database | clients | answers/s | p50 ms | p99 ms | max ms | server p50 | server p99 "
        "| server max | 2xx | 503 | other 4xx | 5xx | no answer | slowest health ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in bursts:
        c = b.counts
        lines.append(
            f"| {b.database} | {b.clients} | {b.rps:,.0f} | {b.p50_ms:.0f} | {b.p99_ms:.0f} "
            f"| {b.max_ms:.0f} | {b.server_p50} | {b.server_p99} | {b.server_max} "
            f"| {c['2xx']} | {c['503']} | {c['4xx']} | {c['5xx']} "
            f"| {c['error']} | {b.health_max_ms:.0f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ report


def server_stack() -> str:
    """What uvicorn's `auto` picks here: httptools and uvloop when installed."""
    from importlib.util import find_spec

    http = "httptools" if find_spec("httptools") else "h11"
    loop = "uvloop" if find_spec("uvloop") else "asyncio loop"
    return f"{http}, {loop}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(results: list[Result], escrow_events: int, escrows: int, load_avg: str) -> str:
    lines = [
        f"Measured on {time.strftime('%Y-%m-%d')}: `GET /api/escrows/{{id}}` of an escrow with "
        f"{escrow_events} indexed events ({escrows} escrows indexed), one uvicorn worker "
        f"({server_stack()}), {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared by the server, the load generator, the Hardhat node and "
        f"other jobs (load average {load_avg} during the run).",
        "",
        "| database | detail cache | load generator | connections | requests/s | p50 ms | p90 ms "
        "| p99 ms | errors | of which 503 | server CPU ms/request |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.database} | {r.cache} | {r.client} | {r.connections} | {r.rps:,.0f} "
            f"| {r.p50_ms:.1f} "
            f"| {r.p90_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {r.refused} | {_ms(r.cpu_ms)} |"
        )
    return "\n".join(lines)


def write_doc(body: str) -> None:
    text_ = DOC.read_text()
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text_ and END in text_:
        text_ = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: block, text_,
                       flags=re.S)
    else:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block under '## API'")
    DOC.write_text(text_)


def measure(rpc_url: str, database_url: str, env: EscrowEnv, escrow_id: int, workdir: Path,
            kind: str, client: str, cache: bool, args: argparse.Namespace) -> list[Result]:
    """The GET load at each of `args.connections`, on one server."""
    results = []
    with server(rpc_url, database_url, env.escrow.address, env.deployment_block, workdir,
                cache=cache) as (base, pid):
        target = f"{base}/api/escrows/{escrow_id}"
        assert httpx.get(target).status_code == 200
        load(target, client, args.connections[0], min(2.0, args.duration))  # warm-up
        for connections in args.connections:
            route = "/api/escrows/{escrow_id}"
            before = server_statuses(base, "GET", route)
            cpu_before = cpu_seconds(pid)
            n, errors, elapsed, p50, p90, p99 = load(target, client, connections, args.duration)
            cpu_after = cpu_seconds(pid)
            after = server_statuses(base, "GET", route)
            refused = int(after.get("503", 0) - before.get("503", 0))
            cpu_ms = (
                None if cpu_before is None or cpu_after is None or n == 0
                else (cpu_after - cpu_before) * 1000 / n
            )
            r = Result(kind, "on" if cache else "off", client, connections, elapsed, n, errors,
                       p50, p90, p99, cpu_ms, refused)
            print(f"{kind} / cache {r.cache} / {client} / {connections} connections: "
                  f"{r.rps:,.0f} req/s, p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, "
                  f"{errors} errors of which {refused} were 503 overloaded (server's count), "
                  f"server CPU {_ms(cpu_ms)} ms/request, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            results.append(r)
    return results


def bench(args: argparse.Namespace) -> None:
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    caches = {"both": [True, False], "on": [True], "off": [False]}[args.cache]
    bursts_of = [int(n) for n in args.burst.split(",") if n.strip()]
    load_before = os.getloadavg()[0]
    results: list[Result] = []
    bursts: list[Burst] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, start_hardhat_node() as node:
        workdir = Path(tmp)
        env = build_env(connect(node.url))
        print(f"creating {args.escrows} escrows on {node.url} ...", flush=True)
        rich = populate(env, args.escrows)
        for kind in kinds:
            with database(kind, workdir) as url:
                settings = Settings(rpc_url=node.url, database_url=url, data_dir=workdir)
                services = build_services(settings, w3=env.w3, contract_address=env.escrow.address,
                                          deployment_block=env.deployment_block)
                started = time.perf_counter()
                stored = Indexer(services).sync()
                print(f"{kind}: indexed {stored} events in {time.perf_counter() - started:.1f} s")
                store_documents(services)
                with services.sessions() as session:
                    events = len(escrow_events(session, services.chain_id, rich))
                if bursts_of:
                    started = time.perf_counter()
                    posts = signed_confirmations(env, services, sum(bursts_of))
                    print(f"{kind}: {len(posts)} confirmations signed in "
                          f"{time.perf_counter() - started:.1f} s", flush=True)
                services.engine.dispose()
                if args.connections:
                    for cache in caches:
                        results += measure(node.url, url, env, rich, workdir, kind, client,
                                           cache, args)
                if bursts_of:
                    with server(node.url, url, env.escrow.address, env.deployment_block, workdir,
                                cache=True, workers=True) as (base, _pid):
                        for n in bursts_of:
                            bursts.append(burst(base, kind, posts[:n]))
                            posts = posts[n:]
    load_avg = f"{load_before:.1f} to {os.getloadavg()[0]:.1f}"
    report = table(results, events, args.escrows, load_avg) if results else ""
    if bursts:
        report += ("\n\n" if report else "") + burst_table(bursts, load_avg)
    print()
    print(report)
    if args.write:
        write_doc(report)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="(internal) run the API server for the benchmark")
    s.add_argument("--rpc-url", required=True)
    s.add_argument("--database-url", required=True)
    s.add_argument("--contract", required=True)
    s.add_argument("--deployment-block", type=int, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--with-workers", action="store_true")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--connections", default="64,256,500",
                        type=lambda v: [int(n) for n in v.split(",") if n.strip()],
                        help="concurrent connections of the GET load, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--escrows", type=int, default=100)
    parser.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--cache", choices=["both", "on", "off"], default="both",
                        help="the server's detail cache (off: every request folds the events)")
    parser.add_argument("--burst", default="64,256,500",
                        help="concurrent confirmation POSTs per burst, comma-separated "
                        "(empty: no bursts)")
    parser.add_argument("--write", action="store_true", help="record in docs/performance.md")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()

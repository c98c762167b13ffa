"""Prometheus metrics (`GET /metrics`).

Request counts and latencies per route template are recorded by a small ASGI middleware
(`RequestMetricsMiddleware`, installed by `install_metrics`); the state gauges (indexed and head
block, escrows by status, every sender's outbox by status and the age of its oldest transaction
in flight) are read from the database and the node at scrape time by `StateCollector`, the API
process's admission places by `AdmissionCollector`; the node
through `services.probe`, so a node that does not answer within `ESCROW_HEALTH_NODE_TIMEOUT`
seconds leaves the head out instead of holding the scrape. Each app has its own registry, so
several apps in one process (tests) never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.admission import Admission
from backend.confirmations.relayer import Relayer
from backend.db.models import ChainCursor, EscrowRow
from backend.escrows.listing import STATUSES
from backend.oracle.submitter import Submitter
from backend.outbox.sender import Sender
from backend.services import Services

#: every sender whose outbox is reported (`backend/outbox/sender.py`)
SENDERS: tuple[type[Sender[Any]], ...] = (Relayer, Submitter)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StateCollector(Collector):
    """Gauges computed on each scrape; a part that cannot be read is left out, not faked."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration; the names are fixed and unique

    def collect(self) -> Iterator[Metric]:
        s = self.services
        head = GaugeMetricFamily("escrow_head_block", "Latest block number reported by the node")
        w3 = s.w3
        try:
            head.add_metric([], s.probe.read(
                "block_number", lambda: int(w3.eth.block_number),
                s.settings.health_node_timeout, what="latest block",
            ))
            yield head
        except Exception:  # node unreachable or not answering in time: no head sample
            pass
        with s.sessions() as session:
            cursor = session.get(ChainCursor, (s.chain_id, s.escrow.address))
            indexed = GaugeMetricFamily("escrow_indexed_block", "Last block the indexer ingested")
            if cursor is not None:
                indexed.add_metric([], cursor.block_number)
            yield indexed
            by_status = dict(
                list(
                    session.execute(
                        select(EscrowRow.status, func.count())
                        .where(EscrowRow.chain_id == s.chain_id)
                        .group_by(EscrowRow.status)
                    )
                )
            )
            escrows = GaugeMetricFamily(
                "escrow_escrows", "Indexed escrows by status", labels=["status"]
            )
            for status in sorted(set(STATUSES) | set(by_status)):
                escrows.add_metric([status], by_status.get(status, 0))
            yield escrows
            yield from outbox_metrics(session, s.chain_id, s.clock.service_time())
        yield from worker_metrics(s)


def worker_metrics(services: Services) -> Iterator[Metric]:
    """`escrow_worker_running{worker}`: 1 while a worker of this process runs, 0 while it is
    restarting, off or stopped; `escrow_worker_restarts{worker}`: times it was started again
    after an error (none of either when the process runs no worker)."""
    running = GaugeMetricFamily(
        "escrow_worker_running", "1 while the worker runs in this process, else 0",
        labels=["worker"],
    )
    restarts = GaugeMetricFamily(
        "escrow_worker_restarts", "Times the worker was started again after an error",
        labels=["worker"],
    )
    for status in services.workers.all():
        running.add_metric([status.name], 1 if status.state == "running" else 0)
        restarts.add_metric([status.name], status.restarts)
    yield running
    yield restarts


def outbox_metrics(session: Session, chain_id: int, now: int) -> Iterator[Metric]:
    """`escrow_outbox_rows{sender, status}`: every sender's outbox rows by status (every status,
    0 included); `escrow_outbox_oldest_in_flight_seconds{sender}`: seconds since the oldest of
    its signed-or-sent transactions was signed (0 when none is in flight)."""
    rows = GaugeMetricFamily(
        "escrow_outbox_rows", "Rows of each sender's outbox by status", labels=["sender", "status"]
    )
    oldest = GaugeMetricFamily(
        "escrow_outbox_oldest_in_flight_seconds",
        "Age of each sender's oldest signed or sent transaction not final yet (0: none)",
        labels=["sender"],
    )
    for sender in SENDERS:
        for status, count in sender.outbox_counts(session, chain_id).items():
            rows.add_metric([sender.name, status], count)
        since = sender.oldest_in_flight(session, chain_id)
        oldest.add_metric([sender.name], 0 if since is None else max(0, now - since))
    yield rows
    yield oldest


class AdmissionCollector(Collector):
    """The API process's places (`backend/api/admission.py`), read on each scrape:
    `escrow_api_places` (the limit), `escrow_api_places_in_use`, `escrow_api_places_peak`,
    `escrow_api_waiting` (requests waiting for a place), and the counters
    `escrow_api_admitted_total` and `escrow_api_refused_total` (503 `overloaded`) since start;
    nothing before the app has its admission."""

    def __init__(self, admission: Callable[[], Admission | None]) -> None:
        self.admission = admission

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        admission = self.admission()
        if admission is None:
            return
        for name, what, value in (
            ("escrow_api_places", "Requests this API process admits at once", admission.limit),
            ("escrow_api_places_in_use", "Places taken now", admission.in_use),
            ("escrow_api_places_peak", "Most places taken at once since start", admission.peak),
            ("escrow_api_waiting", "Requests waiting for a place now", admission.waiting),
        ):
            gauge = GaugeMetricFamily(name, what)
            gauge.add_metric([], value)
            yield gauge
        for name, what, value in (
            ("escrow_api_admitted", "Requests given a place since start", admission.admitted),
            ("escrow_api_refused", "Requests refused with 503 overloaded since start",
             admission.refused),
        ):
            counter = CounterMetricFamily(name, what)
            counter.add_metric([], value)
            yield counter


class AppMetrics:
    """The registry of one app with its request metrics (and its admission's, when
    `admission` is given: a callable, as the app makes its admission when it is created)."""

    def __init__(
        self, services: Services, admission: Callable[[], Admission | None] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "escrow_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "escrow_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StateCollector(services))
        if admission is not None:
            self.registry.register(AdmissionCollector(admission))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/escrows/{escrow_id}`), never the raw path, so
    label values stay few; requests that matched no route are counted as `unmatched`."""
    route: Any = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: AppMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(
                scope["method"], _route_template(scope), status, time.perf_counter() - start
            )

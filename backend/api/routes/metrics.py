"""`GET /metrics`: Prometheus text format, and `install_metrics` for the request metrics."""

from __future__ import annotations

import threading

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.api.metrics import AppMetrics, RequestMetricsMiddleware
from backend.api.schemas import raw_body
from backend.services import Services

router = APIRouter(tags=["metrics"])
_LOCK = threading.Lock()


def app_metrics(app: FastAPI) -> AppMetrics:
    """The app's metrics registry, created on first use."""
    metrics: AppMetrics | None = getattr(app.state, "metrics", None)
    if metrics is None:
        with _LOCK:
            metrics = getattr(app.state, "metrics", None)
            if metrics is None:
                services: Services = app.state.services
                metrics = AppMetrics(
                    services, admission=lambda: getattr(app.state, "admission", None)
                )
                app.state.metrics = metrics
    return metrics


def install_metrics(app: FastAPI) -> None:
    """Counts every request and its latency per route template (call once, before serving;
    calling it again does nothing)."""
    if getattr(app.state, "metrics_installed", False):
        return
    app.add_middleware(RequestMetricsMiddleware, metrics=app_metrics(app))
    app.state.metrics_installed = True


@router.get(
    "/metrics",
    response_class=Response,
    responses=raw_body(
        CONTENT_TYPE_LATEST.split(";")[0], "Prometheus text exposition format", {"type": "string"}
    ),
)
def metrics(request: Request) -> Response:
    """Request counts and latencies per route, indexed and head block, escrows by status, the
    senders' outboxes by status, the workers of this process and its admission places."""
    body = app_metrics(request.app).render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)

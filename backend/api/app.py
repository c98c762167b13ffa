"""The FastAPI application: routers, error handlers and the shared services."""

from __future__ import annotations

from fastapi import FastAPI

from backend.api.errors import install_error_handlers
from backend.api.routes import ROUTERS
from backend.api.routes.metrics import install_metrics
from backend.services import Services


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Quality Escrow",
        version="0.1.0",
        description="Escrowed payments released by quality ratings and refunded by KPI evidence.",
    )
    app.state.services = services
    install_error_handlers(app)
    install_metrics(app)
    for router in ROUTERS:
        app.include_router(router)
    return app

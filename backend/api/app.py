"""The FastAPI application: routers, error handlers and the shared services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from backend.api.admission import Admission, set_thread_limit
from backend.api.body_bounds import BodyBounds
from backend.api.deps import AdmittedDep, live_deployment
from backend.api.errors import install_error_handlers
from backend.api.routes import ROUTERS, health, metrics
from backend.api.routes.metrics import install_metrics
from backend.api.schemas import declare_body_refusals
from backend.chain.connect import bound_recursion
from backend.services import Services
from backend.web import install_web


def create_app(services: Services) -> FastAPI:
    """The API and pages on `services`. Every request body is bounded (size and JSON nesting,
    `backend.api.body_bounds.BodyBounds`) before any route reads it, and the recursion limit the
    chain libraries raised on import is put back (`bound_recursion`). Requests that use the
    database are admitted up to `ESCROW_API_MAX_CONCURRENCY` at once, and the serving loop's
    threadpool gets `ESCROW_API_THREADS` threads (`backend.api.admission`)."""
    bound_recursion()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        set_thread_limit(services.settings)  # in the serving loop: its threadpool
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="Quality Escrow",
        version="0.1.0",
        description="Escrowed payments released by quality ratings and refunded by KPI evidence.",
        docs_url=None,  # served by backend/web/docs.py with local assets
        redoc_url=None,
    )
    app.state.services = services
    # the process's places (backend/api/admission.py): backpressure instead of stalls
    app.state.admission = Admission.from_settings(services.settings)
    install_error_handlers(app)
    # added first, so it runs inside the metrics middleware: its refusals are counted
    app.add_middleware(BodyBounds)
    install_metrics(app)
    for router in ROUTERS:
        # health and metrics report a lost deployment; every other route refuses to serve it
        always = router in (health.router, metrics.router)
        # and are not admitted (`admitted`): they read with connections of their own reserve
        app.include_router(
            router, dependencies=[] if always else [AdmittedDep, Depends(live_deployment)]
        )
    install_web(app)
    document = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document with the refusals of `BodyBounds` on every operation with a body."""
        return declare_body_refusals(document())

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
    return app


def create_app_from_settings() -> FastAPI:
    """The app on services of its own, built from the environment's settings
    (`backend.config.get_settings`): the factory each API process of `escrow serve --workers N`
    calls (uvicorn `factory=True`). Raises what `build_services` raises (no deployment, a
    deployment conflict, a node or database that does not answer)."""
    from backend import config
    from backend.services import build_services

    return create_app(build_services(config.get_settings()))

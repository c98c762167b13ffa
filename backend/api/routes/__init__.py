"""Every router of the API; `create_app` includes them in this order."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.routes import accounts, escrows, health, metrics, terms, webhooks
from backend.api.routes.attachments import router as attachments_router
from backend.api.routes.confirmations import router as confirmations_router

ROUTERS: list[APIRouter] = [
    health.router,
    terms.router,
    escrows.router,
    accounts.router,
    metrics.router,
    webhooks.router,
    attachments_router,
    confirmations_router,
]

"""Every router of the API; `create_app` includes them in this order (`terms_schema` before
`terms`, so `/api/terms/{terms_hash}` does not take `schema` for a hash).

Each router carries its module's common path prefix (`/api/escrows`, `/api/terms`, ...; `/api`
where a module serves several resources) and its tag, so a route names only its own part."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.routes import accounts, escrows, health, metrics, terms, webhooks
from backend.api.routes.acts import router as acts_router
from backend.api.routes.analytics import router as analytics_router
from backend.api.routes.attachments import router as attachments_router
from backend.api.routes.audit import router as audit_router
from backend.api.routes.config import router as config_router
from backend.api.routes.confirmations import router as confirmations_router
from backend.api.routes.evidence import router as evidence_router
from backend.api.routes.measurements import router as measurements_router
from backend.api.routes.terms_schema import router as terms_schema_router
from backend.api.routes.transactions import router as transactions_router

ROUTERS: list[APIRouter] = [
    health.router,
    terms_schema_router,
    terms.router,
    escrows.router,
    accounts.router,
    metrics.router,
    webhooks.router,
    attachments_router,
    confirmations_router,
    measurements_router,
    evidence_router,
    analytics_router,
    audit_router,
    acts_router,
    config_router,
    transactions_router,
]

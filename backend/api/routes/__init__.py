"""Every router of the API; `create_app` includes them in this order."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.routes import health

ROUTERS: list[APIRouter] = [health.router]

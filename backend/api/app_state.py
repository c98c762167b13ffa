"""Dependencies on per-app state that need no worker thread (plain `async def`, attribute access
only): the services, and caches created on first use and kept on `app.state`: token metadata
(`TokensDep`: decimals and symbols read from the chain once per token) and escrow detail bodies
(`DetailCacheDep`, see `backend.escrows.detail.DetailCache`).

`deps.ServicesDep` and `deps.SessionDep` are synchronous, so FastAPI runs each in the thread pool;
the hot `GET /api/escrows/{id}` uses these instead and does its database work in one hop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from backend.chain.tokens import TokenMetadata
from backend.escrows.detail import DetailCache
from backend.services import Services

T = TypeVar("T")
_LOCK = threading.Lock()


async def get_app_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _app_cache(request: Request, name: str, build: Callable[[Services], T]) -> T:
    state = request.app.state
    value: T | None = getattr(state, name, None)
    if value is None:
        with _LOCK:
            value = getattr(state, name, None)
            if value is None:
                value = build(state.services)
                setattr(state, name, value)
    return value


async def get_tokens(request: Request) -> TokenMetadata:
    return _app_cache(request, "token_metadata", lambda s: TokenMetadata(s.w3))


async def get_detail_cache(request: Request) -> DetailCache:
    return _app_cache(
        request, "escrow_detail_cache", lambda s: DetailCache(s.settings.api_detail_cache_size)
    )


AppServicesDep = Annotated[Services, Depends(get_app_services)]
TokensDep = Annotated[TokenMetadata, Depends(get_tokens)]
DetailCacheDep = Annotated[DetailCache, Depends(get_detail_cache)]

"""Server-rendered pages for clients, providers, arbiters and auditors, their static files, and
the API documentation served offline.

`install_web(app)` mounts everything on the API's app: `/static` (CSS, the plain JavaScript
modules, vendored assets), the pages (`pages.py`) and `/docs` and `/redoc` (`docs.py`). The
browser needs no Ethereum library: the API hands out typed data and ready transactions and the
pages talk to the wallet through EIP-1193, found by EIP-6963 (`static/js/wallet.js`).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from backend.api.deps import live_deployment
from backend.web.create_pages import router as create_router
from backend.web.docs import install_docs
from backend.web.escrow_pages import router as escrow_router
from backend.web.pages import router as pages_router
from backend.web.render import STATIC_DIR


def install_web(app: FastAPI) -> None:
    """Mounts the static files, the API docs and the pages on `app`."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_docs(app)
    # a page shows nothing of a deployment the chain lost (as the API routes); `/escrows/new`
    # before `/escrows/{escrow_id}`
    for router in (pages_router, create_router, escrow_router):
        app.include_router(router, dependencies=[Depends(live_deployment)])

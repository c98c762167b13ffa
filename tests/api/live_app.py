"""The app served by uvicorn in a process of its own, for tests where a request could kill the
process (a crash must show as a dead child, not as a dead test run):

    python -m tests.api.live_app PORT DATA_DIR [--unbounded]

It deploys the escrow on a fresh in-process chain (`tester://`), serves `create_app` on
127.0.0.1:PORT with SQLite in DATA_DIR, and writes DATA_DIR/routes.json: `[[method, path], ...]`
of every route of the served app that takes a body (any method but GET and HEAD), found with
FastAPI's own route walk (`iter_route_contexts`: since FastAPI 0.16x `app.routes` holds one
lazy `_IncludedRouter` per `include_router`, not the `APIRoute`s themselves).

`--unbounded` serves the app as it was before its body bounds: without `BodyBounds` and with the
recursion limit the chain libraries set on import (100,000)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from backend.api.app import create_app
from backend.api.body_bounds import BodyBounds
from backend.chain.connect import in_process_chain
from backend.config import Settings
from backend.services import build_services
from tests.support import build_env

#: what py_ecc sets on import (`py_ecc/__init__.py`)
LIBRARY_RECURSION_LIMIT = 100_000


def body_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route that may take a body, sorted."""
    found = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or ():
            if method not in ("GET", "HEAD") and route.path:
                found.add((method, route.path))
    return sorted(found)


def main(argv: list[str]) -> None:
    port, data_dir = int(argv[0]), Path(argv[1])
    env = build_env(in_process_chain())
    services = build_services(
        Settings(database_url=f"sqlite:///{data_dir / 'live.db'}", data_dir=data_dir),
        w3=env.w3, contract_address=env.escrow.address, deployment_block=env.deployment_block,
    )
    app = create_app(services)
    if "--unbounded" in argv:
        bounds: object = BodyBounds
        app.user_middleware = [m for m in app.user_middleware if m.cls is not bounds]
        sys.setrecursionlimit(LIBRARY_RECURSION_LIMIT)
    (data_dir / "routes.json").write_text(json.dumps(body_routes(app)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Shared scaffolding of the REST API tests: the app on a chain and a database, the indexer, and
sending the API's ready transactions from a wallet address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from hexbytes import HexBytes
from web3.types import TxReceipt, Wei

from backend.api.app import create_app
from backend.config import Settings
from backend.index.indexer import Indexer
from backend.services import Services, build_services
from tests.support import EscrowEnv

ZERO = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32


@dataclass
class Api:
    env: EscrowEnv
    services: Services
    app: FastAPI
    http: TestClient

    def index(self) -> int:
        """Runs the indexer up to the head; returns how many logs it stored."""
        return Indexer(self.services).sync()

    def send(self, sender: str, tx: dict[str, Any]) -> TxReceipt:
        """Sends a `{to, data, value}` the API handed out, as a wallet would."""
        w3 = self.env.w3
        tx_hash = w3.eth.send_transaction(
            {"from": sender, "to": tx["to"], "data": HexBytes(tx["data"]),
             "value": Wei(int(tx["value"], 16))}
        )
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, receipt
        return receipt

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def error(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, str]:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        body: dict[str, str] = response.json()
        assert set(body) == {"error", "detail"}, body
        return body


@contextmanager
def api_on(
    env: EscrowEnv, database_url: str, tmp_path: Path, **settings: Any
) -> Iterator[Api]:
    """The app on `env`'s chain and the database, with more `Settings` fields if given."""
    services = build_services(
        Settings(database_url=database_url, data_dir=tmp_path, **settings),
        w3=env.w3,
        contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )
    app = create_app(services)
    try:
        yield Api(env, services, app, TestClient(app))
    finally:
        services.engine.dispose()

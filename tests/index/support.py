"""Helpers shared by the indexer and health tests: services over a test chain and database, the
chain's own view of the contract's logs, and providers that misbehave on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import requests
from sqlalchemy import select
from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from backend.config import Settings
from backend.db.models import ChainCursor, EscrowRow, EventLog
from backend.services import Services, build_services
from tests.support import EscrowEnv

LogKey = tuple[str, int, int, str]  # tx hash, log index, block number, block hash


@contextmanager
def services_for(
    env: EscrowEnv,
    database_url: str,
    tmp_path: Path,
    *,
    w3: Web3 | None = None,
    address: str | None = None,
    **settings: Any,
) -> Iterator[Services]:
    services = build_services(
        Settings(database_url=database_url, data_dir=tmp_path, **settings),
        w3=w3 or env.w3,
        contract_address=address or env.escrow.address,
        deployment_block=env.deployment_block,
    )
    try:
        yield services
    finally:
        services.engine.dispose()


def chain_logs(env: EscrowEnv, to_block: int | Literal["latest"] = "latest") -> list[LogKey]:
    """What the node holds for the contract now: the truth the index must equal."""
    logs = env.w3.eth.get_logs(
        {"address": env.escrow.address, "fromBlock": env.deployment_block, "toBlock": to_block}
    )
    return [
        (
            "0x" + bytes(log["transactionHash"]).hex(),
            int(log["logIndex"]),
            int(log["blockNumber"]),
            "0x" + bytes(log["blockHash"]).hex(),
        )
        for log in logs
    ]


def stored_logs(services: Services) -> list[LogKey]:
    with services.sessions() as session:
        rows = session.execute(
            select(EventLog.tx_hash, EventLog.log_index, EventLog.block_number, EventLog.block_hash)
            .order_by(EventLog.block_number, EventLog.log_index)
        )
        return [(t, i, n, h) for t, i, n, h in rows]


def cursor_of(services: Services) -> ChainCursor | None:
    with services.sessions() as session:
        return session.get(ChainCursor, (services.chain_id, services.escrow.address))


def projections(services: Services) -> dict[int, tuple[str, str, str, str, str]]:
    """escrow id -> (status, locked, reserved, refunded, total) as the index folded them."""
    with services.sessions() as session:
        return {
            r.escrow_id: (r.status, r.locked, r.reserved, r.refunded, r.total)
            for r in session.scalars(select(EscrowRow))
        }


def chain_projections(env: EscrowEnv, ids: list[int]) -> dict[int, tuple[str, str, str, str, str]]:
    """The same as `projections`, read from the contract's `getEscrow` views."""
    out = {}
    for escrow_id in ids:
        v = env.escrow.get_escrow(escrow_id)
        total = env.escrow.params(escrow_id).total
        out[escrow_id] = (
            v.status.name.lower(), str(v.locked), str(v.reserved), str(v.refunded), str(total)
        )
    return out


def mine(env: EscrowEnv, blocks: int = 1) -> None:
    env.w3.provider.make_request(RPCEndpoint("hardhat_mine"), [hex(blocks)])


def endpoint(env: EscrowEnv) -> str:
    return str(getattr(env.w3.provider, "endpoint_uri"))  # noqa: B009


class PickyProvider(HTTPProvider):
    """Refuses `eth_getLogs` over more than `max_span` blocks, as public nodes do, and records
    every range it was asked for as (span, accepted)."""

    def __init__(self, url: str, max_span: int) -> None:
        super().__init__(url)
        self.max_span = max_span
        self.calls: list[tuple[int, bool]] = []

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method == "eth_getLogs":
            f = params[0]
            span = int(f["toBlock"], 16) - int(f["fromBlock"], 16) + 1
            accepted = span <= self.max_span
            self.calls.append((span, accepted))
            if not accepted:
                return {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "error": {"code": -32005, "message": "query returned more than 10000 results"},
                }
        return super().make_request(method, params)


class FlakyProvider(HTTPProvider):
    """Drops the connection for the first `failures` requests of `method`."""

    def __init__(self, url: str, method: str, failures: int) -> None:
        super().__init__(url)
        self.method = method
        self.failures_left = failures

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method == self.method and self.failures_left > 0:
            self.failures_left -= 1
            raise requests.ConnectionError(f"connection refused ({self.failures_left} left)")
        return super().make_request(method, params)


class StaleLogsProvider(HTTPProvider):
    """Answers the first `times` `eth_getLogs` calls with logs whose block hash is not the
    chain's, as a node does when a reorg lands between two reads."""

    def __init__(self, url: str, times: int) -> None:
        super().__init__(url)
        self.times_left = times

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        response = super().make_request(method, params)
        if method == "eth_getLogs" and self.times_left > 0 and response.get("result"):
            self.times_left -= 1
            stale = [{**log, "blockHash": "0x" + "ee" * 32} for log in response["result"]]
            return {**response, "result": stale}
        return response

"""Scripted parties on the running service, for the local stack only: the demo escrows `escrow up`
seeds (`backend/escrows/seed.py`) and the story `escrow demo` tells (`backend/escrows/demo.py`).

Everything goes through the REST API as a wallet would (`backend/client`): the API prepares each
transaction or typed data, a dev account's `Wallet` signs and sends it, and the service's own
workers (indexer, relayer, oracle) do the rest. Two things only a development chain allows are
done here directly: Hardhat's public keys by role (chain 31337 only) and moving the chain's
clock (`backend/chain/devchain.py`). KPI samples are posted as a monitoring agent does, with the
escrow's measurement bearer token (issued by the operator, `escrow tokens issue`).
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

from backend.chain import devchain
from backend.chain.connect import HARDHAT_CHAIN_ID, connect
from backend.chain.types import ZERO_ADDRESS
from backend.client import DEV_ROLES, SentTx, ServiceClient, Wallet
from backend.client.api import ServiceRefusedError, ServiceTimeoutError, ServiceUnreachableError
from backend.config import Settings
from backend.errors import ConfigurationError, NotFoundError, QualityEscrowError

__all__ = [
    "DAY",
    "ETH",
    "HOUR",
    "IssueToken",
    "Stage",
    "Stopped",
    "demo_png",
    "operator_token_issuer",
    "wait_until_answering",
]

ETH = 10**18
HOUR = 3_600
DAY = 86_400

#: `issue(escrow_id)`: a new measurement bearer token of the escrow (the operator's action)
IssueToken = Callable[[int], str]

#: the parties a script acts as (dev accounts by role name, `backend.client.DEV_ROLES`)
PARTIES = ("client", "provider", "arbiter")


class Stopped(QualityEscrowError):
    """The script was asked to stop (the service is shutting down)."""

    code = "stopped"


@dataclass
class Stage:
    """The running service (`api`), its chain (`w3`, the RPC URL its `GET /api/config` tells
    wallets to add, or the one given) and a wallet per party (client #1, provider #2,
    arbiter #4). `stop`, when set, ends any wait with `Stopped`."""

    api: ServiceClient
    w3: Web3
    config: dict[str, Any]
    wallets: dict[str, Wallet]
    stop: threading.Event = field(default_factory=threading.Event)
    #: seconds to wait for the indexer, the relayer or the oracle
    timeout: float = 90.0

    @classmethod
    def open(cls, api: ServiceClient, *, rpc_url: str | None = None,
             stop: threading.Event | None = None) -> Stage:
        """The stage of the service at `api`. Raises `ServiceUnreachableError` when it does not
        answer, `ConfigurationError` when its chain is not the local development chain
        (31337: the script uses Hardhat's public keys and moves the chain's time) or it has no
        oracle key, `NodeUnavailable` when the node does not answer."""
        config = api.config()
        chain_id = int(config["chain_id"])
        if chain_id != HARDHAT_CHAIN_ID:
            raise ConfigurationError(
                f"the service at {api.base_url} runs on chain {chain_id}: the demo uses Hardhat's "
                f"public dev keys and moves the chain's clock, so it runs on chain "
                f"{HARDHAT_CHAIN_ID} only"
            )
        if not config.get("oracle"):
            raise ConfigurationError(f"the service at {api.base_url} has no oracle key")
        w3 = connect(rpc_url or str(config["rpc_url"]))
        if int(w3.eth.chain_id) != chain_id:
            raise ConfigurationError(
                f"the node at {rpc_url or config['rpc_url']} is chain {w3.eth.chain_id}, the "
                f"service's is {chain_id}"
            )
        accounts = devchain.dev_accounts(w3, max(DEV_ROLES.values()) + 1)
        wallets = {name: Wallet(w3, accounts[DEV_ROLES[name]]) for name in PARTIES}
        return cls(api, w3, config, wallets, stop or threading.Event())

    # ------------------------------------------------------------------ who

    @property
    def oracle(self) -> str:
        return str(self.config["oracle"])

    def address(self, party: str) -> str:
        return str(self.wallets[party].address)

    def url(self, escrow_id: int) -> str:
        """The escrow's page."""
        return f"{self.api.base_url}/escrows/{escrow_id}"

    # ------------------------------------------------------------------ time

    def chain_time(self) -> int:
        return devchain.latest_timestamp(self.w3)

    def advance_to(self, when: int) -> int:
        """Moves the chain's clock to `when` (unix seconds; a block is mined there), or one
        second on when it is there already; the new chain time."""
        self.check()
        return devchain.advance_time(self.w3, max(1, when - self.chain_time()))

    # ------------------------------------------------------------------ waiting

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")

    def wait_for_escrow(
        self, escrow_id: int, until: Callable[[dict[str, Any]], bool] | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        """`GET /api/escrows/{id}` once the index has it and `until(detail)` holds;
        `ServiceTimeoutError` naming `what` after `timeout`."""
        def pause() -> None:
            self.stop.wait(0.2)
            self.check()

        self.check()
        return self.api.wait_for_escrow(
            escrow_id, until, self.timeout,
            what=what or f"escrow {escrow_id} in the index", pause=pause,
        )

    # ------------------------------------------------------------------ acting

    def create(
        self, terms_document: Mapping[str, Any], amounts: Sequence[int],
        rules: Mapping[str, Any],
    ) -> tuple[int, SentTx]:
        """The client proposes: `POST /api/escrows/prepare` (the terms document stored and
        hashed), the client's wallet sends `createEscrow` with the total; the new escrow's id
        from the receipt's events (`GET /api/tx/{hash}`), once indexed."""
        self.check()
        prepared = self.api.post_json("/api/escrows/prepare", {
            "client": self.address("client"),
            "provider": self.address("provider"),
            "oracle": self.oracle,
            "arbiter": self.address("arbiter"),
            "token": ZERO_ADDRESS,
            "milestone_amounts": [str(a) for a in amounts],
            "terms_document": dict(terms_document),
            "rules": dict(rules),
        })
        sent = self.wallets["client"].send(prepared["tx"])
        report = self.api.wait_for_tx(sent.tx_hash, timeout=self.timeout)
        escrow_id = int(report["escrow_ids"][0])
        self.wait_for_escrow(escrow_id)
        return escrow_id, sent

    def act(self, party: str, escrow_id: int, action: str, **args: Any) -> SentTx:
        """`POST /api/escrows/{id}/tx/{action}` with `args`, sent from `party`'s wallet."""
        self.check()
        tx = self.api.post_json(f"/api/escrows/{escrow_id}/tx/{action}", args or None)
        return self.wallets[party].send(tx)

    def deliver(
        self, escrow_id: int, milestone: int, note: str, attachments: Sequence[str] = ()
    ) -> SentTx:
        """The provider's delivery document stored (`POST .../delivery`) and its `deliver`
        transaction sent."""
        self.check()
        answer = self.api.post_json(
            f"/api/escrows/{escrow_id}/milestones/{milestone}/delivery",
            {"note": note, "attachments": list(attachments)},
        )
        return self.wallets["provider"].send(answer["tx"])

    def review(
        self, escrow_id: int, milestone: int, rating: int, *, comment: str = "",
        attachments: Sequence[str] = (), criteria: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The client's signed rating: typed data from the API (with the payout it credits),
        signed by the client's wallet (EIP-712), handed to the service whose relayer sends
        `confirmWithSig`; waits until it is mined. `{typed_data, payout, request}` (the
        request's final progress)."""
        self.check()
        base = f"/api/escrows/{escrow_id}/milestones/{milestone}"
        body: dict[str, Any] = {"rating": rating, "comment": comment,
                                "attachments": list(attachments)}
        if criteria is not None:
            body["criteria"] = [dict(c) for c in criteria]
        prepared = self.api.post_json(f"{base}/typed-data", body)
        signature = self.wallets["client"].sign_typed_data(prepared["typed_data"])
        deadline = prepared["typed_data"]["message"]["deadline"]
        queued = self.api.post_json(
            f"{base}/confirmations", {**body, "deadline": deadline, "signature": signature}
        )
        progress = self.api.wait_for_confirmation(int(queued["id"]), timeout=self.timeout)
        if progress.get("status") != "mined":
            raise ConfigurationError(
                f"the relayer did not land the confirmation of escrow {escrow_id} milestone "
                f"{milestone}: {progress.get('status')} ({progress.get('error')})"
            )
        return {"typed_data": prepared["typed_data"], "payout": prepared["payout"],
                "request": progress}

    def upload(self, name: str, content: bytes, media_type: str) -> dict[str, Any]:
        self.check()
        return self.api.upload(name, content, media_type)

    def measure(
        self, escrow_id: int, token: str, samples: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """KPI samples posted as the monitoring agent does: `POST /api/escrows/{id}/measurements`
        with `Authorization: Bearer <token>`; `{accepted, duplicates}`."""
        self.check()
        url = f"{self.api.base_url}/api/escrows/{escrow_id}/measurements"
        try:
            response = httpx.post(
                url, json={"samples": [dict(s) for s in samples]},
                headers={"Authorization": f"Bearer {token}"}, timeout=30.0,
            )
        except httpx.TransportError as exc:
            raise ServiceUnreachableError(self.api.base_url, str(exc)) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ServiceRefusedError(response.status_code, str(body.get("error", "http")),
                                      str(body.get("detail", response.text[:200])))
        answer: dict[str, Any] = response.json()
        return answer


def operator_token_issuer(
    settings: Settings, w3: Web3, contract: str, deployment_block: int
) -> IssueToken:
    """The operator's `escrow tokens issue` (`backend/oracle/cli.py`) for the service's
    contract on `w3`, in the database of `settings` (`ESCROW_DATABASE_URL`, or the SQLite file
    of `ESCROW_DATA_DIR`): the one step a script cannot do through the API. Raises
    `ConfigurationError` when that database is not the service's (no such SQLite file, or the
    escrow is not indexed there)."""
    from backend.oracle.cli import issue_token_command
    from backend.services import build_services

    database = settings.resolved_database_url

    def issue(escrow_id: int) -> str:
        if database.startswith("sqlite:///") and not Path(database[len("sqlite:///"):]).is_file():
            raise ConfigurationError(_not_the_service(database, escrow_id))
        services = build_services(settings, w3=w3, contract_address=contract,
                                  deployment_block=deployment_block)
        try:
            return issue_token_command(settings, escrow_id, label="demo monitoring",
                                       services=services)
        except NotFoundError as exc:
            raise ConfigurationError(_not_the_service(database, escrow_id)) from exc
        finally:
            services.engine.dispose()

    return issue


def _not_the_service(database: str, escrow_id: int) -> str:
    return (
        f"the measurement token is issued as the operator, in the service's database, but "
        f"{database} does not hold escrow {escrow_id}: run this with the service's "
        "ESCROW_DATA_DIR or ESCROW_DATABASE_URL"
    )


def wait_until_answering(api: ServiceClient, stop: threading.Event, timeout: float = 120.0) -> None:
    """Polls `GET /api/config` until the service answers (it starts in another thread);
    `Stopped` when `stop` is set first, `ServiceTimeoutError` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if stop.is_set():
            raise Stopped("stopped")
        try:
            api.config()
            return
        except (ServiceUnreachableError, ServiceRefusedError):
            if time.monotonic() > deadline:
                raise ServiceTimeoutError(f"the service at {api.base_url}", timeout) from None
        stop.wait(0.25)


def demo_png(width: int = 96, height: int = 64) -> bytes:
    """A small PNG drawn in code (a server rack, three units with green lights): the photo the
    demo's client attaches to a review. 8-bit RGB, no external library."""
    background, unit, light = (30, 34, 40), (120, 126, 134), (40, 200, 90)
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type 0 (none) for each scanline
        in_unit = any(top <= y < top + 12 for top in (8, 26, 44))
        for x in range(width):
            if in_unit and 12 <= x < width - 12:
                lit = (y - 8) % 18 in (4, 5, 6) and width - 24 <= x < width - 19
                raw.extend(light if lit else unit)
            else:
                raw.extend(background)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body

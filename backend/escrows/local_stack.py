"""What `escrow up` tells a newcomer before it serves: where the pages and the API are, what to
add to a wallet (chain id, RPC URL), the contract and the service's accounts (oracle, relayer,
the arbiter offered for new escrows), and on the development chain (31337) Hardhat's funded
accounts by role with their private keys, to import into a wallet. Those keys are public: they
are for chain 31337 only and must never hold real money.

`stack_summary` builds the one JSON object (`escrow up --json`), `render_summary` prints it for
people; `local_arbiter` decides the arbiter; `json_stdout` keeps stdout for JSON alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from web3 import Web3

from backend.chain import devchain
from backend.chain.client import EscrowClient
from backend.chain.connect import HARDHAT_CHAIN_ID, connect
from backend.chain.deploy import (
    Deployment,
    deploy_escrow,
    is_deployed,
    read_deployment,
    write_deployment,
)
from backend.chain.errors import DeploymentMissing
from backend.chain.keys import deployer_account, oracle_account, relayer_account
from backend.chain.node import start_hardhat_node
from backend.client import DEV_ROLES
from backend.config import Settings
from backend.errors import ConfigurationError

__all__ = [
    "DEV_KEYS_WARNING",
    "DevAccount",
    "LocalChain",
    "dev_accounts",
    "first_start",
    "json_stdout",
    "local_arbiter",
    "local_chain",
    "local_summary",
    "page_host",
    "render_summary",
    "stack_summary",
]

#: how many of Hardhat's funded accounts are listed (the six roles and four spares)
LISTED_DEV_ACCOUNTS = 10

DEV_KEYS_WARNING = (
    "Hardhat's public test keys: everyone knows them. Use them on chain 31337 (this local "
    "node) only, never with real money or on another network."
)


@dataclass(frozen=True)
class DevAccount:
    """One of Hardhat's funded accounts: its mnemonic index, role, address and private key."""

    index: int
    role: str
    address: str
    private_key: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "role": self.role, "address": self.address,
                "private_key": self.private_key}


def dev_accounts(w3: Web3, count: int = LISTED_DEV_ACCOUNTS) -> list[DevAccount]:
    """Hardhat's first `count` funded accounts with their roles (`backend.client.DEV_ROLES`;
    the others are `spare`). Raises `ConfigurationError` off chain 31337."""
    roles = {index: role for role, index in DEV_ROLES.items()}
    return [
        DevAccount(i, roles.get(i, "spare"), str(account.address), "0x" + account.key.hex())
        for i, account in enumerate(devchain.dev_accounts(w3, count))
    ]


@dataclass(frozen=True)
class LocalChain:
    """The node and contract `escrow up` serves: `w3` on `rpc_url`, whether it started the
    node, the deployment and whether it was deployed just now."""

    w3: Web3
    rpc_url: str
    node_started: bool
    deployment: Deployment
    deployed: bool


def local_chain(
    settings: Settings, stack: contextlib.ExitStack, say: Callable[[str], None]
) -> LocalChain:
    """The node at `ESCROW_RPC_URL`, or a Hardhat node started on its port when none answers
    (entered into `stack`, which stops it); the deployment recorded for its chain, or a new one
    (deployer key of `settings`) when the record is missing or the chain lost the code (a reset
    chain: `build_services` then archives the old deployment's data). `say` tells what it
    does. Raises `HardhatNodeError`, `ConfigurationError` (no deployer key off a dev chain)."""
    rpc_url = settings.rpc_url
    w3 = connect(rpc_url)
    node_started = not w3.is_connected()
    if node_started:
        port = int(rpc_url.rsplit(":", 1)[1].split("/")[0])
        say(f"starting a Hardhat node on port {port}")
        node = stack.enter_context(start_hardhat_node(port))
        rpc_url = node.url
        w3 = connect(rpc_url)
    chain_id = int(w3.eth.chain_id)
    deployed = False
    try:
        deployment = read_deployment(settings.data_dir, chain_id)
        if not is_deployed(w3, deployment):
            raise DeploymentMissing(chain_id, "(code gone: the chain was reset)")
    except DeploymentMissing:
        deployment = deploy_escrow(w3, deployer_account(w3, settings))
        write_deployment(settings.data_dir, deployment)
        deployed = True
        say(f"deployed QualityEscrow at {deployment.address}")
    return LocalChain(w3, rpc_url, node_started, deployment, deployed)


def local_arbiter(settings: Settings, chain_id: int, w3: Web3) -> tuple[str | None, bool]:
    """The arbiter `GET /api/config` offers: `ESCROW_DEFAULT_ARBITER`, else on chain 31337 the
    dev arbiter (#4). Returns (address or None, whether it is the dev default, which the caller
    must hand to the service for this run)."""
    if settings.default_arbiter:
        return settings.default_arbiter, False
    if chain_id != HARDHAT_CHAIN_ID:
        return None, False
    index = DEV_ROLES["arbiter"]
    return str(devchain.dev_accounts(w3, index + 1)[index].address), True


def page_host(host: str) -> str:
    """The host a local browser opens for a server listening on `host` (all interfaces are
    reached on the loopback address; an IPv6 literal is bracketed)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def stack_summary(
    *,
    host: str,
    port: int,
    chain_id: int,
    rpc_url: str,
    contract: str,
    deployment_block: int,
    oracle: str | None,
    relayer: str | None,
    arbiter: str | None,
    accounts: list[DevAccount],
    node_started: bool,
    deployed: bool,
    seeding: bool,
    data_dir: str,
) -> dict[str, Any]:
    """The one object `escrow up --json` prints:

    `{page, api, docs, chain_id, rpc_url, contract, deployment_block, oracle, relayer, arbiter,
    dev_accounts: [{index, role, address, private_key}] (chain 31337 only, else []),
    dev_accounts_warning (or null), node_started, deployed, seeding, data_dir}`: URLs of the
    pages (`/`), the API (`/api`) and its documentation (`/docs`); `rpc_url` the one a wallet
    adds; addresses EIP-55 (null for a role without a key); `seeding` whether demo escrows are
    being made."""
    base = f"http://{page_host(host)}:{port}"
    dev = chain_id == HARDHAT_CHAIN_ID
    return {
        "page": f"{base}/",
        "api": f"{base}/api",
        "docs": f"{base}/docs",
        "chain_id": chain_id,
        "rpc_url": rpc_url,
        "contract": contract,
        "deployment_block": deployment_block,
        "oracle": oracle,
        "relayer": relayer,
        "arbiter": arbiter,
        "dev_accounts": [a.to_json() for a in accounts] if dev else [],
        "dev_accounts_warning": DEV_KEYS_WARNING if dev and accounts else None,
        "node_started": node_started,
        "deployed": deployed,
        "seeding": seeding,
        "data_dir": data_dir,
    }


def local_summary(
    settings: Settings,
    w3: Web3,
    deployment: Deployment,
    *,
    host: str,
    port: int,
    arbiter: str | None,
    node_started: bool,
    deployed: bool,
    seeding: bool,
) -> dict[str, Any]:
    """`stack_summary` of the stack `escrow up` is about to serve: the node `w3`, the
    `deployment`, the service's keys of `settings` (a role without a usable key is null) and,
    on chain 31337, the dev accounts."""
    chain_id = int(w3.eth.chain_id)

    def address(load: Any) -> str | None:
        try:
            return str(load(w3, settings).address)
        except ConfigurationError:
            return None

    return stack_summary(
        host=host, port=port, chain_id=chain_id, rpc_url=settings.wallet_rpc_url,
        contract=deployment.address, deployment_block=deployment.block,
        oracle=address(oracle_account), relayer=address(relayer_account), arbiter=arbiter,
        accounts=dev_accounts(w3) if chain_id == HARDHAT_CHAIN_ID else [],
        node_started=node_started, deployed=deployed, seeding=seeding,
        data_dir=str(settings.data_dir),
    )


def first_start(w3: Web3, contract: str) -> bool:
    """Whether the demo escrows belong here: chain 31337 and a contract without any escrow."""
    if int(w3.eth.chain_id) != HARDHAT_CHAIN_ID:
        return False
    return EscrowClient(w3, contract).escrow_count() == 0


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """The summary for people: the URLs, what to add to a wallet, the contract and service
    accounts, and the dev accounts with roles and keys under their warning."""
    none = "[dim]none[/dim]"
    rows = [
        ("pages", summary["page"]),
        ("API", f"{summary['api']}  (documentation: {summary['docs']})"),
        ("wallet network", f"chain id {summary['chain_id']}, RPC URL {summary['rpc_url']}"),
        ("contract", f"{summary['contract']} (block {summary['deployment_block']})"
         + (", deployed now" if summary["deployed"] else "")),
        ("oracle", summary["oracle"] or none),
        ("relayer", summary["relayer"] or none),
        ("arbiter", summary["arbiter"] or none),
        ("data", summary["data_dir"]),
    ]
    for label, value in rows:
        console.print(f"[bold]{label:<15}[/bold] {value}", soft_wrap=True)
    if summary["dev_accounts"]:
        table = Table(title="Dev accounts to import into a wallet", title_justify="left")
        for column in ("#", "role", "address", "private key"):
            table.add_column(column, no_wrap=True)
        for account in summary["dev_accounts"]:
            table.add_row(str(account["index"]), account["role"], account["address"],
                          account["private_key"])
        console.print(table)
        console.print(f"[bold yellow]warning:[/bold yellow] {summary['dev_accounts_warning']}")
    if summary["seeding"]:
        console.print("first start: seeding demo escrows once the API answers")


@contextlib.contextmanager
def json_stdout() -> Iterator[TextIO]:
    """For `--json`: yields a writer on the process's stdout and sends everything else written
    to stdout meanwhile (start-up messages, server logs, other threads' prints) to stderr, at
    the file descriptor level; restored on exit. Where stdout has no file descriptor (a test
    runner's buffer), yields `sys.stdout` and redirects nothing."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        yield sys.stdout
        return
    try:
        err = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        err = 2
    sys.stdout.flush()
    saved = os.dup(fd)
    writer = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8")
    os.dup2(err, fd)
    try:
        yield writer
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        writer.close()

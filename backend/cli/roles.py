"""A command for every role, against the running service (`--api`, `ESCROW_API_URL`) as a wallet
uses it: the REST API answers ready transactions and typed data, a local key (`--from`: a
keystore of `escrow keys`, a keystore file, or on chain 31337 only a dev role name) signs and
sends them through the chain's RPC (`--rpc`, default the service's `/api/config` `rpc_url`).

Reading: `escrows`, `show`. Client: `create`, `confirm`, `dispute`, `reclaim`, `cancel`.
Provider: `accept`, `deliver`, `challenge`. Arbiter: `resolve`. Oracle: `finalize`. Anyone
credited: `withdraw`. Each prints people's tables (amounts in token units with the symbol,
times in the reader's zone) or, with `--json`, one JSON document; every mistake (service or
node down, an unknown escrow, a bad amount, a missing keystore, a wrong password, a revert
named with its values) is one line `error: ...` and exit 2.

Amounts and durations typed here are read by `backend.inputs.parse_token_amount` and
`parse_duration`, the one place for both."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.cli.common import JsonFlag, app, console, echo_json, get_settings, local_time
from backend.cli.keys import PasswordFile, read_password
from backend.errors import ConfigurationError, QualityEscrowError
from backend.inputs import (
    MalformedValueError,
    parse_address,
    parse_duration,
    parse_escrow_id,
    parse_index,
    parse_milestone,
    parse_time,
    parse_token_amount,
    parse_uint,
)

if TYPE_CHECKING:
    from web3 import Web3

    from backend.client.api import ServiceClient
    from backend.client.wallet import SentTx, Wallet
    from backend.config import Settings
    from backend.escrows.next_steps import Step
    from backend.index.ledger import EscrowLedger

ZERO_ADDRESS = "0x" + "00" * 20
HARDHAT_CHAIN_ID = 31337
ROLES = ("client", "provider", "arbiter", "oracle")
STATUSES = ("proposed", "active", "closed")
#: seconds a command waits for the service's index to show what its transaction did
INDEX_WAIT = 30.0
#: seconds `confirm` waits for the relayer to mine the signed confirmation
RELAY_WAIT = 120.0


class UsageError(QualityEscrowError, ValueError):
    """Options that do not go together, or a value the command cannot use."""

    code = "usage"


class TransactionRefusedError(QualityEscrowError):
    """The contract refused a transaction: its custom error by name with its values."""

    code = "reverted"

    def __init__(self, what: str, cause: QualityEscrowError) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"{what} refused by the contract: {cause.message}")


class NodeUnreachableError(QualityEscrowError):
    """The chain's RPC endpoint does not answer."""

    code = "unavailable"

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"the node at {url} does not answer (check --rpc or the service's "
                         "rpc_url)")


# ---------------------------------------------------------------------- options

FromOption = Annotated[
    str | None,
    typer.Option("--from", help="Who signs: a keystore name (`escrow keys list`), a keystore "
                 "file, or on chain 31337 only a dev role (client, provider, arbiter, oracle, "
                 "relayer, deployer). Default on chain 31337: the command's role.",
                 show_default=False),
]
ApiOption = Annotated[
    str | None,
    typer.Option("--api", help="The service's URL (default ESCROW_API_URL, "
                 "http://127.0.0.1:8000).", show_default=False),
]
RpcOption = Annotated[
    str | None,
    typer.Option("--rpc", help="The JSON-RPC URL to send through (default: the service's "
                 "/api/config rpc_url).", show_default=False),
]
AttachOption = Annotated[
    list[Path] | None,
    typer.Option("--attach", help="A file to upload and attach (repeatable; PNG, JPEG, WebP, "
                 "GIF, PDF or text, at most 10 MiB).", show_default=False),
]
EscrowArg = Annotated[str, typer.Argument(metavar="ID", help="The escrow's id.")]
MilestoneArg = Annotated[str, typer.Argument(metavar="MILESTONE",
                                             help="The milestone's index, from 0.")]
BreachArg = Annotated[str, typer.Argument(metavar="BREACH_ID",
                                          help="The breach report's id, from 0.")]


def service_client(url: str) -> ServiceClient:
    """The API client the commands use (tests replace it)."""
    from backend.client.api import ServiceClient

    return ServiceClient(url)


def connect_node(url: str) -> Web3:
    """A Web3 on `url` (tests replace it)."""
    from backend.chain.connect import connect

    return connect(url, timeout=10)


# ---------------------------------------------------------------------- the signing party


@dataclass
class Party:
    """One command's connections: the service, the chain and the signing wallet."""

    settings: Settings
    service: ServiceClient
    config: dict[str, Any]
    w3: Web3
    wallet: Wallet
    name: str

    @property
    def address(self) -> str:
        return str(self.wallet.address)


@contextmanager
def _service(api: str | None) -> Iterator[tuple[Settings, ServiceClient, dict[str, Any]]]:
    settings = get_settings()
    service = service_client(api or settings.api_url)
    try:
        yield settings, service, service.config()
    finally:
        service.close()


def _signer_name(given: str | None, default: str, chain_id: int) -> str:
    """`--from`, or the command's dev role on chain 31337; refused elsewhere."""
    if given is not None:
        return given
    if chain_id != HARDHAT_CHAIN_ID:
        raise UsageError(
            f"--from is required on chain {chain_id}: name a keystore (`escrow keys list`) or "
            f"a keystore file; a role name such as {default!r} works only on chain "
            f"{HARDHAT_CHAIN_ID}"
        )
    return default


def _node(url: str, chain_id: int) -> Web3:
    from backend.chain.errors import NodeUnavailable, from_node

    w3 = connect_node(url)
    try:
        actual = from_node(f"the node at {url}", lambda: int(w3.eth.chain_id))
    except NodeUnavailable as exc:
        raise NodeUnreachableError(url) from exc
    if actual != chain_id:
        raise ConfigurationError(
            f"the node at {url} is chain {actual}, but the service serves chain {chain_id}"
        )
    return w3


@contextmanager
def party(
    role: str, given: str | None, password_file: Path | None, api: str | None, rpc: str | None
) -> Iterator[Party]:
    """The service at `api`, the node at `rpc` and the wallet of `given` (`--from`; `role`
    on chain 31337 when not given), its keystore unlocked with the password of
    `--password-file`, `ESCROW_KEYSTORE_PASSWORD` or a hidden prompt."""
    from backend.client.wallet import (
        DEV_ROLES,
        Wallet,
        dev_role_refusal,
        keystore_for,
        load_signer,
    )

    with _service(api) as (settings, service, config):
        chain_id = int(config["chain_id"])
        name = _signer_name(given, role, chain_id)
        path = keystore_for(settings, name)
        if path is None and name in DEV_ROLES and chain_id != HARDHAT_CHAIN_ID:
            raise dev_role_refusal(name, chain_id)
        w3 = _node(rpc or str(config["rpc_url"]), chain_id)
        password = None if path is None else read_password(
            settings, password_file, what=f"keystore {name}"
        )
        account = load_signer(w3, settings, name, password)
        wallet = Wallet(w3, account, max_fee_per_gas=settings.max_fee_per_gas)
        yield Party(settings, service, config, w3, wallet, name)


def _send(p: Party, what: str, tx: Mapping[str, Any]) -> SentTx:
    """`wallet.send`, a contract's refusal named as `what` refused by the contract."""
    from backend.chain.errors import ChainError
    from backend.client.wallet import TransactionNotMined
    from backend.errors import UnavailableError

    try:
        return p.wallet.send(tx)
    except (UnavailableError, TransactionNotMined):
        raise
    except ChainError as exc:
        raise TransactionRefusedError(what, exc) from exc


def _indexed(
    p: Party, escrow_id: int, until: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The escrow's detail once the service's index shows what was done (`until`); None, with
    a note on stderr, when it does not within `INDEX_WAIT` seconds (the transaction stands)."""
    from backend.client.api import ServiceTimeoutError

    try:
        return p.service.wait_for_escrow(escrow_id, until, timeout=INDEX_WAIT)
    except ServiceTimeoutError:
        typer.echo(f"note: the service's index does not show it yet (escrow {escrow_id})",
                   err=True)
        return None


def _after(block: int) -> Callable[[dict[str, Any]], bool]:
    return lambda detail: int(detail.get("updated_block") or 0) >= block


def _sent_json(sent: SentTx) -> dict[str, Any]:
    return {"tx_hash": sent.tx_hash, "block_number": sent.block_number,
            "gas_used": sent.gas_used}


def _report(
    p: Party,
    action: str,
    sent: SentTx,
    as_json: bool,
    *,
    escrow_id: int | None = None,
    lines: tuple[str, ...] = (),
    verb: str = "sent from",
    **extra: Any,
) -> None:
    """What a transaction command prints: one JSON document, or a line per fact (`verb`: how
    the account took part, "sent from" or "signed by")."""
    if as_json:
        echo_json({"action": action, "escrow_id": escrow_id, "from": p.address,
                   **_sent_json(sent), **extra})
        return
    on = f" escrow {escrow_id}" if escrow_id is not None else ""
    console.print(f"{action}{on}: {verb} {p.address} ({p.name})", highlight=False)
    console.print(f"  tx {sent.tx_hash} in block {sent.block_number}, gas used {sent.gas_used}",
                  highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)


# ---------------------------------------------------------------------- amounts and files


def money(amount: int | str, token: Mapping[str, Any]) -> str:
    """Base units as exact token units with the symbol (`1.5 ETH`, `2,000 TUSD`); a token that
    does not say its decimals shows base units and its address."""
    from backend.i18n import format_amount

    decimals = token.get("decimals")
    label = token.get("symbol") or token.get("address")
    if decimals is None:
        return f"{int(amount)} base units of {label}"
    return format_amount(int(amount), int(decimals), str(label), "en")


def _token_json(w3: Web3, token: str) -> dict[str, Any]:
    from backend.chain.tokens import TokenMetadata

    return TokenMetadata(w3).get(token).to_json()


def _upload(service: ServiceClient, files: list[Path] | None) -> list[dict[str, Any]]:
    """Each file uploaded (`POST /api/attachments`): `{sha256, name, media_type, size}`."""
    import mimetypes

    stored: list[dict[str, Any]] = []
    for path in files or []:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the attachment {path}: {exc.strerror or exc}") from exc
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        stored.append(service.upload(path.name, content, media_type))
    return stored


def _bps_list(field: str, text: str) -> list[int]:
    return [parse_uint(f"{field}[{i}]", part.strip(), bits=16)
            for i, part in enumerate(text.split(","))]


def _deadline(text: str, now: int) -> int:
    """`--delivery-deadline`: a duration ahead of the chain's time (`30d`), unix seconds, a day
    (`2026-03-01`: its last second, UTC) or an ISO 8601 time with a zone."""
    import datetime

    value = text.strip()
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            day = datetime.date.fromisoformat(value)
        except ValueError:
            raise MalformedValueError("--delivery-deadline", text, "a real day") from None
        start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
        return int(start.timestamp()) + 86_399
    if re.fullmatch(r"(?:[0-9]+[wdhms])+", value.lower()):
        return now + parse_duration("--delivery-deadline", value)
    try:
        return parse_time("--delivery-deadline", value)
    except MalformedValueError:
        raise MalformedValueError(
            "--delivery-deadline", text,
            "a duration ahead (30d), unix seconds, a day (YYYY-MM-DD) or ISO 8601 with a zone",
        ) from None


def _criteria(given: list[str] | None) -> list[dict[str, Any]] | None:
    """`--criterion 0=met --criterion 1=unmet:why` as the review's answers, by index."""
    if not given:
        return None
    answers: dict[int, dict[str, Any]] = {}
    for item in given:
        match = re.fullmatch(r"\s*([0-9]+)\s*=\s*(met|unmet)(?::(.*))?", item, re.DOTALL)
        if match is None:
            raise MalformedValueError("--criterion", item, "INDEX=met or INDEX=unmet[:note]")
        index = int(match.group(1))
        if index in answers:
            raise UsageError(f"--criterion {index} is given twice")
        answer: dict[str, Any] = {"index": index, "met": match.group(2) == "met"}
        if match.group(3):
            answer["note"] = match.group(3).strip()
        answers[index] = answer
    return [answers[i] for i in sorted(answers)]


def _chain_time(rpc_url: str) -> int:
    """The latest block's time at `rpc_url` (one short request, no retries); the local clock
    when the node does not answer."""
    import httpx

    try:
        reply = httpx.post(rpc_url, timeout=3, json={
            "jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber",
            "params": ["latest", False]})
        return int(reply.json()["result"]["timestamp"], 16)
    except Exception:  # any failure: the local clock is a fair guess for next steps
        return int(time.time())


# ---------------------------------------------------------------------- reading


def account_address(settings: Settings, chain_id: int, name: str) -> str:
    """The address `--from NAME` stands for, without unlocking anything."""
    from backend.chain.devchain import HARDHAT_MNEMONIC
    from backend.client.wallet import (
        DEV_ROLES,
        address_of_keystore,
        dev_role_refusal,
        keystore_for,
        unknown_key,
    )

    path = keystore_for(settings, name)
    if path is not None:
        address = address_of_keystore(path)
        if address is None:
            raise ConfigurationError(f"the keystore {path} names no address")
        return str(address)
    if name in DEV_ROLES:
        if chain_id != HARDHAT_CHAIN_ID:
            raise dev_role_refusal(name, chain_id)
        from eth_account import Account

        Account.enable_unaudited_hdwallet_features()
        index = DEV_ROLES[name]
        return str(Account.from_mnemonic(
            HARDHAT_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").address)
    raise unknown_key(settings, name)


def _counterparty(item: Mapping[str, Any], account: str | None) -> str:
    client, provider = str(item["client"]), str(item["provider"])
    if account == client:
        return provider
    if account == provider:
        return client
    return f"{client} -> {provider}"


@app.command("escrows")
def escrows_cmd(
    role: Annotated[
        str | None,
        typer.Option("--role", help="Only escrows where the account is client, provider, "
                     "arbiter or oracle (default: any).", show_default=False),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="proposed, active or closed.", show_default=False),
    ] = None,
    from_: FromOption = None,
    account: Annotated[
        str | None,
        typer.Option("--account", help="The account's address (instead of --from).",
                     show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    api: ApiOption = None,
    as_json: JsonFlag = False,
) -> None:
    """An account's escrows, newest first (all escrows without --from or --account)."""
    from rich.table import Table

    if role is not None and role not in ROLES:
        raise UsageError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
    if from_ is not None and account is not None:
        raise UsageError("give --from or --account, not both")
    with _service(api) as (settings, service, config):
        address: str | None = None
        if account is not None:
            address = parse_address("--account", account)
        elif from_ is not None:
            address = account_address(settings, int(config["chain_id"]), from_)
        if role is not None and address is None:
            raise UsageError("--role needs the account: --from NAME or --account ADDRESS")
        query: dict[str, Any] = {"status": status}
        if address is not None:
            query[role or "party"] = address
        items: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None and len(items) < limit:
            page = service.get_json("/api/escrows", {**query, "offset": offset,
                                                     "limit": min(200, limit - len(items))})
            items += page["escrows"]
            offset = page["next_offset"]
    if as_json:
        echo_json({"account": address, "role": role, "status": status, "escrows": items})
        return
    if not items:
        console.print("no escrows" + (f" for {address}" if address else ""), highlight=False)
        return
    table = Table("id", "status", "roles", "counterparty", "total", "locked", "created",
                  box=None, pad_edge=False)
    for item in items:
        roles = item.get("roles") or ([role] if role else [])
        table.add_row(
            str(item["id"]), item["status"], ",".join(roles) or "-",
            _counterparty(item, address), money(item["total"], item["token"]),
            money(item["locked"], item["token"]), local_time(item["created_at"]),
        )
    console.print(table)


def escrow_ledger(detail: Mapping[str, Any]) -> EscrowLedger:
    """The detail of `GET /api/escrows/{id}` as the index's `EscrowLedger` (what
    `backend.escrows.next_steps` reads): status, parameters, milestones and breaches."""
    from backend.chain.types import BreachState, EscrowParams, MilestoneState, Status
    from backend.index.ledger import BreachLedger, EscrowLedger, MilestoneLedger

    led = EscrowLedger(
        escrow_id=int(detail["id"]), params=EscrowParams.from_json(detail["params"]),
        created_block=int(detail["created_block"]), created_tx=str(detail["created_tx"]),
        created_at=int(detail["created_at"]), status=Status[str(detail["status"]).upper()],
        accepted_at=detail.get("accepted_at"),
    )
    led.milestones = [
        MilestoneLedger(index=int(m["index"]), amount=int(m["amount"]),
                        state=MilestoneState[str(m["state"]).upper()],
                        delivered_at=m.get("delivered_at"), disputed_at=m.get("disputed_at"))
        for m in detail["milestones"]
    ]
    led.breaches = [
        BreachLedger(breach_id=int(b["id"]), kind=int(b["kind"]), period=int(b["period"]),
                     evidence_hash=str(b["evidence_hash"]), reserve=int(b["reserve"]),
                     reported_at=int(b["reported_at"]), reported_tx=str(b["reported_tx"]),
                     state=BreachState[str(b["state"]).upper()],
                     challenged_at=b.get("challenged_at"))
        for b in detail["breaches"]
    ]
    return led


def _step_text(step: Step, params: Mapping[str, Any]) -> str:
    on = (f" milestone {step.milestone}" if step.milestone is not None
          else f" breach {step.breach_id}" if step.breach_id is not None else "")
    who = params.get(step.role, "")
    when = ""
    if step.opens_at is not None:
        when = f", from {local_time(step.opens_at)}"
    elif step.deadline is not None:
        when = f", until {local_time(step.deadline)}"
    return f"{step.role} ({who}): {step.action}{on}{when}"


@app.command("show")
def show_cmd(escrow_id: EscrowArg, api: ApiOption = None, as_json: JsonFlag = False) -> None:
    """One escrow: parties, token, balances, milestones, breaches and the next steps."""
    from rich.table import Table

    from backend.escrows.next_steps import next_steps

    number = parse_escrow_id(escrow_id, "ID")
    with _service(api) as (_settings, service, config):
        detail = service.get_json(f"/api/escrows/{number}")
        if as_json:
            echo_json(detail)
            return
        now = _chain_time(str(config["rpc_url"]))
    token, params, bal = detail["token"], detail["params"], detail["balances"]
    terms = detail.get("terms_document") or {}
    lines = [
        f"escrow {detail['id']}: {detail['status']}"
        + (f" - {terms['title']}" if isinstance(terms.get("title"), str) else ""),
        f"  client    {params['client']}",
        f"  provider  {params['provider']}",
        f"  arbiter   {params['arbiter'] if params['arbiter'] != ZERO_ADDRESS else 'none'}",
        f"  oracle    {params['oracle']}",
        f"  token     {token.get('symbol') or '?'} ({token['address']})",
        f"  terms     {params['termsHash']}",
        f"  created   {local_time(detail['created_at'])} (block {detail['created_block']}, "
        f"tx {detail['created_tx']})",
        f"  accepted  {local_time(detail.get('accepted_at'))}",
        "  balances  " + ", ".join(
            f"{name.replace('_', ' ')} {money(bal[name], token)}"
            for name in ("total", "locked", "reserved", "refunded", "credited_provider",
                         "credited_client")),
    ]
    for line in lines:
        console.print(line, highlight=False)
    milestones = Table("milestone", "amount", "state", "rating", "to provider", "to client",
                       "delivered", "settled", box=None, pad_edge=False, title="milestones",
                       title_justify="left")
    for m in detail["milestones"]:
        settled = m["state"] == "settled"
        milestones.add_row(
            str(m["index"]), money(m["amount"], token), m["state"]
            + (f" ({m['how']})" if m.get("how") else ""),
            str(m["rating"]) if m.get("rating") else "-",
            money(m["to_provider"], token) if settled else "-",
            money(m["to_client"], token) if settled else "-",
            local_time(m.get("delivered_at")), local_time(m.get("settled_at")),
        )
    console.print(milestones)
    if detail["breaches"]:
        breaches = Table("breach", "kind", "period", "state", "reserve", "to client",
                         "to provider", "reported", box=None, pad_edge=False, title="breaches",
                         title_justify="left")
        for b in detail["breaches"]:
            breaches.add_row(
                str(b["id"]), str(b.get("kind_name") or b["kind"]), str(b["period"]),
                b["state"] + (f" ({b['outcome']})" if b.get("outcome") else ""),
                money(b["reserve"], token), money(b["to_client"], token),
                money(b["to_provider"], token), local_time(b["reported_at"]),
            )
        console.print(breaches)
    steps = next_steps(escrow_ledger(detail), now)
    console.print("next steps:" if steps else "next steps: none", highlight=False)
    for step in steps:
        console.print("  " + _step_text(step, params), highlight=False)


# ---------------------------------------------------------------------- client: create


@app.command("create")
def create_cmd(
    terms: Annotated[Path, typer.Option("--terms", help="The terms document (JSON, section "
                                        "3.2 of docs/interface.md).", show_default=False)],
    provider: Annotated[str, typer.Option("--provider", help="The provider's address.",
                                          show_default=False)],
    amount: Annotated[list[str], typer.Option("--amount", help="A milestone's amount in token "
                                              "units (1.5); once per milestone.",
                                              show_default=False)],
    token: Annotated[str, typer.Option("--token", help="ETH or an ERC-20's address.")] = "ETH",
    arbiter: Annotated[
        str | None,
        typer.Option("--arbiter", help="The arbiter's address, or `none` (default: the "
                     "service's ESCROW_DEFAULT_ARBITER, else none).", show_default=False),
    ] = None,
    oracle: Annotated[
        str | None,
        typer.Option("--oracle", help="The KPI oracle (default: the service's oracle).",
                     show_default=False),
    ] = None,
    rating_payout_bps: Annotated[str, typer.Option(
        "--rating-payout-bps", help="Provider share for ratings 1..5, bps.")
    ] = "0,2500,5000,7500,10000",
    breach_refund_bps: Annotated[int, typer.Option("--breach-refund-bps")] = 500,
    streak_refund_bps: Annotated[int, typer.Option("--streak-refund-bps")] = 1_000,
    incident_refund_bps: Annotated[int, typer.Option("--incident-refund-bps")] = 2_000,
    max_refund_bps: Annotated[int, typer.Option("--max-refund-bps")] = 3_000,
    review_period: Annotated[str, typer.Option("--review-period",
                                               help="3d, 12h, 90m or seconds.")] = "3d",
    challenge_period: Annotated[str, typer.Option("--challenge-period")] = "3d",
    arbitration_period: Annotated[str, typer.Option("--arbitration-period")] = "7d",
    delivery_deadline: Annotated[str, typer.Option(
        "--delivery-deadline", help="30d ahead, unix seconds, YYYY-MM-DD or ISO 8601.")
    ] = "30d",
    from_: FromOption = None,
    password_file: PasswordFile = None,
    api: ApiOption = None,
    rpc: RpcOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Creates and funds an escrow as its client (ERC-20: approve first); prints its id."""
    import json

    from backend.chain.clock import chain_time

    try:
        document = json.loads(terms.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the terms file {terms}: {exc}") from exc
    except ValueError as exc:
        raise MalformedValueError("--terms", str(terms), f"a JSON file ({exc})") from exc
    if not isinstance(document, dict):
        raise MalformedValueError("--terms", str(terms), "a JSON object")
    provider_address = parse_address("--provider", provider)
    with party("client", from_, password_file, api, rpc) as p:
        token_address = ZERO_ADDRESS if token.upper() == "ETH" else parse_address("--token",
                                                                                   token)
        token_info = _token_json(p.w3, token_address)
        if token_info["decimals"] is None:
            raise UsageError(f"--token {token_address} does not say its decimals(); is it an "
                             "ERC-20?")
        amounts = [parse_token_amount(f"--amount[{i}]", a, int(token_info["decimals"]))
                   for i, a in enumerate(amount)]
        oracle_address = oracle or p.config.get("oracle")
        if oracle_address is None:
            raise UsageError("--oracle is required: the service has no oracle account")
        chosen_arbiter = arbiter if arbiter is not None else p.config.get("arbiter")
        now = chain_time(p.w3)
        body = {
            "client": p.address,
            "provider": provider_address,
            "oracle": parse_address("--oracle", oracle_address),
            "arbiter": None if chosen_arbiter in (None, "none")
            else parse_address("--arbiter", chosen_arbiter),
            "token": token_address,
            "milestone_amounts": [str(a) for a in amounts],
            "terms_document": document,
            "rules": {
                "rating_payout_bps": _bps_list("--rating-payout-bps", rating_payout_bps),
                "breach_refund_bps": breach_refund_bps,
                "streak_refund_bps": streak_refund_bps,
                "incident_refund_bps": incident_refund_bps,
                "max_refund_bps": max_refund_bps,
                "review_period": parse_duration("--review-period", review_period),
                "challenge_period": parse_duration("--challenge-period", challenge_period),
                "arbitration_period": parse_duration("--arbitration-period",
                                                     arbitration_period),
                "delivery_deadline": _deadline(delivery_deadline, now),
            },
        }
        prepared = p.service.post_json("/api/escrows/prepare", body)
        approved = None
        if prepared.get("approve"):
            approved = _send(p, "approve", prepared["approve"])
        sent = _send(p, "createEscrow", prepared["tx"])
        report = p.service.wait_for_tx(sent.tx_hash)
        if not report.get("escrow_ids"):
            raise UsageError(f"transaction {sent.tx_hash} created no escrow")
        escrow_id = int(report["escrow_ids"][0])
        _indexed(p, escrow_id, lambda _detail: True)
        total = money(prepared["total"], token_info)
        _report(
            p, "create", sent, as_json, escrow_id=escrow_id,
            lines=(f"escrow {escrow_id} created: {total} in {len(amounts)} milestone(s) for "
                   f"{provider_address}",
                   f"terms {prepared['terms_hash']}")
            + ((f"approve tx {approved.tx_hash}",) if approved else ()),
            total=prepared["total"], token=token_info, terms_hash=prepared["terms_hash"],
            approve=None if approved is None else _sent_json(approved),
        )


# ---------------------------------------------------------------------- simple actions


def _action(
    p: Party, escrow_id: int, action: str, body: dict[str, Any] | None, what: str
) -> SentTx:
    """`POST /api/escrows/{id}/tx/{action}` sent, and waited for in the index."""
    tx = p.service.post_json(f"/api/escrows/{escrow_id}/tx/{action}", body)
    sent = _send(p, what, tx)
    _indexed(p, escrow_id, _after(sent.block_number))
    return sent


def _simple(role: str, action: str, what: str, summary: str) -> Callable[..., None]:
    def command(
        escrow_id: EscrowArg,
        from_: FromOption = None,
        password_file: PasswordFile = None,
        api: ApiOption = None,
        rpc: RpcOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        number = parse_escrow_id(escrow_id, "ID")
        with party(role, from_, password_file, api, rpc) as p:
            sent = _action(p, number, action, None, what)
            _report(p, action, sent, as_json, escrow_id=number)

    command.__doc__ = summary
    return command


app.command("accept")(_simple("provider", "accept", "accept",
                              "Accepts a proposed escrow as its provider."))
app.command("cancel")(_simple("client", "cancel", "cancel",
                              "Cancels a proposed escrow as its client (refund credited)."))
app.command("reclaim")(_simple(
    "client", "reclaim", "reclaimExpired",
    "Reclaims every undelivered milestone after the delivery deadline, as the client."))


def _on_breach(role: str, action: str, what: str, summary: str) -> Callable[..., None]:
    def command(
        escrow_id: EscrowArg,
        breach_id: BreachArg,
        from_: FromOption = None,
        password_file: PasswordFile = None,
        api: ApiOption = None,
        rpc: RpcOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        number = parse_escrow_id(escrow_id, "ID")
        breach = parse_index("breach", breach_id, "BREACH_ID")
        with party(role, from_, password_file, api, rpc) as p:
            sent = _action(p, number, action, {"breachId": breach}, what)
            _report(p, action, sent, as_json, escrow_id=number, breach_id=breach)

    command.__doc__ = summary
    return command


app.command("challenge")(_on_breach(
    "provider", "challenge", "challengeBreach",
    "Challenges a breach report as the provider (the arbiter decides)."))
app.command("finalize")(_on_breach(
    "oracle", "finalize", "finalizeBreach",
    "Finalizes an unchallenged breach report after its challenge period (refund credited)."))


@app.command("resolve")
def resolve_cmd(
    escrow_id: EscrowArg,
    milestone: Annotated[str | None, typer.Option("--milestone", help="A disputed milestone.",
                                                  show_default=False)] = None,
    provider_bps: Annotated[int | None, typer.Option(
        "--provider-bps", help="The provider's share of the disputed milestone, 0..10000.",
        show_default=False)] = None,
    breach: Annotated[str | None, typer.Option("--breach", help="A challenged breach report.",
                                               show_default=False)] = None,
    upheld: Annotated[bool | None, typer.Option(
        "--upheld/--rejected", help="Uphold the report (refund the client) or reject it.",
        show_default=False)] = None,
    from_: FromOption = None,
    password_file: PasswordFile = None,
    api: ApiOption = None,
    rpc: RpcOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Decides a dispute (--milestone M --provider-bps N) or a challenged breach report
    (--breach B --upheld/--rejected) as the arbiter."""
    number = parse_escrow_id(escrow_id, "ID")
    dispute = milestone is not None and provider_bps is not None and breach is None \
        and upheld is None
    challenged = breach is not None and upheld is not None and milestone is None \
        and provider_bps is None
    if not (dispute or challenged):
        raise UsageError("resolve takes --milestone M --provider-bps N, or --breach B "
                         "--upheld/--rejected")
    with party("arbiter", from_, password_file, api, rpc) as p:
        if dispute:
            index = parse_milestone(milestone, "--milestone")
            bps = parse_uint("--provider-bps", provider_bps, bits=16)
            sent = _action(p, number, "resolve-dispute",
                           {"milestone": index, "providerBps": bps}, "resolveDispute")
            _report(p, "resolve", sent, as_json, escrow_id=number, milestone=index,
                    provider_bps=bps, lines=(f"milestone {index}: {bps} bps to the provider",))
        else:
            breach_id = parse_index("breach", breach, "--breach")
            sent = _action(p, number, "resolve-breach",
                           {"breachId": breach_id, "upheld": bool(upheld)}, "resolveBreach")
            _report(p, "resolve", sent, as_json, escrow_id=number, breach_id=breach_id,
                    upheld=bool(upheld),
                    lines=(f"breach {breach_id}: {'upheld' if upheld else 'rejected'}",))


# ---------------------------------------------------------------------- documents


def _milestone_document(
    p: Party, escrow_id: int, index: int, kind: str, text: dict[str, str],
    attach: list[Path] | None, what: str,
) -> tuple[SentTx, dict[str, Any], list[dict[str, Any]]]:
    """A milestone document (`kind`: `delivery` or `dispute`) with its uploaded files stored by
    `POST /api/escrows/{id}/milestones/{m}/{kind}`, the answered transaction sent and waited for
    in the index: (sent, the service's answer, the files as uploaded)."""
    files = _upload(p.service, attach)
    answer: dict[str, Any] = p.service.post_json(
        f"/api/escrows/{escrow_id}/milestones/{index}/{kind}",
        {**text, "attachments": [f["sha256"] for f in files]},
    )
    sent = _send(p, what, answer["tx"])
    _indexed(p, escrow_id, _after(sent.block_number))
    return sent, answer, files


@app.command("deliver")
def deliver_cmd(
    escrow_id: EscrowArg,
    milestone: MilestoneArg,
    note: Annotated[str, typer.Option("--note", help="What was delivered.")] = "",
    attach: AttachOption = None,
    from_: FromOption = None,
    password_file: PasswordFile = None,
    api: ApiOption = None,
    rpc: RpcOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Submits a milestone's delivery as the provider: the note and files are stored by the
    service and their hash goes on chain."""
    number = parse_escrow_id(escrow_id, "ID")
    index = parse_milestone(milestone, "MILESTONE")
    with party("provider", from_, password_file, api, rpc) as p:
        sent, answer, files = _milestone_document(
            p, number, index, "delivery", {"note": note}, attach, "submitDelivery")
        _report(p, "deliver", sent, as_json, escrow_id=number, milestone=index,
                delivery_hash=answer["delivery_hash"], attachments=files,
                lines=(f"milestone {index} delivered (document {answer['delivery_hash']}, "
                       f"{len(files)} attachment(s))",))


@app.command("dispute")
def dispute_cmd(
    escrow_id: EscrowArg,
    milestone: MilestoneArg,
    reason: Annotated[str, typer.Option("--reason", help="Why the client disputes.")] = "",
    attach: AttachOption = None,
    from_: FromOption = None,
    password_file: PasswordFile = None,
    api: ApiOption = None,
    rpc: RpcOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Disputes a delivered milestone as the client, with a reason and files the service
    stores; the arbiter decides."""
    number = parse_escrow_id(escrow_id, "ID")
    index = parse_milestone(milestone, "MILESTONE")
    with party("client", from_, password_file, api, rpc) as p:
        sent, answer, files = _milestone_document(
            p, number, index, "dispute", {"reason": reason}, attach, "openDispute")
        _report(p, "dispute", sent, as_json, escrow_id=number, milestone=index,
                reason_hash=answer["reason_hash"], attachments=files,
                lines=(f"milestone {index} disputed (reason {answer['reason_hash']})",))


# ---------------------------------------------------------------------- confirm


class ConfirmationFailedError(QualityEscrowError):
    """The service's relayer could not land the signed confirmation."""

    code = "confirmation_failed"

    def __init__(self, request_id: int, reason: str) -> None:
        super().__init__(f"confirmation request {request_id} failed: {reason}")


@app.command("confirm")
def confirm_cmd(
    escrow_id: EscrowArg,
    milestone: MilestoneArg,
    rating: Annotated[int, typer.Option("--rating", help="1..5.", show_default=False)],
    comment: Annotated[str, typer.Option("--comment", help="The review's comment.")] = "",
    attach: AttachOption = None,
    criterion: Annotated[
        list[str] | None,
        typer.Option("--criterion", help="An answer to the terms' acceptance criterion: "
                     "INDEX=met or INDEX=unmet[:note] (repeatable).", show_default=False),
    ] = None,
    direct: Annotated[bool, typer.Option(
        "--direct", help="Send `confirm` from the client's own key instead of signing for "
        "the service's relayer (the review is then not stored by the service).")] = False,
    from_: FromOption = None,
    password_file: PasswordFile = None,
    api: ApiOption = None,
    rpc: RpcOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Rates a milestone as the client: signs the EIP-712 confirmation with the review and
    hands it to the service's relayer (or sends it directly with --direct)."""
    number = parse_escrow_id(escrow_id, "ID")
    index = parse_milestone(milestone, "MILESTONE")
    answers = _criteria(criterion)
    path = f"/api/escrows/{number}/milestones/{index}"
    with party("client", from_, password_file, api, rpc) as p:
        files = _upload(p.service, attach)
        body: dict[str, Any] = {"rating": rating, "comment": comment,
                                "attachments": [f["sha256"] for f in files]}
        if answers is not None:
            body["criteria"] = answers
        prepared = p.service.post_json(f"{path}/typed-data", body)
        payout = prepared["payout"]
        token = payout["token"]
        receives = (f"provider receives {money(payout['to_provider'], token)}, client receives "
                    f"{money(payout['to_client'], token)}")
        extra: dict[str, Any] = {"milestone": index, "rating": rating,
                                 "comment_hash": prepared["comment_hash"], "payout": payout}
        if direct:
            sent = _action(p, number, "confirm", {
                "milestone": index, "rating": rating, "commentHash": prepared["comment_hash"],
            }, "confirm")
            _report(p, "confirm", sent, as_json, escrow_id=number, direct=True,
                    lines=(f"milestone {index} rated {rating}: {receives}",), **extra)
            return
        signature = p.wallet.sign_typed_data(prepared["typed_data"])
        queued = p.service.post_json(f"{path}/confirmations", {
            **body, "deadline": prepared["typed_data"]["message"]["deadline"],
            "signature": signature,
        })
        progress = p.service.wait_for_confirmation(int(queued["id"]), timeout=RELAY_WAIT)
        if progress["status"] != "mined":
            raise ConfirmationFailedError(int(queued["id"]), str(progress.get("error")))
        receipt = p.w3.eth.get_transaction_receipt(progress["tx_hash"])
        from backend.client.wallet import SentTx

        sent = SentTx(str(progress["tx_hash"]), int(receipt["blockNumber"]),
                      int(receipt["gasUsed"]), int(receipt["status"]))
        _indexed(p, number, lambda d: d["milestones"][index]["state"] == "settled")
        _report(p, "confirm", sent, as_json, escrow_id=number, direct=False,
                verb="signed by", request_id=queued["id"], relayer=receipt["from"],
                lines=(f"milestone {index} rated {rating}, relayed by the service "
                       f"(request {queued['id']}): {receives}",), **extra)


# ---------------------------------------------------------------------- withdraw


@app.command("withdraw")
def withdraw_cmd(
    token: Annotated[str, typer.Option("--token", help="ETH, an ERC-20's address, or all.")]
    = "all",
    from_: FromOption = None,
    password_file: PasswordFile = None,
    api: ApiOption = None,
    rpc: RpcOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Withdraws the account's credits (default: in every token it has one); on chain 31337
    the default account is the provider's."""
    with party("provider", from_, password_file, api, rpc) as p:
        credits = p.service.get_json(f"/api/accounts/{p.address}/credits")["credits"]
        if token.lower() == "all":
            chosen = [c for c in credits if int(c["amount"]) > 0]
        else:
            address = ZERO_ADDRESS if token.upper() == "ETH" else parse_address("--token",
                                                                                 token)
            chosen = [c for c in credits if c["token"] == address and int(c["amount"]) > 0]
            if not chosen:
                raise UsageError(f"nothing to withdraw in {token} for {p.address}")
        done: list[dict[str, Any]] = []
        for credit in chosen:
            tx = p.service.post_json("/api/tx/withdraw", {"token": credit["token"]})
            sent = _send(p, "withdraw", tx)
            done.append({**credit, **_sent_json(sent)})
    if as_json:
        echo_json({"action": "withdraw", "from": p.address, "withdrawals": done})
        return
    if not done:
        console.print(f"nothing to withdraw for {p.address}", highlight=False)
    for item in done:
        token_json = {"address": item["token"], "symbol": item["symbol"],
                      "decimals": item["decimals"]}
        console.print(f"withdrew {money(item['amount'], token_json)} to {p.address}",
                      highlight=False)
        console.print(f"  tx {item['tx_hash']} in block {item['block_number']}, gas used "
                      f"{item['gas_used']}", highlight=False)

"""The verifier: reads the chain directly (code, logs, views, transactions) and checks an escrow's
history against the contract's own state, the money rules, the signatures and, when given, the
database's documents and index. Produces the named checks of `backend.audit.model`.

It reads within a hosted node's limits like the indexer: logs paged by `backend.chain.logs`,
headers and views in batches `backend.chain.bulk_rpc` splits down to what the node accepts, every
rate-limited request retried with backoff by the provider and then `NodeUnavailable` (no verdict:
a 503, CLI exit 2)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from sqlalchemy.orm import Session
from web3 import Web3

from backend.audit.checks import (
    check_bytecode,
    check_documents,
    check_index,
    check_payouts,
    check_replay,
    check_signatures,
    check_solvency,
    timeline,
)
from backend.audit.model import AuditReport, Check, EscrowAudit
from backend.chain.artifacts import load_artifact
from backend.chain.bulk_rpc import RawLog, block_headers, eth_calls
from backend.chain.client import EscrowClient
from backend.chain.errors import UnknownEvent, is_transport_failure
from backend.chain.log_decoder import LogDecoder
from backend.chain.logs import logs_between
from backend.chain.types import (
    ZERO_ADDRESS,
    BreachView,
    EscrowView,
    MilestoneState,
    MilestoneView,
)
from backend.errors import NotFoundError
from backend.index.ledger import ChainEvent

Progress = Callable[[int, int], None]


@dataclass
class ChainSnapshot:
    """Everything read from the node once for one audit run (logs grouped by escrow)."""

    w3: Web3
    client: EscrowClient
    block: int
    chain_id: int
    logs: list[RawLog]
    events: dict[int, list[ChainEvent]]
    block_hashes: dict[tuple[str, int], str]
    tx_cache: dict[str, Any] = field(default_factory=dict)
    #: view results prefetched in JSON-RPC batches, keyed by (function, *args)
    views: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def escrow_view(self, escrow_id: int) -> EscrowView:
        key = ("getEscrow", escrow_id)
        if key not in self.views:
            self.views[key] = self.client.get_escrow(escrow_id, block=self.block)
        view: EscrowView = self.views[key]
        return view

    def milestone_view(self, escrow_id: int, milestone: int) -> MilestoneView:
        key = ("getMilestone", escrow_id, milestone)
        if key not in self.views:
            self.views[key] = self.client.get_milestone(escrow_id, milestone, block=self.block)
        view: MilestoneView = self.views[key]
        return view

    def breach_view(self, escrow_id: int, breach_id: int) -> BreachView:
        key = ("getBreach", escrow_id, breach_id)
        if key not in self.views:
            self.views[key] = self.client.get_breach(escrow_id, breach_id, block=self.block)
        view: BreachView = self.views[key]
        return view

    def credit(self, account: str, token: str) -> int:
        key = ("credits", account.lower(), token.lower())
        if key not in self.views:
            self.views[key] = self.client.credits(account, token, block=self.block)
        return int(self.views[key])


def prefetch_views(snap: ChainSnapshot, escrow_ids: Sequence[int]) -> None:
    """Reads every view the checks will compare, in JSON-RPC batches (one round trip per few
    hundred calls instead of one each): getEscrow, getMilestone and getBreach of each escrow,
    and the credits of every client and provider per token."""
    fns = snap.client.contract.functions
    keys: list[tuple[Any, ...]] = []
    datas: list[str] = []
    accounts: set[tuple[str, str]] = set()
    for escrow_id in escrow_ids:
        events = snap.events.get(escrow_id, [])
        if not events or events[0].name != "EscrowCreated":
            continue
        p = events[0].args["params"]
        keys.append(("getEscrow", escrow_id))
        datas.append(fns.getEscrow(escrow_id)._encode_transaction_data())
        for m in range(len(p["milestoneAmounts"])):
            keys.append(("getMilestone", escrow_id, m))
            datas.append(fns.getMilestone(escrow_id, m)._encode_transaction_data())
        reports = sum(1 for ev in events if ev.name == "BreachReported")
        for b in range(reports):
            keys.append(("getBreach", escrow_id, b))
            datas.append(fns.getBreach(escrow_id, b)._encode_transaction_data())
        token = str(p["token"]).lower()
        accounts.update({(str(p["client"]).lower(), token), (str(p["provider"]).lower(), token)})
    for account, token in sorted(accounts):
        keys.append(("credits", account, token))
        datas.append(fns.credits(Web3.to_checksum_address(account),
                                 Web3.to_checksum_address(token))._encode_transaction_data())
    results = eth_calls(snap.w3, snap.client.address, datas, snap.block)
    for key, raw in zip(keys, results, strict=True):
        name = key[0]
        if name == "getEscrow":
            (values,) = abi_decode([_ESCROW_TYPE], raw)
            snap.views[key] = EscrowView.from_abi(values)
        elif name == "getMilestone":
            state, since = abi_decode(["uint8", "uint64"], raw)
            snap.views[key] = MilestoneView(MilestoneState(state), int(since))
        elif name == "getBreach":
            (values,) = abi_decode([_BREACH_TYPE], raw)
            snap.views[key] = BreachView.from_abi(values)
        else:
            (snap.views[key],) = abi_decode(["uint256"], raw)


_ESCROW_TYPE = "(uint8,uint256,uint256,uint256,uint256,uint256,uint256,uint256)"
_BREACH_TYPE = "(uint8,uint8,uint32,uint64,uint64,uint256)"


def read_chain(
    w3: Web3, contract_address: str, *, from_block: int, block: int | None = None
) -> ChainSnapshot:
    """The contract's logs of the whole range (in as many pages as the node needs), decoded,
    grouped by escrow in chain order."""
    client = EscrowClient(w3, contract_address, from_block=from_block)
    head = int(w3.eth.block_number) if block is None else block
    logs = [
        log for log in logs_between(w3, client.address, from_block, head) if not log.removed
    ]
    logs.sort(key=lambda lg: (lg.block_number, lg.tx_index, lg.log_index))
    headers = block_headers(w3, {lg.block_number for lg in logs}) if logs else {}
    decoder = LogDecoder(load_artifact("QualityEscrow").abi)
    events: dict[int, list[ChainEvent]] = defaultdict(list)
    hashes: dict[tuple[str, int], str] = {}
    for log in logs:
        try:
            name, args = decoder.decode(log.topics, log.data)
        except UnknownEvent:
            continue
        if "escrowId" not in args:
            continue
        hashes[(log.tx_hash.lower(), log.log_index)] = log.block_hash.lower()
        events[int(args["escrowId"])].append(
            ChainEvent(name, args, log.block_number, log.log_index, log.tx_hash.lower(),
                       headers[log.block_number].timestamp, log.tx_index)
        )
    return ChainSnapshot(w3, client, head, client.chain_id, logs, dict(events), hashes)


def _token_info(w3: Web3, token: str) -> tuple[str, int]:
    if token.lower() == ZERO_ADDRESS.lower():
        return "ETH", 18
    abi = [
        {"name": "symbol", "type": "function", "inputs": [], "stateMutability": "view",
         "outputs": [{"name": "", "type": "string"}]},
        {"name": "decimals", "type": "function", "inputs": [], "stateMutability": "view",
         "outputs": [{"name": "", "type": "uint8"}]},
    ]
    contract = w3.eth.contract(address=Web3.to_checksum_address(token), abi=abi)
    try:
        return str(contract.functions.symbol().call()), int(contract.functions.decimals().call())
    except Exception as exc:  # not an ERC-20 we can read
        if is_transport_failure(exc):
            raise
        return "?", 18


def require_known(snap: ChainSnapshot, escrow_ids: Sequence[int]) -> None:
    """Raises `NotFoundError` ("unknown escrow N", 404 / exit 2) for the first id that has no
    event on the contract up to the audited block: there is nothing to audit, which is not an
    inconsistency."""
    for escrow_id in escrow_ids:
        if not snap.events.get(escrow_id):
            raise NotFoundError("escrow", escrow_id)


def audit_snapshot(
    snap: ChainSnapshot,
    escrow_id: int,
    *,
    bytecode: Check,
    session: Session | None = None,
    api_url: str | None = None,
    data_dir: Any = None,
) -> EscrowAudit:
    events = snap.events.get(escrow_id, [])
    token: str = ZERO_ADDRESS
    if events and events[0].name == "EscrowCreated":
        token = str(events[0].args["params"]["token"])
    key = ("token", token.lower())
    if key not in snap.views:
        snap.views[key] = _token_info(snap.w3, token)
    symbol, decimals = snap.views[key]
    checks = [
        bytecode,
        check_replay(snap, escrow_id, events),
        check_signatures(snap, escrow_id, events),
        check_payouts(escrow_id, events),
        check_documents(events, session=session, api_url=api_url, data_dir=data_dir),
        check_index(snap, escrow_id, events, session),
    ]
    return EscrowAudit(
        escrow_id=escrow_id,
        chain_id=snap.chain_id,
        contract=snap.client.address,
        block=snap.block,
        token=token,
        symbol=symbol,
        decimals=decimals,
        checks=checks,
        timeline=timeline(events),
        events=len(events),
    )


def audit_escrow(
    w3: Web3,
    contract_address: str,
    escrow_id: int,
    *,
    from_block: int,
    session: Session | None = None,
    api_url: str | None = None,
    block: int | None = None,
    data_dir: Any = None,
) -> EscrowAudit:
    snap = read_chain(w3, contract_address, from_block=from_block, block=block)
    require_known(snap, [escrow_id])
    return audit_snapshot(
        snap, escrow_id, bytecode=check_bytecode(snap), session=session, api_url=api_url,
        data_dir=data_dir,
    )


def audit_all(
    w3: Web3,
    contract_address: str,
    *,
    from_block: int,
    session: Session | None = None,
    api_url: str | None = None,
    block: int | None = None,
    data_dir: Any = None,
    escrow_ids: list[int] | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Every escrow seen in the logs (or `escrow_ids`), plus the contract-wide solvency check."""
    snap = read_chain(w3, contract_address, from_block=from_block, block=block)
    bytecode = check_bytecode(snap)
    ids = sorted(snap.events) if escrow_ids is None else escrow_ids
    require_known(snap, ids)
    if bytecode.ok is not False:
        prefetch_views(snap, ids)
    audits: list[EscrowAudit] = []
    for n, escrow_id in enumerate(ids):
        audits.append(audit_snapshot(
            snap, escrow_id, bytecode=bytecode, session=session, api_url=api_url,
            data_dir=data_dir,
        ))
        if progress is not None:
            progress(n + 1, len(ids))
    contract_checks = [bytecode]
    if escrow_ids is None:
        contract_checks.append(check_solvency(snap, bytecode))
    return AuditReport(snap.chain_id, snap.client.address, snap.block, audits, contract_checks)

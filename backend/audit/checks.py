"""The named checks of one escrow (and the contract): each returns a `Check` with its evidence."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3

from backend.audit.model import Check, TimelinePoint
from backend.chain import erc1271
from backend.chain.artifacts import load_artifact
from backend.chain.eip712 import Confirmation, recover_signer
from backend.chain.errors import NodeUnavailable, is_rate_limit_error, is_transport_failure
from backend.chain.types import ZERO_ADDRESS, BreachOutcome, EscrowParams, MilestoneState
from backend.db.models import Attachment, EventLog, EvidenceBundle, Review, TermsDocument
from backend.errors import UnavailableError
from backend.index.ledger import ChainEvent, LedgerError, fold, start

if TYPE_CHECKING:
    from backend.audit.verify import ChainSnapshot

ZERO_HASH_HEX = "0x" + "00" * 32


def _hex(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value).lower()


# ------------------------------------------------------------------ bytecode


def check_bytecode(snap: ChainSnapshot) -> Check:
    """Runtime code == the artifact's deployed bytecode, with exactly the immutables the compiler
    reported (`deployedImmutableReferences`: EIP-712's cached domain, chain id, address) masked."""
    artifact = load_artifact("QualityEscrow")
    expected = bytearray(bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x")))
    actual = bytearray(snap.w3.eth.get_code(snap.client.address, block_identifier=snap.block))
    if len(actual) != len(expected):
        return Check("bytecode", False, "deployed code differs from the artifact",
                     [{"expected_length": len(expected), "actual_length": len(actual)}])
    for offset, length in artifact.immutable_ranges:
        actual[offset : offset + length] = expected[offset : offset + length]
    bad = [i for i, (a, b) in enumerate(zip(actual, expected, strict=True)) if a != b]
    if bad:
        return Check("bytecode", False, "deployed code differs from the artifact",
                     [{"offset": i, "expected": expected[i], "actual": actual[i]}
                      for i in bad[:10]])
    masked = sum(length for _, length in artifact.immutable_ranges)
    return Check("bytecode", True, f"matches the artifact ({len(expected)} bytes; "
                 f"{masked} immutable bytes masked)",
                 [{"immutables": len(artifact.immutable_ranges)}])


# ------------------------------------------------------------------ replay


def check_replay(snap: ChainSnapshot, escrow_id: int, events: list[ChainEvent]) -> Check:
    if not events:
        return Check("replay", False, "no events for this escrow", [{"escrow": escrow_id}])
    try:
        led = fold(events)
    except (LedgerError, KeyError, ValueError) as exc:
        return Check("replay", False, f"events do not fold: {exc}", [{"error": str(exc)}])
    try:
        view = snap.escrow_view(escrow_id)
    except Exception as exc:
        if is_transport_failure(exc):  # the node is down: no verdict, a 503 / exit 2
            raise
        return Check("replay", False, f"views unreadable: {exc}", [{"error": str(exc)}])
    bad: list[dict[str, Any]] = []
    settled = sum(1 for m in led.milestones if m.state == MilestoneState.SETTLED)
    pairs = {
        "status": (int(led.status), int(view.status)),
        "locked": (led.locked, view.locked),
        "nominal": (led.nominal, view.nominal),
        "reserved": (led.reserved, view.reserved),
        "refunded": (led.refunded, view.refunded),
        "milestone_count": (len(led.milestones), view.milestone_count),
        "settled_count": (settled, view.settled_count),
        "breach_count": (len(led.breaches), view.breach_count),
    }
    bad += [{"field": k, "expected": str(e), "actual": str(a)} for k, (e, a) in pairs.items()
            if e != a]
    for m in led.milestones:
        mv = snap.milestone_view(escrow_id, m.index)
        if int(mv.state) != int(m.state):
            bad.append({"milestone": m.index, "field": "state", "expected": int(m.state),
                        "actual": int(mv.state)})
    for b in led.breaches:
        bv = snap.breach_view(escrow_id, b.breach_id)
        got = (int(bv.state), bv.kind, bv.period, bv.reserve)
        want = (int(b.state), b.kind, b.period, b.reserve)
        if got != want:
            bad.append({"breach": b.breach_id, "expected": list(want), "actual": list(got)})
    if bad:
        return Check("replay", False, "replayed events disagree with the views", bad)
    return Check("replay", True, f"{len(events)} events rebuild the views at block {snap.block}")


# ------------------------------------------------------------------ signatures


def _trace_calls(w3: Web3, tx_hash: str) -> list[dict[str, Any]] | None:
    try:
        reply = w3.provider.make_request(
            "debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}]  # type: ignore[arg-type]
        )
    except Exception as exc:  # no tracing on this node: the call cannot be seen
        if is_transport_failure(exc):
            raise
        return None
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict) and is_rate_limit_error(error):  # not "no tracing": no verdict
        raise NodeUnavailable("debug_traceTransaction", str(error.get("message", error)))
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, dict):
        return None
    calls: list[dict[str, Any]] = []
    stack = [result]
    while stack:
        call = stack.pop()
        calls.append(call)
        stack.extend(call.get("calls") or [])
    return calls


def _confirm_inputs(snap: ChainSnapshot, tx_hash: str) -> list[str] | None:
    """Inputs of the confirmWithSig calls the transaction made to the contract; None when they
    cannot be seen (a call through another contract on a node without tracing)."""
    if tx_hash not in snap.tx_cache:
        snap.tx_cache[tx_hash] = snap.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    tx = snap.tx_cache[tx_hash]
    address = snap.client.address.lower()
    if str(tx["to"] or "").lower() == address:
        data = tx["input"]
        return [data.hex() if isinstance(data, bytes) else str(data)]
    calls = _trace_calls(snap.w3, tx_hash)
    if calls is None:
        return None
    return [str(c.get("input", "")) for c in calls if str(c.get("to", "")).lower() == address]


def _verify_one(snap: ChainSnapshot, ev: ChainEvent, client: str) -> dict[str, Any] | None:
    """None when verified; otherwise the evidence (with "unverifiable" when it cannot be)."""
    inputs = _confirm_inputs(snap, ev.tx_hash)
    milestone = ev.uint("milestone")
    if inputs is None:
        return {"milestone": milestone, "tx": ev.tx_hash, "unverifiable": "call via a contract"}
    for data in inputs:
        try:
            fn, args = snap.client.contract.decode_function_input(data)
        except Exception:
            continue
        if fn.fn_name != "confirmWithSig" or int(args["milestone"]) != milestone:
            continue
        conf = Confirmation(int(args["escrowId"]), milestone, int(args["rating"]),
                            bytes(args["commentHash"]), int(args["deadline"]))
        digest = conf.digest(snap.chain_id, snap.client.address)
        sig = bytes(args["signature"])
        if erc1271.has_code(snap.w3, client, block=ev.block_number):
            return _erc1271(snap, ev, client, digest, sig)
        try:
            signer = recover_signer(digest, sig)
        except Exception as exc:
            return {"milestone": milestone, "tx": ev.tx_hash, "error": str(exc)}
        if signer.lower() != client.lower():
            return {"milestone": milestone, "tx": ev.tx_hash, "expected": client,
                    "actual": signer}
        return None
    return {"milestone": milestone, "tx": ev.tx_hash, "error": "no confirmWithSig call found"}


def _erc1271(
    snap: ChainSnapshot, ev: ChainEvent, client: str, digest: bytes, sig: bytes
) -> dict[str, Any] | None:
    """None when the client's contract wallet accepted the signature at the settlement's block
    (EIP-1271, `backend.chain.erc1271`); otherwise the evidence."""
    if erc1271.is_valid_signature(snap.w3, client, digest, sig, block=ev.block_number):
        return None
    return {"milestone": ev.uint("milestone"), "tx": ev.tx_hash, "wallet": client,
            "error": "the wallet does not accept the signature (EIP-1271)"}


def check_signatures(snap: ChainSnapshot, escrow_id: int, events: list[ChainEvent]) -> Check:
    signed = [e for e in events if e.name == "MilestoneSettled" and e.uint("how") == 2]
    if not signed:
        return Check("signatures", True, "no settlement by signature")
    client = str(events[0].args["params"]["client"])
    problems = [p for p in (_verify_one(snap, e, client) for e in signed) if p is not None]
    failed = [p for p in problems if "unverifiable" not in p]
    if failed:
        return Check("signatures", False, "a signature does not recover to the client", problems)
    verified = len(signed) - len(problems)
    return Check("signatures", True, f"{verified} of {len(signed)} signatures verified", problems)


# ------------------------------------------------------------------ payouts


def check_payouts(escrow_id: int, events: list[ChainEvent]) -> Check:
    """Every amount re-derived from the money rules (`docs/interface.md`) and EscrowCreated's
    params."""
    if not events or events[0].name != "EscrowCreated":
        return Check("payouts", False, "no EscrowCreated event", [{"escrow": escrow_id}])
    params = EscrowParams.from_event(events[0].args["params"])
    terms, total = params.terms, params.total
    locked = nominal = total
    used = 0  # refunded + reserved, against the refund cap
    unsettled = set(range(len(params.milestone_amounts)))
    reserves: dict[int, int] = {}
    bad: list[dict[str, Any]] = []
    for ev in events[1:]:
        if ev.name == "MilestoneSettled":
            i, how = ev.uint("milestone"), ev.uint("how")
            amount = params.milestone_amounts[i]
            base = locked if unsettled == {i} else amount * locked // nominal
            to_p, to_c = ev.uint("toProvider"), ev.uint("toClient")
            bps = {1: None, 2: None, 3: 10_000, 4: None, 5: 5_000, 6: 0}.get(how)
            if how in (1, 2):
                bps = terms.payout_bps(ev.uint("rating"))
            if to_p + to_c != base or (bps is not None and to_p != base * bps // 10_000):
                want = None if bps is None else base * bps // 10_000
                bad.append({"milestone": i, "how": how, "base": str(base),
                            "expected": None if want is None else str(want),
                            "actual": str(to_p), "to_client": str(to_c)})
            locked -= to_p + to_c
            nominal -= amount
            unsettled.discard(i)
        elif ev.name == "BreachReported":
            cap_left = terms.max_refund_bps * total // 10_000 - used
            want = min(terms.kind_bps(ev.uint("kind")) * total // 10_000, cap_left, locked)
            got = ev.uint("reserved")
            if got != want:
                bad.append({"breach": ev.uint("breachId"), "expected": str(want),
                            "actual": str(got)})
            reserves[ev.uint("breachId")] = got
            locked -= got
            used += got
        elif ev.name == "BreachSettled":
            bid, outcome = ev.uint("breachId"), BreachOutcome(ev.uint("outcome"))
            reserve = reserves.get(bid, 0)
            to_c, to_p = ev.uint("toClient"), ev.uint("toProvider")
            if outcome in (BreachOutcome.FINALIZED, BreachOutcome.UPHELD):
                want_c, back = reserve, 0
            elif outcome == BreachOutcome.REJECTED:
                want_c, back = 0, reserve
            else:
                want_c = reserve // 2
                back = reserve - want_c
            want_p = 0 if unsettled else back
            if (to_c, to_p) != (want_c, want_p):
                bad.append({"breach": bid, "outcome": int(outcome),
                            "expected": [str(want_c), str(want_p)], "actual": [str(to_c),
                                                                              str(to_p)]})
            used -= reserve - to_c
            locked += reserve - to_c - to_p
        elif ev.name == "EscrowCancelled":
            if ev.uint("refund") != locked:
                bad.append({"event": "EscrowCancelled", "expected": str(locked),
                            "actual": str(ev.uint("refund"))})
            locked = 0
    if bad:
        return Check("payouts", False, "amounts disagree with the money rules", bad)
    return Check("payouts", True, "every payout, reserve and refund follows the rules")


# ------------------------------------------------------------------ documents


def _api_doc(api_url: str, path: str) -> Any:
    """The API's JSON at `path`; None on 404; `UnavailableError` when the API does not answer
    (or answers with another error status or no JSON)."""
    try:
        reply = requests.get(api_url.rstrip("/") + path, timeout=10)
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        return reply.json()
    except requests.RequestException as exc:  # includes a body that is not JSON
        raise UnavailableError(f"API {api_url}", str(exc)) from exc


def _doc_hash(canonical: str | None, api_body: Any) -> str | None:
    from backend.canonical import terms_hash

    if canonical is not None:
        return "0x" + keccak(canonical.encode("utf-8")).hex()
    if api_body is None:
        return None
    body = api_body
    if isinstance(body, dict):
        for key in ("document", "bundle", "terms"):
            if isinstance(body.get(key), dict):
                body = body[key]
                break
    return "0x" + terms_hash(body).hex()


def _wanted_documents(events: list[ChainEvent]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, on-chain hash, where) of every document the escrow binds."""
    wanted: list[tuple[str, str, dict[str, Any]]] = []
    for ev in events:
        if ev.name == "EscrowCreated":
            wanted.append(("terms", _hex(ev.args["params"]["termsHash"]), {}))
        elif ev.name == "BreachReported":
            wanted.append(("evidence", ev.hex("evidenceHash"), {"breach": ev.uint("breachId")}))
        elif ev.name == "MilestoneSettled" and ev.hex("commentHash") != ZERO_HASH_HEX:
            wanted.append(("review", ev.hex("commentHash"), {"milestone": ev.uint("milestone")}))
    return wanted


def check_documents(
    events: list[ChainEvent],
    *,
    session: Session | None,
    api_url: str | None,
    data_dir: Path | None,
) -> Check:
    if session is None and api_url is None:
        return Check("documents", None, "not checked: no database or API given")
    bad: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    checked = 0
    for kind, on_chain, where in _wanted_documents(events):
        canonical: str | None = None
        body: Any = None
        if session is not None:
            row: TermsDocument | EvidenceBundle | Review | None
            if kind == "terms":
                row = session.get(TermsDocument, on_chain)
            elif kind == "evidence":
                row = session.get(EvidenceBundle, on_chain)
            else:
                row = session.get(Review, on_chain)
            canonical = None if row is None else str(row.canonical)
            if kind == "review" and canonical is not None:
                bad += _check_attachments(session, canonical, data_dir, where)
        elif api_url is not None and kind != "review":
            path = {"terms": "/api/terms/", "evidence": "/api/evidence/"}[kind] + on_chain
            body = _api_doc(api_url, path)
        got = _doc_hash(canonical, body)
        if got is None:
            missing.append({"document": kind, "hash": on_chain, **where})
            continue
        checked += 1
        if got != on_chain:
            bad.append({"document": kind, **where, "expected": on_chain, "actual": got})
    if bad:
        return Check("documents", False, "a document does not re-hash to its on-chain hash",
                     bad + missing)
    return Check("documents", True, f"{checked} documents re-hash ({len(missing)} not stored)",
                 missing)


def _check_attachments(
    session: Session, canonical: str, data_dir: Path | None, where: dict[str, Any]
) -> list[dict[str, Any]]:
    try:
        doc = json.loads(canonical)
        listed = [str(a["sha256"]) for a in doc.get("attachments", [])]
    except (ValueError, TypeError, KeyError, AttributeError):
        return [{"document": "review", **where, "error": "review is not valid JSON"}]
    bad: list[dict[str, Any]] = []
    for digest in listed:
        if session.get(Attachment, digest) is None:
            bad.append({"attachment": digest, **where, "error": "not stored"})
            continue
        if data_dir is None:
            continue
        path = Path(data_dir) / "attachments" / digest
        if path.exists():
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
            if actual != digest:
                bad.append({"attachment": digest, **where, "expected": digest, "actual": actual})
    return bad


# ------------------------------------------------------------------ index


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str).lower())


def check_index(
    snap: ChainSnapshot, escrow_id: int, events: list[ChainEvent], session: Session | None
) -> Check:
    if session is None:
        return Check("index", None, "not checked: no database given")
    rows = session.scalars(
        select(EventLog)
        .where(EventLog.chain_id == snap.chain_id, EventLog.escrow_id == escrow_id)
        .order_by(EventLog.block_number, EventLog.log_index)
    ).all()
    rows = [r for r in rows if r.contract.lower() == snap.client.address.lower()]
    chain = {(e.tx_hash, e.log_index): e for e in events}
    stored = {(r.tx_hash.lower(), r.log_index): r for r in rows}
    bad: list[dict[str, Any]] = []
    for key, ev in chain.items():
        row = stored.get(key)
        if row is None:
            # the index may lag the audited block; only rows it claims to hold are compared
            continue
        if row.block_hash.lower() != snap.block_hashes.get(key, "") or row.event != ev.name:
            bad.append({"tx": key[0], "log_index": key[1], "field": "block_hash/event",
                        "expected": snap.block_hashes.get(key), "actual": row.block_hash})
        elif _norm(row.args) != _norm(ev.args):
            bad.append({"tx": key[0], "log_index": key[1], "field": "args",
                        "expected": _norm(ev.args), "actual": _norm(row.args)})
    extra = [{"tx": k[0], "log_index": k[1], "error": "not on chain"} for k in stored
             if k not in chain and stored[k].block_number <= snap.block]
    if bad or extra:
        return Check("index", False, "the indexed copy differs from the chain", bad + extra)
    return Check("index", True, f"{len(stored)} indexed events equal the chain's")


# ------------------------------------------------------------------ solvency


def _balance(w3: Web3, token: str, holder: str, block: int) -> int:
    if token.lower() == ZERO_ADDRESS.lower():
        return int(w3.eth.get_balance(Web3.to_checksum_address(holder), block_identifier=block))
    abi = [{"name": "balanceOf", "type": "function", "stateMutability": "view",
            "inputs": [{"name": "a", "type": "address"}],
            "outputs": [{"name": "", "type": "uint256"}]}]
    erc20 = w3.eth.contract(address=Web3.to_checksum_address(token), abi=abi)
    return int(erc20.functions.balanceOf(Web3.to_checksum_address(holder)).call(
        block_identifier=block))


def check_solvency(snap: ChainSnapshot, bytecode: Check) -> Check:
    if bytecode.ok is False:
        return Check("solvency", None, "not checked: the contract is not QualityEscrow")
    held: dict[str, int] = {}
    accounts: dict[str, set[str]] = {}
    for escrow_id, events in snap.events.items():
        if not events or events[0].name != "EscrowCreated":
            continue
        p = events[0].args["params"]
        token = str(p["token"]).lower()
        view = snap.escrow_view(escrow_id)
        held[token] = held.get(token, 0) + view.locked + view.reserved
        accounts.setdefault(token, set()).update({str(p["client"]).lower(),
                                                  str(p["provider"]).lower()})
    evidence: list[dict[str, Any]] = []
    ok = True
    for token, escrowed in sorted(held.items()):
        credits = sum(snap.credit(a, token) for a in accounts[token])
        balance = _balance(snap.w3, token, snap.client.address, snap.block)
        owed = credits + escrowed
        ok = ok and balance >= owed
        evidence.append({"token": token, "balance": str(balance), "credits": str(credits),
                         "escrowed": str(escrowed), "excess": str(balance - owed)})
    return Check("solvency", ok, "balances cover what is owed" if ok else
                 "a token balance is below what is owed", evidence)


# ------------------------------------------------------------------ timeline


def timeline(events: Sequence[ChainEvent]) -> list[TimelinePoint]:
    if not events or events[0].name != "EscrowCreated":
        return []
    try:
        led = start(events[0])
        points = [TimelinePoint(events[0].block_number, events[0].block_time, "EscrowCreated",
                                led.locked, led.reserved, 0, 0)]
        for ev in events[1:]:
            led.apply(ev)
            points.append(TimelinePoint(ev.block_number, ev.block_time, ev.name, led.locked,
                                        led.reserved, led.credited_provider,
                                        led.credited_client))
    except (LedgerError, KeyError, ValueError):
        return []
    return points

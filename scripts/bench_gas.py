"""Gas benchmark: receipt gasUsed (21,000 base included) for every QualityEscrow operation.

Runs on a fresh Hardhat node (default) or the in-process chain (--in-process), prints the table
and writes it into docs/performance.md between the gas markers. This is a benchmark, not a test:
it reports what it measured next to the targets and never fails on a miss.

    .venv/bin/python scripts/bench_gas.py [--in-process] [--no-write]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.chain.connect import connect, in_process_chain
from backend.chain.transactions import TxResult
from tests.support import DAY, EscrowEnv, build_env

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BEGIN, END = "<!-- gas:begin -->", "<!-- gas:end -->"

#: operation -> (target, prototype) as docs/performance.md records them; None where none is set
TARGETS: dict[str, tuple[int | None, int | None]] = {
    "createEscrow, ETH, 2 milestones": (95_000, 93_845),
    "createEscrow, ERC-20 the contract already holds, 2 milestones": (120_000, 117_101),
    "confirmWithSig, rating 5, provider already has a credit": (60_000, 63_541),
    "releaseAfterTimeout (not the last milestone)": (53_000, 53_823),
    "reportBreach, first of an escrow": (110_000, 111_841),
    "reportBreach, later": (75_000, 77_641),
    "finalizeBreach": (54_000, 54_198),
    "withdraw ETH": (31_500, 31_434),
    "lifecycle: create + accept + 2 deliveries + 2 relayed confirmations + provider withdraw": (
        395_000,
        407_296,
    ),
}


@dataclass
class Row:
    operation: str
    gas: int
    note: str = ""


def measure(env: EscrowEnv) -> list[Row]:
    rows: list[Row] = []
    e = env.escrow
    relayer = env.parties.relayer.address

    def add(op: str, result: TxResult, note: str = "") -> None:
        rows.append(Row(op, result.gas_used, note))

    def signed(escrow_id: int, m: int, rating: int = 5) -> TxResult:
        c = env.confirmation(escrow_id, m, rating)
        return e.confirm_with_sig(c, env.sign(c), relayer)

    # Warm-up: the first escrow ever pays for escrowCount 0 -> 1 and the provider's first credit.
    warm = env.create_active()
    e.confirm(warm, 0, 5, None, env.client)

    # --- the lifecycle, measured as one sum; its steps are also the per-operation figures
    p = env.params()
    escrow_id, created = e.create_escrow(p, env.client)
    add("createEscrow, ETH, 2 milestones", created)
    accepted = e.accept(escrow_id, env.provider)
    add("accept", accepted)
    d0 = e.submit_delivery(escrow_id, 0, b"\x01" * 32, env.provider)
    add("submitDelivery, first milestone of its slot", d0)
    d1 = e.submit_delivery(escrow_id, 1, b"\x02" * 32, env.provider)
    add("submitDelivery, later milestone sharing the slot", d1)
    s0 = signed(escrow_id, 0)
    add("confirmWithSig, rating 5, provider already has a credit", s0)
    s1 = signed(escrow_id, 1)
    add("confirmWithSig, rating 5, last milestone (closes the escrow)", s1)
    w = e.withdraw(None, env.provider)
    add("withdraw ETH", w)
    lifecycle = sum(r.gas_used for r in (created, accepted, d0, d1, s0, s1, w))
    rows.append(
        Row(
            "lifecycle: create + accept + 2 deliveries + 2 relayed confirmations + provider "
            "withdraw",
            lifecycle,
        )
    )

    # --- ERC-20 creation when the contract already holds the token
    env.create_active(env.params(token=env.token, amounts=(1_000_000, 2_000_000)))
    tp = env.params(token=env.token, amounts=(1_000_000, 2_000_000))
    env.fund_token(env.token, env.client, tp.total)
    token_escrow, tc = e.create_escrow(tp, env.client)
    add("createEscrow, ERC-20 the contract already holds, 2 milestones", tc)
    e.accept(token_escrow, env.provider)
    e.confirm(token_escrow, 0, 3, None, env.client)

    # --- confirm by the client, each rating below 5 also credits the client
    x = env.create_active()
    add("confirm, rating 3 (both parties credited)", e.confirm(x, 0, 3, b"\x03" * 32, env.client))

    # --- timeout
    x = env.create_active()
    env.deliver(x, 0)
    env.advance(3 * DAY + 1)
    add("releaseAfterTimeout (not the last milestone)", e.release_after_timeout(x, 0, relayer))

    # --- breaches: first, later, finalize; challenge + resolve; stale split
    x = env.create_active()
    b0, r = e.report_breach(x, 1, 1, b"\x04" * 32, env.oracle)
    add("reportBreach, first of an escrow", r)
    _, r = e.report_breach(x, 1, 2, b"\x05" * 32, env.oracle)
    add("reportBreach, later", r)
    _, r = e.report_breach(x, 3, 2, b"\x06" * 32, env.oracle)
    add("reportBreach, later, another kind", r)
    e.confirm(x, 0, 4, None, env.client)  # the client already has a credit
    env.advance(2 * DAY + 1)
    add("finalizeBreach", e.finalize_breach(x, b0, relayer))
    y = env.create_active()
    yb, _ = e.report_breach(y, 1, 1, b"\x07" * 32, env.oracle)
    add("challengeBreach", e.challenge_breach(y, yb, env.provider))
    rejected = e.resolve_breach(y, yb, False, env.arbiter)
    add("resolveBreach, rejected (reserve back to locked)", rejected)
    yb2, _ = e.report_breach(y, 1, 2, b"\x08" * 32, env.oracle)
    e.challenge_breach(y, yb2, env.provider)
    env.advance(5 * DAY + 1)
    add("settleStaleBreach", e.settle_stale_breach(y, yb2, relayer))

    # --- disputes
    z = env.create_active()
    env.deliver(z, 0)
    env.deliver(z, 1)
    add("openDispute", e.open_dispute(z, 0, b"\x09" * 32, env.client))
    add("resolveDispute", e.resolve_dispute(z, 0, 7_000, env.arbiter))
    e.open_dispute(z, 1, b"\x0a" * 32, env.client)
    env.advance(5 * DAY + 1)
    add("settleStaleDispute (last milestone)", e.settle_stale_dispute(z, 1, relayer))

    # --- cancel, reclaim, ERC-20 withdraw
    c = env.create()
    add("cancel", e.cancel(c, env.client))
    r2 = env.create_active()
    env.advance(31 * DAY)
    add("reclaimExpired, 2 milestones", e.reclaim_expired(r2, env.client))
    add("withdraw ERC-20", e.withdraw(env.token, env.client))
    return rows


def render_markdown(rows: list[Row], chain: str) -> str:
    lines = [
        f"Measured on {chain}: receipt `gasUsed` (21,000 base included).",
        "",
        "| operation | measured | target | prototype | vs target |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        target, proto = TARGETS.get(row.operation, (None, None))
        verdict = ""
        if target is not None:
            diff = row.gas - target
            verdict = "met" if diff <= 0 else f"**missed by {diff:,}**"
        lines.append(
            f"| {row.operation} | {row.gas:,} | {'' if target is None else f'{target:,}'} | "
            f"{'' if proto is None else f'{proto:,}'} | {verdict} |"
        )
    return "\n".join(lines)


def write_doc(markdown: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    DOC.write_text(pattern.sub(lambda _: f"{BEGIN}\n{markdown}\n{END}", text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", action="store_true", help="use eth-tester, not Hardhat")
    parser.add_argument("--rpc-url", help="an already running dev node (chain id 31337)")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args()
    console = Console()

    run: Callable[[], tuple[list[Row], str]]
    if args.in_process:
        def run() -> tuple[list[Row], str]:
            return measure(build_env(in_process_chain())), "the in-process chain (py-evm)"
    elif args.rpc_url:
        def run() -> tuple[list[Row], str]:
            return measure(build_env(connect(args.rpc_url))), f"the node at {args.rpc_url}"
    else:
        def run() -> tuple[list[Row], str]:
            from backend.chain.node import start_hardhat_node

            with console.status("starting a Hardhat node"), start_hardhat_node() as node:
                w3 = connect(node.url)
                version = w3.client_version
                return measure(build_env(w3)), f"a fresh Hardhat node ({version})"

    with console.status("measuring"):
        rows, chain = run()
    table = Table(title=f"gas on {chain}")
    for col in ("operation", "gasUsed", "target", "vs target"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    for row in rows:
        target, _ = TARGETS.get(row.operation, (None, None))
        verdict = ""
        if target is not None:
            verdict = "met" if row.gas <= target else f"+{row.gas - target:,}"
        shown_target = "" if target is None else f"{target:,}"
        table.add_row(row.operation, f"{row.gas:,}", shown_target, verdict)
    console.print(table)
    if not args.no_write:
        write_doc(render_markdown(rows, chain))
        console.print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`escrow demo`: one scripted escrow from creation to withdrawal on a local chain.

Creates an ETH escrow with two milestones, has the provider accept and deliver, the client sign
an EIP-712 confirmation that a relayer submits, the oracle report a KPI breach that is finalized
after the challenge window, and both parties withdraw, printing every step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table
from web3 import Web3

from backend.canonical import terms_hash
from backend.chain import devchain
from backend.chain.client import EscrowClient
from backend.chain.connect import connect, in_process_chain, is_dev_chain
from backend.chain.deploy import (
    Deployment,
    deploy_escrow,
    is_deployed,
    read_deployment,
    write_deployment,
)
from backend.chain.eip712 import Confirmation
from backend.chain.errors import DeploymentMissing
from backend.chain.transactions import TxResult
from backend.chain.types import ZERO_ADDRESS, EscrowParams, Terms
from backend.config import Settings
from backend.errors import ConfigurationError

DAY = 86_400
GWEI = 10**9

DEMO_TERMS: dict[str, Any] = {
    "version": 1,
    "title": "Managed hosting SLA (demo)",
    "period_seconds": DAY,
    "kpis": [
        {"id": "uptime_pct", "aggregate": "mean", "op": ">=", "threshold": 99.9},
        {"id": "p95_latency_ms", "aggregate": "p95", "op": "<=", "threshold": 300},
    ],
    "consecutive_periods": 3,
    "incident": {"kpi": "outage_minutes", "aggregate": "sum", "op": ">", "threshold": 60},
    "acceptance_criteria": ["Service reachable at the agreed endpoint"],
}


@contextlib.contextmanager
def _local_chain(settings: Settings, in_process: bool, console: Console | None) -> Iterator[Web3]:
    """The configured node; a Hardhat node started for the demo when nothing answers locally."""
    if in_process:
        yield in_process_chain()
        return
    w3 = connect(settings.rpc_url)
    if w3.is_connected():
        yield w3
        return
    if not settings.rpc_url.startswith(("http://127.0.0.1", "http://localhost")):
        raise ConfigurationError(f"no node answers at {settings.rpc_url}")
    from backend.chain.node import start_hardhat_node

    port = int(settings.rpc_url.rsplit(":", 1)[1].split("/")[0])
    if console:
        console.print(f"no node at {settings.rpc_url}: starting a Hardhat node for the demo")
    with start_hardhat_node(port) as node:
        yield connect(node.url)


def _deployment(w3: Web3, settings: Settings, in_process: bool) -> Deployment:
    deployer = devchain.dev_accounts(w3, 1)[0]
    if in_process:
        return deploy_escrow(w3, deployer.address)
    try:
        existing = read_deployment(settings.data_dir, int(w3.eth.chain_id))
        if is_deployed(w3, existing):
            return existing
    except DeploymentMissing:
        pass
    deployment = deploy_escrow(w3, deployer)
    write_deployment(settings.data_dir, deployment)
    return deployment


def run_demo(
    settings: Settings, *, in_process: bool = False, console: Console | None = None
) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    with _local_chain(settings, in_process, console) as w3:
        if not is_dev_chain(w3):
            raise ConfigurationError("the demo moves time and uses dev keys: local chains only")
        deployment = _deployment(w3, settings, in_process)
        escrow = EscrowClient(w3, deployment.address, from_block=deployment.block)
        _, client, provider, oracle, arbiter, relayer = devchain.dev_accounts(w3, 6)

        def step(title: str, result: TxResult | None = None, **extra: Any) -> None:
            entry: dict[str, Any] = {"step": title, **extra}
            if result is not None:
                entry.update(tx=result.tx_hash, block=result.block_number, gas=result.gas_used)
                entry["events"] = [
                    {"name": e.name, **{k: _show(v) for k, v in e.args.items() if k != "params"}}
                    for e in result.events
                ]
            steps.append(entry)
            if console:
                console.print(f"[bold cyan]{len(steps):>2}. {title}[/bold cyan]")
                for ev in entry.get("events", []):
                    fields = ", ".join(f"{k}={v}" for k, v in ev.items() if k != "name")
                    console.print(f"     {ev['name']}({fields})")
                for key, value in extra.items():
                    console.print(f"     {key}: {value}")

        step(
            "contract ready",
            address=deployment.address,
            chain_id=deployment.chain_id,
            block=deployment.block,
        )
        now = devchain.latest_timestamp(w3)
        amounts = (GWEI * 10**8, GWEI * 2 * 10**8)  # 0.1 ETH and 0.2 ETH
        params = EscrowParams(
            client=client.address,
            provider=provider.address,
            token=ZERO_ADDRESS,
            oracle=oracle.address,
            arbiter=arbiter.address,
            terms_hash=terms_hash(DEMO_TERMS),
            milestone_amounts=amounts,
            terms=Terms(
                rating_payout_bps=(2_000, 4_000, 6_000, 8_000, 10_000),
                breach_refund_bps=500,
                streak_refund_bps=1_000,
                incident_refund_bps=2_000,
                max_refund_bps=3_000,
                review_period=3 * DAY,
                challenge_period=2 * DAY,
                arbitration_period=5 * DAY,
                delivery_deadline=now + 30 * DAY,
            ),
        )
        escrow_id, result = escrow.create_escrow(params, client.address)
        step(f"client creates escrow {escrow_id} locking 0.3 ETH in two milestones", result)
        step("provider accepts the terms", escrow.accept(escrow_id, provider.address))
        step(
            "provider delivers milestone 0",
            escrow.submit_delivery(escrow_id, 0, Web3.keccak(text="v1.0"), provider.address),
        )
        confirmation = Confirmation(escrow_id, 0, 5, b"\x00" * 32, now + 3_600)
        typed = escrow.typed_data(confirmation)
        signature = client.sign_typed_data(full_message=typed).signature
        step(
            "client signs an EIP-712 confirmation (rating 5); the relayer submits it",
            escrow.confirm_with_sig(confirmation, bytes(signature), relayer.address),
            signer=client.address,
        )
        breach_id, result = escrow.report_breach(
            escrow_id, 1, 0, Web3.keccak(text="demo evidence: uptime 97.2% < 99.9%"), oracle.address
        )
        step("oracle reports uptime below standard in period 0 (kind 1)", result)
        devchain.advance_time(w3, 2 * DAY + 1)
        step("two days pass: the provider did not challenge")
        step(
            "anyone finalizes the report: the reserve is refunded to the client",
            escrow.finalize_breach(escrow_id, breach_id, relayer.address),
        )
        step(
            "provider delivers milestone 1",
            escrow.submit_delivery(escrow_id, 1, Web3.keccak(text="v2.0"), provider.address),
        )
        step(
            "client confirms milestone 1 directly with rating 4",
            escrow.confirm(escrow_id, 1, 4, None, client.address),
        )
        view = escrow.get_escrow(escrow_id)
        step("escrow settled", status=view.status.name, locked=view.locked, refunded=view.refunded)
        credits = {
            "provider": escrow.credits(provider.address),
            "client": escrow.credits(client.address),
        }
        step(
            "credits before withdrawal (wei)",
            provider=credits["provider"],
            client=credits["client"],
        )
        step("provider withdraws", escrow.withdraw(None, provider.address))
        step("client withdraws", escrow.withdraw(None, client.address))
        if console:
            table = Table(title=f"escrow {escrow_id}: where the 0.3 ETH went")
            table.add_column("party")
            table.add_column("ETH", justify="right")
            for party, amount in credits.items():
                table.add_row(party, f"{amount / 10**18:.6f}")
            console.print(table)
    return steps


def _show(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value

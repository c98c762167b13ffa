"""Indexer benchmark: events ingested per second from a Hardhat node into PostgreSQL.

Starts a fresh Hardhat node, deploys the escrow and fills the chain with at least `--events`
contract events (escrows of 64 milestones: created, accepted, and every milestone confirmed),
packing hundreds of transactions per block (automine off, JSON-RPC batches of
`eth_sendTransaction`, `evm_mine`). Then it indexes all of them from an empty database and prints
events per second. Target (docs/performance.md): at least 3,000 events/s into PostgreSQL.

    .venv/bin/python scripts/bench_indexer.py [--events 20000] [--database postgresql|sqlite]
        [--chunk BLOCKS] [--repeat N] [--profile] [--rpc-url URL [--contract ADDRESS BLOCK]]

`--repeat` indexes the same events N times, each into a new empty database. `--rpc-url` with
`--contract` skips the generation and indexes what an earlier run left on that node (the run
prints its `--contract` arguments).

Each run indexes into a new database: a throwaway PostgreSQL database created on the local server
(ESCROW_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and dropped
afterwards, or with `--database sqlite` a new SQLite file. This is a benchmark, not a
test: it reports what it measured and never fails on a miss.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, select, text
from web3 import Web3
from web3.types import RPCEndpoint

from backend.chain.connect import connect
from backend.chain.node import start_hardhat_node
from backend.config import Settings
from backend.db.models import EscrowRow, EventLog
from backend.index.indexer import Indexer
from backend.services import build_services
from tests.support import EscrowEnv, build_env

MILESTONES = 64
EVENTS_PER_ESCROW = MILESTONES + 2  # created, accepted, one settlement per milestone
#: transactions sent before the pending ones are mined
ROUND = 2_000
BATCH = 250
PG_ADMIN_URL = os.environ.get(
    "ESCROW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    reply = w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def send_all(w3: Web3, txs: list[dict[str, Any]]) -> None:
    """Sends the transactions in JSON-RPC batches (the node signs: dev accounts)."""
    provider: Any = w3.provider
    for i in range(0, len(txs), BATCH):
        replies = provider.make_batch_request(
            [(RPCEndpoint("eth_sendTransaction"), [tx]) for tx in txs[i : i + BATCH]]
        )
        errors = [r["error"] for r in replies if "error" in r]
        if errors:
            raise RuntimeError(f"eth_sendTransaction refused: {errors[0]}")


def mine_pending(w3: Web3, senders: dict[str, int]) -> int:
    """Mines blocks until every sender's nonce reached what was sent; returns blocks mined."""
    blocks = 0
    while any(w3.eth.get_transaction_count(Web3.to_checksum_address(a)) < n
              for a, n in senders.items()):
        rpc(w3, "evm_mine")
        blocks += 1
    return blocks


def tx(sender: str, to: str, data: str, gas: int, value: int = 0) -> dict[str, Any]:
    return {"from": sender, "to": to, "data": data, "gas": hex(gas), "value": hex(value)}


def generate(env: EscrowEnv, events: int) -> tuple[int, int]:
    """Fills the chain; returns (escrows, events emitted)."""
    w3, e = env.w3, env.escrow
    escrows = -(-events // EVENTS_PER_ESCROW)
    params = env.params(tuple(1_000 + i for i in range(MILESTONES)))
    first_id = e.escrow_count() + 1
    ids = list(range(first_id, first_id + escrows))
    abi_params = params.to_abi()
    fns = e.contract.functions
    create_gas = int(fns.createEscrow(abi_params).estimate_gas(
        {"from": env.client, "value": Web3.to_wei(params.total, "wei")})) * 3 // 2
    rpc(w3, "hardhat_setLoggingEnabled", False)
    rpc(w3, "evm_setAutomine", False)
    sent: dict[str, int] = {
        a: int(w3.eth.get_transaction_count(a)) for a in (env.client, env.provider)
    }
    blocks = 0
    t0 = time.perf_counter()

    def phase(name: str, txs: list[dict[str, Any]]) -> None:
        nonlocal blocks
        for i in range(0, len(txs), ROUND):
            part = txs[i : i + ROUND]
            send_all(w3, part)
            for t in part:
                sent[t["from"]] += 1
            blocks += mine_pending(w3, sent)
            done = min(i + ROUND, len(txs))
            print(f"  {name}: {done:>6}/{len(txs)} transactions, {blocks} blocks, "
                  f"{time.perf_counter() - t0:6.1f} s", flush=True)

    try:
        data = fns.createEscrow(abi_params)._encode_transaction_data()
        phase("create", [tx(env.client, e.address, data, create_gas, params.total) for _ in ids])
        phase("accept", [
            tx(env.provider, e.address, fns.accept(i, abi_params)._encode_transaction_data(),
               120_000)
            for i in ids
        ])
        template = fns.confirm(1, abi_params, 0, 5, b"\x00" * 32)._encode_transaction_data()
        confirms = []
        for i in ids:
            for m in range(MILESTONES):
                confirms.append(tx(env.client, e.address, _confirm_data(template, i, m), 150_000))
        phase("confirm", confirms)
    finally:
        rpc(w3, "evm_setAutomine", True)
    for escrow_id in (ids[0], ids[-1]):  # every transaction succeeded: the escrows are closed
        view = e.get_escrow(escrow_id)
        assert view.settled_count == MILESTONES, (escrow_id, view)
    return escrows, escrows * EVENTS_PER_ESCROW


def _confirm_data(template: str, escrow_id: int, milestone: int) -> str:
    """`confirm(escrowId, p, milestone, 5, 0)` calldata: the template with the two static words
    (escrowId first, milestone third in the head) replaced; far cheaper than re-encoding the
    64-amount parameters 20,000 times."""
    head = 2 + 8  # "0x" + selector
    word = 64
    return (
        template[:head]
        + f"{escrow_id:064x}"
        + template[head + word : head + 2 * word]
        + f"{milestone:064x}"
        + template[head + 3 * word :]
    )


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A new empty database of that kind; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"qe_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--chunk", type=int, default=None, help="blocks per eth_getLogs call")
    ap.add_argument("--rpc-url", default=None, help="use this Hardhat node instead of a new one")
    ap.add_argument("--contract", nargs=2, metavar=("ADDRESS", "BLOCK"), default=None,
                    help="with --rpc-url: index this deployment, generate nothing")
    ap.add_argument("--repeat", type=int, default=1, help="index N times, each into a new db")
    ap.add_argument("--profile", action="store_true", help="cProfile the (last) indexing run")
    ap.add_argument("--with-listener", action="store_true",
                    help="register a listener (as the webhooks do): new rows are read back")
    args = ap.parse_args()
    if args.contract and not args.rpc_url:
        ap.error("--contract needs --rpc-url")

    node = None if args.rpc_url else start_hardhat_node()
    try:
        w3 = connect(args.rpc_url or node.url)  # type: ignore[union-attr]
        print(f"node: {w3.client_version}")
        if args.contract:
            address, deployment_block = args.contract[0], int(args.contract[1])
            expected = 0
        else:
            env = build_env(w3)
            address, deployment_block = env.escrow.address, env.deployment_block
            t0 = time.perf_counter()
            escrows, expected = generate(env, args.events)
            generation = time.perf_counter() - t0
            blocks = int(w3.eth.block_number) - deployment_block + 1
            print(f"generated {expected} events ({escrows} escrows of {MILESTONES} milestones) "
                  f"in {blocks} blocks in {generation:.1f} s "
                  f"({expected / generation:,.0f} events/s); to index them again: "
                  f"--contract {address} {deployment_block}")
        rates = []
        for run in range(args.repeat):
            profile = args.profile and run == args.repeat - 1
            stored, took = index_all(w3, address, deployment_block, args, profile=profile)
            rates.append(stored / took)
            if stored < expected:
                print(f"WARNING: expected at least {expected} events, indexed {stored}")
        if len(rates) > 1:
            print(f"events/s over {len(rates)} runs: best {max(rates):,.0f}, "
                  f"median {sorted(rates)[len(rates) // 2]:,.0f}, worst {min(rates):,.0f}")
    finally:
        if node is not None:
            node.stop()


def index_all(
    w3: Web3, address: str, deployment_block: int, args: argparse.Namespace, *, profile: bool
) -> tuple[int, float]:
    """Indexes everything into a new empty database; returns (events, seconds)."""
    with tempfile.TemporaryDirectory() as tmp, database(args.database, Path(tmp)) as url:
        services = build_services(
            Settings(database_url=url, data_dir=Path(tmp)), w3=w3,
            contract_address=address, deployment_block=deployment_block,
        )
        seen: list[int] = []
        listeners = [lambda _s, rows: seen.append(len(rows))] if args.with_listener else []
        indexer = Indexer(services, chunk=args.chunk, listeners=listeners)
        profiler = cProfile.Profile() if profile else None
        t1 = time.perf_counter()
        if profiler:
            profiler.enable()
        stored = indexer.sync()
        if profiler:
            profiler.disable()
        took = time.perf_counter() - t1
        with services.sessions() as session:
            rows = session.scalar(select(func.count()).select_from(EventLog))
            projected = session.scalar(select(func.count()).select_from(EscrowRow))
        dialect = services.engine.dialect.name
        services.engine.dispose()
    print(f"indexed {stored} events ({rows} rows, {projected} escrow projections) into "
          f"{dialect} in {took:.2f} s, chunks of {indexer.chunk} blocks"
          f"{f', a listener saw {sum(seen)} rows' if args.with_listener else ''}: "
          f"{stored / took:,.0f} events/s (target 3,000)", flush=True)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return stored, took


if __name__ == "__main__":
    main()

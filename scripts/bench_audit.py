"""Benchmark: `escrow audit --all` over 1,000 escrows (10,000 events) on a fresh Hardhat node.

Generates the history with the indexer benchmark's batched sender (1,000 escrows of 8 milestones:
created, accepted, 8 confirmations = 10 events each), then times `audit_all` straight from the
chain (no database, no API: what an auditor with only the RPC URL and the address runs) and
prints events per second. Target: at most 30 s. A benchmark, not a test.

    .venv/bin/python scripts/bench_audit.py [--escrows 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_indexer

from backend.audit.verify import audit_all
from backend.chain.connect import connect
from backend.chain.node import start_hardhat_node
from tests.support import build_env

MILESTONES = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--escrows", type=int, default=1_000)
    args = parser.parse_args()
    bench_indexer.MILESTONES = MILESTONES
    bench_indexer.EVENTS_PER_ESCROW = MILESTONES + 2
    with start_hardhat_node() as node:
        w3 = connect(node.url, timeout=120)
        env = build_env(w3)
        t0 = time.perf_counter()
        escrows, events = bench_indexer.generate(env, args.escrows * (MILESTONES + 2))
        print(f"generated {escrows} escrows, {events} events in {time.perf_counter() - t0:.1f} s")
        done = 0

        def progress(n: int, total: int) -> None:
            nonlocal done
            done = n
            if n % 100 == 0 or n == total:
                print(f"  audited {n}/{total} escrows", flush=True)

        t0 = time.perf_counter()
        report = audit_all(
            w3, env.escrow.address, from_block=env.deployment_block, progress=progress
        )
        seconds = time.perf_counter() - t0
        counted = sum(e.events for e in report.escrows)
        failed = [
            (e.escrow_id, c.name) for e in report.escrows for c in e.checks if c.ok is False
        ]
        print(f"audit --all: {len(report.escrows)} escrows, {counted} events in {seconds:.1f} s "
              f"= {counted / seconds:,.0f} events/s; consistent={report.consistent}"
              f"{'' if not failed else f' failed={failed[:5]}'} (target: at most 30 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

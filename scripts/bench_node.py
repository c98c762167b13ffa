"""Node benchmark: the Hardhat node's own CPU per JSON-RPC method of the confirmation workload.

Starts a fresh Hardhat node, deploys the escrow (`tests.support.build_env`), creates active ETH
escrows of 4 milestones for N milestones (`--count`, 150 by default) and signs a
`confirmWithSig` for each (the client's key) from a funded development account the service does
not use (dev key #6). Then, over one kept-alive `http.client` connection (none of the service's
code), each method of what one confirmation costs the node is asked N times (300 for the reads),
and the node process's CPU time (user + system, /proc/PID/stat) and the wall time are divided by
the count: `eth_blockNumber`, the latest block, `getEscrow` by `eth_call`, `eth_estimateGas` of
each `confirmWithSig` one at a time and in one JSON-RPC batch, `eth_call` of them in one batch,
`eth_sendRawTransaction` of each (automine: one block each), and their receipts in one batch.
Then the client's side: this process's CPU per `eth_blockNumber` through the service's provider
(`backend.chain.connect.connect`) and through the plain loop. A benchmark, not a test: it prints
what it measured.

    .venv/bin/python scripts/bench_node.py [--count 150] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import burst_milestones
from bench_relay import PlainRpc, cpu_seconds
from web3.types import RPCEndpoint

from backend.chain.connect import connect
from backend.chain.node import start_hardhat_node
from backend.chain.transactions import calldata
from tests.support import build_env

#: the gas cap of each simulation and transaction (the relayer's default, ESCROW_RELAY_MAX_GAS)
GAS = 200_000
#: repetitions of each read that does not use up a milestone
READS = 300


def run(count: int, progress: Callable[[str], None]) -> dict[str, Any]:
    with start_hardhat_node() as node:
        env = build_env(connect(node.url))
        progress(f"Hardhat node at {node.url}; creating escrows for {count} milestones ...")
        milestones = burst_milestones(env, count, 4)
        sender = env.parties.stranger
        deadline = env.now() + 6 * 3_600
        address = env.escrow.address
        data = []
        for escrow_id, milestone in milestones:
            confirmation = env.confirmation(escrow_id, milestone, 4, b"\x11" * 32, deadline)
            call = env.escrow.tx_for("confirmWithSig", escrow_id, milestone, 4, b"\x11" * 32,
                                     deadline, env.sign(confirmation))
            data.append(str(call["data"]))
        get_escrow = "0x" + calldata(
            env.escrow.contract.functions.getEscrow(milestones[0][0])
        ).hex()
        w3 = env.w3
        nonce = int(w3.eth.get_transaction_count(sender.address))
        base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
        raw = ["0x" + bytes(sender.sign_transaction({
            "type": 2, "chainId": int(w3.eth.chain_id), "nonce": nonce + n, "to": address,
            "data": d, "value": 0, "gas": GAS, "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }).raw_transaction).hex() for n, d in enumerate(data)]
        rpc = PlainRpc(node.url, 60.0)
        pid = node.process.pid
        simulation = [{"from": sender.address, "to": address, "data": d, "gas": hex(GAS)}
                      for d in data]
        hashes: list[str] = []
        receipts: list[Any] = []
        methods: list[tuple[str, int, Callable[[], object]]] = [
            ("eth_blockNumber", READS,
             lambda: [rpc.call("eth_blockNumber", []) for _ in range(READS)]),
            ("eth_getBlockByNumber latest", READS,
             lambda: [rpc.call("eth_getBlockByNumber", ["latest", False]) for _ in range(READS)]),
            ("eth_call getEscrow", READS,
             lambda: [rpc.call("eth_call", [{"to": address, "data": get_escrow}, "latest"])
                      for _ in range(READS)]),
            ("eth_estimateGas confirmWithSig, one at a time", count,
             lambda: [rpc.call("eth_estimateGas", [s]) for s in simulation]),
            ("eth_estimateGas confirmWithSig, one batch", count,
             lambda: rpc.batch([("eth_estimateGas", [s]) for s in simulation])),
            ("eth_call confirmWithSig, one batch", count,
             lambda: rpc.batch([("eth_call", [s, "latest"]) for s in simulation])),
            ("eth_sendRawTransaction (automine), one at a time", count,
             lambda: hashes.extend(rpc.call("eth_sendRawTransaction", [tx]) for tx in raw)),
            ("eth_getTransactionReceipt, one batch", count,
             lambda: receipts.extend(
                 rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]))),
        ]
        figures = []
        for name, times, ask in methods:
            progress(f"{name} x {times} ...")
            cpu_before, began = cpu_seconds(pid), time.perf_counter()
            ask()
            wall, cpu_after = time.perf_counter() - began, cpu_seconds(pid)
            cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
            figures.append({
                "method": name, "count": times,
                "node_cpu_ms": None if cpu is None else round(cpu * 1000 / times, 2),
                "wall_ms": round(wall * 1000 / times, 2),
            })
        progress(f"the client's own CPU per request, {READS} eth_blockNumber each way ...")
        provider = connect(node.url).provider
        client = {
            "service provider (backend/chain/connect.py)": _client_cpu_ms(
                lambda: provider.make_request(RPCEndpoint("eth_blockNumber"), [])),
            "plain http.client": _client_cpu_ms(lambda: rpc.call("eth_blockNumber", [])),
        }
        rpc.close()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 2),
                    "python": f"{platform.python_implementation()} {platform.python_version()}"},
        "count": count,
        #: transactions sent whose receipt says status 1
        "mined": sum(1 for r in receipts if r is not None and int(r["status"], 16) == 1),
        "methods": figures,
        #: CPU milliseconds of this process per request (thread time), by way of sending
        "client_cpu_ms": client,
    }


def _client_cpu_ms(ask: Callable[[], object]) -> float:
    """This thread's CPU milliseconds per call of `ask`, over `READS` calls after 20 to warm up."""
    for _ in range(20):
        ask()
    began = time.thread_time()
    for _ in range(READS):
        ask()
    return round((time.thread_time() - began) * 1000 / READS, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=150,
                        help="milestones confirmed (transactions sent and simulated)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    out = sys.stderr if args.json else sys.stdout
    report = run(args.count, lambda line: print(line, file=out, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"node CPU and wall time per call, {report['count']} milestones, "
          f"{report['machine']['cpus']} CPUs, load {report['machine']['load']}")
    for figure in report["methods"]:
        cpu = "n/a" if figure["node_cpu_ms"] is None else f"{figure['node_cpu_ms']:.2f}"
        print(f"  {figure['method']:<50} node CPU {cpu:>6} ms   wall {figure['wall_ms']:6.2f} ms")
    print("the client's own CPU per request (eth_blockNumber):")
    for way, ms in report["client_cpu_ms"].items():
        print(f"  {way:<50} {ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

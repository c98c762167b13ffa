"""`escrow up` as a newcomer runs it (its own process, its own data folder, a free loopback
port): what it prints before serving (`--json`: JSON lines on stdout, logs on stderr), the demo
escrows it seeds on a first start, `escrow demo` told against it, and Ctrl-C (SIGINT to its
process group) stopping the whole tree, a Hardhat node it started included."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from web3 import Web3

from backend.chain.connect import connect
from backend.chain.node import HardhatNode, find_free_port
from backend.client import DEV_ROLES, ServiceClient
from backend.escrows.local_stack import DEV_KEYS_WARNING, page_host, stack_summary
from tests.support import reset_chain

ESCROW = str(Path(sys.executable).with_name("escrow"))
HARDHAT_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def stack_env(data_dir: Path, rpc_url: str, api_url: str) -> dict[str, str]:
    """The environment of a newcomer's shell: no ESCROW_ setting but the data folder, the node
    and the service's URL (and a quick indexer, so the test does not wait on it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env.update(ESCROW_DATA_DIR=str(data_dir), ESCROW_RPC_URL=rpc_url, ESCROW_API_URL=api_url,
               ESCROW_INDEX_POLL_INTERVAL="0.2")
    return env


@dataclass
class Up:
    """A running `escrow up --json`: its process and the JSON lines of its stdout."""

    process: subprocess.Popen[str]
    stderr_path: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def next_json(self, timeout: float) -> dict[str, Any]:
        """The next stdout line, which must be one JSON object."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from `escrow up` in {timeout} s; stderr:\n"
                                 + self.stderr_path.read_text()[-3000:]) from None
        value: dict[str, Any] = json.loads(line)
        return value

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to its process group, as a terminal sends it; its exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Any]:
    """`start(rpc_url, *args)`: `escrow up --json --port <free> ARGS` in its own process group
    with its own data folder; killed (group and all) if the test left it running."""
    started: list[Up] = []

    def start(rpc_url: str, *args: str) -> tuple[Up, str, dict[str, str]]:
        port = find_free_port()
        api_url = f"http://127.0.0.1:{port}"
        env = stack_env(tmp_path / f"data-{port}", rpc_url, api_url)
        stderr_path = tmp_path / f"up-{port}.log"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [ESCROW, "up", "--json", "--port", str(port), *args],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                start_new_session=True,
            )
        up = Up(process, stderr_path)
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(process.stdout, up.lines), daemon=True).start()
        started.append(up)
        return up, api_url, env

    yield start
    for up in started:
        if up.process.poll() is None:
            os.killpg(up.process.pid, signal.SIGINT)
            try:
                up.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(up.process.pid, signal.SIGKILL)
                up.process.wait(5)


def answers(url: str) -> bool:
    try:
        return connect(url).is_connected()
    except Exception:
        return False


def test_up_prints_what_a_wallet_needs_seeds_demo_escrows_and_the_demo_runs_against_it(
    spare_hardhat_node: HardhatNode, start_up: Any
) -> None:
    reset_chain(Web3(Web3.HTTPProvider(spare_hardhat_node.url)))  # a first start
    started = time.monotonic()
    up, api_url, env = start_up(spare_hardhat_node.url)

    summary = up.next_json(timeout=60)
    assert (summary["page"], summary["api"], summary["docs"]) == (
        f"{api_url}/", f"{api_url}/api", f"{api_url}/docs")
    assert (summary["chain_id"], summary["rpc_url"]) == (31337, spare_hardhat_node.url)
    assert (summary["node_started"], summary["deployed"], summary["seeding"]) == (
        False, True, True)
    roles = {a["role"]: a for a in summary["dev_accounts"]}
    assert [a["index"] for a in summary["dev_accounts"]] == list(range(10))
    assert {r: roles[r]["index"] for r in DEV_ROLES} == DEV_ROLES
    assert roles["deployer"]["private_key"] == HARDHAT_KEY_0
    assert summary["oracle"] == roles["oracle"]["address"]
    assert summary["relayer"] == roles["relayer"]["address"]
    assert summary["arbiter"] == roles["arbiter"]["address"]
    assert summary["dev_accounts_warning"] == DEV_KEYS_WARNING

    lines = [up.next_json(timeout=60) for _ in range(4)]
    assert all("seeded" in line for line in lines), lines
    seeded = [line["seeded"] for line in lines]
    seeding_seconds = time.monotonic() - started
    assert [s["state"] for s in seeded] == ["proposed", "delivered", "settled", "breached"]
    assert all(s["title"].startswith("Demo: ") for s in seeded)
    assert all(s["url"] == f"{api_url}/escrows/{s['id']}" for s in seeded)
    with ServiceClient(api_url) as api:
        config = api.config()
        assert (config["contract"], config["arbiter"]) == (summary["contract"],
                                                         summary["arbiter"])
        proposed, delivered, settled, breached = (
            api.get_json(f"/api/escrows/{s['id']}") for s in seeded)
    assert proposed["status"] == "proposed"
    assert delivered["status"] == "active"
    assert delivered["milestones"][0]["state"] == "delivered"
    assert settled["status"] == "closed" and settled["milestones"][0]["rating"] == 4
    assert breached["status"] == "active"
    assert [(b["kind"], b["period"]) for b in breached["breaches"]] == [(1, 0)]

    demo_started = time.monotonic()
    demo = subprocess.run([ESCROW, "demo", "--api", api_url], env=env, capture_output=True,
                          text=True, timeout=150)
    demo_seconds = time.monotonic() - demo_started
    assert demo.returncode == 0, demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    assert any("who got what and why (3 ETH escrowed)" in line for line in lines)
    assert any("1.56" in line and "total credited by this escrow" in line for line in lines)
    assert any("1.44" in line and "total credited by this escrow" in line for line in lines)
    assert lines[-1].startswith("audit: consistent (")

    assert up.interrupt() == 0
    assert answers(spare_hardhat_node.url)  # a node `up` did not start keeps running
    print(f"seeded in {seeding_seconds:.1f} s, demo in {demo_seconds:.1f} s")


def test_up_starts_its_own_node_and_ctrl_c_stops_the_whole_tree(
    hardhat_node: HardhatNode, start_up: Any
) -> None:
    rpc_url = f"http://127.0.0.1:{find_free_port()}"
    up, api_url, _ = start_up(rpc_url, "--no-seed")
    summary = up.next_json(timeout=60)
    assert (summary["node_started"], summary["deployed"], summary["seeding"]) == (
        True, True, False)
    assert summary["rpc_url"] == rpc_url
    with ServiceClient(api_url) as api:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert api.config()["chain_id"] == 31337
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    assert answers(rpc_url)

    assert up.interrupt() == 0
    assert not answers(rpc_url)
    assert up.lines.empty()  # nothing but the summary on stdout: logs went to stderr
    log = up.stderr_path.read_text()
    assert f"starting a Hardhat node on port {rpc_url.rsplit(':', 1)[1]}" in log
    assert "Traceback" not in log


def test_the_summary_names_the_urls_for_a_browser_and_lists_keys_only_on_31337() -> None:
    common: dict[str, Any] = dict(
        port=8000, rpc_url="http://127.0.0.1:8545", contract="0x" + "11" * 20,
        deployment_block=1, oracle=None, relayer=None, arbiter=None, accounts=[],
        node_started=False, deployed=False, seeding=False, data_dir="var",
    )
    anywhere = stack_summary(host="0.0.0.0", chain_id=11155111, **common)
    assert anywhere["page"] == "http://127.0.0.1:8000/"
    assert (anywhere["dev_accounts"], anywhere["dev_accounts_warning"]) == ([], None)
    assert page_host("::") == "[::1]" and page_host("::1") == "[::1]"
    assert page_host("example.test") == "example.test"

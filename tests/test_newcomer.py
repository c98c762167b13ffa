"""A newcomer, end to end: a fresh clone of this repository runs the README's main command
(`scripts/run`, which sets the checkout up and brings the whole service up, starting its own
Hardhat node); the test reads only what that command printed (`--json`: the URLs, the chain and
the dev accounts with their keys), drives one escrow through the REST API with ethers v6 from npm
as an independent wallet (tests/js/newcomer_wallet.js: create, accept, deliver, an EIP-712
confirmation signed by ethers and relayed by the service), then uses the clone's command line
(`escrow show`, `escrow withdraw`, `escrow audit`) and checks the credits, the withdrawal and a
consistent audit. Ctrl-C stops the whole tree, the node included.

It tests what is committed (the clone is of HEAD). The clone's setup installs its own `.venv`
from the package index (pip's cache makes it quick after the first time) and runs `npm ci`."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from backend.chain.connect import connect
from backend.chain.node import find_free_port
from backend.paths import REPO_ROOT

pytestmark = pytest.mark.hardhat

ETH = 10**18
SETUP_TIMEOUT = 600.0


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _answers(url: str) -> bool:
    try:
        return connect(url).is_connected()
    except Exception:
        return False


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    target = tmp_path / "quality-escrow"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True)
    return target


@pytest.fixture
def newcomer_env(tmp_path: Path) -> dict[str, str]:
    """A shell with no ESCROW_ setting but where the node and the service should listen (free
    loopback ports, so the clone starts its own node beside the suite's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        ESCROW_RPC_URL=f"http://127.0.0.1:{find_free_port()}",
        ESCROW_API_URL=f"http://127.0.0.1:{find_free_port()}",
        ESCROW_INDEX_POLL_INTERVAL="0.2",
    )
    return env


@pytest.fixture
def running(clone: Path, newcomer_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    port = newcomer_env["ESCROW_API_URL"].rsplit(":", 1)[1]
    stderr_path = tmp_path / "run.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            ["scripts/run", "--json", "--port", port], cwd=clone, env=newcomer_env,
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()

    def next_json(timeout: float) -> dict[str, Any]:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no line from scripts/run in {timeout} s; stderr:\n"
                + stderr_path.read_text()[-4000:]
            ) from None
        value: dict[str, Any] = json.loads(line)
        return value

    yield process, next_json
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _cli(clone: Path, env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [str(clone / ".venv" / "bin" / "escrow"), *args, "--json"], cwd=clone, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_a_fresh_clone_runs_the_service_and_a_wallet_of_its_own_settles_an_escrow(
    clone: Path, newcomer_env: dict[str, str], running: Any
) -> None:
    if shutil.which("node") is None:
        pytest.skip("needs node")
    process, next_json = running
    summary = next_json(SETUP_TIMEOUT)  # setup (venv, npm ci), node, deploy: then the summary
    api, rpc = newcomer_env["ESCROW_API_URL"], newcomer_env["ESCROW_RPC_URL"]
    assert summary["api"] == f"{api}/api" and summary["rpc_url"] == rpc
    assert summary["chain_id"] == 31337 and summary["node_started"] is True
    keys = {a["role"]: a for a in summary["dev_accounts"]}
    assert {"client", "provider", "arbiter", "oracle", "relayer"} <= keys.keys()
    seeded = [next_json(120) for _ in range(4)]  # the demo escrows, before our wallet starts
    assert all("seeded" in s for s in seeded), seeded

    story = subprocess.run(
        ["node", str(clone / "tests" / "js" / "newcomer_wallet.js")],
        input=json.dumps({
            "api": api, "rpc": rpc,
            "client_key": keys["client"]["private_key"],
            "provider_key": keys["provider"]["private_key"],
            "arbiter": summary["arbiter"], "oracle": summary["oracle"],
        }),
        capture_output=True, text=True, timeout=180,
    )
    assert story.returncode == 0, story.stderr
    told = json.loads(story.stdout)
    escrow_id = told["escrow_id"]
    assert told["confirmation"]["status"] in {"pending", "signed", "sent",
                                             "mined"}, told["confirmation"]
    milestone = told["escrow"]["milestones"][0]
    # rating 4 pays 7,500 bps of the 1.5 ETH milestone to the provider, the rest back
    assert (int(milestone["to_provider"]), int(milestone["to_client"])) == (
        1_125 * ETH // 1_000, 375 * ETH // 1_000)
    assert (int(told["payout"]["to_provider"]), int(told["payout"]["to_client"])) == (
        1_125 * ETH // 1_000, 375 * ETH // 1_000)
    assert milestone["review"]["criteria"][0]["met"] is False

    cli_env = {**newcomer_env, "ESCROW_DATA_DIR": str(clone / "var")}
    shown = _cli(clone, cli_env, "show", str(escrow_id))
    assert shown["milestones"][0]["rating"] == 4
    balances = shown["balances"]
    assert int(balances["credited_provider"]) == 1_125 * ETH // 1_000
    assert int(balances["credited_client"]) == 375 * ETH // 1_000

    provider = keys["provider"]["address"]
    before = connect(rpc).eth.get_balance(provider)
    withdrawn = _cli(clone, cli_env, "withdraw", "--from", "provider")
    after = connect(rpc).eth.get_balance(provider)
    # the provider's whole ETH credit (this escrow's 1.125 ETH and the seeded settled escrow's)
    assert after - before > 1_125 * ETH // 1_000 - ETH // 100, withdrawn
    credits = httpx.get(f"{api}/api/accounts/{provider}/credits", timeout=10).json()["credits"]
    eth = [c for c in credits if int(c["token"], 16) == 0]
    assert [int(c["amount"]) for c in eth] == [0], credits  # the whole ETH credit paid out
    audit = subprocess.run(
        [str(clone / ".venv" / "bin" / "escrow"), "audit", str(escrow_id), "--json",
         "--api", api], cwd=clone, env=cli_env, capture_output=True, text=True, timeout=120,
    )
    assert audit.returncode == 0, (audit.stdout, audit.stderr)
    assert json.loads(audit.stdout)["consistent"] is True

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(60) == 0
    assert not _answers(rpc), "the node scripts/run started is still answering after Ctrl-C"

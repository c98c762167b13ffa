"""`GET /api/health`: ok when the index is current; degraded, with the reason, when the node is
unreachable, the indexer has not run, the index lags, or the chain was reset under the index
(which the indexer refuses to mix with the old data)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint

from backend.api.app import create_app
from backend.chain.client import EscrowClient
from backend.chain.connect import connect
from backend.chain.deploy import deploy_escrow
from backend.chain.node import find_free_port
from backend.db.deployments import DeploymentConflictError, archive_active
from backend.db.models import IndexedBlock
from backend.db.session import make_engine, session_factory
from backend.index.indexer import index_once
from backend.services import Services
from tests.chain.frozen_node import frozen_node
from tests.index.support import (
    chain_logs,
    cursor_of,
    mine,
    projections,
    services_for,
    stored_logs,
)
from tests.support import EscrowEnv, build_env, reset_chain
from tests.web.support import serve


def health(services: Services) -> dict[str, Any]:
    response = TestClient(create_app(services)).get("/api/health")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_health_is_ok_once_the_index_has_caught_up(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        index_once(services)
        head = int(env.w3.eth.block_number)
        assert health(services) == {
            "status": "ok",
            "reason": None,
            "chain_id": 31337,
            "contract": env.escrow.address,
            "head_block": head,
            "indexed_block": head,
            "lag_blocks": 0,
            "workers": [],
        }


def test_health_is_degraded_until_the_indexer_has_run(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    with services_for(hardhat_env, database_url, tmp_path) as services:
        body = health(services)
    assert (body["status"], body["reason"], body["indexed_block"]) == (
        "degraded", "indexer has not run yet", None
    )


def test_health_reports_an_unreachable_node(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    with services_for(hardhat_env, database_url, tmp_path) as services:
        index_once(services)
        services.w3 = Web3(HTTPProvider(f"http://127.0.0.1:{find_free_port()}"))
        body = health(services)
    assert body["status"] == "degraded"
    assert body["reason"].startswith("node unreachable: ")
    assert body["head_block"] is None and body["indexed_block"] is not None


def test_health_reports_a_database_that_does_not_answer_instead_of_failing(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    with services_for(hardhat_env, database_url, tmp_path) as services:
        index_once(services)
        nowhere = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{find_free_port()}/x")
        services.sessions = session_factory(nowhere)
        try:
            body = health(services)
        finally:
            nowhere.dispose()
    assert body["status"] == "degraded"
    assert "database not answering" in body["reason"]
    assert body["head_block"] is not None and body["indexed_block"] is None


def test_health_reports_an_index_lagging_the_confirmed_head_by_more_than_allowed(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    with services_for(
        env, database_url, tmp_path, index_max_lag=5, confirmations=2
    ) as services:
        index_once(services)
        indexed = int(env.w3.eth.block_number) - 2
        mine(env, 5)
        body = health(services)
        assert (body["status"], body["lag_blocks"], body["indexed_block"]) == ("ok", 5, indexed)
        mine(env)
        body = health(services)
        assert (body["status"], body["lag_blocks"]) == ("degraded", 6)
        assert body["reason"] == (
            f"index lags the chain by 6 blocks (indexed {indexed}, confirmed head "
            f"{indexed + 6}; at most 5 allowed)"
        )


# ------------------------------------------------------------------ wrong contract


def test_an_address_without_contract_code_is_reported_and_nothing_is_indexed(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    nobody = env.parties.stranger.address
    with services_for(env, database_url, tmp_path, address=nobody) as services:
        assert index_once(services) == 0
        body = health(services)
        assert stored_logs(services) == []
    assert body["status"] == "degraded"
    assert body["reason"] == (
        f"no contract code at {nobody} on chain 31337: wrong address, or not deployed yet"
    )


def test_a_missing_contract_is_looked_for_again_and_forgotten_once_its_code_is_there(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = hardhat_env
    nobody = Web3.to_checksum_address("0x" + "5a" * 20)  # nobody's account: code set below
    with services_for(env, database_url, tmp_path, address=nobody) as services:
        with caplog.at_level(logging.ERROR, logger="backend.index.indexer"):
            index_once(services)
            index_once(services)
        assert [r.getMessage().endswith("wrong address, or not deployed yet")
                for r in caplog.records] == [True]  # logged once, not on every poll
        code = env.w3.eth.get_code(env.escrow.address)
        env.w3.provider.make_request(
            RPCEndpoint("hardhat_setCode"), [nobody, "0x" + bytes(code).hex()]
        )
        assert index_once(services) == 0
        cursor = cursor_of(services)
        assert cursor is not None and cursor.reset_detected is None
        assert cursor.block_number == int(env.w3.eth.block_number)
        assert health(services)["status"] == "ok"


def test_a_second_contract_on_the_same_chain_is_refused_at_start_rather_than_mixed(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    other = EscrowClient(env.w3, deploy_escrow(env.w3, env.parties.deployer.address).address)
    other.create_escrow(env.params(), env.client)
    with services_for(env, database_url, tmp_path) as services:
        assert index_once(services) == 2
        first_index = stored_logs(services)
        sessions = services.sessions
        with (
            pytest.raises(DeploymentConflictError) as refused,
            services_for(env, database_url, tmp_path, address=other.address),
        ):
            pass
        assert str(refused.value) == (
            f"this database serves contract {env.escrow.address} on chain 31337, which the "
            f"chain still has; refusing to mix its escrows with those of {other.address}: use "
            "another ESCROW_DATABASE_URL, or set the old data aside with "
            "`escrow deployments archive`"
        )
        assert stored_logs(services) == first_index

        archived = archive_active(sessions, 31337, "operator", now=1)
        assert archived is not None and archived.archived_rows == {
            "event_log": 2, "indexed_block": 4, "escrow": 1, "chain_cursor": 1,
        }
    with services_for(env, database_url, tmp_path, address=other.address) as services:
        assert stored_logs(services) == []
        assert index_once(services) == 1  # the other contract's own escrow, alone
        assert health(services)["status"] == "ok"


# ------------------------------------------------------------------ a reset chain


def test_a_chain_reset_under_the_index_stops_it_and_health_says_why(
    spare_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = spare_env
    first = env.create_active()
    env.deliver(first, 0)
    with services_for(env, database_url, tmp_path) as services:
        assert index_once(services) == 3
        before, folded = stored_logs(services), projections(services)
        indexed = int(env.w3.eth.block_number)

        reset_chain(env.w3)  # the node forgets everything: no code at the address any more
        assert index_once(services) == 0
        reason = (
            f"chain reset detected: no contract code at {env.escrow.address} on chain 31337 "
            f"any more (indexed up to block {indexed}); indexing stopped so old and new data "
            "never mix"
        )
        cursor = cursor_of(services)
        assert cursor is not None and cursor.reset_detected == reason
        body = health(services)
        assert body["status"] == "degraded"
        assert body["reason"] == (
            f"{reason}; the chain's head 0 is below the indexed block {indexed}: the chain was "
            "reset or reorganised"
        )

        again = build_env(env.w3)  # redeployed at the same address; new escrows
        assert again.escrow.address == env.escrow.address
        again.create_active()
        again.create_active()
        assert index_once(services) == 0
        assert stored_logs(services) == before
        assert projections(services) == folded
        assert health(services)["reason"].startswith(reason)


def test_a_redeployed_chain_is_caught_by_its_block_hashes_and_archived_on_restart(
    spare_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = spare_env
    env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        assert index_once(services) == 2
        before = stored_logs(services)

        reset_chain(env.w3)
        env.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [3_600])
        again = build_env(env.w3)  # same address, same deployment block number, other blocks
        assert (again.escrow.address, again.deployment_block) == (
            env.escrow.address, env.deployment_block
        )
        for _ in range(3):
            again.create_active()
        assert int(env.w3.eth.block_number) > before[-1][2]
        assert index_once(services) == 0
        assert stored_logs(services) == before
        body = health(services)
        assert body["status"] == "degraded"
        assert body["reason"].startswith(
            f"chain reset: block {env.deployment_block}, where {env.escrow.address} was "
            "deployed, is 0x"
        )
        assert body["reason"].endswith(
            f"on the chain, was {_stored_hash(services, env.deployment_block)}; restart the "
            "service to archive the old deployment's data"
        )

    with services_for(env, database_url, tmp_path) as services:  # a restart archives it
        assert [d.archived_rows for d in services.archived] == [
            {"event_log": 2, "indexed_block": 3, "escrow": 1, "chain_cursor": 1}
        ]
        assert index_once(services) == 6
        assert stored_logs(services) == chain_logs(again)
        assert health(services)["status"] == "ok"


def _stored_hash(services: Services, number: int) -> str:
    with services.sessions() as session:
        block = session.get(IndexedBlock, (services.chain_id, number))
        assert block is not None
        return block.hash


# ------------------------------------------------------------------ a frozen node


def _frozen(services: Services, url: str) -> None:
    """Points the services' node reads at `url` (a provider timeout of 3 s, so the reads left
    waiting in the background end soon after the test)."""
    frozen = connect(url, timeout=3)
    services.w3 = frozen
    services.deployment.w3 = frozen


def _timed_get(client: TestClient, path: str) -> tuple[float, Any]:
    start = time.monotonic()
    response = client.get(path)
    return time.monotonic() - start, response


def test_health_answers_within_seconds_while_the_node_accepts_connections_and_never_answers(
    env: EscrowEnv, tmp_path: Path
) -> None:
    """Observed: `/api/health` gave no answer for over 70 s with the node frozen. Now it answers
    "node not answering" in about ESCROW_HEALTH_NODE_TIMEOUT (1 s here), the second request too
    (it waits on the same read, no thread per request), and the node's last answers stand."""
    with services_for(env, f"sqlite:///{tmp_path / 'h.db'}", tmp_path,
                      health_node_timeout=1.0) as services:
        index_once(services)
        client = TestClient(create_app(services))
        with frozen_node() as node:
            _frozen(services, node.url)
            times = []
            reasons = []
            for _ in range(3):
                took, response = _timed_get(client, "/api/health")
                times.append(took)
                assert response.status_code == 200
                body = response.json()
                assert body["status"] == "degraded"
                assert body["head_block"] is None and body["indexed_block"] is not None
                reasons.append(body["reason"])
            # the third may see the read of the first give up (the provider's 3 s timeout)
            assert reasons[:2] == 2 * [
                "node not answering: no answer within 1 s (ESCROW_HEALTH_NODE_TIMEOUT)"
            ]
            assert reasons[2] == reasons[0] or reasons[2].startswith(
                "node unreachable: ReadTimeout"
            ), reasons[2]
            probes = [t for t in threading.enumerate() if t.name.startswith("node-probe-")]
            took_listing, listing = _timed_get(client, "/api/escrows")
            print(f"\nfrozen node: /api/health answered in {', '.join(f'{t:.2f}' for t in times)}"
                  f" s; GET /api/escrows in {took_listing:.2f} s; node reads waiting in the "
                  f"background: {len(probes)}; connections the node took: {node.accepted}")
            assert max(times) < 5.0
            assert listing.status_code == 200 and took_listing < 5.0
            assert len(probes) <= 2  # one per key (head, deployment), not one per request


def test_health_answers_within_seconds_while_a_frozen_node_holds_fifty_other_requests(
    env: EscrowEnv, tmp_path: Path
) -> None:
    """Observed: with the node frozen and 50 requests waiting on it (each held for the RPC
    timeout), `/api/health` and `/metrics` took 20 s: every threadpool thread was held. Now
    those requests are admitted a few at a time (`backend/api/admission.py`, the others refused
    with 503) and health and metrics keep threads and connections of their own."""
    with services_for(env, f"sqlite:///{tmp_path / 'h.db'}", tmp_path,
                      health_node_timeout=1.0, rpc_timeout=6.0) as services:
        index_once(services)
        app = create_app(services)
        with frozen_node() as node, serve(app) as url:
            frozen = connect(node.url, timeout=6)  # each request held 6 s by the node
            services.w3 = services.deployment.w3 = frozen
            services.escrow = EscrowClient(frozen, env.escrow.address,
                                           from_block=env.deployment_block)
            # a request that changes something reads the chain first (the deployment check)
            withdraw = f"{url}/api/tx/withdraw"
            body = {"token": "0x" + "00" * 20}
            with ThreadPoolExecutor(50) as pool:
                held = [pool.submit(httpx.post, withdraw, json=body, timeout=60)
                        for _ in range(50)]
                time.sleep(1.0)  # all 50 in: admitted ones wait on the node
                took = {}
                for path in ("/api/health", "/metrics"):
                    start = time.monotonic()
                    answer = httpx.get(url + path, timeout=60)
                    took[path] = time.monotonic() - start
                    assert answer.status_code == 200, (path, answer.text)
                statuses = sorted({f.result().status_code for f in held})
    print(f"\nfrozen node, 50 requests held: /api/health {took['/api/health']:.2f} s, "
          f"/metrics {took['/metrics']:.2f} s; the 50 answered {statuses}")
    assert max(took.values()) < 5.0
    assert set(statuses) <= {200, 503}

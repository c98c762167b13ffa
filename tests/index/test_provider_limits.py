"""The indexer through a node that enforces a hosted provider's limits (calls per batch, blocks
or results per eth_getLogs, a rate limit) stores exactly what it stores reading the node directly,
and the node saw the limits hit and then respected; an account's credits (read from the
contract for the indexed tokens) likewise, and `NodeUnavailable` once the node keeps
rate-limiting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backend.chain.client import EscrowClient
from backend.chain.connect import RpcPolicy, connect
from backend.chain.errors import NodeUnavailable
from backend.chain.tokens import TokenMetadata
from backend.config import Settings
from backend.escrows.credits import account_credits
from backend.index.indexer import index_once
from backend.services import Services, build_services
from tests.chain.rpc_proxy import (
    ProxyLimits,
    RateStyle,
    assert_every_limit_hit_then_respected,
    assert_rate_limits_hit_then_retried,
    busy_history,
    running_proxy,
)
from tests.index.support import chain_logs, endpoint, projections, stored_logs
from tests.support import EscrowEnv


@contextmanager
def services_at(env: EscrowEnv, rpc_url: str, tmp_path: Path, name: str) -> Iterator[Services]:
    """Services built the way `escrow index` builds them, connecting to `rpc_url` itself."""
    data_dir = tmp_path / name
    data_dir.mkdir()
    services = build_services(
        Settings(rpc_url=rpc_url, data_dir=data_dir,
                 database_url=f"sqlite:///{data_dir / 'escrow.db'}"),
        contract_address=env.escrow.address,
        deployment_block=env.deployment_block,
    )
    try:
        yield services
    finally:
        services.engine.dispose()


LIMITS = {
    "alchemy-like": ProxyLimits(max_batch=3, max_log_blocks=8, rate_every=4, retry_after="0",
                                rate_budget=12),
    "geth-batches-infura-results": ProxyLimits(
        max_batch=2, batch_refusal="geth", max_log_results=2, rate_every=5,
        rate_style="jsonrpc", rate_budget=6,
    ),
}


@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
def test_the_indexer_through_a_limited_node_stores_what_it_stores_directly(
    hardhat_env: EscrowEnv, tmp_path: Path, limits: ProxyLimits
) -> None:
    env = hardhat_env
    busy_history(env)
    with (
        services_at(env, endpoint(env), tmp_path, "direct") as direct,
        running_proxy(endpoint(env), limits) as proxy,
        services_at(env, proxy.url, tmp_path, "limited") as limited,
    ):
        stored = index_once(limited)
        assert stored == index_once(direct) > 0
        assert stored_logs(limited) == stored_logs(direct) == chain_logs(env)
        assert projections(limited) == projections(direct)
        assert index_once(limited) == 0
    assert_every_limit_hit_then_respected(proxy)
    limited_kinds = {s.batch for s in proxy.seen if s.outcome == "rate_limited"}
    assert limited_kinds == {True, False}  # single calls and batches were both limited


@pytest.mark.parametrize("style", ["http", "jsonrpc"])
def test_credits_through_a_rate_limiting_node_equal_the_direct_ones_until_it_never_answers(
    hardhat_env: EscrowEnv, tmp_path: Path, style: RateStyle
) -> None:
    env = hardhat_env
    busy_history(env)
    with services_at(env, endpoint(env), tmp_path, "direct") as services:
        index_once(services)

        def credits(w3_url: str, policy: RpcPolicy) -> dict[str, dict[str, Any]]:
            w3 = connect(w3_url, policy=policy)
            client = EscrowClient(w3, env.escrow.address, from_block=env.deployment_block)
            with services.sessions() as session:
                return {
                    account: account_credits(
                        session, services.chain_id, client, TokenMetadata(w3), account
                    )
                    for account in (env.client, env.provider)
                }

        fast = RpcPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.01)
        direct = credits(endpoint(env), fast)
        assert any(c["credits"] for c in direct.values())
        limits = ProxyLimits(rate_every=2, rate_style=style, retry_after="0")
        with running_proxy(endpoint(env), limits) as proxy:
            assert credits(proxy.url, fast) == direct
        assert_rate_limits_hit_then_retried(proxy)
        with (
            running_proxy(endpoint(env), ProxyLimits(rate_every=1, rate_style=style)) as down,
            pytest.raises(NodeUnavailable, match=r"rate limited.*\(3 attempts\)"),
        ):
            credits(down.url, fast)

"""`escrow audit --all --no-database` through a node that enforces a hosted provider's limits
gives the report it gives against the node directly, and the node saw the limits hit and then
respected; a node that keeps rate-limiting is "node unavailable" (exit 2) after bounded
backoff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend import cli
from backend.config import Settings, get_settings
from tests.chain.rpc_proxy import (
    ProxyLimits,
    RateStyle,
    assert_every_limit_hit_then_respected,
    busy_history,
    running_proxy,
)
from tests.index.support import endpoint
from tests.support import EscrowEnv

runner = CliRunner()


def audit_json(
    monkeypatch: pytest.MonkeyPatch, env: EscrowEnv, rpc_url: str, tmp_path: Path
) -> dict[str, object]:
    configured = Settings(rpc_url=rpc_url, data_dir=tmp_path,
                          contract_address=env.escrow.address)
    monkeypatch.setattr("backend.config.get_settings", lambda: configured)
    result = runner.invoke(cli.app, ["audit", "--all", "--no-database", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    body: dict[str, object] = json.loads(result.stdout)
    return body


LIMITS = {
    "batches-ranges-http429": ProxyLimits(max_batch=3, max_log_blocks=16, rate_every=3,
                                          retry_after="0", rate_budget=10),
    "geth-batches-results-jsonrpc": ProxyLimits(
        max_batch=2, batch_refusal="geth", max_log_results=3, rate_every=4,
        rate_style="jsonrpc", rate_budget=5,
    ),
}


@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
def test_the_audit_through_a_limited_node_gives_the_report_it_gives_directly(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    limits: ProxyLimits,
) -> None:
    env = hardhat_env
    busy_history(env)
    direct = audit_json(monkeypatch, env, endpoint(env), tmp_path)
    assert direct["consistent"] is True
    with running_proxy(endpoint(env), limits) as proxy:
        limited = audit_json(monkeypatch, env, proxy.url, tmp_path)
    assert limited == direct
    assert_every_limit_hit_then_respected(proxy)


@pytest.mark.parametrize("style", ["http", "jsonrpc"])
def test_a_node_that_keeps_rate_limiting_the_audit_is_unavailable_after_bounded_attempts(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: RateStyle
) -> None:
    env = hardhat_env
    env.create_active()
    limits = ProxyLimits(rate_every=1, rate_style=style, retry_after="0")
    with running_proxy(endpoint(env), limits) as proxy:
        configured = Settings(rpc_url=proxy.url, data_dir=tmp_path,
                              contract_address=env.escrow.address)
        monkeypatch.setattr("backend.config.get_settings", lambda: configured)
        result = runner.invoke(cli.app, ["audit", "--all", "--no-database"])
    assert result.exit_code == cli.EXIT_REFUSED, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: node unavailable: "), result.stderr
    assert "rate limited" in lines[0]
    # the first read was tried exactly the configured number of times, then given up
    assert len(proxy.seen) == get_settings().rpc_max_attempts
    assert set(proxy.outcomes()) == {"rate_limited"}


def test_a_retry_after_of_the_node_is_waited_for(
    hardhat_env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = hardhat_env
    env.create_active()
    limits = ProxyLimits(rate_every=1, retry_after="1", rate_budget=1)
    with running_proxy(endpoint(env), limits) as proxy:
        audit_json(monkeypatch, env, proxy.url, tmp_path)
    refused, retried = proxy.seen[0], proxy.seen[1]
    assert refused.outcome == "rate_limited" and retried.outcome == "ok"
    assert retried.methods == refused.methods
    assert retried.at - refused.at >= 0.9

"""The one clock: chain time is the latest block's timestamp, service time an injectable wall
clock, and `now` the later of the two."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from backend.chain.clock import Clock, chain_time
from backend.chain.errors import NodeUnavailable
from tests.support import EscrowEnv


def _fixed(value: float) -> Any:
    return lambda: value


def _down(*_args: Any, **_kwargs: Any) -> Any:
    raise requests.ConnectionError("connection refused")


def test_chain_time_is_the_latest_blocks_timestamp(env: EscrowEnv) -> None:
    latest = int(env.w3.eth.get_block("latest")["timestamp"])
    assert Clock(env.w3).chain_time() == latest == chain_time(env.w3)
    env.advance(3_600)  # eth-tester mines at latest + 3,599
    moved = int(env.w3.eth.get_block("latest")["timestamp"])
    assert chain_time(env.w3) == moved >= latest + 3_599


def test_service_time_is_the_injected_wall_clock_in_whole_seconds() -> None:
    assert Clock(None, wall=_fixed(1_900_000_000.9)).service_time() == 1_900_000_000


def test_now_is_the_later_of_chain_and_service_time(env: EscrowEnv) -> None:
    chain = chain_time(env.w3)
    assert Clock(env.w3, wall=_fixed(chain - 500)).now() == chain  # a wall clock behind
    assert Clock(env.w3, wall=_fixed(chain + 500)).now() == chain + 500  # a wall clock ahead


def test_a_node_that_does_not_answer_is_unavailable_for_chain_time(
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env.w3.eth, "get_block", _down)
    clock = Clock(env.w3, wall=_fixed(1_000))
    with pytest.raises(NodeUnavailable, match="latest block: connection refused"):
        clock.chain_time()
    with pytest.raises(NodeUnavailable):
        clock.now()
    assert clock.now_or_service_time() == 1_000


def test_without_a_chain_only_service_time_is_known() -> None:
    clock = Clock(None, wall=_fixed(42))
    with pytest.raises(NodeUnavailable):
        clock.chain_time()
    assert clock.now_or_service_time() == 42

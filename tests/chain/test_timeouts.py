"""Every JSON-RPC request has a timeout (`ESCROW_RPC_TIMEOUT`), and a read that timed out is not
sent again: a node that accepts connections and never answers holds a call for one timeout, not
five. The node reads of health and metrics wait even less (`backend/chain/probe.py`)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import requests

from backend.chain.connect import LimitedHTTPProvider, connect
from backend.chain.errors import NodeUnavailable, from_node
from backend.chain.probe import NodeNotAnswering, NodeProbe
from backend.config import Settings
from tests.chain.frozen_node import frozen_node


def test_the_provider_timeout_is_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backend.chain.connect.get_settings", lambda: Settings(rpc_timeout=2.5))
    provider = connect("http://127.0.0.1:9").provider
    assert isinstance(provider, LimitedHTTPProvider)
    assert provider.get_request_kwargs()["timeout"] == 2.5
    assert LimitedHTTPProvider("http://127.0.0.1:9").get_request_kwargs()["timeout"] == 10.0


def test_a_call_to_a_frozen_node_fails_after_one_timeout_as_node_unavailable() -> None:
    with frozen_node() as node:
        w3 = connect(node.url, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(NodeUnavailable) as caught:
            from_node("latest block", lambda: w3.eth.block_number)
        took = time.monotonic() - start
    print(f"\nfrozen node: eth_blockNumber failed after {took:.2f} s (timeout 0.5 s), "
          f"{node.accepted} connection(s)")
    assert isinstance(caught.value.__cause__, requests.Timeout)
    assert took < 1.5  # web3.py's own retry would have taken five timeouts and its backoff
    assert node.accepted == 1


def test_a_probe_read_waits_at_most_its_timeout_and_shares_the_read_under_way() -> None:
    probe = NodeProbe()
    release = threading.Event()
    calls = []

    def slow() -> int:
        calls.append(1)
        release.wait(5)
        return 7

    start = time.monotonic()
    for _ in range(3):
        with pytest.raises(NodeNotAnswering) as caught:
            probe.read("head", slow, 0.2, what="latest block")
    took = time.monotonic() - start
    assert caught.value.message == "node unavailable: latest block: no answer within 0.2 s"
    assert 0.6 <= took < 2.0 and len(calls) == 1
    release.set()
    assert probe.read("head", slow, 1.0) == 7 and len(calls) == 1  # the same read, answered
    assert probe.read("head", slow, 1.0, max_age=60) == 7 and len(calls) == 1  # recent enough
    assert probe.read("head", slow, 1.0) == 7 and len(calls) == 2  # asked again


def test_an_awaited_probe_read_gives_up_alone_and_leaves_the_read_to_the_others() -> None:
    """`read_async` is the event loop's `read`: the same timeout and error, no thread of the
    caller's waiting; a caller that gives up does not cancel the read others share."""
    probe = NodeProbe()
    release = threading.Event()
    calls = []

    def slow() -> int:
        calls.append(threading.current_thread().name)
        release.wait(5)
        return 7

    async def scenario() -> tuple[str, int]:
        with pytest.raises(NodeNotAnswering) as caught:
            await probe.read_async("deployment", slow, 0.2, what="deployment block")
        waiting = asyncio.create_task(probe.read_async("deployment", slow, 5.0))
        await asyncio.sleep(0.1)
        release.set()
        return caught.value.message, await waiting

    loop_thread = threading.current_thread().name
    message, answer = asyncio.run(scenario())
    assert message == "node unavailable: deployment block: no answer within 0.2 s"
    assert answer == 7 and len(calls) == 1  # the read given up on answered the next caller
    assert calls[0] != loop_thread  # read in the probe's thread, not on the event loop


def test_a_keys_reads_share_one_thread_that_ends_once_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread per read cost the API about a millisecond of CPU per POST: the reads of a key run
    in one thread of the probe's, one after the other, which ends after `IDLE_SECONDS` without
    a read; the next read starts another."""
    monkeypatch.setattr("backend.chain.probe.IDLE_SECONDS", 0.2)
    probe = NodeProbe()
    caller = threading.current_thread()
    readers = [probe.read("head", threading.current_thread, 1.0) for _ in range(5)]
    assert readers[0] is not caller and all(r is readers[0] for r in readers)
    assert readers[0].name == "node-probe-head" and readers[0].daemon
    readers[0].join(2.0)
    assert not readers[0].is_alive()  # idle: ended
    again = probe.read("head", threading.current_thread, 1.0)
    assert again is not readers[0] and again.name == "node-probe-head"

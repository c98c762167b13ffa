"""The chain indexer against a real Hardhat node and both databases: chunks, cursor, confirmation
depth, refused ranges, real reorgs, listeners and the worker loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.logs import DISCARD

import backend.index.indexer as indexer_module
from backend.chain import devchain
from backend.chain.event_json import args_to_json
from backend.chain.log_decoder import LogDecoder
from backend.chain.transactions import event_from_log
from backend.db.models import EventLog, IndexedBlock
from backend.index.indexer import (
    MAX_CHAIN_MOVES,
    ChainMovedError,
    Indexer,
    clear_index,
    index_once,
    run_indexer,
)
from backend.services import Services
from tests.index.support import (
    FlakyProvider,
    PickyProvider,
    StaleLogsProvider,
    chain_logs,
    chain_projections,
    cursor_of,
    endpoint,
    mine,
    projections,
    services_for,
    stored_logs,
)
from tests.support import ETH, EscrowEnv

# ------------------------------------------------------------------ decoding


def test_the_log_decoder_gives_what_web3_process_log_gives_for_every_event(env: EscrowEnv) -> None:
    e = env.escrow
    first = env.create_active(env.params((ETH, 2 * ETH, 3 * ETH)))
    env.deliver(first, 0)
    e.confirm(first, 0, 3, b"\x33" * 32, env.client)
    env.deliver(first, 1)
    e.open_dispute(first, 1, b"\x44" * 32, env.client)
    e.resolve_dispute(first, 1, 2_500, env.arbiter)
    breach, _ = e.report_breach(first, 1, 7, b"\x55" * 32, env.oracle)
    e.challenge_breach(first, breach, env.provider)
    e.resolve_breach(first, breach, True, env.arbiter)
    second = env.create(env.params((5 * 10**6,), token=env.token))
    e.cancel(second, env.client)
    e.withdraw(None, env.provider)

    logs = env.w3.eth.get_logs(
        {"address": e.address, "fromBlock": env.deployment_block, "toBlock": "latest"}
    )
    decoder = LogDecoder(e.contract.abi)
    names = set()
    for log in logs:
        name, args = decoder.decode(log["topics"], log["data"])
        [processed] = [
            p for p in e.contract.events[name]().process_receipt({"logs": [log]}, errors=DISCARD)
        ]
        assert args == args_to_json(name, event_from_log(processed).args)
        names.add(name)
    assert names == {
        "EscrowCreated", "EscrowAccepted", "EscrowCancelled", "DeliverySubmitted",
        "DisputeOpened", "MilestoneSettled", "BreachReported", "BreachChallenged",
        "BreachSettled", "Withdrawn",
    }


# ------------------------------------------------------------------ ingest


def _busy_history(env: EscrowEnv) -> tuple[int, int]:
    """Two escrows: one active with a confirmed milestone, one cancelled; and a withdrawal."""
    first = env.create_active(env.params((ETH, 2 * ETH)))
    env.deliver(first, 0)
    env.escrow.confirm(first, 0, 4, b"\x33" * 32, env.client)
    second = env.create(env.params((ETH,)))
    env.escrow.cancel(second, env.client)
    env.escrow.withdraw(None, env.provider)
    return first, second


def test_sync_stores_every_contract_event_once_with_its_block_hash_and_time(
    any_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = any_env
    first, second = _busy_history(env)
    truth = chain_logs(env)
    assert len(truth) == 7
    with services_for(env, database_url, tmp_path) as services:
        assert Indexer(services).sync() == 7
        assert stored_logs(services) == truth
        with services.sessions() as session:
            rows = session.scalars(select(EventLog).order_by(EventLog.id)).all()
            for row in rows:
                block = env.w3.eth.get_block(row.block_number)
                assert row.block_time == int(block["timestamp"])
                assert row.contract == env.escrow.address
            assert [(r.event, r.escrow_id) for r in rows] == [
                ("EscrowCreated", first), ("EscrowAccepted", first),
                ("DeliverySubmitted", first), ("MilestoneSettled", first),
                ("EscrowCreated", second), ("EscrowCancelled", second),
                ("Withdrawn", None),
            ]
            assert rows[3].args["toProvider"] == str(ETH * 8_000 // 10_000)
        assert projections(services) == chain_projections(env, [first, second])
        head = env.w3.eth.get_block("latest")
        cursor = cursor_of(services)
        assert cursor is not None
        assert (cursor.block_number, cursor.block_hash) == (
            int(head["number"]), "0x" + bytes(head["hash"]).hex()
        )
        assert cursor.reset_detected is None
        assert Indexer(services).sync() == 0
        assert stored_logs(services) == truth


def test_a_new_indexer_resumes_at_the_cursor_and_stores_nothing_twice(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    first = env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        assert Indexer(services).sync() == 2
    env.deliver(first, 0)
    env.escrow.confirm(first, 0, 5, None, env.client)
    second = env.create()
    with services_for(env, database_url, tmp_path) as restarted:  # a new process, same database
        assert Indexer(restarted).sync() == 3
        assert stored_logs(restarted) == chain_logs(env)
        assert projections(restarted) == chain_projections(env, [first, second])


def test_the_confirmation_depth_holds_back_the_newest_blocks(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    first = env.create_active()  # two blocks: created, accepted
    head = int(env.w3.eth.block_number)
    with services_for(env, database_url, tmp_path, confirmations=1) as services:
        assert Indexer(services).sync() == 1
        assert stored_logs(services) == chain_logs(env, head - 1)
        cursor = cursor_of(services)
        assert cursor is not None and cursor.block_number == head - 1
        assert projections(services)[first][0] == "proposed"
        mine(env)
        assert Indexer(services).sync() == 1
        assert projections(services)[first][0] == "active"


def test_a_refused_log_range_is_halved_until_the_node_accepts_it(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    for _ in range(3):
        env.create_active()
    mine(env, 5)
    picky = PickyProvider(endpoint(env), max_span=3)
    with services_for(env, database_url, tmp_path, w3=Web3(picky), index_chunk_blocks=64) as svc:
        indexer = Indexer(svc)
        assert indexer.sync() == 6
        assert stored_logs(svc) == chain_logs(env)
    first_span = int(env.w3.eth.block_number) - env.deployment_block + 1
    assert picky.calls[0] == (first_span, False)
    for (span, accepted), (next_span, _) in zip(picky.calls, picky.calls[1:], strict=False):
        if not accepted:
            assert next_span == span // 2
    assert all(span <= 3 for span, accepted in picky.calls if accepted)
    halvings = [first_span]
    while halvings[-1] > 3:
        halvings.append(halvings[-1] // 2)
    refused = [span for span, accepted in picky.calls if not accepted]
    assert refused[: len(halvings) - 1] == halvings[:-1]
    assert (indexer.span, indexer.chunk) == (halvings[-1], 64)


def test_a_single_block_the_node_refuses_fails_the_sync_and_stores_nothing(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    picky = PickyProvider(endpoint(env), max_span=0)
    with services_for(env, database_url, tmp_path, w3=Web3(picky)) as services:
        with pytest.raises(Web3RPCError, match="more than 10000 results"):
            Indexer(services).sync()
        assert stored_logs(services) == []
        assert picky.calls[-1] == (1, False)


# ------------------------------------------------------------------ reorgs


def test_logs_from_a_block_the_chain_no_longer_has_are_read_again(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    stale = StaleLogsProvider(endpoint(env), times=2)
    with services_for(env, database_url, tmp_path, w3=Web3(stale)) as services:
        assert Indexer(services).sync() == 2
        assert stale.times_left == 0
        assert stored_logs(services) == chain_logs(env)


def test_a_chain_that_keeps_moving_under_the_reads_fails_the_sync_and_stores_nothing(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    stale = StaleLogsProvider(endpoint(env), times=100)
    with services_for(env, database_url, tmp_path, w3=Web3(stale)) as services:
        with pytest.raises(ChainMovedError, match="changed while its logs were read"):
            Indexer(services).sync()
        assert stale.times_left == 100 - (MAX_CHAIN_MOVES + 1)
        assert stored_logs(services) == []


def test_a_real_reorg_replaces_the_old_branch_with_the_new_one(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    e = env.escrow
    first = env.create_active(env.params((ETH, 2 * ETH, 3 * ETH)))
    with services_for(env, database_url, tmp_path) as services:
        indexer = Indexer(services)
        assert indexer.sync() == 2
        fork = devchain.snapshot(env.w3)
        # the old branch: a delivery and a confirmation of milestone 0, and a second escrow
        env.deliver(first, 0)
        e.confirm(first, 0, 5, None, env.client)
        second = env.create()
        old = chain_logs(env)
        assert indexer.sync() == 3
        assert stored_logs(services) == old
        assert set(projections(services)) == {first, second}

        devchain.revert(env.w3, fork)
        e._params.pop(second, None)
        # the new branch at the same heights: other transactions, other events
        e.submit_delivery(first, 1, b"\x99" * 32, env.provider)
        e.open_dispute(first, 1, b"\x98" * 32, env.client)
        e.confirm(first, 2, 1, b"\x97" * 32, env.client)
        new = chain_logs(env)
        assert [k[2] for k in new[2:]] == [k[2] for k in old[2:]]  # same heights...
        assert {k[3] for k in new[2:]}.isdisjoint({k[3] for k in old[2:]})  # ...other blocks

        assert indexer.sync() == 3
        assert stored_logs(services) == new
        assert not {k[0] for k in old[2:]} & {k[0] for k in stored_logs(services)}
        assert projections(services) == chain_projections(env, [first])
        _assert_blocks_match_chain(services, env)


def test_a_reorg_onto_a_shorter_branch_rolls_back_below_the_old_cursor(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    first = env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        indexer = Indexer(services)
        assert indexer.sync() == 2
        fork = devchain.snapshot(env.w3)
        second = env.create()
        third = env.create()
        env.escrow.cancel(third, env.client)
        assert indexer.sync() == 3
        old_cursor = cursor_of(services)
        devchain.revert(env.w3, fork)
        for gone in (second, third):
            env.escrow._params.pop(gone, None)
        env.deliver(first, 0)  # one block where the old branch had three
        assert old_cursor is not None and int(env.w3.eth.block_number) < old_cursor.block_number
        assert indexer.sync() == 1
        assert stored_logs(services) == chain_logs(env)
        assert projections(services) == chain_projections(env, [first])
        cursor = cursor_of(services)
        assert cursor is not None and cursor.block_number == int(env.w3.eth.block_number)
        assert cursor.reset_detected is None


def test_a_rollback_is_one_transaction_that_leaves_nothing_half_done(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = hardhat_env
    first = env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        indexer = Indexer(services)
        indexer.sync()
        fork = devchain.snapshot(env.w3)
        env.deliver(first, 0)
        env.deliver(first, 1)
        indexer.sync()
        before, cursor_before = stored_logs(services), cursor_of(services)
        devchain.revert(env.w3, fork)
        env.escrow.confirm(first, 1, 2, None, env.client)
        env.escrow.confirm(first, 0, 3, None, env.client)

        def broken_refold(*_args: Any) -> None:
            raise RuntimeError("database went away mid-rollback")

        monkeypatch.setattr(indexer_module, "refresh_projections", broken_refold)
        with pytest.raises(RuntimeError, match="mid-rollback"):
            indexer.sync()
        assert stored_logs(services) == before
        cursor = cursor_of(services)
        assert cursor is not None and cursor_before is not None
        assert (cursor.block_number, cursor.block_hash) == (
            cursor_before.block_number, cursor_before.block_hash
        )
        monkeypatch.undo()
        assert indexer.sync() == 2
        assert stored_logs(services) == chain_logs(env)
        assert projections(services) == chain_projections(env, [first])


def _assert_blocks_match_chain(services: Services, env: EscrowEnv) -> None:
    with services.sessions() as session:
        query = select(IndexedBlock.number, IndexedBlock.hash)
        blocks = [(n, h) for n, h in session.execute(query)]
    assert blocks
    for number, hash_ in blocks:
        assert "0x" + bytes(env.w3.eth.get_block(number)["hash"]).hex() == hash_


# ------------------------------------------------------------------ listeners and worker


def test_listeners_see_each_new_event_once_inside_the_indexing_transaction(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    seen: list[tuple[str, int | None]] = []

    def listener(session: Session, rows: Sequence[EventLog]) -> None:
        for row in rows:
            assert session.get(EventLog, row.id) is row  # already flushed, same transaction
            seen.append((row.event, row.escrow_id))

    first = env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        indexer = Indexer(services, listeners=[listener])
        indexer.sync()
        env.deliver(first, 0)
        indexer.sync()
        indexer.sync()
    assert seen == [
        ("EscrowCreated", first), ("EscrowAccepted", first), ("DeliverySubmitted", first)
    ]


def test_index_once_returns_how_many_events_it_stored(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        assert index_once(services) == 2
        assert index_once(services) == 0


def test_clear_index_forgets_the_index_and_the_next_sync_rebuilds_the_same(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    env.create_active()
    with services_for(env, database_url, tmp_path) as services:
        index_once(services)
        before = stored_logs(services)
        assert clear_index(services) == 2
        assert stored_logs(services) == []
        assert index_once(services) == 2
        assert stored_logs(services) == before == chain_logs(env)


def test_the_worker_loop_survives_a_dropped_node_and_catches_up(
    hardhat_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    env = hardhat_env
    first = env.create_active()
    flaky = FlakyProvider(endpoint(env), "eth_blockNumber", failures=2)
    with services_for(env, database_url, tmp_path, w3=Web3(flaky)) as services:
        stop = threading.Event()
        worker = threading.Thread(
            target=run_indexer, args=(services,), kwargs={"poll_interval": 0.02, "stop": stop}
        )
        worker.start()
        try:
            _wait_for(lambda: len(stored_logs(services)) == 2)
            assert flaky.failures_left == 0
            env.deliver(first, 0)
            _wait_for(lambda: len(stored_logs(services)) == 3)
        finally:
            stop.set()
            worker.join(timeout=10)
        assert not worker.is_alive()
        assert stored_logs(services) == chain_logs(env)


def _wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)

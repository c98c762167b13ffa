"""What one confirmation costs the node: the typed data and the signed confirmation of an indexed
escrow read the chain's state in one request (the latest block's time, `getEscrow` and
`getMilestone` in one JSON-RPC batch, `Web3ChainReader.snapshot`) besides the API's deployment
check, and the snapshot answers as the calls made one at a time do."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import pytest
import requests
from sqlalchemy import event

from backend.chain.bulk_rpc import batch
from backend.chain.errors import ChainError, NodeUnavailable
from backend.chain.revert_types import EscrowNotFound
from backend.chain.transactions import call, calldata
from backend.chain.transport import NodeTransport
from backend.confirmations.chain_reader import Web3ChainReader, _call_result
from backend.db.models import ConfirmationRequest
from backend.index.indexer import index_once
from backend.services import Services
from tests.confirmations.support import (
    TestClient,
    confirmation_body,
    post_confirmation,
    relay_services,
    sign,
    typed_data,
)
from tests.support import EscrowEnv


@contextmanager
def node_requests() -> Iterator[list[int]]:
    """The HTTP requests to the node while the block runs, each as the number of JSON-RPC calls
    it carried (a batch is one request)."""
    sent: list[int] = []
    post = NodeTransport.make_post_request

    def counting_post(self: NodeTransport, url: Any, data: Any, **kwargs: Any) -> bytes:
        body = json.loads(data or b"null")
        sent.append(len(body) if isinstance(body, list) else 1)
        return post(self, url, data, **kwargs)

    NodeTransport.make_post_request = counting_post  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        NodeTransport.make_post_request = post  # type: ignore[method-assign]


def outcome(read: Callable[[], object]) -> object:
    """What `read` returns, or the type and message of what it raises."""
    try:
        return read()
    except Exception as exc:  # compared, not handled
        return type(exc), str(exc)


T = TypeVar("T")


def confirm_watched(
    env: EscrowEnv, client: TestClient, services: Services,
    watch: Callable[[], AbstractContextManager[list[T]]],
) -> tuple[list[T], list[T], int]:
    """The typed data and the signed confirmation of a fresh indexed escrow's first milestone,
    each while `watch()` records: (what the typed data recorded, what the confirmation
    recorded, the request's id)."""
    escrow_id = env.create_active()
    assert index_once(services) > 0  # the escrow's parameters come from the index
    with watch() as prepared_seen:
        prepared = typed_data(client, escrow_id, 0, rating=4, comment="on time")
    body = confirmation_body(prepared, sign(env.parties.client, prepared))
    with watch() as confirmed_seen:
        response = post_confirmation(client, escrow_id, 0, body)
    assert response.status_code == 202, response.text
    return prepared_seen, confirmed_seen, int(response.json()["id"])


def test_a_confirmation_of_an_indexed_escrow_asks_the_node_once(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    prepared_requests, confirmed_requests, _ = confirm_watched(
        hardhat_env, client, services, node_requests
    )
    # the API's deployment check (`backend.api.deps.live_deployment`, one block hash) and the
    # snapshot; one call at a time it was the check and three more requests
    assert len(prepared_requests) <= 2, prepared_requests
    assert len(confirmed_requests) <= 2, confirmed_requests


def test_a_confirmation_is_judged_on_the_chain_without_reading_the_escrows_indexed_events(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    """The snapshot has the chain's word on the milestone: the escrow's indexed events (a
    query and a fold per POST, and a word the chain overrules) are not read besides it."""

    @contextmanager
    def statements() -> Iterator[list[str]]:
        seen: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        event.listen(services.engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(services.engine, "before_cursor_execute", record)

    prepared_sql, confirmed_sql, _ = confirm_watched(hardhat_env, client, services, statements)
    for sql in (prepared_sql, confirmed_sql):
        assert sql and not [s for s in sql if "event_log" in s], sql


@contextmanager
def thread_hops() -> Iterator[list[str]]:
    """The functions handed to a worker thread (`anyio.to_thread.run_sync`: the threadpool of
    sync routes and dependencies, the commits) while the block runs."""
    handed: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        handed.append(getattr(func, "__qualname__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    anyio.to_thread.run_sync = counting  # type: ignore[assignment]
    try:
        yield handed
    finally:
        anyio.to_thread.run_sync = run_sync


def test_a_confirmation_takes_one_thread_of_the_threadpool(
    hardhat_env: EscrowEnv, client: TestClient, services: Services
) -> None:
    """The route's work and its commit run in one worker thread, the deployment check and the
    response's check on the event loop: a sync route took four (the deployment check, the
    function, the response check, the commit), each a hand-over between threads that a busy
    API process pays for in CPU and waiting."""
    prepared_hops, confirmed_hops, request_id = confirm_watched(
        hardhat_env, client, services, thread_hops
    )
    with services.sessions() as session:  # committed before the answer left
        assert session.get(ConfirmationRequest, request_id) is not None
    assert len(prepared_hops) == 1, prepared_hops
    assert len(confirmed_hops) == 1, confirmed_hops


def test_the_snapshot_reads_what_the_node_answers_one_call_at_a_time(
    any_env: EscrowEnv, database_url: str, tmp_path: Path
) -> None:
    """On the Hardhat node (one batch) and on the in-process chain (one call at a time)."""
    env = any_env
    escrow_id = env.create_active()
    env.escrow.confirm(escrow_id, 1, 5, None, env.client)
    services = relay_services(env, database_url, tmp_path)
    try:
        with services.sessions() as session:
            chain = Web3ChainReader(services, session)
            for milestone in (0, 1):
                snapshot = chain.snapshot(escrow_id, milestone)
                assert snapshot.escrow() == services.escrow.get_escrow(escrow_id)
                assert snapshot.milestone() == services.escrow.get_milestone(escrow_id, milestone)
                assert snapshot.now >= services.clock.chain_time()
            # no escrow under that id: the same answers (or the same revert) as one call each
            unknown = chain.snapshot(escrow_id + 1_000, 0)
            assert outcome(unknown.escrow) == outcome(
                lambda: services.escrow.get_escrow(escrow_id + 1_000)
            )
            assert outcome(unknown.milestone) == outcome(
                lambda: services.escrow.get_milestone(escrow_id + 1_000, 0)
            )
    finally:
        services.engine.dispose()


def test_a_reverted_call_of_the_batch_is_the_typed_error_of_the_same_call_alone(
    hardhat_env: EscrowEnv,
) -> None:
    """The snapshot's views do not revert today; a revert in a batch still reads as `call`'s."""
    env = hardhat_env
    escrow_id = env.create_active()
    fn = env.escrow.contract.functions.accept(escrow_id + 5, env.escrow.params(escrow_id).to_abi())
    with pytest.raises(ChainError) as alone:
        call(fn)
    data = "0x" + calldata(fn).hex()
    [reply] = batch(env.w3, [("eth_call", ({"to": env.escrow.address, "data": data}, "latest"))])
    batched = _call_result(reply)
    assert isinstance(alone.value, EscrowNotFound)
    assert (type(batched), str(batched)) == (type(alone.value), str(alone.value))


def test_a_node_that_does_not_answer_the_snapshot_is_node_unavailable(
    hardhat_env: EscrowEnv, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    escrow_id = hardhat_env.create_active()

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(NodeTransport, "make_post_request", refused)
    with services.sessions() as session, pytest.raises(NodeUnavailable):
        Web3ChainReader(services, session).snapshot(escrow_id, 0)

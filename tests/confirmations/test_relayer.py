"""The relayer's outbox discipline on a real Hardhat node and both databases: killed between any
two steps and started again, it loses no confirmation and sends none twice; it rebroadcasts only
the bytes it signed, resolves "already known" / "nonce too low" by the transaction hash, and
records mined reverts with their decoded reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backend.confirmations.outbox import MINED, SENT
from backend.confirmations.relayer import STEPS, Hook, Relayer
from backend.db.models import ConfirmationRequest, SenderNonce
from backend.outbox.owner import RelayerBusyError, relayer_ownership
from backend.services import Services
from tests.confirmations.support import (
    api_client,
    outbox_row,
    relay_services,
    relayer,
    relayer_key,
    relayer_tx_count,
    settled_events,
    sign_and_confirm,
)
from tests.support import ETH, EscrowEnv

ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Stands for the process dying: nothing in the relayer catches it."""


def crash_at(step: str | None = None, *, call: int | None = None) -> Hook:
    """A hook that dies at the first boundary named `step`, or at its `call`-th boundary."""
    calls = 0

    def hook(name: str, _row: ConfirmationRequest) -> None:
        nonlocal calls
        calls += 1
        if name == step or calls == call:
            raise Crash(name)

    return hook


class Stack:
    """The service as one process sees it; `restart` throws it away and builds a new one on the
    same database and data dir, as a restarted process would."""

    def __init__(self, env: EscrowEnv, database_url: str, data_dir: Path) -> None:
        self.env = env
        self.database_url = database_url
        self.data_dir = data_dir
        self.services = relay_services(env, database_url, data_dir)

    def restart(self) -> Services:
        self.services.engine.dispose()
        self.services = relay_services(self.env, self.database_url, self.data_dir)
        return self.services

    def relayer(self, hook: Hook | None = None, **kwargs: Any) -> Relayer:
        return relayer(self.services, hook, **kwargs)


@pytest.fixture
def stack(hardhat_env: EscrowEnv, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    built = Stack(hardhat_env, database_url, tmp_path / "data")
    try:
        yield built
    finally:
        built.services.engine.dispose()


@contextmanager
def manual_mining(env: EscrowEnv) -> Iterator[None]:
    """Transactions wait in the node's mempool until `mine` is called."""
    provider: Any = env.w3.provider
    provider.make_request("evm_setAutomine", [False])
    try:
        yield
    finally:
        provider.make_request("evm_setAutomine", [True])


def mine(env: EscrowEnv, blocks: int = 1) -> None:
    provider: Any = env.w3.provider
    for _ in range(blocks):
        provider.make_request("evm_mine", [])


def confirm_via_api(stack: Stack, escrow_id: int, milestone: int, rating: int = 4) -> int:
    accepted = sign_and_confirm(api_client(stack.services), stack.env, escrow_id, milestone,
                                rating=rating)
    request_id: int = accepted["id"]
    return request_id


def spy_broadcasts(relay: Relayer) -> list[str]:
    """Records the outcome of every broadcast the relayer makes."""
    outcomes: list[str] = []
    original = relay._broadcast

    def spy(row: ConfirmationRequest) -> Any:
        outcome = original(row)
        outcomes.append(outcome[0])
        return outcome

    relay._broadcast = spy  # type: ignore[method-assign]
    return outcomes


# ------------------------------------------------------------------ crash at every step


@pytest.mark.parametrize("step", STEPS)
def test_a_relayer_killed_at_each_step_and_restarted_settles_the_confirmation_exactly_once(
    stack: Stack, step: str
) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0, rating=4)
    first_nonce = relayer_tx_count(stack.services)

    with pytest.raises(Crash):
        stack.relayer(crash_at(step)).run_until_idle()
    at_crash = outbox_row(stack.services, request_id)
    expected_status = {
        "signing": "pending", "signed": "signed", "broadcast": "signed",
        "sent": "sent", "receipt": "sent", "finished": "mined",
    }[step]
    assert at_crash.status == expected_status

    services = stack.restart()
    stack.relayer().run_until_idle()

    row = outbox_row(services, request_id)
    assert (row.status, row.nonce, row.error) == (MINED, first_nonce, None)
    [event] = settled_events(services, escrow_id, 0)
    assert (event["rating"], event["tx_hash"]) == (4, row.tx_hash)
    assert relayer_tx_count(services) == first_nonce + 1  # one transaction, ever
    if step != "signing":  # signed once: the bytes stored before the crash are the ones mined
        assert (row.raw_tx, row.tx_hash) == (at_crash.raw_tx, at_crash.tx_hash)
    with services.sessions() as session:
        nonce = session.get(SenderNonce, (env.w3.eth.chain_id, relayer_key(services).address))
        assert nonce is not None and nonce.next_nonce == first_nonce + 1


def test_a_relayer_killed_at_every_boundary_of_a_busy_queue_sends_each_confirmation_once(
    stack: Stack,
) -> None:
    env = stack.env
    escrow_id = env.create_active(env.params((ETH, ETH, ETH)))
    ids = [confirm_via_api(stack, escrow_id, m, rating=m + 3) for m in range(3)]
    first_nonce = relayer_tx_count(stack.services)

    crashed: set[tuple[str, int]] = set()

    def once_at_every_boundary(step: str, row: ConfirmationRequest) -> None:
        if (step, row.id) not in crashed:
            crashed.add((step, row.id))
            raise Crash(step)

    for _ in range(100):
        try:
            stack.relayer(once_at_every_boundary).run_until_idle()
            break
        except Crash:
            stack.restart()
    assert crashed == {(step, i) for step in STEPS for i in ids}

    services = stack.services
    rows = [outbox_row(services, i) for i in ids]
    assert [r.status for r in rows] == [MINED] * 3
    assert sorted(r.nonce for r in rows if r.nonce is not None) == [
        first_nonce, first_nonce + 1, first_nonce + 2
    ]
    for m, row in enumerate(rows):
        [event] = settled_events(services, escrow_id, m)
        assert (event["rating"], event["tx_hash"]) == (m + 3, row.tx_hash)
    assert relayer_tx_count(services) == first_nonce + 3


def test_a_relayer_process_killed_by_sigkill_after_broadcasting_is_finished_by_the_next_one(
    stack: Stack,
) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0)
    first_nonce = relayer_tx_count(stack.services)
    script = textwrap.dedent(
        """
        import os, signal, sys
        from backend.config import Settings
        from backend.chain.keys import relayer_account
        from backend.confirmations.relayer import Relayer
        from backend.services import build_services

        url, data_dir, db, contract, block = sys.argv[1:6]
        settings = Settings(rpc_url=url, data_dir=data_dir, database_url=db)
        services = build_services(settings, contract_address=contract,
                                  deployment_block=int(block))

        def die(step, row):
            if step == "broadcast":
                os.kill(os.getpid(), signal.SIGKILL)

        Relayer(services, relayer_account(services.w3, settings), hook=die).run_until_idle()
        """
    )
    endpoint = env.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    args = [endpoint, str(stack.data_dir), stack.database_url, env.escrow.address,
            str(env.deployment_block)]
    child = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    at_kill = outbox_row(stack.services, request_id)
    assert at_kill.status == "signed"  # the transaction is out, the row does not know it yet
    assert relayer_tx_count(stack.services) == first_nonce + 1

    services = stack.restart()
    relay = stack.relayer()
    outcomes = spy_broadcasts(relay)
    relay.run_until_idle()
    assert outcomes == ["known"]  # the node answered "nonce too low": found by its hash
    row = outbox_row(services, request_id)
    assert (row.status, row.tx_hash) == (MINED, at_kill.tx_hash)
    assert len(settled_events(services, escrow_id, 0)) == 1
    assert relayer_tx_count(services) == first_nonce + 1


# ------------------------------------------------------------------ the node's answers


def test_a_rebroadcast_the_node_already_holds_is_taken_as_sent(stack: Stack) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0)
    with manual_mining(env):
        _rebroadcast_while_pending(stack, escrow_id, request_id)


def _rebroadcast_while_pending(stack: Stack, escrow_id: int, request_id: int) -> None:
    env = stack.env
    with pytest.raises(Crash):
        stack.relayer(crash_at("broadcast")).run_until_idle()  # in the mempool, row "signed"

    stack.restart()
    relay = stack.relayer()
    outcomes = spy_broadcasts(relay)
    relay.run_once()
    assert outcomes == ["known"]  # "Known transaction" from Hardhat
    pending = outbox_row(stack.services, request_id)
    assert pending.status == SENT
    mine(env)
    relay.run_until_idle()
    row = outbox_row(stack.services, request_id)
    assert (row.status, row.tx_hash) == (MINED, pending.tx_hash)
    assert len(settled_events(stack.services, escrow_id, 0)) == 1


def test_a_transaction_the_node_dropped_is_rebroadcast_from_the_same_bytes(stack: Stack) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0)
    with manual_mining(env):
        _drop_and_rebroadcast(stack, escrow_id, request_id)


def _drop_and_rebroadcast(stack: Stack, escrow_id: int, request_id: int) -> None:
    env = stack.env
    relay = stack.relayer()
    relay.run_once()
    sent = outbox_row(stack.services, request_id)
    assert sent.status == SENT
    provider: Any = env.w3.provider
    assert provider.make_request("hardhat_dropTransaction", [sent.tx_hash])["result"] is True

    outcomes = spy_broadcasts(relay)
    relay.run_once()
    assert outcomes == ["accepted"]
    mine(env)
    relay.run_until_idle()
    row = outbox_row(stack.services, request_id)
    assert (row.status, row.raw_tx, row.tx_hash) == (MINED, sent.raw_tx, sent.tx_hash)
    assert len(settled_events(stack.services, escrow_id, 0)) == 1


def test_a_mined_revert_marks_the_request_failed_with_the_decoded_error(stack: Stack) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0)
    first_nonce = relayer_tx_count(stack.services)
    with pytest.raises(Crash):
        stack.relayer(crash_at("signed")).run_until_idle()
    env.escrow.confirm(escrow_id, 0, 5, None, env.client)  # the client settles it first, directly

    stack.restart()
    report = stack.relayer().run_until_idle()
    assert (report.broadcast, report.mined, report.failed) == (1, 0, 1)
    row = outbox_row(stack.services, request_id)
    assert row.status == "failed"
    assert row.error == f"EscrowInvalidMilestoneState(escrowId={escrow_id}, milestone=0, state=3)"
    receipt = env.w3.eth.get_transaction_receipt(row.tx_hash)  # type: ignore[arg-type]
    assert receipt["status"] == 0
    assert relayer_tx_count(stack.services) == first_nonce + 1
    [event] = settled_events(stack.services, escrow_id, 0)
    assert event["how"] == 1  # confirmed by the client itself, not by the relay


def test_a_nonce_taken_by_another_transaction_makes_the_relayer_sign_anew(
    stack: Stack,
) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0)
    with pytest.raises(Crash):
        stack.relayer(crash_at("signed")).run_until_idle()
    stale = outbox_row(stack.services, request_id)
    assert stale.nonce is not None
    key = relayer_key(stack.services)
    # someone else spends the same nonce from the relayer's account (the rule was broken)
    other = key.sign_transaction({
        "to": env.provider, "value": 1, "gas": 21_000, "nonce": stale.nonce, "chainId": 31337,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    })
    env.w3.eth.send_raw_transaction(other.raw_transaction)

    stack.restart()
    report = stack.relayer().run_until_idle()
    assert report.requeued == 1
    row = outbox_row(stack.services, request_id)
    assert (row.status, row.nonce) == (MINED, stale.nonce + 1)
    assert row.tx_hash != stale.tx_hash
    [event] = settled_events(stack.services, escrow_id, 0)
    assert event["tx_hash"] == row.tx_hash


def test_a_receipt_counts_only_once_it_is_as_deep_as_the_configured_confirmations(
    stack: Stack,
) -> None:
    env = stack.env
    escrow_id = env.create_active()
    request_id = confirm_via_api(stack, escrow_id, 0)
    relay = stack.relayer(confirmations=2)
    relay.run_until_idle()
    assert outbox_row(stack.services, request_id).status == SENT
    mine(env)
    relay.run_until_idle()
    assert outbox_row(stack.services, request_id).status == SENT
    mine(env)
    relay.run_until_idle()
    assert outbox_row(stack.services, request_id).status == MINED


# ------------------------------------------------------------------ one owner


def test_only_one_relayer_may_own_the_account_at_a_time(stack: Stack, tmp_path: Path) -> None:
    address = relayer_key(stack.services).address
    second = relay_services(stack.env, stack.database_url, stack.data_dir)
    try:
        with (
            relayer_ownership(stack.services, address),
            pytest.raises(RelayerBusyError),
            relayer_ownership(second, address),
        ):
            pass
        with relayer_ownership(second, address):  # free again once the first one stopped
            pass
    finally:
        second.engine.dispose()


def test_the_worker_loop_relays_a_confirmation_accepted_while_it_runs(stack: Stack) -> None:
    env = stack.env
    escrow_id = env.create_active()
    stop = threading.Event()
    worker = threading.Thread(
        target=stack.relayer().run_forever, args=(stop,), kwargs={"interval": 0.05}
    )
    worker.start()
    try:
        request_id = confirm_via_api(stack, escrow_id, 0)
        deadline = time.monotonic() + 30
        while outbox_row(stack.services, request_id).status != MINED:
            assert time.monotonic() < deadline, "the worker did not relay in 30 s"
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(settled_events(stack.services, escrow_id, 0)) == 1

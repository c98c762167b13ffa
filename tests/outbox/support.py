"""What the sender tests share (the fixtures are in `conftest.py`): one `Case` per sender (the
relayer, the oracle's submitter) that queues outbox rows the way that sender's users do, builds
the sender, and reads what happened on the chain; a `Stack` that restarts the service as a
restarted process would; crash hooks; manual mining; a broadcast spy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from web3 import Web3

from backend.chain.keys import oracle_account, relayer_account
from backend.config import Settings
from backend.confirmations.relayer import Relayer
from backend.db.models import BreachSubmission, OutboxRow, OutboxTransaction
from backend.index.indexer import Indexer
from backend.oracle.outbox import enqueue_reports
from backend.oracle.submitter import Submitter
from backend.outbox.owner import SenderBusyError, ownership
from backend.outbox.sender import Hook, Sender
from backend.outbox.versions import history
from backend.services import Services
from tests.confirmations.support import api_client, relay_services, sign_and_confirm
from tests.support import ETH, EscrowEnv

#: the evidence hash of the test findings
EVIDENCE = "0x" + "ab" * 32
#: the row's status at a crash at each step boundary of its first transaction
STATUS_AT_CRASH = {
    "signing": "pending", "signed": "signed", "broadcast": "signed",
    "sent": "sent", "receipt": "sent", "finished": "mined",
}


class Crash(BaseException):
    """Stands for the process dying: nothing in a sender catches it."""


def crash_at(step: str) -> Hook[Any]:
    """A hook that dies at the first boundary named `step`."""

    def hook(name: str, _row: Any) -> None:
        if name == step:
            raise Crash(name)

    return hook


class CrashOnceEverywhere:
    """A hook that dies once at every (step, row id) boundary it meets; `crashed` says where."""

    def __init__(self) -> None:
        self.crashed: set[tuple[str, int]] = set()

    def __call__(self, step: str, row: Any) -> None:
        if (step, row.id) not in self.crashed:
            self.crashed.add((step, row.id))
            raise Crash(step)


#: the step boundaries every row of a batch meets before its step's database transaction commits;
#: after a commit ("signed", "sent", "finished") the rows of the batch are in one state, and a
#: `CrashOnceEverywhere` hook dies at the first row it meets there, the state every later row of
#: the batch would have died in
BEFORE_COMMIT = ("signing", "broadcast", "receipt")


def assert_crashed_everywhere(
    hook: CrashOnceEverywhere, ids: list[int], steps: tuple[str, ...], prefixes: tuple[str, ...]
) -> None:
    """Every boundary of `steps` was met and crashed at, and at every `BEFORE_COMMIT` boundary
    (with each of the phases' `prefixes`) for each row of `ids`."""
    assert {step for step, _ in hook.crashed} == set(steps)
    before = {(p + step, i) for p in prefixes for step in BEFORE_COMMIT for i in ids}
    assert before <= hook.crashed, sorted(before - hook.crashed)


def run_through_crashes(stack: Stack, run: Callable[[], object]) -> None:
    """Runs `run` until it returns, restarting the stack after each crash, as a supervisor
    restarting a dying process would."""
    for _ in range(200):
        try:
            run()
            return
        except Crash:
            stack.restart()
    raise AssertionError("still crashing after 200 restarts")


@contextmanager
def running(sender: Sender[Any], *, interval: float = 0.05) -> Iterator[threading.Thread]:
    """The sender's worker loop in a thread for the block; stopped (and joined) after it."""
    stop = threading.Event()
    worker = threading.Thread(target=sender.run_forever, args=(stop,),
                              kwargs={"interval": interval})
    worker.start()
    try:
        yield worker
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()


def wait_until_owned(services: Services, sender: str, account: str, timeout: float = 10) -> None:
    """Returns once another process (or thread) holds the ownership lock of (sender, account);
    fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with ownership(services, sender, account):
                pass
        except SenderBusyError as exc:
            assert (exc.sender, exc.code) == (sender, "sender_busy")
            return
        assert time.monotonic() < deadline, f"no {sender} took the lock of {account}"
        time.sleep(0.02)


@dataclass(frozen=True)
class Found:
    """A finding as the evaluation hands it to the oracle's outbox."""

    escrow_id: int
    kind: int
    period: int
    evidence_hash: str = EVIDENCE


class Stack:
    """The service as one process sees it; `restart` throws it away and builds a new one on the
    same database and data dir."""

    def __init__(self, env: EscrowEnv, database_url: str, data_dir: Path) -> None:
        self.env = env
        self.database_url = database_url
        self.data_dir = data_dir
        self.services = relay_services(env, database_url, data_dir)

    @classmethod
    @contextmanager
    def open(cls, env: EscrowEnv, database_url: str, data_dir: Path) -> Iterator[Self]:
        """A stack for the block; its engine is disposed of after it."""
        built = cls(env, database_url, data_dir)
        try:
            yield built
        finally:
            built.services.engine.dispose()

    def restart(self) -> Services:
        self.services.engine.dispose()
        self.services = relay_services(self.env, self.database_url, self.data_dir)
        return self.services


class Case:
    """One sender under test: how its rows are queued, how it is built, what it leaves on the
    chain, and how a mined transaction of it is made to revert."""

    sender_class: type[Sender[Any]]
    #: `load_key(w3, settings)`: the sender's key as the service loads it
    load_key: Callable[[Web3, Settings], LocalAccount]
    #: the event the sender's call emits for the escrow
    event: str
    #: the decoded error of a transaction mined after `preempt` ({escrow_id} filled in)
    reverted: str

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.name = self.sender_class.name
        self.model: type[OutboxRow] = self.sender_class.model

    @property
    def env(self) -> EscrowEnv:
        return self.stack.env

    @property
    def services(self) -> Services:
        return self.stack.services

    def key(self) -> LocalAccount:
        return self.load_key(self.env.w3, self.services.settings)

    def queue(self, count: int = 1) -> tuple[int, list[int]]:
        """A new active escrow with `count` rows queued for it: (escrow id, row ids)."""
        raise NotImplementedError

    def effects(self, escrow_id: int) -> list[str]:
        """Hashes of the transactions that emitted the sender's `event` for the escrow."""
        logs = getattr(self.services.escrow.contract.events, self.event).get_logs(
            from_block=0, to_block="latest", argument_filters={"escrowId": escrow_id}
        )
        return ["0x" + bytes(log["transactionHash"]).hex() for log in logs]

    def sender(self, hook: Hook[Any] | None = None, **kwargs: Any) -> Sender[Any]:
        return self.sender_class(self.services, self.key(), hook=hook, **kwargs)

    def row(self, row_id: int) -> Any:
        with self.services.sessions() as session:
            row = session.get(self.model, row_id)
            assert row is not None
            return row

    def tx(self, row_id: int) -> OutboxTransaction:
        """The row's (first phase's) current transaction."""
        link = self.sender_class.phases[0].link_attr
        with self.services.sessions() as session:
            found = session.scalar(
                select(OutboxTransaction).join(
                    self.model, getattr(self.model, link) == OutboxTransaction.id
                ).where(self.model.id == row_id)
            )
            assert found is not None
            return found

    def transactions(self) -> list[OutboxTransaction]:
        with self.services.sessions() as session:
            return list(session.scalars(select(OutboxTransaction).order_by(OutboxTransaction.id)))

    def tx_count(self) -> int:
        """Transactions the sender's account has sent (mined and pending)."""
        return int(self.env.w3.eth.get_transaction_count(self.key().address, "pending"))

    def preempt(self, escrow_id: int) -> None:
        """The client settles the escrow's milestone 0 directly: the sender's call now reverts."""
        self.env.escrow.confirm(escrow_id, 0, 5, None, self.env.client)


class RelayerCase(Case):
    sender_class = Relayer
    load_key = staticmethod(relayer_account)
    event = "MilestoneSettled"
    reverted = "EscrowInvalidMilestoneState(escrowId={escrow_id}, milestone=0, state=3)"

    def queue(self, count: int = 1) -> tuple[int, list[int]]:
        env = self.env
        escrow_id = env.create_active(env.params((ETH,) * count) if count > 1 else None)
        client = api_client(self.services)
        ids = [
            int(sign_and_confirm(client, env, escrow_id, m, rating=m + 3)["id"])
            for m in range(count)
        ]
        return escrow_id, ids



class OracleCase(Case):
    sender_class = Submitter
    load_key = staticmethod(oracle_account)
    event = "BreachReported"
    reverted = "EscrowInvalidStatus(escrowId={escrow_id}, status=3, required=2)"

    def queue(self, count: int = 1) -> tuple[int, list[int]]:
        escrow_id = self.env.create_active()
        Indexer(self.services).sync()
        with self.services.sessions() as session, session.begin():
            enqueue_reports(
                session, self.services.chain_id,
                [Found(escrow_id, 1, period) for period in range(1, count + 1)],
                self.key().address, 1_000,
            )
            ids = list(session.scalars(
                select(BreachSubmission.id)
                .where(BreachSubmission.escrow_id == escrow_id)
                .order_by(BreachSubmission.id)
            ))
        return escrow_id, ids

    def preempt(self, escrow_id: int) -> None:
        """The client settles every milestone directly: the escrow closes, reports revert."""
        for milestone in range(len(self.env.escrow.params(escrow_id).milestone_amounts)):
            self.env.escrow.confirm(escrow_id, milestone, 5, None, self.env.client)



CASES: dict[str, type[Case]] = {"relayer": RelayerCase, "oracle": OracleCase}


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


GWEI = 10**9


def next_base_fee(env: EscrowEnv) -> int:
    """The base fee the node will give its next block (as `eth_feeHistory` says)."""
    provider: Any = env.w3.provider
    answer = provider.make_request("eth_feeHistory", [1, "latest", []])["result"]
    return int(answer["baseFeePerGas"][-1], 16)


def set_base_fee(env: EscrowEnv, wei: int) -> None:
    """The next block's base fee (`hardhat_setNextBlockBaseFeePerGas`)."""
    provider: Any = env.w3.provider
    assert provider.make_request("hardhat_setNextBlockBaseFeePerGas", [hex(wei)])["result"]


def mine_at(env: EscrowEnv, wei: int, blocks: int = 1) -> None:
    """Mines `blocks` blocks, each with base fee `wei`."""
    for _ in range(blocks):
        set_base_fee(env, wei)
        mine(env)


@contextmanager
def fee_market(env: EscrowEnv) -> Iterator[None]:
    """Manual mining and base fees the test sets; the session's node gets automine and the base
    fee it had back afterwards, whatever happens."""
    before = next_base_fee(env)
    provider: Any = env.w3.provider
    provider.make_request("evm_setAutomine", [False])
    try:
        yield
    finally:
        provider.make_request("evm_setAutomine", [True])
        set_base_fee(env, before)


def snapshot(env: EscrowEnv) -> str:
    provider: Any = env.w3.provider
    return str(provider.make_request("evm_snapshot", [])["result"])


def revert(env: EscrowEnv, snap: str) -> None:
    """Back to the snapshot: every block mined since is gone (a reorg, as the service sees it),
    and the mempool is what it was then."""
    provider: Any = env.w3.provider
    assert provider.make_request("evm_revert", [snap])["result"] is True


def versions(case: Case, row_id: int) -> list[OutboxTransaction]:
    """Every transaction signed for the row's first phase, oldest first."""
    with case.services.sessions() as session:
        return history(session, case.tx(row_id))


def spy_broadcasts(sender: Sender[Any]) -> list[str]:
    """Records the outcome of every broadcast the sender makes."""
    outcomes: list[str] = []
    original = sender.broadcast_all

    def spy(txs: list[OutboxTransaction], **kwargs: Any) -> Any:
        found = original(txs, **kwargs)
        outcomes.extend(outcome for outcome, _detail in found)
        return found

    sender.broadcast_all = spy  # type: ignore[method-assign]
    return outcomes

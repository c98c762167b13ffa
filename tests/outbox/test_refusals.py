"""A signed transaction the node refuses for good never holds the account's later nonces
(docs/reliability.md "Hostile input, faults and abuse"), for every sender, on a real Hardhat node
and both databases.

Observed before: the node refused a signed transaction (its gas limit above the block's), the
sender tried the same bytes again on every pass and after every restart, and every later row of
every client, signed behind that nonce, was never sent. Now the refused transaction is `refused`
and its row fails with the node's words; its nonce goes to the next row signed, or, when later
nonces are signed already, to a no-op filler, so those stored bytes go out unchanged. The refusal
of a row with rows signed after it is a test double of Hardhat's own refusal (the two
reports of one escrow are signed with the same gas limit); with nothing after it, it is real:
Hardhat's block gas limit is lowered (`evm_setBlockGasLimit`) between signing and sending."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_utils import keccak
from sqlalchemy import select

from backend.db.models import OutboxTransaction, SenderNonce
from backend.outbox.sender import NODE_REFUSED, SendReport, for_good
from tests.outbox.support import Case, CrashOnceEverywhere, run_through_crashes
from tests.support import EscrowEnv

#: under the gas limit of one row of either sender (a confirmation crediting both sides, an
#: escrow's first report), each estimate * 1.25
BLOCK_GAS_LIMIT = 100_000


def _rpc(env: EscrowEnv, method: str, params: list[Any]) -> Any:
    provider: Any = env.w3.provider
    return provider.make_request(method, params)["result"]


def _block_gas_limit(env: EscrowEnv) -> int:
    return int(env.w3.eth.get_block("latest")["gasLimit"])


def _set_block_gas_limit(env: EscrowEnv, gas: int) -> None:
    assert _rpc(env, "evm_setBlockGasLimit", [hex(gas)]) is True


@pytest.fixture
def low_block_gas_limit(hardhat_env: EscrowEnv) -> Iterator[None]:
    """Lowers the block gas limit to `BLOCK_GAS_LIMIT` from the next block on (call `lower`);
    the session's node gets its own back afterwards, whatever happens."""
    before = _block_gas_limit(hardhat_env)
    try:
        yield
    finally:
        _set_block_gas_limit(hardhat_env, before)
        _rpc(hardhat_env, "evm_mine", [])


def _lower(env: EscrowEnv) -> None:
    _set_block_gas_limit(env, BLOCK_GAS_LIMIT)
    _rpc(env, "evm_mine", [])
    assert _block_gas_limit(env) == BLOCK_GAS_LIMIT


#: Hardhat's own words for a gas limit above the block's
REFUSAL = "Transaction gas limit is 75000000 and exceeds block gas limit of 60000000"


def refuse(monkeypatch: pytest.MonkeyPatch, case: Case, tx_hash: str) -> None:
    """The node refuses the stored bytes of `tx_hash` for good, as Hardhat does a transaction
    whose gas limit is above the block's (a test double: the two reports of one escrow are
    signed with the same gas limit, so no block gas limit refuses only the first). It answers
    in the JSON-RPC reply, alone or inside a batch, as the node does; every other call of the
    batch goes to the node."""
    provider: Any = case.services.w3.provider
    single, batch = provider.make_request, provider.make_batch_request

    def refused(method: Any, params: Any) -> bool:
        if str(method) != "eth_sendRawTransaction":
            return False
        raw = bytes.fromhex(str(params[0]).removeprefix("0x"))
        return "0x" + bytes(keccak(raw)).hex() == tx_hash

    def refusal() -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 0, "error": {"code": -32000, "message": REFUSAL}}

    def make_request(method: Any, params: Any) -> Any:
        return refusal() if refused(method, params) else single(method, params)

    def make_batch_request(calls: list[tuple[Any, Any]]) -> Any:
        passed = [call for call in calls if not refused(*call)]
        answers = iter(batch(passed) if passed else [])
        return [refusal() if refused(*call) else next(answers) for call in calls]

    monkeypatch.setattr(provider, "make_request", make_request)
    monkeypatch.setattr(provider, "make_batch_request", make_batch_request)


def test_a_transaction_refused_for_good_gives_way_to_the_rows_signed_after_it_even_after_restart(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    escrow_id, [first, second] = case.queue(2)
    first_nonce = case.tx_count()
    case.sender().sign_pending(SendReport())  # both signed and stored, nothing sent
    refused = case.tx(first)
    assert [case.tx(first).nonce, case.tx(second).nonce] == [first_nonce, first_nonce + 1]

    case.stack.restart()  # the state a stuck process left: a restart must not be stuck either
    refuse(monkeypatch, case, refused.tx_hash)
    case.sender().run_until_idle()

    row = case.row(first)
    assert row.status == "failed"
    assert row.error.startswith(f"{NODE_REFUSED}: ")
    assert REFUSAL in row.error
    with case.services.sessions() as session:
        statuses = {t.id: (t.status, t.purpose, t.nonce) for t in
                    session.scalars(select(OutboxTransaction))}
    assert statuses[refused.id] == ("refused", refused.purpose, first_nonce)
    fillers = [v for v in statuses.values() if v[1] == "fill"]
    assert fillers == [("mined", "fill", first_nonce)]  # a no-op took the nonce
    later = case.tx(second)
    assert (case.row(second).status, later.status, later.nonce) == (
        "mined", "mined", first_nonce + 1
    )
    assert case.effects(escrow_id) == [later.tx_hash]
    assert case.tx_count() == first_nonce + 2


def test_a_sender_killed_at_every_boundary_around_a_refusal_sends_each_nonce_once(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    escrow_id, [first, second] = case.queue(2)
    first_nonce = case.tx_count()
    case.sender().sign_pending(SendReport())
    refuse(monkeypatch, case, case.tx(first).tx_hash)  # the same node after every restart
    hook = CrashOnceEverywhere()

    run_through_crashes(case.stack, lambda: case.sender(hook).run_until_idle())

    assert ("replacing", first) in hook.crashed  # died while storing the filler, too
    assert (case.row(first).status, case.row(second).status) == ("failed", "mined")
    with case.services.sessions() as session:
        txs = list(session.scalars(select(OutboxTransaction).order_by(OutboxTransaction.id)))
    assert sorted((t.nonce, t.purpose, t.status) for t in txs) == sorted([
        (first_nonce, case.tx(first).purpose, "refused"),
        (first_nonce, "fill", "mined"),
        (first_nonce + 1, case.tx(second).purpose, "mined"),
    ])
    assert case.effects(escrow_id) == [case.tx(second).tx_hash]
    assert case.tx_count() == first_nonce + 2


def test_a_refused_transaction_with_nothing_after_it_gives_its_nonce_to_the_next_row(
    case: Case, low_block_gas_limit: None
) -> None:
    _escrow_id, [first] = case.queue(1)
    first_nonce = case.tx_count()
    case.sender().sign_pending(SendReport())
    refused = case.tx(first)
    _lower(case.env)

    report = case.sender().run_once()

    assert report.failed == 1
    row = case.row(first)
    assert (row.status, case.tx(first).status) == ("failed", "refused")
    assert row.error.startswith(f"{NODE_REFUSED}: ")
    with case.services.sessions() as session:
        nonce = session.get(SenderNonce, (case.services.chain_id, case.key().address))
        assert nonce is not None and nonce.next_nonce == first_nonce
    _set_block_gas_limit(case.env, 30_000_000)
    _rpc(case.env, "evm_mine", [])

    escrow_id, [next_row] = case.queue(1)
    case.sender().run_until_idle()

    mined = case.tx(next_row)
    assert (case.row(next_row).status, mined.nonce) == ("mined", first_nonce)
    assert mined.tx_hash != refused.tx_hash
    assert case.effects(escrow_id) == [mined.tx_hash]
    assert case.tx_count() == first_nonce + 1


@pytest.mark.parametrize(
    ("message", "final"),
    [
        ("Transaction gas limit is 200000 and exceeds block gas limit of 100000", True),
        ("exceeds block gas limit", True),
        ("invalid sender", True),
        ("oversized data", True),
        ("tx fee (1.20 ether) exceeds the configured cap (1.00 ether)", True),
        ("insufficient funds for gas * price + value", False),
        ("replacement transaction underpriced", False),
        ("txpool is full", False),
        ("max fee per gas less than block base fee", False),
        # other nodes' words for funds and fees: they pass once the account is topped up
        ("Sender doesn't have enough funds to send tx. The max upfront cost is: 1 and the "
         "sender's balance is: 0.", False),
        ("Transaction maxFeePerGas (1) is too low for the next block, which has a "
         "baseFeePerGas of 7", False),
        ("InsufficientFunds, Account balance: 0, cumulative cost: 1", False),
        ("FeeTooLow, MaxFeePerGas too low", False),
        ("UPFRONT_COST_EXCEEDS_BALANCE", False),
        ("Gas price below configured minimum gas price", False),
        ("EXCEEDS_BLOCK_GAS_LIMIT", True),
        ("INVALID_SIGNATURE", True),
        ("a message this service has never seen", False),
    ],
)
def test_only_refusals_that_can_never_pass_count_as_for_good(message: str, final: bool) -> None:
    assert for_good(message) is final

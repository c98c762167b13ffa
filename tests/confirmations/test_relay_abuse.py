"""One bad confirmation never blocks the others and never costs a fortune, on
the Hardhat node and both databases.

Observed before: a contract-wallet client that burns gas only when the escrow asks it passed the
API's check (an `eth_call` from address 0), the relayer signed `estimate_gas * 1.25` above the
block's gas limit, the node refused it, and every later confirmation waited behind that nonce for
ever; in a variant the relayer paid 44.6M gas for a 1-wei escrow. Now the API simulates the real
`confirmWithSig` from the relayer's address within `ESCROW_RELAY_MAX_GAS`, the relayer caps the
gas of every call (a row over it fails alone, nothing signed), operators bound what the relayer
spends per escrow and per client, and a milestone someone else settled with the client's own
signed confirmation (a front-run relay) is `settled`, not failed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.chain.transactions import send
from backend.confirmations.outbox import get_request, request_json
from backend.db.models import OutboxTransaction
from backend.outbox.sender import SendReport
from backend.outbox.spend import spent
from backend.services import Services
from tests.confirmations.support import (
    api_client,
    burning_wallet_escrow,
    outbox_count,
    outbox_row,
    relayer,
    relayer_key,
    relayer_tx_count,
    set_burn,
    settled_events,
    sign_and_confirm,
    wallet_confirmation,
)
from tests.support import ETH, EscrowEnv

#: what the observed wallet burned per call (the relayer paid 44.6M gas = 1.25 * 35.7M)
BURN_EVERYTHING = 35_000_000
#: over the default cap of 200,000 gas but within the 4x probe: the node's estimate is named
BURN_OVER_CAP = 300_000


@pytest.mark.parametrize(
    ("burn", "status", "code", "says"),
    [
        (BURN_OVER_CAP, 422, "gas_over_cap", "over the gas cap of 200,000 (ESCROW_RELAY_MAX_GAS)"),
        (BURN_EVERYTHING, 403, "wallet_refused", "not when the escrow asks it"),
    ],
    ids=["needs 300k gas", "burns 35M gas"],
)
def test_a_wallet_burning_gas_only_when_the_escrow_asks_is_refused_before_it_is_queued(
    hardhat_env: EscrowEnv, services: Services, burn: int, status: int, code: str, says: str
) -> None:
    env = hardhat_env
    client = api_client(services)
    bad_escrow, wallet = burning_wallet_escrow(env, (1,))
    set_burn(env, wallet, burn)
    honest = env.create_active()
    sent_before = relayer_tx_count(services)

    refused = wallet_confirmation(client, bad_escrow, 0)
    queued = sign_and_confirm(client, env, honest, 0, rating=2)  # another client, after it
    report = relayer(services).run_until_idle()

    body = refused.json()
    assert (refused.status_code, body["error"]) == (status, code), body
    assert says in body["detail"]
    assert relayer_key(services).address in body["detail"] or code == "gas_over_cap"
    assert outbox_count(services) == 1  # only the honest one was queued
    assert (report.mined, report.failed) == (1, 0)
    assert outbox_row(services, queued["id"]).status == "mined"
    [event] = settled_events(services, honest, 0)
    assert event["rating"] == 2  # the honest low rating landed
    assert relayer_tx_count(services) == sent_before + 1


@pytest.mark.parametrize("burn", [BURN_OVER_CAP, BURN_EVERYTHING], ids=["300k", "35M"])
def test_a_wallet_that_starts_burning_gas_after_acceptance_fails_alone_and_costs_nothing(
    hardhat_env: EscrowEnv, services: Services, burn: int
) -> None:
    env = hardhat_env
    client = api_client(services)
    bad_escrow, wallet = burning_wallet_escrow(env, (1,))  # a 1-wei escrow
    accepted = wallet_confirmation(client, bad_escrow, 0)
    assert accepted.status_code == 202, accepted.text  # cheap while the API looked
    set_burn(env, wallet, burn)
    honest = env.create_active()
    queued = sign_and_confirm(client, env, honest, 0, rating=1)
    sent_before = relayer_tx_count(services)
    balance_before = env.w3.eth.get_balance(relayer_key(services).address)

    report = relayer(services).run_until_idle()

    assert (report.signed, report.mined, report.failed) == (1, 1, 1)
    bad = outbox_row(services, accepted.json()["id"])
    assert (bad.status, bad.transaction_id) == ("failed", None)  # nothing signed
    assert bad.error is not None and "ESCROW_RELAY_MAX_GAS" in bad.error
    if burn == BURN_OVER_CAP:
        assert "needs 3" in bad.error and "over the gas cap of 200,000" in bad.error
    good = outbox_row(services, queued["id"])
    assert good.status == "mined"
    assert relayer_tx_count(services) == sent_before + 1
    receipt = env.w3.eth.get_transaction_receipt(good.tx_hash)  # type: ignore[arg-type]
    paid = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert balance_before - env.w3.eth.get_balance(relayer_key(services).address) == paid
    assert int(receipt["gasUsed"]) < 200_000


def test_the_relayer_stops_at_the_spend_bound_of_an_escrow_and_of_a_client(
    hardhat_env: EscrowEnv, services: Services
) -> None:
    env = hardhat_env
    client = api_client(services)
    escrow_id = env.create_active(env.params((ETH, ETH)))
    first = sign_and_confirm(client, env, escrow_id, 0, rating=5)
    relayer(services).run_until_idle()
    mined = outbox_row(services, first["id"])
    receipt = env.w3.eth.get_transaction_receipt(mined.tx_hash)  # type: ignore[arg-type]
    cost = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    with services.sessions() as session:
        by_escrow = spent(session, services.chain_id, "relayer", escrow_id=escrow_id)
        by_client = spent(session, services.chain_id, "relayer", on_behalf_of=env.client)
        assert session.scalar(select(OutboxTransaction.gas_used)) == receipt["gasUsed"]
    assert by_escrow == by_client == cost  # a mined one counts what it paid

    # the escrow's bound leaves no room for a second transaction: fails, nothing signed
    services.settings = services.settings.model_copy(
        update={"relay_max_spend_per_escrow": cost + 1}
    )
    second = sign_and_confirm(client, env, escrow_id, 1, rating=4)
    sent_before = relayer_tx_count(services)
    report = relayer(services).run_until_idle()
    row = outbox_row(services, second["id"])
    assert (report.failed, row.status, row.transaction_id) == (1, "failed", None)
    assert row.error is not None and row.error.startswith(
        f"relay spend bound reached for escrow {escrow_id}: {cost} wei spent"
    )
    assert "ESCROW_RELAY_MAX_SPEND_PER_ESCROW" in row.error
    # the client's bound counts every escrow of the client: another escrow's first one fails
    services.settings = services.settings.model_copy(
        update={"relay_max_spend_per_escrow": None, "relay_max_spend_per_client": cost + 1}
    )
    other = env.create_active()
    refused = sign_and_confirm(client, env, other, 0)
    relayer(services).run_until_idle()
    row = outbox_row(services, refused["id"])
    assert (row.status, row.transaction_id) == ("failed", None)
    assert row.error is not None and row.error.startswith(
        f"relay spend bound reached for client {env.client}: {cost} wei spent"
    )
    assert relayer_tx_count(services) == sent_before  # nothing signed over a bound
    # without bounds the client signs again and it is relayed
    services.settings = services.settings.model_copy(
        update={"relay_max_spend_per_client": None}
    )
    again = sign_and_confirm(client, env, other, 0)
    relayer(services).run_until_idle()
    assert outbox_row(services, again["id"]).status == "mined"


def _front_run(env: EscrowEnv, services: Services, request_id: int) -> str:
    """A stranger submits `confirmWithSig` with the request's own signed values (anyone may):
    the hash of its transaction."""
    row = outbox_row(services, request_id)
    fn = env.escrow.function(
        "confirmWithSig", row.escrow_id, row.milestone, row.rating,
        bytes.fromhex(row.comment_hash[2:]), row.deadline, bytes.fromhex(row.signature[2:]),
    )
    return send(env.w3, env.escrow.contract, fn, env.parties.stranger.address).tx_hash


@pytest.mark.parametrize("when", ["before signing", "after signing"])
def test_a_confirmation_front_run_with_the_same_signature_is_settled_not_failed(
    hardhat_env: EscrowEnv, services: Services, when: str
) -> None:
    env = hardhat_env
    client = api_client(services)
    escrow_id = env.create_active()
    request_id = sign_and_confirm(client, env, escrow_id, 0, rating=3)["id"]
    sender = relayer(services)
    if when == "after signing":
        sender.sign_pending(SendReport())  # signed and stored, not sent yet
    other = _front_run(env, services, request_id)

    report = sender.run_until_idle()

    assert (report.mined, report.failed) == (1, 0)
    row = outbox_row(services, request_id)
    assert row.status == "settled"
    assert row.error is not None and other in row.error
    [event] = settled_events(services, escrow_id, 0)
    assert (event["tx_hash"], event["rating"]) == (other, 3)
    answer: dict[str, Any] = client.get(f"/api/confirmations/{request_id}").json()
    assert (answer["status"], answer["error"]) == ("settled", row.error)
    with services.sessions() as session:
        assert request_json(get_request(session, request_id))["status"] == "settled"
    if when == "after signing":  # the relayer's own transaction reverted, on record
        assert [t["status"] for t in answer["transactions"]] == ["reverted"]

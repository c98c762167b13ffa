"""withdraw: the only way money leaves the contract (docs/interface.md section 1).

Every scenario checks after each step that the contract holds exactly what it owes: the sum of
the credits plus locked + reserved of its escrows, per token."""

from __future__ import annotations

import pytest

from backend.chain import revert_types as rt
from backend.chain.deploy import deploy_contract
from backend.chain.errors import ChainError
from backend.chain.transactions import TxResult, send
from backend.chain.types import ZERO_ADDRESS, Status
from tests.contract.support_breach import (
    CHALLENGE_AFTER,
    EVIDENCE,
    check_books,
    check_holdings,
    confirm,
    contract_account,
    escrow_call,
    execute,
    only_event,
    quick,
    quick_active,
    quick_create,
    report,
    settle_all,
)
from tests.support import ETH, EscrowEnv

pytestmark = pytest.mark.usefixtures("books_balance")


def _gas_cost(env: EscrowEnv, result: TxResult) -> int:
    receipt = env.w3.eth.get_transaction_receipt(result.tx_hash)  # type: ignore[arg-type]
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def _withdraw_data(env: EscrowEnv, token: str = ZERO_ADDRESS) -> str:
    data: str = env.escrow.contract.functions.withdraw(token)._encode_transaction_data()
    return data


def test_withdraw_pays_the_whole_eth_credit(env: EscrowEnv) -> None:
    escrow_id = quick_active(env, env.params((ETH, 2 * ETH)))
    parties = [env.client, env.provider]
    confirm(env, escrow_id, 0, 3)  # 60%: 0.6 ETH to the provider
    confirm(env, escrow_id, 1, 5)
    check_books(env, escrow_id)
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)
    credit = env.escrow.credits(env.provider)
    assert credit == ETH * 26 // 10
    held_before = env.balance(env.escrow.address)
    balance_before = env.balance(env.provider)

    result = env.escrow.withdraw(None, env.provider)

    assert only_event(result, "Withdrawn") == {
        "account": env.provider,
        "token": ZERO_ADDRESS,
        "amount": credit,
    }
    assert env.escrow.credits(env.provider) == 0
    assert env.balance(env.provider) == balance_before + credit - _gas_cost(env, result)
    assert env.balance(env.escrow.address) == held_before - credit
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)

    client_before = env.balance(env.client)
    result = env.escrow.withdraw(ZERO_ADDRESS, env.client)
    assert result.event("Withdrawn").args["amount"] == 4 * ETH // 10
    assert env.balance(env.client) == client_before + 4 * ETH // 10 - _gas_cost(env, result)
    assert env.balance(env.escrow.address) == 0
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)


def test_withdraw_pays_the_whole_erc20_credit(env: EscrowEnv) -> None:
    token = env.token
    escrow_id = quick_active(env, env.params((1_000_000, 2_500_000), token=token))
    parties = [env.client, env.provider]
    check_holdings(env, token, [escrow_id], parties)
    report(env, escrow_id, 1, 1)  # reserves 5% of 3_500_000 = 175_000
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)
    check_holdings(env, token, [escrow_id], parties)
    # base = 1_000_000 * 3_325_000 / 3_500_000 = 950_000; rating 2 pays the provider 40%
    settled = env.escrow.confirm(escrow_id, 0, 2, None, env.client)
    assert settled.event("MilestoneSettled").args["toClient"] == 570_000
    check_books(env, escrow_id)
    check_holdings(env, token, [escrow_id], parties)
    credit = env.escrow.credits(env.client, token)
    assert credit == 175_000 + 570_000
    before = env.balance(env.client, token)
    held_before = env.balance(env.escrow.address, token)

    result = env.escrow.withdraw(token, env.client)

    assert only_event(result, "Withdrawn") == {
        "account": env.client,
        "token": token,
        "amount": credit,
    }
    assert env.escrow.credits(env.client, token) == 0
    assert env.balance(env.client, token) == before + credit
    assert env.balance(env.escrow.address, token) == held_before - credit
    assert env.escrow.credits(env.provider, token) == 380_000
    check_holdings(env, token, [escrow_id], parties)


def test_withdraw_works_end_to_end_with_a_token_that_returns_nothing(env: EscrowEnv) -> None:
    token, name = env.no_return_token, "NoReturnToken"
    parties = [env.client, env.provider]
    params = env.params((400_000, 600_001), token=token)
    escrow_id = env.create(params, token_contract=name)
    assert env.balance(env.escrow.address, token, name) == 1_000_001
    assert env.balance(env.client, token, name) == 0
    env.escrow.accept(escrow_id, env.provider)
    env.escrow.confirm(escrow_id, 0, 1, None, env.client)  # 20% of 400_000 to the provider
    env.escrow.confirm(escrow_id, 1, 4, None, env.client)  # 80% of 600_001 = 480_000
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED
    check_books(env, escrow_id)
    check_holdings(env, token, [escrow_id], parties, name)

    paid_provider = env.escrow.withdraw(token, env.provider)
    paid_client = env.escrow.withdraw(token, env.client)

    assert paid_provider.event("Withdrawn").args == {
        "account": env.provider,
        "token": token,
        "amount": 80_000 + 480_000,
    }
    assert paid_client.event("Withdrawn").args == {
        "account": env.client,
        "token": token,
        "amount": 320_000 + 120_001,
    }
    assert env.balance(env.provider, token, name) == 560_000
    assert env.balance(env.client, token, name) == 440_001
    assert env.balance(env.escrow.address, token, name) == 0
    check_holdings(env, token, [escrow_id], parties, name)


def test_withdraw_refuses_an_account_with_nothing_to_withdraw(env: EscrowEnv) -> None:
    escrow_id = quick_active(env, env.params((ETH,)))
    confirm(env, escrow_id, 0, 5)
    stranger = env.parties.stranger.address

    with pytest.raises(rt.EscrowNothingToWithdraw) as exc:
        env.escrow.withdraw(None, stranger)
    assert exc.value.fields == {"account": stranger, "token": ZERO_ADDRESS}

    # a credit in ETH is no credit in a token
    with pytest.raises(rt.EscrowNothingToWithdraw) as exc:
        env.escrow.withdraw(env.token, env.provider)
    assert exc.value.fields == {"account": env.provider, "token": env.token}

    # rating 5 leaves the client nothing
    with pytest.raises(rt.EscrowNothingToWithdraw) as exc:
        env.escrow.withdraw(None, env.client)
    assert exc.value.fields == {"account": env.client, "token": ZERO_ADDRESS}

    env.escrow.withdraw(None, env.provider)
    with pytest.raises(rt.EscrowNothingToWithdraw) as exc:
        env.escrow.withdraw(None, env.provider)
    assert exc.value.fields == {"account": env.provider, "token": ZERO_ADDRESS}
    check_holdings(env, ZERO_ADDRESS, [escrow_id], [env.client, env.provider])


def test_withdraw_pays_one_token_and_leaves_the_others_credit(env: EscrowEnv) -> None:
    in_eth = quick_active(env, env.params((5_000,)))
    in_token = quick_active(env, env.params((7_000,), token=env.token))
    confirm(env, in_eth, 0, 5)
    confirm(env, in_token, 0, 5)
    token_before = env.balance(env.provider, env.token)

    result = env.escrow.withdraw(env.token, env.provider)

    assert result.event("Withdrawn").args == {
        "account": env.provider,
        "token": env.token,
        "amount": 7_000,
    }
    assert env.balance(env.provider, env.token) == token_before + 7_000
    assert env.escrow.credits(env.provider, env.token) == 0
    assert env.escrow.credits(env.provider) == 5_000
    check_holdings(env, ZERO_ADDRESS, [in_eth], [env.client, env.provider])
    check_holdings(env, env.token, [in_token], [env.client, env.provider])


def test_withdraw_cannot_be_reentered_from_the_receive_hook(env: EscrowEnv) -> None:
    deployer = env.parties.deployer.address
    account = contract_account(env, "ReentrantWithdrawer")
    send(env.w3, account, account.functions.setEscrow(env.escrow.address), deployer)
    assert account.functions.escrow().call() == env.escrow.address
    parties = [env.client, account.address]
    escrow_id = quick_create(env, env.params((ETH, 3 * ETH), provider=account.address))
    execute(env, account, escrow_call(env, "accept", escrow_id))
    execute(env, account, escrow_call(env, "submitDelivery", escrow_id, 0, b"\x22" * 32))
    confirm(env, escrow_id, 0, 5)
    assert env.escrow.credits(account.address) == ETH
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)
    held = env.balance(env.escrow.address)
    assert held == 4 * ETH

    # receive() calls withdraw again; the guard reverts that inner call
    # (ReentrancyGuardReentrantCall), so receive reverts and the payment fails as a whole
    with pytest.raises(rt.EscrowEthTransferFailed) as exc:
        execute(env, account, _withdraw_data(env))

    assert exc.value.fields == {"account": account.address, "amount": ETH}
    assert env.escrow.credits(account.address) == ETH
    assert env.balance(env.escrow.address) == held
    assert env.balance(account.address) == 0
    assert account.functions.reentries().call() == 0
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)

    # the same account without the re-entry is paid once, exactly its credit
    send(env.w3, account, account.functions.setEscrow(ZERO_ADDRESS), deployer)
    result = execute(env, account, _withdraw_data(env))
    assert result.event("Withdrawn").args == {
        "account": account.address,
        "token": ZERO_ADDRESS,
        "amount": ETH,
    }
    assert env.balance(account.address) == ETH
    assert env.balance(env.escrow.address) == held - ETH
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)


def test_withdraw_to_a_reverting_provider_fails_without_blocking_the_client(
    env: EscrowEnv,
) -> None:
    account = contract_account(env, "RevertingReceiver")
    provider = account.address
    parties = [env.client, provider]
    escrow_id = quick_create(env, env.params((ETH, 2 * ETH), provider=provider))
    execute(env, account, escrow_call(env, "accept", escrow_id))
    execute(env, account, escrow_call(env, "submitDelivery", escrow_id, 0, b"\x22" * 32))
    confirm(env, escrow_id, 0, 1)  # rating 1: 20% to the provider
    check_books(env, escrow_id)
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)
    held = env.balance(env.escrow.address)

    with pytest.raises(rt.EscrowEthTransferFailed) as exc:
        execute(env, account, _withdraw_data(env))

    assert exc.value.fields == {"account": provider, "amount": 2 * ETH // 10}
    assert env.escrow.credits(provider) == 2 * ETH // 10
    assert env.balance(env.escrow.address) == held
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)

    # the client takes its share regardless
    client_before = env.balance(env.client)
    result = env.escrow.withdraw(None, env.client)
    assert result.event("Withdrawn").args == {
        "account": env.client,
        "token": ZERO_ADDRESS,
        "amount": 8 * ETH // 10,
    }
    assert env.balance(env.client) == client_before + 8 * ETH // 10 - _gas_cost(env, result)
    assert env.escrow.credits(env.client) == 0
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)

    # and the escrow goes on: a breach refund reaches the client too
    quick(env, "reportBreach", escrow_id, 3, 1, EVIDENCE, sender=env.oracle)  # 20% of 3 ETH
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)
    env.advance(CHALLENGE_AFTER)
    quick(env, "finalizeBreach", escrow_id, 0, sender=env.client)
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)
    refund = env.escrow.withdraw(None, env.client)
    assert refund.event("Withdrawn").args["amount"] == 6 * ETH // 10
    assert env.escrow.credits(provider) == 2 * ETH // 10
    check_holdings(env, ZERO_ADDRESS, [escrow_id], parties)


def test_withdraw_works_after_the_escrow_closed(env: EscrowEnv) -> None:
    escrow_id = quick_create(env, env.params((ETH,)))
    quick(env, "cancel", escrow_id, sender=env.client)
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED
    other = quick_active(env, env.params((2 * ETH,)))
    quick(env, "reportBreach", other, 2, 1, EVIDENCE, sender=env.oracle)
    settle_all(env, other)
    check_holdings(env, ZERO_ADDRESS, [escrow_id, other], [env.client, env.provider])

    result = env.escrow.withdraw(None, env.client)

    assert result.event("Withdrawn").args["amount"] == ETH
    assert env.balance(env.escrow.address) == 2 * ETH
    check_holdings(env, ZERO_ADDRESS, [escrow_id, other], [env.client, env.provider])


def test_a_provider_blocklisted_by_the_token_cannot_lock_the_clients_money(
    env: EscrowEnv,
) -> None:
    """USDC and USDT can block an account. Payouts are credits pulled by `withdraw`, so a blocked
    provider's withdrawal fails alone and its credit stays, while the client's share, refunds
    and cancellations go on."""
    token, _ = deploy_contract(env.w3, "BlocklistToken", env.parties.deployer)
    name = "BlocklistToken"
    parties = [env.client, env.provider]
    escrow_id = env.create_active(env.params((400_000, 600_000), token=token),
                                  token_contract=name)
    env.contract(name, token).functions.setBlocked(env.provider, True).transact(
        {"from": env.parties.deployer.address}
    )
    env.escrow.confirm(escrow_id, 0, 1, None, env.client)  # 20% of 400_000 to the provider
    check_books(env, escrow_id)

    with pytest.raises(ChainError):
        env.escrow.withdraw(token, env.provider)

    assert env.escrow.credits(env.provider, token) == 80_000
    paid = env.escrow.withdraw(token, env.client)
    assert paid.event("Withdrawn").args["amount"] == 320_000
    # the rest of the escrow still settles: the client confirms the second milestone
    env.escrow.confirm(escrow_id, 1, 5, None, env.client)
    assert env.escrow.get_escrow(escrow_id).status == Status.CLOSED
    check_holdings(env, token, [escrow_id], parties, name)
    # once unblocked, the provider is paid everything it was credited
    env.contract(name, token).functions.setBlocked(env.provider, False).transact(
        {"from": env.parties.deployer.address}
    )
    assert env.escrow.withdraw(token, env.provider).event("Withdrawn").args["amount"] == 680_000

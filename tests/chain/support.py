"""Contract-wallet clients for the tests of every package that checks EIP-1271 signatures."""

from __future__ import annotations

from backend.chain.deploy import deploy_contract
from backend.chain.transactions import send
from tests.support import ETH, EscrowEnv

#: MockERC1271Wallet modes
ACCEPTS, OTHER_VALUE, REVERTS = 0, 1, 2


def mock_wallet(env: EscrowEnv, mode: int = ACCEPTS) -> str:
    """A MockERC1271Wallet owned by the client's key, answering in `mode`."""
    address, _ = deploy_contract(env.w3, "MockERC1271Wallet", env.client)
    set_mode(env, str(address), mode)
    return str(address)


def set_mode(env: EscrowEnv, wallet: str, mode: int) -> None:
    env.contract("MockERC1271Wallet", wallet).functions.setMode(mode).transact(
        {"from": env.client}
    )


def wallet_escrow(env: EscrowEnv, mode: int = ACCEPTS) -> tuple[int, str]:
    """An active escrow (milestones of 1 and 2 ETH) whose client is a MockERC1271Wallet, which
    answers in `mode` once the escrow exists: (escrow id, wallet)."""
    wallet = mock_wallet(env, ACCEPTS)
    contract = env.contract("MockERC1271Wallet", wallet)
    p = env.params((ETH, 2 * ETH), client=wallet)
    data = env.escrow.contract.functions.createEscrow(p.to_abi())._encode_transaction_data()
    send(env.w3, contract, contract.functions.execute(env.escrow.address, p.total, data),
         env.client, value=p.total)
    escrow_id = env.escrow.escrow_count()
    env.escrow.accept(escrow_id, env.provider)
    set_mode(env, wallet, mode)
    return escrow_id, wallet


def multi_owner_escrow(env: EscrowEnv, owners: list[str], threshold: int) -> tuple[int, str]:
    """An active escrow (milestones of 1 and 2 ETH) whose client is a MultiOwnerWallet of
    `owners` (a Safe-style `threshold`-of-n wallet driven by the client's key): (escrow id,
    wallet)."""
    address, _ = deploy_contract(env.w3, "MultiOwnerWallet", env.client, owners, threshold)
    contract = env.contract("MultiOwnerWallet", str(address))
    p = env.params((ETH, 2 * ETH), client=str(address))
    data = env.escrow.contract.functions.createEscrow(p.to_abi())._encode_transaction_data()
    send(env.w3, contract, contract.functions.execute(env.escrow.address, p.total, data),
         env.client, value=p.total)
    escrow_id = env.escrow.escrow_count()
    env.escrow.accept(escrow_id, env.provider)
    return escrow_id, str(address)

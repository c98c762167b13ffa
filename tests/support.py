"""Shared test scaffolding: a deployed escrow with named parties, tokens and helpers.

`EscrowEnv` works the same on the in-process chain and on a Hardhat node, so the same lifecycle
test runs against both.
"""

from __future__ import annotations

import importlib.util
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.types import RPCEndpoint

from backend.chain import devchain
from backend.chain.client import EscrowClient
from backend.chain.deploy import deploy_contract, deploy_escrow
from backend.chain.eip712 import Confirmation
from backend.chain.types import ZERO_ADDRESS, EscrowParams, Terms

DAY = 86_400
REVIEW = 3 * DAY
CHALLENGE = 2 * DAY
ARBITRATION = 5 * DAY
PAYOUTS = (2_000, 4_000, 6_000, 8_000, 10_000)
TERMS_HASH = bytes.fromhex("11" * 32)
ETH = 10**18


@dataclass
class Parties:
    deployer: LocalAccount
    client: LocalAccount
    provider: LocalAccount
    oracle: LocalAccount
    arbiter: LocalAccount
    relayer: LocalAccount
    stranger: LocalAccount


@dataclass
class EscrowEnv:
    w3: Web3
    escrow: EscrowClient
    parties: Parties
    token: ChecksumAddress  # TestToken, 6 decimals
    no_return_token: ChecksumAddress  # USDT-style
    fee_token: ChecksumAddress  # fee on transfer
    deployment_block: int
    _contracts: dict[str, Any] = field(default_factory=dict)

    # -------------------------------------------------------------- builders

    @property
    def client(self) -> ChecksumAddress:
        return self.parties.client.address

    @property
    def provider(self) -> ChecksumAddress:
        return self.parties.provider.address

    @property
    def oracle(self) -> ChecksumAddress:
        return self.parties.oracle.address

    @property
    def arbiter(self) -> ChecksumAddress:
        return self.parties.arbiter.address

    def now(self) -> int:
        return devchain.latest_timestamp(self.w3)

    def advance(self, seconds: int) -> int:
        return devchain.advance_time(self.w3, seconds)

    def terms(self, **overrides: Any) -> Terms:
        base = Terms(
            rating_payout_bps=PAYOUTS,
            breach_refund_bps=500,
            streak_refund_bps=1_000,
            incident_refund_bps=2_000,
            max_refund_bps=3_000,
            review_period=REVIEW,
            challenge_period=CHALLENGE,
            arbitration_period=ARBITRATION,
            delivery_deadline=self.now() + 30 * DAY,
        )
        return replace(base, **overrides)

    def params(
        self,
        amounts: tuple[int, ...] = (ETH, 2 * ETH),
        *,
        token: str = ZERO_ADDRESS,
        terms: Terms | None = None,
        **overrides: Any,
    ) -> EscrowParams:
        values: dict[str, Any] = {
            "client": self.client,
            "provider": self.provider,
            "token": token,
            "oracle": self.oracle,
            "arbiter": self.arbiter,
            "terms_hash": TERMS_HASH,
            "milestone_amounts": amounts,
            "terms": terms or self.terms(),
        }
        values.update(overrides)
        return EscrowParams(**values)

    def contract(self, name: str, address: str) -> Any:
        from backend.chain.artifacts import load_artifact

        key = f"{name}:{address}"
        if key not in self._contracts:
            self._contracts[key] = self.w3.eth.contract(
                address=Web3.to_checksum_address(address), abi=load_artifact(name).abi
            )
        return self._contracts[key]

    def fund_token(self, token: str, owner: str, amount: int, name: str = "TestToken") -> None:
        """Mints `amount` of a test token to `owner` and approves the escrow for it."""
        c = self.contract(name, token)
        c.functions.mint(owner, amount).transact({"from": self.parties.deployer.address})
        c.functions.approve(self.escrow.address, amount).transact({"from": owner})

    def create(
        self, params: EscrowParams | None = None, *, token_contract: str = "TestToken"
    ) -> int:
        """Creates and funds an escrow from its client (minting and approving tokens first)."""
        p = params or self.params()
        if not p.is_eth:
            self.fund_token(p.token, p.client, p.total, token_contract)
        escrow_id, _ = self.escrow.create_escrow(p, p.client)
        return escrow_id

    def create_active(self, params: EscrowParams | None = None, **kw: Any) -> int:
        escrow_id = self.create(params, **kw)
        self.escrow.accept(escrow_id, self.escrow.params(escrow_id).provider)
        return escrow_id

    def deliver(self, escrow_id: int, milestone: int) -> None:
        self.escrow.submit_delivery(escrow_id, milestone, b"\x22" * 32, self.provider)

    def confirmation(
        self,
        escrow_id: int,
        milestone: int,
        rating: int = 5,
        comment_hash: bytes = b"\x00" * 32,
        deadline: int | None = None,
    ) -> Confirmation:
        return Confirmation(
            escrow_id, milestone, rating, comment_hash, deadline or self.now() + 3_600
        )

    def sign(self, confirmation: Confirmation, signer: LocalAccount | None = None) -> bytes:
        """Signs with eth-account's own typed-data encoder (independent of our digest code)."""
        account = signer or self.parties.client
        typed = confirmation.typed_data(self.escrow.chain_id, self.escrow.address)
        return bytes(account.sign_typed_data(full_message=typed).signature)

    def balance(self, account: str, token: str = ZERO_ADDRESS, name: str = "TestToken") -> int:
        if token == ZERO_ADDRESS:
            return int(self.w3.eth.get_balance(Web3.to_checksum_address(account)))
        return int(self.contract(name, token).functions.balanceOf(account).call())


def build_env(w3: Web3) -> EscrowEnv:
    """Deploys the escrow and the test tokens on `w3` with the chain's funded dev keys."""
    keys = devchain.dev_accounts(w3, 7)
    parties = Parties(*keys)
    deployer = parties.deployer.address
    deployment = deploy_escrow(w3, deployer)
    token, _ = deploy_contract(w3, "TestToken", deployer, "Test USD", "TUSD", 6)
    no_return, _ = deploy_contract(w3, "NoReturnToken", deployer)
    fee, _ = deploy_contract(w3, "FeeOnTransferToken", deployer)
    escrow = EscrowClient(w3, deployment.address, from_block=deployment.block)
    return EscrowEnv(w3, escrow, parties, token, no_return, fee, deployment.block)


def reset_chain(w3: Web3) -> None:
    """Resets a Hardhat node to its genesis (`hardhat_reset`), as a restarted local chain is."""
    assert w3.provider.make_request(RPCEndpoint("hardhat_reset"), [])["result"] is True


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """Polls `check` until it answers something true (returned); fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)


def load_script(path: Path) -> ModuleType:
    """The module of a script of `scripts/` (not a package), loaded under its file name and kept
    in `sys.modules` (dataclasses look their module up while decorating)."""
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """`server` answering in a daemon thread (polling for shutdown every 0.05 s) while the block
    runs; then shut down, closed and its thread joined."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

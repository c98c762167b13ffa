"""Deploying compiled contracts and the per-chain deployment record the service reads."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from web3 import Web3

from backend.chain.artifacts import load_artifact
from backend.chain.bulk_rpc import block_hash
from backend.chain.errors import ChainError, DeploymentMissing
from backend.chain.transactions import Sender, sender_address

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """Where `QualityEscrow` lives on one chain (what `escrow deploy --json` prints)."""

    address: ChecksumAddress
    chain_id: int
    block: int
    tx_hash: str
    deployer: ChecksumAddress
    sources_hash: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def deploy_contract(w3: Web3, name: str, sender: Sender, *args: Any) -> tuple[ChecksumAddress, Any]:
    """Deploys artifact `name` with constructor `args`; returns (address, receipt)."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    address = sender_address(sender)
    if isinstance(sender, LocalAccount):
        tx = factory.constructor(*args).build_transaction(
            {"from": address, "nonce": w3.eth.get_transaction_count(address, "pending")}
        )
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(dict(tx)).raw_transaction)
    else:
        tx_hash = factory.constructor(*args).transact({"from": address})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=180)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainError(f"deploying {name} failed in transaction 0x{bytes(tx_hash).hex()}")
    return to_checksum_address(receipt["contractAddress"]), receipt


def deploy_escrow(w3: Web3, sender: Sender) -> Deployment:
    address, receipt = deploy_contract(w3, "QualityEscrow", sender)
    return Deployment(
        address=address,
        chain_id=int(w3.eth.chain_id),
        block=int(receipt["blockNumber"]),
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        deployer=sender_address(sender),
        sources_hash=load_artifact("QualityEscrow").sources_hash,
    )


def deployment_path(data_dir: Path, chain_id: int) -> Path:
    return data_dir / "deployments" / f"{chain_id}.json"


def write_deployment(data_dir: Path, deployment: Deployment) -> Path:
    path = deployment_path(data_dir, deployment.chain_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(deployment.to_json(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_deployment(data_dir: Path, chain_id: int) -> Deployment:
    path = deployment_path(data_dir, chain_id)
    if not path.exists():
        raise DeploymentMissing(chain_id, str(path))
    raw = json.loads(path.read_text())
    return Deployment(
        address=to_checksum_address(raw["address"]),
        chain_id=int(raw["chain_id"]),
        block=int(raw["block"]),
        tx_hash=str(raw["tx_hash"]),
        deployer=to_checksum_address(raw["deployer"]),
        sources_hash=str(raw["sources_hash"]),
    )


def is_deployed(w3: Web3, deployment: Deployment) -> bool:
    """Whether the recorded contract still has code (a reset dev chain loses it)."""
    return len(w3.eth.get_code(deployment.address)) > 0


def gone_reason(w3: Web3, contract: str, block_number: int, recorded_hash: str | None) -> (
    str | None
):
    """Why the chain no longer has the deployment of `contract` in block `block_number` with
    hash `recorded_hash` (None: hash unknown), or None while it still does: the block has
    another hash (or is missing), or the address has no code."""
    now = block_hash(w3, block_number)
    if recorded_hash is not None and now != recorded_hash:
        return (
            f"chain reset: block {block_number}, where {contract} was deployed, is "
            f"{now or 'missing'} on the chain, was {recorded_hash}"
        )
    if not w3.eth.get_code(to_checksum_address(contract)):
        return f"chain reset: no contract code at {contract} any more"
    return None


class DeploymentWatch:
    """Whether the chain still has the deployment the service started on: the hash of its
    deployment block, compared with the one read at start-up (one `eth_getBlockByNumber`).

    Workers call `check()` before every pass; the API asks `recent(max_age)`, which reads the
    chain at most once per `max_age` seconds. Once the chain has lost the deployment, the
    answer stays: the process keeps refusing until it is restarted, which archives the old
    deployment's data (`backend/db/deployments.py`)."""

    def __init__(
        self, w3: Web3, contract: str, block_number: int, recorded_hash: str | None,
        *, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.w3 = w3
        self.contract = contract
        self.block_number = block_number
        self.recorded_hash = recorded_hash
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: read at start-up by the caller, who hands the hash in
        self._checked_at: float | None = monotonic()
        #: why the chain no longer has the deployment, once seen
        self.gone: str | None = None

    def check(self) -> str | None:
        """Reads the deployment block's hash now; returns why the deployment is gone, or None.
        Node errors propagate (the caller's pass fails and is retried)."""
        if self.gone is not None or self.recorded_hash is None:
            return self.gone
        now = block_hash(self.w3, self.block_number)
        with self._lock:
            self._checked_at = self._monotonic()
            if now != self.recorded_hash and self.gone is None:
                self.gone = (
                    f"chain reset: block {self.block_number}, where {self.contract} was "
                    f"deployed, is {now or 'missing'} on the chain, was {self.recorded_hash}; "
                    "restart the service to archive the old deployment's data"
                )
                logger.error("deployment gone: %s", self.gone)
        return self.gone

    def recent(self, max_age: float) -> str | None:
        """`check()` when the last one is older than `max_age` seconds, else its answer; a node
        that does not answer leaves the last answer standing."""
        with self._lock:
            fresh = self._checked_at is not None and (
                self._monotonic() - self._checked_at < max_age
            )
        if fresh or self.gone is not None:
            return self.gone
        try:
            return self.check()
        except Exception:  # the node is away: the routes say so themselves
            return self.gone

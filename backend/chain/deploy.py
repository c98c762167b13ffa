"""Deploying compiled contracts and the per-chain deployment record the service reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from web3 import Web3

from backend.chain.artifacts import load_artifact
from backend.chain.errors import ChainError, DeploymentMissing
from backend.chain.transactions import Sender, sender_address


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

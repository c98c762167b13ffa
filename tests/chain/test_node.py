"""The local Hardhat network starts offline and answers JSON-RPC."""

from __future__ import annotations

import os

import pytest
from web3 import Web3
from web3.types import Wei

from backend.chain.errors import HardhatNodeError
from backend.chain.node import HardhatNode, start_hardhat_node

pytestmark = pytest.mark.hardhat

FIRST_DEV_ACCOUNT = Web3.to_checksum_address("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")


def test_hardhat_node_answers_with_chain_id_31337(hardhat_node: HardhatNode) -> None:
    w3 = Web3(Web3.HTTPProvider(hardhat_node.url))
    assert w3.eth.chain_id == 31337
    assert hardhat_node.chain_id == 31337


def test_hardhat_node_has_the_well_known_funded_dev_accounts(hardhat_node: HardhatNode) -> None:
    w3 = Web3(Web3.HTTPProvider(hardhat_node.url))
    accounts = list(w3.eth.accounts)
    assert accounts[0] == FIRST_DEV_ACCOUNT
    assert len(accounts) == 20
    assert w3.eth.get_balance(FIRST_DEV_ACCOUNT) > 0


def test_hardhat_node_mines_each_transaction_at_once(hardhat_node: HardhatNode) -> None:
    w3 = Web3(Web3.HTTPProvider(hardhat_node.url))
    before = w3.eth.block_number
    tx = w3.eth.send_transaction(
        {"from": FIRST_DEV_ACCOUNT, "to": list(w3.eth.accounts)[1], "value": Wei(1)}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=10)
    assert receipt["status"] == 1
    assert w3.eth.block_number == before + 1


def test_starting_a_node_on_a_port_in_use_fails_with_a_clear_error(
    hardhat_node: HardhatNode,
) -> None:
    with pytest.raises(HardhatNodeError, match="already in use"):
        start_hardhat_node(hardhat_node.port)


def test_a_stopped_node_leaves_no_process_behind(hardhat_node: HardhatNode) -> None:
    # (the session node is requested only so that missing prerequisites skip or fail alike)
    with start_hardhat_node() as node:
        assert Web3(Web3.HTTPProvider(node.url)).eth.chain_id == 31337
        group = node.process.pid
    assert not node.running
    assert node.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)

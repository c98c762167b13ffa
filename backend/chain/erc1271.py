"""The one contract-wallet signature check (EIP-1271), used by the confirmations, Sign-In with
Ethereum and the audit alike.

A contract wallet (a Safe, a smart account) has no key of its own; it says whether it accepts a
signature over a 32-byte hash by answering `isValidSignature(bytes32 hash, bytes signature)`
with the magic value `0x1626ba7e` (the function's own selector, EIP-1271). The contract checks
confirmations with OpenZeppelin's `SignatureChecker.isValidERC1271SignatureNowCalldata`; this
module gives the same verdict off-chain:

- accepted only when the call succeeds and returns at least 32 bytes whose first 32-byte word is
  `0x1626ba7e` followed by 28 zero bytes (an ABI-encoded `bytes4`);
- not accepted when the call reverts (any reason, including a contract without the function and
  without a fallback), when it returns fewer than 32 bytes or any other word (garbage, another
  value such as `0xffffffff`), and when `wallet` has no code (the call then returns nothing);
- `NodeUnavailable` (503 with `Retry-After`) when the node does not answer: "the node is down"
  is never read as "the wallet said no".

This verdict is the wallet's answer to anyone asking (`eth_call` from address 0). A wallet may
answer differently, or burn gas, only when the escrow asks it (docs/reliability.md), so the
confirmations also simulate the real `confirmWithSig` from the relayer's address within the
relay gas cap (`backend.confirmations.verify.check_relay`,
`backend.chain.transactions.estimate_within`).
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_typing import BlockIdentifier
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import TxParams

from backend.chain.errors import from_node
from backend.chain.transactions import REVERT_EXCEPTIONS

#: EIP-1271's magic value: bytes4(keccak256("isValidSignature(bytes32,bytes)"))
MAGIC_VALUE = bytes.fromhex("1626ba7e")
#: the selector called is the magic value itself
SELECTOR = MAGIC_VALUE
#: gas a wallet may use to answer (a Safe with a few owners needs far less)
GAS = 500_000


def accepts_answer(answer: bytes) -> bool:
    """Whether `answer` (the call's return data) is EIP-1271's "yes": at least 32 bytes whose first
    word is the magic value, left-aligned, as OpenZeppelin's `SignatureChecker` decodes it."""
    return len(answer) >= 32 and answer[:32] == MAGIC_VALUE.ljust(32, b"\x00")


def is_valid_signature(
    w3: Web3,
    wallet: str,
    digest: bytes,
    signature: bytes,
    *,
    block: BlockIdentifier = "latest",
) -> bool:
    """Whether the contract at `wallet` accepts `signature` over the 32-byte `digest` (EIP-1271),
    asked through `eth_call` at `block` with `GAS` gas.

    False on a revert, on return data that is short, garbage or another value, and on an address
    without code; raises `NodeUnavailable` when the node does not answer."""
    data = SELECTOR + abi_encode(["bytes32", "bytes"], [digest, signature])
    tx: TxParams = {"to": to_checksum_address(wallet), "data": data, "gas": GAS}
    try:
        answer = from_node(
            f"isValidSignature of {wallet}", lambda: bytes(w3.eth.call(tx, block))
        )
    except REVERT_EXCEPTIONS:
        return False
    return accepts_answer(answer)


def has_code(w3: Web3, address: str, *, block: BlockIdentifier = "latest") -> bool:
    """Whether `address` holds contract code at `block` (a contract wallet rather than a key);
    raises `NodeUnavailable` when the node does not answer."""
    code = from_node(
        f"code of {address}",
        lambda: w3.eth.get_code(to_checksum_address(address), block_identifier=block),
    )
    return len(code) > 0

"""EIP-712 `Confirmation` typed data: the one builder the API, the CLI and the tests share.

The digest is computed directly (all fields are static types), which is what lets the API verify
thousands of confirmations a second; a test checks it against eth-account's generic encoder and
the contract's own `confirmationDigest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_keys import KeyAPI
from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address

from backend.chain.errors import InvalidSignature
from backend.errors import MalformedInputError

DOMAIN_NAME = "QualityEscrow"
DOMAIN_VERSION = "1"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
CONFIRMATION_FIELDS = [
    {"name": "escrowId", "type": "uint256"},
    {"name": "milestone", "type": "uint256"},
    {"name": "rating", "type": "uint8"},
    {"name": "commentHash", "type": "bytes32"},
    {"name": "deadline", "type": "uint256"},
]
CONFIRMATION_TYPE = (
    "Confirmation(uint256 escrowId,uint256 milestone,uint8 rating,bytes32 commentHash,"
    "uint256 deadline)"
)
CONFIRMATION_TYPEHASH = keccak(text=CONFIRMATION_TYPE)
_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_KEYS = KeyAPI()


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else value
    if len(raw) != 32:
        raise MalformedInputError("commentHash", f"expected 32 bytes, got {len(raw)}")
    return raw


@lru_cache(maxsize=64)
def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


@lru_cache(maxsize=64)
def domain_separator(chain_id: int, contract: str) -> bytes:
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(text=DOMAIN_NAME)
        + keccak(text=DOMAIN_VERSION)
        + _word(chain_id)
        + bytes(12)
        + bytes.fromhex(contract.removeprefix("0x"))
    )


@dataclass(frozen=True)
class Confirmation:
    """The signed message: which milestone, which rating, which review, until when."""

    escrow_id: int
    milestone: int
    rating: int
    comment_hash: bytes
    deadline: int

    def struct_hash(self) -> bytes:
        return keccak(
            CONFIRMATION_TYPEHASH
            + _word(self.escrow_id)
            + _word(self.milestone)
            + _word(self.rating)
            + _bytes32(self.comment_hash)
            + _word(self.deadline)
        )

    def digest(self, chain_id: int, contract: str) -> bytes:
        return keccak(b"\x19\x01" + domain_separator(chain_id, contract) + self.struct_hash())

    def typed_data(self, chain_id: int, contract: str) -> dict[str, Any]:
        """Ready for `eth_signTypedData_v4` (MetaMask) and ethers v6 `signTypedData`.

        uint256 values are decimal strings so that JavaScript never rounds them; the small ones
        (chainId, rating) stay numbers as wallets show them.
        """
        return {
            "types": {"EIP712Domain": DOMAIN_FIELDS, "Confirmation": CONFIRMATION_FIELDS},
            "primaryType": "Confirmation",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": chain_id,
                "verifyingContract": _checksum(contract),
            },
            "message": {
                "escrowId": str(self.escrow_id),
                "milestone": str(self.milestone),
                "rating": self.rating,
                "commentHash": "0x" + _bytes32(self.comment_hash).hex(),
                "deadline": str(self.deadline),
            },
        }


def parse_signature(signature: bytes | str) -> tuple[int, int, int]:
    """Splits a 65-byte r‖s‖v signature, refusing what the contract refuses for plain keys:
    another length, v outside {27, 28}, s in the upper half of the curve order (malleable copy)."""
    try:
        raw = (
            bytes.fromhex(signature.removeprefix("0x"))
            if isinstance(signature, str)
            else bytes(signature)
        )
    except ValueError as exc:
        raise InvalidSignature("not hex") from exc
    if len(raw) != 65:
        raise InvalidSignature(f"expected 65 bytes, got {len(raw)}")
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v not in (27, 28):
        raise InvalidSignature(f"v must be 27 or 28, got {v}")
    if not 0 < r < SECP256K1_N:
        raise InvalidSignature("r out of range")
    if not 0 < s <= SECP256K1_HALF_N:
        raise InvalidSignature("high s (malleable signature)")
    return v, r, s


def recover_signer(digest: bytes, signature: bytes | str) -> ChecksumAddress:
    """The address whose key signed `digest`; canonical signatures only (see `parse_signature`)."""
    v, r, s = parse_signature(signature)
    try:
        sig = _KEYS.Signature(vrs=(v - 27, r, s))
        public_key = sig.recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # eth-keys raises BadSignature and others for unrecoverable points
        raise InvalidSignature("no public key recovers from it") from exc
    return to_checksum_address(public_key.to_canonical_address())

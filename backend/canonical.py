"""Hashing of JSON documents bound on-chain (terms, evidence, reviews): keccak256 of the
RFC 8785 (JCS) canonical form (docs/interface.md section 3)."""

from __future__ import annotations

from typing import Any

import rfc8785
from eth_utils import keccak


def canonical_json(document: Any) -> bytes:
    return bytes(rfc8785.dumps(document))


def terms_hash(document: Any) -> bytes:
    """keccak256 of the canonical JSON: the value stored as `termsHash` / `evidenceHash`."""
    return keccak(canonical_json(document))

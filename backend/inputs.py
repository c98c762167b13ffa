"""Parsing of values that come in from outside (API bodies, paths, query strings): addresses in
either case, 32-byte hashes, uint values given as decimal strings. Each parser names the field it
refused, so the API can answer with a body that says which value was wrong."""

from __future__ import annotations

import re

from eth_typing import ChecksumAddress
from eth_utils import (
    is_checksum_address,
    is_checksum_formatted_address,
    is_hex_address,
    to_checksum_address,
)

from backend.errors import MalformedInputError, OutOfRangeError

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_DECIMAL = re.compile(r"^-?[0-9]{1,100}$")


def parse_address(field: str, value: object) -> ChecksumAddress:
    """An address in lower, upper or EIP-55 case (a mixed case must be a valid checksum)."""
    if not isinstance(value, str) or not value.startswith("0x") or not is_hex_address(value):
        raise MalformedInputError(field, f"{value!r} is not a 20-byte 0x address")
    if is_checksum_formatted_address(value) and not is_checksum_address(value):
        raise MalformedInputError(field, f"{value!r} has a mixed case that is not its checksum")
    return to_checksum_address(value)


def parse_hash(field: str, value: object) -> str:
    """A 32-byte 0x hex value, returned in lower case."""
    if not isinstance(value, str) or not _HEX32.match(value):
        raise MalformedInputError(field, f"{value!r} is not a 32-byte 0x hex value")
    return value.lower()


def parse_uint(field: str, value: object, *, bits: int = 256) -> int:
    """A non-negative integer given as a decimal string (or a JSON integer), below 2**bits."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedInputError(field, f"{value!r} is not a decimal integer string")
    if isinstance(value, str) and not _DECIMAL.match(value):
        raise MalformedInputError(field, f"{value!r} is not a decimal integer string")
    number = int(value)
    if not 0 <= number < 2**bits:
        raise OutOfRangeError(field, value, f"an integer from 0 to 2^{bits} - 1")
    return number

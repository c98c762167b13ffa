"""Token metadata: decimals and symbol read once from the ERC-20, robust to tokens that do not
say (no code, no `symbol()`, a `bytes32` symbol)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode

from backend.chain.tokens import (
    ETH,
    TokenInfo,
    TokenMetadata,
    decode_decimals,
    decode_symbol,
    format_units,
)
from backend.chain.types import ZERO_ADDRESS
from tests.support import EscrowEnv


def test_format_units_is_exact_with_the_tokens_decimals() -> None:
    assert format_units(1_500_000, 6) == "1.500000"
    assert format_units(1, 18) == "0.000000000000000001"
    assert format_units(10**30 + 7, 18) == "1000000000000.000000000000000007"
    assert format_units(42, 0) == "42"
    assert TokenInfo(ZERO_ADDRESS, None, None).format_amount(42) == "42"


def test_symbols_decode_from_strings_and_bytes32_and_refuse_garbage() -> None:
    assert decode_symbol(abi_encode(["string"], ["TUSD"])) == "TUSD"
    assert decode_symbol(b"MKR".ljust(32, b"\x00")) == "MKR"
    assert decode_symbol(b"") is None
    assert decode_symbol(b"\x00" * 32) is None
    assert decode_symbol(b"\x01" * 70) is None
    assert decode_symbol(abi_encode(["string"], ["X" * 100])) == "X" * 32
    assert decode_decimals(abi_encode(["uint8"], [6])) == 6
    assert decode_decimals(abi_encode(["uint256"], [2**200])) is None
    assert decode_decimals(b"") is None


def counting_calls(env: EscrowEnv, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    original = env.w3.eth.call

    def counting_call(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(env.w3.eth, "call", counting_call)
    return calls


def test_metadata_reads_a_token_once_and_caches_it(
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting_calls(env, monkeypatch)
    tokens = TokenMetadata(env.w3)
    assert tokens.get(env.token.lower()) == TokenInfo(env.token, "TUSD", 6)
    assert tokens.get(env.token) == TokenInfo(env.token, "TUSD", 6)
    assert tokens.get(env.no_return_token) == TokenInfo(env.no_return_token, "NRUSD", 6)
    assert tokens.get(ZERO_ADDRESS) == ETH
    assert len(calls) == 4  # symbol and decimals of the two tokens, once each


def test_metadata_of_addresses_that_are_no_erc20_is_none_and_cached(
    any_env: EscrowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = any_env
    calls = counting_calls(env, monkeypatch)
    tokens = TokenMetadata(env.w3)
    # the escrow contract has neither function (it reverts); an EOA has no code at all
    for _ in range(2):
        assert tokens.get(env.escrow.address) == TokenInfo(env.escrow.address, None, None)
        assert tokens.get(env.client) == TokenInfo(env.client, None, None)
    assert len(calls) == 4  # a definite "no answer" is cached like an answer
    assert tokens.get(env.client).label == env.client


def test_metadata_is_not_cached_when_the_node_does_not_answer(
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = TokenMetadata(env.w3)

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("node down")

    monkeypatch.setattr(env.w3.eth, "call", down)
    assert tokens.get(env.token) == TokenInfo(env.token, None, None)
    monkeypatch.undo()
    assert tokens.get(env.token) == TokenInfo(env.token, "TUSD", 6)

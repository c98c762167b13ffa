"""The one test for "the node is unavailable", the one error for it, and the exception families
(every family of the project's root is also the builtin it refines)."""

from __future__ import annotations

import pytest
import requests
from web3.exceptions import (
    BlockNotFound,
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    Web3RPCError,
)

from backend.chain.errors import (
    BlockMissing,
    ChainError,
    EventNotEmitted,
    HardhatNodeError,
    NodeRefused,
    NodeUnavailable,
    UnknownEvent,
    from_node,
    is_transport_failure,
)
from backend.errors import (
    MalformedInputError,
    NotFoundError,
    OutOfRangeError,
    QualityEscrowError,
    TooLargeError,
    UnavailableError,
)
from backend.index.indexer import ChainMovedError
from backend.index.ledger import LedgerError

TRANSPORT: list[BaseException] = [
    requests.ConnectionError("connection refused"),
    requests.Timeout("read timed out"),
    requests.HTTPError("502 Bad Gateway"),
    ConnectionRefusedError(111, "refused"),
    ConnectionError("reset"),
    TimeoutError("timed out"),
    OSError("network unreachable"),
    ProviderConnectionError("cannot connect"),
    RequestTimedOut("timed out"),
    NodeUnavailable("latest block", "down"),
]
ANSWERS: list[BaseException] = [
    ContractLogicError("execution reverted"),
    Web3RPCError("header not found"),
    ValueError("bad value"),
    KeyError("timestamp"),
    MalformedInputError("x", "y"),
    UnavailableError("database", "down"),  # unavailable, but not the node
    NodeRefused("eth_getLogs: more than 10000 results"),  # a JSON-RPC error: an answer
]


@pytest.mark.parametrize("exc", TRANSPORT, ids=lambda e: type(e).__name__)
def test_a_failure_to_reach_the_node_is_a_transport_failure(exc: BaseException) -> None:
    assert is_transport_failure(exc)


@pytest.mark.parametrize("exc", ANSWERS, ids=lambda e: type(e).__name__)
def test_an_answer_of_the_node_or_an_error_of_ours_is_not_a_transport_failure(
    exc: BaseException,
) -> None:
    assert not is_transport_failure(exc)


def test_from_node_turns_a_transport_failure_into_node_unavailable_naming_the_read() -> None:
    def read() -> int:
        raise requests.ConnectionError("connection refused")

    with pytest.raises(NodeUnavailable) as caught:
        from_node("credits", read)
    assert str(caught.value) == "node unavailable: credits: connection refused"
    assert caught.value.code == "unavailable"
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_from_node_passes_answers_and_reverts_through_unchanged() -> None:
    revert = ContractLogicError("execution reverted")

    def reverts() -> int:
        raise revert

    with pytest.raises(ContractLogicError) as caught:
        from_node("escrow", reverts)
    assert caught.value is revert
    assert from_node("escrow", lambda: 7) == 7


def test_node_unavailable_is_a_503_family_with_a_retry_hint_and_a_chain_error() -> None:
    exc = NodeUnavailable("latest block", "down")
    assert isinstance(exc, UnavailableError)
    assert isinstance(exc, ChainError)
    assert exc.retry_after > 0


@pytest.mark.parametrize(
    ("exc", "builtin"),
    [
        (MalformedInputError("deadline", "not a number"), ValueError),
        (OutOfRangeError("deadline", -1, "0..2^256-1"), ValueError),
        (TooLargeError("comment", 3, 2), ValueError),
        (NotFoundError("escrow", 999), LookupError),
        (UnknownEvent("unknown event topic 0x00"), ValueError),
        (EventNotEmitted("EscrowCreated", 0), LookupError),
        (HardhatNodeError("did not start"), RuntimeError),
        (LedgerError("no events"), ValueError),
        (ChainMovedError("block 3 changed"), RuntimeError),
        (NodeRefused("eth_getLogs: more than 10000 results"), Web3RPCError),
        (BlockMissing("blocks [7] not found"), BlockNotFound),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__,
)
def test_every_family_derives_from_the_root_and_the_builtin_it_refines(
    exc: QualityEscrowError, builtin: type[BaseException]
) -> None:
    assert isinstance(exc, QualityEscrowError)
    assert isinstance(exc, builtin)
    assert exc.message == str(exc)

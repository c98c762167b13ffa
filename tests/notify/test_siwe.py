"""Sign-In with Ethereum (EIP-4361): the message format, parsed strictly by the ABNF, and the
checks a relying party makes (domain, chain, times, signer)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_defunct

from backend.chain.errors import NodeUnavailable
from backend.errors import MalformedInputError
from backend.notify.errors import SignInExpiredError, SignInRefusedError
from backend.notify.siwe import (
    SiweMessage,
    build_message,
    check_message,
    format_time,
    parse_message,
    parse_time,
    recover_address,
    signature_bytes,
    verify_signature,
)
from tests.chain.support import mock_wallet
from tests.support import EscrowEnv

# the example message of EIP-4361 itself
EIP_EXAMPLE = (
    "service.org wants you to sign in with your Ethereum account:\n"
    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
    "\n"
    "I accept the ServiceOrg Terms of Service: https://service.org/tos\n"
    "\n"
    "URI: https://service.org/login\n"
    "Version: 1\n"
    "Chain ID: 1\n"
    "Nonce: 32891756\n"
    "Issued At: 2021-09-30T16:25:24Z\n"
    "Resources:\n"
    "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n"
    "- https://example.com/my-web2-claim.json"
)
# every optional term, a scheme, no statement (two blank lines after the address)
FULL = (
    "https://example.com:3388 wants you to sign in with your Ethereum account:\n"
    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
    "\n"
    "\n"
    "URI: https://example.com:3388/login?next=%2Fhome#top\n"
    "Version: 1\n"
    "Chain ID: 31337\n"
    "Nonce: a1B2c3D4e5F6\n"
    "Issued At: 2021-09-30T16:25:24.123Z\n"
    "Expiration Time: 2021-10-01T18:25:24+02:00\n"
    "Not Before: 2021-09-30T17:00:00Z\n"
    "Request ID: req-1:a@b\n"
    "Resources:\n"
    "- urn:escrow:1"
)
ISSUED = 1_633_019_124  # 2021-09-30T16:25:24Z
KEY = Account.from_key("0x" + "42" * 32)
OTHER = Account.from_key("0x" + "43" * 32)


def _sign(text: str, account: object = KEY) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()  # type: ignore[attr-defined]


def _message(**overrides: object) -> SiweMessage:
    values: dict[str, object] = {
        "domain": "escrow.example",
        "address": KEY.address,
        "uri": "https://escrow.example",
        "chain_id": 31337,
        "nonce": "0123456789abcdef",
        "issued_at": ISSUED,
        "expires_at": ISSUED + 600,
        "statement": "Manage my Quality Escrow webhooks.",
    }
    values.update(overrides)
    return build_message(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------ parsing


def test_the_eip_example_message_parses_into_its_terms_and_back_to_the_same_text() -> None:
    m = parse_message(EIP_EXAMPLE)
    assert m == SiweMessage(
        domain="service.org",
        address="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",  # type: ignore[arg-type]
        uri="https://service.org/login",
        chain_id=1,
        nonce="32891756",
        issued_at="2021-09-30T16:25:24Z",
        statement="I accept the ServiceOrg Terms of Service: https://service.org/tos",
        resources=(
            "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
            "https://example.com/my-web2-claim.json",
        ),
    )
    assert m.to_text() == EIP_EXAMPLE


def test_a_message_with_a_scheme_every_optional_term_and_no_statement_parses() -> None:
    m = parse_message(FULL)
    assert (m.scheme, m.domain, m.statement) == ("https", "example.com:3388", None)
    assert (m.chain_id, m.nonce, m.request_id) == (31337, "a1B2c3D4e5F6", "req-1:a@b")
    assert m.expiration_time == "2021-10-01T18:25:24+02:00"
    assert m.not_before == "2021-09-30T17:00:00Z"
    assert m.resources == ("urn:escrow:1",)
    assert m.to_text() == FULL


@pytest.mark.parametrize(
    "domain", ["127.0.0.1", "test@127.0.0.1:8080", "[::1]:8000", "localhost:5173"]
)
def test_domains_are_rfc3986_authorities(domain: str) -> None:
    text = EIP_EXAMPLE.replace("service.org wants", f"{domain} wants")
    assert parse_message(text).domain == domain


def test_build_message_writes_what_parse_message_reads() -> None:
    m = _message(resources=("https://escrow.example/api/webhooks",))
    assert m.issued_at == "2021-09-30T16:25:24Z"
    assert m.expiration_time == "2021-09-30T16:35:24Z"
    assert parse_message(m.to_text()) == m
    assert m.to_text().splitlines()[:5] == [
        "escrow.example wants you to sign in with your Ethereum account:",
        KEY.address,
        "",
        "Manage my Quality Escrow webhooks.",
        "",
    ]


def _replace(old: str, new: str) -> str:
    assert old in EIP_EXAMPLE
    return EIP_EXAMPLE.replace(old, new)


MALFORMED = {
    "missing URI": _replace("URI: https://service.org/login\n", ""),
    "missing chain id": _replace("Chain ID: 1\n", ""),
    "extra line break": _replace("Cc2\n\n", "Cc2\n\n\n"),
    "no blank line after the statement": _replace("tos\n\n", "tos\n"),
    "non-ISO date-time": _replace("2021-09-30T16:25:24Z", "Wed Oct 05 2011 16:48:00 GMT+0200"),
    "impossible date": _replace("2021-09-30T16:25:24Z", "2021-02-30T16:25:24Z"),
    "date-time without an offset": _replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24"),
    "fields out of order": _replace("Version: 1\nChain ID: 1\n", "Chain ID: 1\nVersion: 1\n"),
    "version 2": _replace("Version: 1", "Version: 2"),
    "address not EIP-55": _replace(
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    ),
    "short address": _replace("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xC02aaA39"),
    "nonce of 7 characters": _replace("Nonce: 32891756", "Nonce: 3289175"),
    "nonce not alphanumeric": _replace("Nonce: 32891756", "Nonce: 3289-1756"),
    "statement with a quote": _replace("I accept", 'I "accept"'),
    "statement not ASCII": _replace("I accept", "J'accepte été"),
    "CRLF line ends": EIP_EXAMPLE.replace("\n", "\r\n"),
    "trailing newline": EIP_EXAMPLE + "\n",
    "unknown trailing line": EIP_EXAMPLE + "\nColor: blue",
    "URI without a scheme": _replace("URI: https://service.org/login", "URI: service.org/login"),
    "resource without a dash": _replace("- https://example.com", "https://example.com"),
    "wrong header": _replace("wants you to sign in", "wants you to log in"),
    "empty domain": _replace("service.org wants", " wants"),
    "chain id not a number": _replace("Chain ID: 1", "Chain ID: one"),
    "empty": "",
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_messages_outside_the_abnf_are_refused_as_malformed(text: str) -> None:
    with pytest.raises(MalformedInputError) as ei:
        parse_message(text)
    assert ei.value.what == "sign-in message"


def test_times_are_rfc3339_with_fractions_and_offsets() -> None:
    assert parse_time("2021-09-30T16:25:24Z") == ISSUED
    assert parse_time("2021-09-30T18:25:24+02:00") == ISSUED
    assert parse_time("2021-09-30T16:25:24.250Z") == ISSUED + 0.25
    assert format_time(ISSUED) == "2021-09-30T16:25:24Z"


# ------------------------------------------------------------------ checks


def test_a_current_message_for_this_domain_and_chain_passes() -> None:
    check_message(_message(), domain="escrow.example", chain_id=31337, now=ISSUED + 599)
    check_message(_message(), domain="ESCROW.example", chain_id=31337, now=ISSUED - 60)


@pytest.mark.parametrize(
    ("message", "domain", "chain_id", "now", "error", "reason"),
    [
        (_message(), "evil.example", 31337, ISSUED, SignInRefusedError,
         "the message is for domain 'escrow.example', this service is 'evil.example'"),
        (_message(), "escrow.example", 1, ISSUED, SignInRefusedError,
         "the message is for chain 31337, this service is on chain 1"),
        (_message(), "escrow.example", 31337, ISSUED + 600, SignInExpiredError,
         "the message expired at 2021-09-30T16:35:24Z"),
        (_message(), "escrow.example", 31337, ISSUED - 61, SignInRefusedError,
         "issued in the future (2021-09-30T16:25:24Z)"),
        (parse_message(FULL), "example.com:3388", 31337, ISSUED + 60, SignInExpiredError,
         "the message is not valid before 2021-09-30T17:00:00Z"),
    ],
    ids=["domain", "chain", "expired", "issued-in-future", "not-before"],
)
def test_messages_for_elsewhere_or_another_time_are_refused(
    message: SiweMessage, domain: str, chain_id: int, now: int,
    error: type[SignInRefusedError], reason: str,
) -> None:
    with pytest.raises(error) as ei:
        check_message(message, domain=domain, chain_id=chain_id, now=now)
    assert type(ei.value) is error
    assert ei.value.reason == reason


# ------------------------------------------------------------------ signatures


def test_the_signer_of_a_personal_sign_signature_is_the_messages_address() -> None:
    m = _message()
    assert verify_signature(m, m.to_text(), _sign(m.to_text())) == KEY.address


def test_a_signature_by_another_key_is_refused_naming_the_signer() -> None:
    m = _message()
    with pytest.raises(SignInRefusedError) as ei:
        verify_signature(m, m.to_text(), _sign(m.to_text(), OTHER))
    assert (ei.value.signer, ei.value.expected) == (OTHER.address, KEY.address)
    assert type(ei.value) is SignInRefusedError


def test_a_signature_over_other_text_is_refused() -> None:
    m = _message()
    with pytest.raises(SignInRefusedError):
        verify_signature(m, m.to_text(), _sign(m.to_text() + " "))


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("0xzz", "not hex"),
        ("0x" + "11" * 64, "not a recoverable 65-byte signature (64)"),
        ("0x" + "00" * 65, "not a recoverable 65-byte signature (65)"),
    ],
    ids=["not-hex", "64-bytes", "zeros"],
)
def test_malformed_signatures_are_refused_as_malformed(signature: str, reason: str) -> None:
    m = _message()
    with pytest.raises(MalformedInputError) as ei:
        verify_signature(m, m.to_text(), signature)
    assert (ei.value.what, ei.value.reason) == ("signature", reason)


def test_a_signature_made_by_a_real_wallet_recovers_to_its_account() -> None:
    """A sign-in message and signature published as a test vector of the reference
    implementation (spruceid/siwe-py); from before EIP-55 addresses were required."""
    text = (
        "login.xyz wants you to sign in with your Ethereum account:\n"
        "0xb8a316ea8a9e48ebd25b73c71bc0f22f5c337d1f\n\n"
        "Sign-In With Ethereum Example Statement\n\n"
        "URI: https://login.xyz\nVersion: 1\nChain ID: 1\nNonce: uolthxpe\n"
        "Issued At: 2021-11-25T02:36:37.013Z"
    )
    signature = signature_bytes(
        "0x6eabbdf0861ca83b6cf98381dcbc3db16dffce9a0449dc8b359718d13b0093c3"
        "285b6dea7e84ad1aa4871b63899319a988ddf39df3080bcdc60f68dd0942e8221c"
    )
    assert recover_address(text, signature) == "0xB8a316ea8A9e48ebd25B73c71Bc0f22F5C337D1f"
    with pytest.raises(MalformedInputError, match="not EIP-55 checksummed"):
        parse_message(text)


# ------------------------------------------------------------------ contract wallets (EIP-1271)


def test_a_contract_wallet_that_accepts_signs_in_as_itself(env: EscrowEnv) -> None:
    wallet = mock_wallet(env, 0)
    m = _message(address=wallet)
    assert verify_signature(m, m.to_text(), "0x" + "ab" * 80, w3=env.w3) == wallet


@pytest.mark.parametrize("mode", [1, 2], ids=["other-value", "reverts"])
def test_a_contract_wallet_that_does_not_accept_is_refused(env: EscrowEnv, mode: int) -> None:
    wallet = mock_wallet(env, mode)
    m = _message(address=wallet)
    with pytest.raises(SignInRefusedError):  # even the owner's key does not speak for it
        verify_signature(m, m.to_text(), _sign(m.to_text()), w3=env.w3)


def test_a_contract_wallet_whose_node_does_not_answer_is_unavailable_not_refused(
    env: EscrowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet = mock_wallet(env, 0)
    m = _message(address=wallet)

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(env.w3.eth, "call", down)
    with pytest.raises(NodeUnavailable, match="isValidSignature"):
        verify_signature(m, m.to_text(), "0x" + "ab" * 80, w3=env.w3)

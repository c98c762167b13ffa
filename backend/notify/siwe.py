"""Sign-In with Ethereum (EIP-4361): build, parse and verify the signed plain-text message.

Written here rather than taken from the `siwe` package, which pins web3 < 8 and eth-account <
0.14. `parse_message` follows the ABNF of the EIP line by line (optional `scheme://`, an RFC 3986
authority, an EIP-55 address, an optional statement, the fixed fields in their order, then the
optional ones); `recover_address` is EIP-191 `personal_sign` recovery through eth-account; and
`check_message` compares the parsed terms with what this service expects. Contract wallets are
asked through the project's one EIP-1271 check, `backend.chain.erc1271.is_valid_signature`
(a node that does not answer is a 503, never a refusal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_typing import ChecksumAddress
from eth_utils import is_checksum_address, keccak, to_checksum_address
from web3 import Web3

from backend.chain import erc1271
from backend.errors import MalformedInputError
from backend.notify.errors import SignInExpiredError, SignInRefusedError

HEADER = " wants you to sign in with your Ethereum account:"
#: seconds an `Issued At` may lie in the future (clock skew between wallet and server)
CLOCK_SKEW = 60
# RFC 3986 pieces
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_HOST = rf"(?:\[[0-9A-Fa-f:.]+\]|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})+)"
_AUTHORITY = rf"(?:{_USERINFO}@)?{_HOST}(?::[0-9]*)?"
_URI_CHARS = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@]|{_PCT})"
_URI = re.compile(rf"{_SCHEME}:{_URI_CHARS}*")
_PCHAR = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})*")
_FIRST_LINE = re.compile(rf"(?:(?P<scheme>{_SCHEME})://)?(?P<domain>{_AUTHORITY}){re.escape(HEADER)}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# statement = *( reserved / unreserved / " " )
_STATEMENT = re.compile(rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*")
_NONCE = re.compile(r"[A-Za-z0-9]{8,}")
_CHAIN_ID = re.compile(r"[0-9]+")
_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)


def _malformed(reason: str) -> MalformedInputError:
    return MalformedInputError("sign-in message", reason)


def parse_time(value: str) -> float:
    """Unix seconds of an RFC 3339 `date-time` (fractions kept)."""
    m = _DATE_TIME.fullmatch(value)
    if m is None:
        raise _malformed(f"{value!r} is not an RFC 3339 date-time")
    offset = "+00:00" if m["offset"] in ("Z", "z") else m["offset"]
    try:
        moment = datetime.fromisoformat(f"{m['date']}T{m['time']}{offset}")
    except ValueError as exc:
        raise _malformed(f"{value!r} is not a valid date-time: {exc}") from exc
    frac = m["frac"]
    return moment.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


def format_time(unix: int) -> str:
    """RFC 3339 in UTC with a `Z`, as wallets and viem write it (no fractions)."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SiweMessage:
    """The terms of one EIP-4361 message; times keep their original text so that
    `parse_message(text).to_text() == text` for every message this module accepts."""

    domain: str
    address: ChecksumAddress
    uri: str
    chain_id: int
    nonce: str
    issued_at: str
    version: str = "1"
    statement: str | None = None
    scheme: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def to_text(self) -> str:
        prefix = f"{self.scheme}://" if self.scheme else ""
        lines = [f"{prefix}{self.domain}{HEADER}", self.address, ""]
        if self.statement is not None:
            lines += [self.statement, ""]
        else:
            lines += [""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {self.issued_at}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {self.expiration_time}")
        if self.not_before is not None:
            lines.append(f"Not Before: {self.not_before}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)


def build_message(
    *,
    domain: str,
    address: str,
    uri: str,
    chain_id: int,
    nonce: str,
    issued_at: int,
    expires_at: int | None = None,
    statement: str | None = None,
    resources: tuple[str, ...] = (),
) -> SiweMessage:
    """A message with the given terms, checked against the ABNF by parsing its own text."""
    message = SiweMessage(
        domain=domain,
        address=to_checksum_address(address),
        uri=uri,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=format_time(issued_at),
        statement=statement,
        expiration_time=None if expires_at is None else format_time(expires_at),
        resources=resources,
    )
    return parse_message(message.to_text())


class _Lines:
    """The message's lines, consumed front to back."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.pos = 0

    def peek(self) -> str | None:
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def take(self, what: str) -> str:
        line = self.peek()
        if line is None:
            raise _malformed(f"ends before {what}")
        self.pos += 1
        return line

    def field(self, tag: str, pattern: re.Pattern[str] | None = None) -> str:
        line = self.take(f"'{tag}'")
        if not line.startswith(tag):
            raise _malformed(f"line {self.pos} should start with '{tag}', got {line[:40]!r}")
        value = line[len(tag) :]
        if pattern is not None and pattern.fullmatch(value) is None:
            raise _malformed(f"'{tag.rstrip(': ')}' value {value[:80]!r} is not valid")
        return value

    def optional(self, tag: str, pattern: re.Pattern[str] | None = None) -> str | None:
        line = self.peek()
        return self.field(tag, pattern) if line is not None and line.startswith(tag) else None


def parse_message(text: str) -> SiweMessage:
    """Parses `text` strictly by the EIP-4361 ABNF (LF line ends, no trailing newline)."""
    if "\r" in text:
        raise _malformed("lines must end with LF only")
    lines = _Lines(text)
    first = _FIRST_LINE.fullmatch(lines.take("the header"))
    if first is None:
        raise _malformed(f"the first line must be '<domain>{HEADER}'")
    address = lines.take("the address")
    if _ADDRESS.fullmatch(address) is None:
        raise _malformed(f"{address[:50]!r} is not an address")
    if not is_checksum_address(address):
        raise _malformed(f"{address} is not EIP-55 checksummed")
    if lines.take("the blank line after the address") != "":
        raise _malformed("a blank line must follow the address")
    statement: str | None = lines.take("the statement")
    if statement == "":
        statement = None
    else:
        if _STATEMENT.fullmatch(statement or "") is None:
            raise _malformed("the statement holds characters outside RFC 3986 reserved/unreserved")
        if lines.take("the blank line after the statement") != "":
            raise _malformed("a blank line must follow the statement")
    uri = lines.field("URI: ", _URI)
    version = lines.field("Version: ")
    if version != "1":
        raise _malformed(f"version must be 1, got {version[:20]!r}")
    chain_id = int(lines.field("Chain ID: ", _CHAIN_ID))
    nonce = lines.field("Nonce: ", _NONCE)
    issued_at = lines.field("Issued At: ")
    parse_time(issued_at)
    expiration = lines.optional("Expiration Time: ")
    not_before = lines.optional("Not Before: ")
    for value in (expiration, not_before):
        if value is not None:
            parse_time(value)
    request_id = lines.optional("Request ID: ", _PCHAR)
    resources: list[str] = []
    if lines.peek() == "Resources:":
        lines.take("Resources:")
        while lines.peek() is not None:
            resources.append(lines.field("- ", _URI))
    if lines.peek() is not None:
        raise _malformed(f"unexpected line {lines.pos + 1}: {lines.peek()!r:.60}")
    return SiweMessage(
        domain=first["domain"],
        address=to_checksum_address(address),
        uri=uri,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        version=version,
        statement=statement,
        scheme=first["scheme"],
        expiration_time=expiration,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
    )


def check_message(message: SiweMessage, *, domain: str, chain_id: int, now: float) -> None:
    """Refuses a message meant for another site or chain, or not valid at `now`."""
    if message.domain.lower() != domain.lower():
        raise SignInRefusedError(
            f"the message is for domain {message.domain!r}, this service is {domain!r}"
        )
    if message.chain_id != chain_id:
        raise SignInRefusedError(
            f"the message is for chain {message.chain_id}, this service is on chain {chain_id}"
        )
    if parse_time(message.issued_at) > now + CLOCK_SKEW:
        raise SignInRefusedError(f"issued in the future ({message.issued_at})")
    if message.expiration_time is not None and parse_time(message.expiration_time) <= now:
        raise SignInExpiredError(f"the message expired at {message.expiration_time}")
    if message.not_before is not None and parse_time(message.not_before) > now:
        raise SignInExpiredError(f"the message is not valid before {message.not_before}")


def message_hash(text: str) -> bytes:
    """The EIP-191 (`personal_sign`) digest of the message."""
    body = text.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(body)).encode() + body)


def signature_bytes(signature: str) -> bytes:
    try:
        return bytes.fromhex(signature.removeprefix("0x"))
    except ValueError as exc:
        raise MalformedInputError("signature", "not hex") from exc


def recover_address(text: str, signature: bytes) -> ChecksumAddress | None:
    """The EOA whose key signed `text` with `personal_sign`, or None if the bytes are no
    recoverable 65-byte signature."""
    if len(signature) != 65:
        return None
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception:  # bad v, r or s: eth-keys raises several kinds
        return None
    return to_checksum_address(signer)


def verify_signature(
    message: SiweMessage, text: str, signature: str, *, w3: Web3 | None = None
) -> ChecksumAddress:
    """The message's address if `signature` is its signature of `text`: by the address's key
    (EIP-191), or, when `w3` is given, accepted by the contract wallet at the address over the
    EIP-191 digest (EIP-1271). Raises `MalformedInputError` (400) for bytes that are no
    signature, `SignInRefusedError` (401) for another signer, `NodeUnavailable` (503) when the
    node does not answer the wallet question."""
    raw = signature_bytes(signature)
    signer = recover_address(text, raw)
    if signer == message.address:
        return message.address
    if w3 is not None and erc1271.is_valid_signature(
        w3, message.address, message_hash(text), raw
    ):
        return message.address
    if signer is None:
        raise MalformedInputError("signature", f"not a recoverable 65-byte signature ({len(raw)})")
    raise SignInRefusedError(
        f"signed by {signer}, not by {message.address}", signer=signer, expected=message.address
    )

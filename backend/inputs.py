"""The one parser for each kind of value that comes in from outside (API bodies, paths, query
strings, the command line, CSV files): uint256 values, amounts, escrow ids and milestone indexes,
addresses, 32-byte hashes, KPI values, times and http(s) URLs (webhook receivers; the network
policy that judges their hosts is `backend.notify.egress`). Every route, the CLI and the
measurement import use these, directly or through the pydantic `Annotated` types at the end of
this module.

Each parser takes the name of the field it reads and raises, naming that field:

- `MalformedValueError` (400 `malformed`, a `ValueError`): the value has the wrong type or form
  (`"1.5"` for a uint256, `True` for a number, `"0x12"` for an address);
- `OutOfRangeError` (422 `out_of_range`, a `ValueError`): the value parses but lies outside the
  kind's range (a negative uint, a JSON number beyond 2^53 for an amount, a KPI value beyond
  `MAX_KPI_MAGNITUDE`);
- `NotFoundError` (404 `not_found`): an escrow id or milestone index no escrow can have (an
  integer outside the range; an id that is no integer at all is an `OutOfRangeError` naming the
  field).

Inside a pydantic validator the `ValueError`s become validation errors that keep the parser's
error as their cause; `backend/api/errors.py` answers with that error, renamed after the field's
location in the request (`milestone_amounts[1]`), via `with_field`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from eth_typing import ChecksumAddress
from eth_utils import (
    is_checksum_address,
    is_checksum_formatted_address,
    is_hex_address,
    to_checksum_address,
)
from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema

from backend.chain.types import MAX_MILESTONES
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, QualityEscrowError

T = TypeVar("T")

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
#: a sign is allowed so that "-3" is refused as out of range rather than as unreadable
_DECIMAL = re.compile(r"^-?[0-9]{1,1000}$")

UINT256_MAX = 2**256 - 1
#: `Number.MAX_SAFE_INTEGER`: the largest integer every JSON parser (JavaScript's included) keeps
#: exactly; a JSON number above it may already have been rounded by the client
MAX_SAFE_JSON_INTEGER = 2**53 - 1
#: escrow ids count up from 1 (`escrowCount`); the database stores them as signed 64-bit integers
MAX_ESCROW_ID = 2**63 - 1
ESCROW_IDS = range(1, MAX_ESCROW_ID + 1)
#: ids of the service's own rows (webhook subscriptions, confirmation requests): from 1, signed
#: 64-bit columns
ROW_IDS = range(1, 2**63)
#: indexes counted from 0 in a signed 64-bit column or a uint256 the chain counts (breach ids)
INDEXES = range(2**63)
#: milestone indexes of any escrow: the contract allows at most `MAX_MILESTONES` milestones
MILESTONE_INDEXES = range(MAX_MILESTONES)
#: the largest magnitude of a KPI value. Every aggregate stays finite: min, max and the
#: percentiles are samples, `ratio` lies in [0, 1], `count` is a count, and a sum (so a mean) of
#: n values is at most n * 1e100, finite (below about 1.8e308, the largest float) for any
#: n < 1e208 samples, far more than a database holds
MAX_KPI_MAGNITUDE = 1e100
#: times are unix seconds stored in signed 64-bit columns
MAX_UNIX_TIME = 2**63 - 1

EXPECTED_UINT = "a decimal integer string or a JSON integer"
EXPECTED_NUMBER = "a number"
EXPECTED_FINITE = "a finite number"
EXPECTED_TIME = "unix seconds or ISO 8601 with a zone"


def describe(value: object, limit: int = 40) -> str:
    """`repr(value)`, shortened for messages: a 400-digit number reads `1234...(400 digits)`."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        digits = len(str(abs(value)))
        return f"{str(value)[:12]}...({digits} digits)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MalformedValueError(MalformedInputError):
    """400 (`malformed`): a value of the wrong type or form for its kind; `value` is what came
    in, `expected` says what the kind accepts."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.value = value
        self.expected = expected
        super().__init__(field, f"{describe(value)} is not {expected}")


def out_of_range(field: str, value: object, expected: str) -> OutOfRangeError:
    """An `OutOfRangeError` whose message shows `value` shortened (`describe`)."""
    error = OutOfRangeError(field, value, expected)
    error.message = f"{field}={describe(value)} is out of range: expected {expected}"
    error.args = (error.message,)
    return error


def with_field(exc: QualityEscrowError, field: str) -> QualityEscrowError:
    """The error a parser raised, renamed after `field` (the location of the value in a request,
    which the parser inside a pydantic validator did not know); other errors unchanged."""
    if isinstance(exc, MalformedValueError):
        return MalformedValueError(field, exc.value, exc.expected)
    if type(exc) is OutOfRangeError:
        return out_of_range(field, exc.value, exc.expected)
    if type(exc) is MalformedInputError:
        return MalformedInputError(field, exc.reason)
    return exc


# ------------------------------------------------------------------ integers


def parse_uint(
    field: str, value: object, *, bits: int = 256, json_limit: int | None = None
) -> int:
    """A non-negative integer below 2**bits, given as a decimal string or a JSON integer.

    `json_limit`: the largest value accepted as a JSON integer (`MAX_SAFE_JSON_INTEGER` for
    amounts; larger ones must come as strings). A JSON float (`1e18`, `5.0`) is refused: it may
    have lost digits already. Raises `MalformedValueError` (bool, float, other text) and
    `OutOfRangeError` (negative, too large)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedValueError(field, value, EXPECTED_UINT)
    if isinstance(value, str) and not _DECIMAL.match(value):
        raise MalformedValueError(field, value, EXPECTED_UINT)
    number = int(value)
    if not 0 <= number < 2**bits:
        raise out_of_range(field, value, f"an integer from 0 to 2^{bits} - 1")
    if json_limit is not None and isinstance(value, int) and number > json_limit:
        raise out_of_range(
            field,
            value,
            f"a JSON integer of at most {json_limit}: give larger values as decimal strings, "
            "since a JavaScript client has already rounded this one",
        )
    return number


def parse_amount(field: str, value: object) -> int:
    """A token amount in base units (uint256): a decimal string of any size, or a JSON integer
    up to 2^53 - 1 (`MAX_SAFE_JSON_INTEGER`); see `parse_uint`."""
    return parse_uint(field, value, json_limit=MAX_SAFE_JSON_INTEGER)


def _id_in(field: str, value: object, ids: range, kind: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise out_of_range(field, value, f"{kind} (an integer)")
    if isinstance(value, str) and not _DECIMAL.match(value):
        raise out_of_range(field, value, f"{kind} (an integer)")
    number = int(value)
    if number not in ids:
        raise NotFoundError(kind, describe(number))
    return number


def parse_escrow_id(value: object, field: str = "escrow_id") -> int:
    """An escrow id: an integer (or decimal string) from 1 to `MAX_ESCROW_ID`. Another integer
    names no escrow: `NotFoundError` (404) "unknown escrow N"; a value that is no integer is an
    `OutOfRangeError` (422) naming `field`."""
    return _id_in(field, value, ESCROW_IDS, "escrow")


def parse_milestone(value: object, field: str = "milestone") -> int:
    """A milestone index: an integer from 0 to `MAX_MILESTONES` - 1 (whether the escrow has that
    many milestones is its own check). Another integer: `NotFoundError` (404); no integer:
    `OutOfRangeError` (422) naming `field`."""
    return _id_in(field, value, MILESTONE_INDEXES, "milestone")


def parse_row_id(kind: str, value: object, field: str = "id") -> int:
    """The id of one of the service's own rows (`kind`: "webhook subscription"): from 1 to
    2^63 - 1; another integer is `NotFoundError` (404) "unknown <kind> N"."""
    return _id_in(field, value, ROW_IDS, kind)


def parse_index(kind: str, value: object, field: str) -> int:
    """An index counted from 0 (`kind`: "breach"), below 2^63; another integer is
    `NotFoundError` (404) "unknown <kind> N"."""
    return _id_in(field, value, INDEXES, kind)


# ------------------------------------------------------------------ addresses and hashes


def parse_address(field: str, value: object) -> ChecksumAddress:
    """An address in lower, upper or EIP-55 case (a mixed case must be a valid EIP-55
    checksum), returned EIP-55 encoded."""
    if not isinstance(value, str) or not value.startswith("0x") or not is_hex_address(value):
        raise MalformedValueError(field, value, "a 20-byte 0x address")
    if is_checksum_formatted_address(value) and not is_checksum_address(value):
        raise MalformedValueError(
            field, value, "an address whose mixed case is its EIP-55 checksum"
        )
    return to_checksum_address(value)


def parse_hash(field: str, value: object) -> str:
    """A 32-byte 0x hex value, returned in lower case."""
    if not isinstance(value, str) or not _HEX32.match(value):
        raise MalformedValueError(field, value, "a 32-byte 0x hex value")
    return value.lower()


# ------------------------------------------------------------------ KPI values and times


def parse_kpi_value(field: str, value: object) -> float:
    """A KPI sample's value: a JSON number or numeric text (a CSV cell), finite, of magnitude at
    most `MAX_KPI_MAGNITUDE`. Raises `MalformedValueError` (no number: bool, null, other text)
    and `OutOfRangeError` (NaN, an infinity, a magnitude beyond the bound, a 400-digit
    integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedValueError(field, value, EXPECTED_NUMBER)
    if isinstance(value, int):
        if abs(value) > MAX_KPI_MAGNITUDE:  # compared exactly: no float conversion overflows
            raise out_of_range(field, value, f"a number from -{MAX_KPI_MAGNITUDE:g} to "
                                             f"{MAX_KPI_MAGNITUDE:g}")
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise MalformedValueError(field, value, EXPECTED_NUMBER) from None
    else:
        number = value
    if not math.isfinite(number):
        raise out_of_range(field, number, EXPECTED_FINITE)
    if abs(number) > MAX_KPI_MAGNITUDE:
        raise out_of_range(field, number, f"a number from -{MAX_KPI_MAGNITUDE:g} to "
                                          f"{MAX_KPI_MAGNITUDE:g}")
    return number


def parse_time(field: str, value: object) -> int:
    """A time in unix seconds: a JSON integer, an integral float, decimal text, or an ISO 8601
    time with a zone (`2026-01-01T00:00:00Z`, no fraction of a second). Raises
    `MalformedValueError` for anything else and `OutOfRangeError` outside 0 to `MAX_UNIX_TIME`."""
    seconds: int | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int):
        seconds = value
    elif isinstance(value, float):
        seconds = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        seconds = int(text) if _DECIMAL.match(text) else _iso_seconds(text)
    if seconds is None:
        raise MalformedValueError(field, value, EXPECTED_TIME)
    if not 0 <= seconds <= MAX_UNIX_TIME:
        raise out_of_range(field, seconds, f"unix seconds from 0 to {MAX_UNIX_TIME}")
    return seconds


def _iso_seconds(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None or moment.microsecond != 0:
        return None
    return int(moment.timestamp())


# ------------------------------------------------------------------ what people type


_TOKEN_AMOUNT = re.compile(r"^([0-9][0-9_]*)?(?:\.([0-9]*))?$")
_DURATION = re.compile(r"^(?:[0-9]+[wdhms])+$")
_DURATION_PART = re.compile(r"([0-9]+)([wdhms])")
#: seconds per unit of a typed duration
DURATION_UNITS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
EXPECTED_TOKEN_AMOUNT = "an amount in the token's units such as 1.5 or 2_000"
EXPECTED_DURATION = "a duration such as 3d, 12h, 90m, 1d12h or seconds (3600)"


def parse_token_amount(field: str, value: object, decimals: int) -> int:
    """An amount a person typed in the token's units (`"1.5"` ETH, `"2_000"` USDC) as base
    units (`1.5`, 18 decimals -> 1500000000000000000): digits, `_` between them, one `.`; exact,
    never rounded. Raises `MalformedValueError` for anything else (a sign, an exponent, a
    comma) and `OutOfRangeError` for more decimals than the token has or a value of 2^256 or
    more."""
    text = value.strip() if isinstance(value, str) else None
    match = _TOKEN_AMOUNT.match(text) if text else None
    if text is None or match is None or text in (".", "") or "__" in text or text.endswith("_"):
        raise MalformedValueError(field, value, EXPECTED_TOKEN_AMOUNT)
    whole = (match.group(1) or "0").replace("_", "")
    fraction = match.group(2) or ""
    if len(fraction.rstrip("0")) > decimals:
        raise out_of_range(field, value, f"at most {decimals} decimals (the token's)")
    fraction = fraction[:decimals] if decimals else ""
    amount = int(whole + fraction.ljust(decimals, "0")) if decimals else int(whole)
    if amount > UINT256_MAX:
        raise out_of_range(field, value, "less than 2^256 base units")
    return amount


def parse_duration(field: str, value: object) -> int:
    """A duration a person typed, in seconds: `3d`, `12h`, `90m`, `45s`, `2w`, combined
    (`1d12h`), or plain seconds (`3600`, or a JSON integer). Raises `MalformedValueError` for
    anything else and `OutOfRangeError` for a negative integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise out_of_range(field, value, "a duration of 0 seconds or more")
        return value
    text = value.strip().lower() if isinstance(value, str) else ""
    if _DECIMAL.match(text):
        return parse_uint(field, text, bits=64)
    if not _DURATION.match(text):
        raise MalformedValueError(field, value, EXPECTED_DURATION)
    return sum(int(n) * DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


# ------------------------------------------------------------------ URLs

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: the longest URL accepted (webhook receivers)
MAX_URL_LENGTH = 2_048
EXPECTED_HTTP_URL = (
    "an absolute http:// or https:// URL with a host and a port in 1..65535, without spaces, "
    "control characters or backslashes"
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_url(url: str) -> str:
    """What a log line or an error may say of a URL: `scheme://host[:port]/path`, never its
    credentials, query string or fragment (a webhook URL may carry a token in any of them);
    `<malformed url>` when it cannot be split."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def numeric_address(host: str) -> IPAddress | None:
    """`host` as an IP address when the system resolver reads it as one without asking DNS
    (`getaddrinfo` with `AI_NUMERICHOST`, what a client connecting to `host` does first): a
    dotted quad and every shorter, decimal, octal or hex form of `inet_aton` (`127.1`,
    `2130706433`, `0x7f.1`, `0177.0.0.1` are all 127.0.0.1), IPv6 with or without brackets
    (`[::ffff:127.0.0.1]`). None for a name."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not name:
        return None
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP,
                                   flags=socket.AI_NUMERICHOST)
        return ipaddress.ip_address(str(infos[0][4][0]))
    except (OSError, UnicodeError, ValueError, IndexError):
        return None


def canonical_host(host: str) -> str:
    """A host as the network policy compares it: an IP address in its canonical text
    (`2130706433` -> `127.0.0.1`, `[::1]` -> `::1`), a name in lower case without a final dot."""
    ip = numeric_address(host)
    return str(ip) if ip is not None else host.lower().rstrip(".")


@dataclass(frozen=True)
class HttpUrl:
    """An absolute http(s) URL, parsed as the HTTP client (httpx) requests it.

    `text`: the URL as given (what is stored and requested); `host`: the name or address the
    client connects to (IDNA ASCII, lower case; an IPv6 address without brackets); `ip`: `host`
    as an address when it is one in any form a resolver accepts (`numeric_address`); `port`:
    the explicit port or the scheme's default; `host_header`: the `Host` the client sends."""

    text: str
    scheme: str
    host: str
    port: int
    ip: IPAddress | None
    host_header: str

    @property
    def safe(self) -> str:
        """`safe_url` of the URL: scheme, host, port and path only."""
        return safe_url(self.text)

    @property
    def canonical_host(self) -> str:
        """`host` as the network policy compares it (`canonical_host`)."""
        return str(self.ip) if self.ip is not None else self.host.rstrip(".")


def parse_http_url(field: str, value: object, *, max_length: int = MAX_URL_LENGTH) -> HttpUrl:
    """An absolute http:// or https:// URL with a host, at most `max_length` characters, parsed
    by the HTTP client's own parser so that what is checked is what is requested. Raises
    `MalformedValueError` for a value that is no string, `OutOfRangeError` for anything else
    refused; an error shows the URL without credentials, query or fragment (`safe_url`).

    What the host may be (public addresses only) is the network policy's rule
    (`backend.notify.egress`), not this parser's."""
    if not isinstance(value, str):
        raise MalformedValueError(field, value, "a URL string")
    if len(value) > max_length:
        raise OutOfRangeError(field, safe_url(value[:60]) + "...",
                              f"at most {max_length} characters")
    shown = safe_url(value)
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in value):
        raise OutOfRangeError(field, shown, EXPECTED_HTTP_URL)
    try:
        url = httpx.URL(value)
        host_header = httpx.Request("POST", url).headers.get("host", "")
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise OutOfRangeError(field, shown, EXPECTED_HTTP_URL) from None
    port = url.port if url.port is not None else DEFAULT_PORTS.get(url.scheme, 0)
    if url.scheme not in DEFAULT_PORTS or not url.host or not 1 <= port <= 65_535:
        raise OutOfRangeError(field, shown, EXPECTED_HTTP_URL)
    host = url.raw_host.decode("ascii").lower()
    if "%" in host:
        # a zone id (`fe80::1%25eth0`, RFC 6874) names an interface of this machine: a local
        # target by definition; a percent-encoded name is no host a resolver reads the same way
        raise OutOfRangeError(field, shown, EXPECTED_HTTP_URL + " (a host without %-escapes or an "
                              "IPv6 zone id)")
    return HttpUrl(value, url.scheme, host, port, numeric_address(host), host_header)


def parse_host_list(field: str, value: object) -> tuple[tuple[str, int | None], ...]:
    """A comma-separated list of `host` or `host:port` (`127.0.0.1:9000,localhost,[::1]:8080`;
    an IPv6 address in brackets) as `(canonical_host, port or None)` pairs (`canonical_host`:
    an IP address in any form is its canonical text). An empty text is the empty list. Raises
    `OutOfRangeError` for an entry with spaces, a scheme, a path or a port outside 1..65535."""
    if not isinstance(value, str):
        raise MalformedValueError(field, value, "a comma-separated list of host[:port]")
    expected = "a comma-separated list of host or host:port ([v6 address]:port)"
    out: list[tuple[str, int | None]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            parts = urlsplit(f"//{entry}")
            host, port = parts.hostname, parts.port
        except ValueError:
            raise OutOfRangeError(field, entry, expected) from None
        if (not host or any(c.isspace() for c in entry) or "@" in entry or parts.path
                or parts.query or parts.fragment or port == 0):
            raise OutOfRangeError(field, entry, expected)
        out.append((canonical_host(host), port))
    return tuple(out)


# ------------------------------------------------------------------ pydantic types


def _field_parser(
    parse: Callable[[str, object], T],
) -> Callable[[object, ValidationInfo], T]:
    def validate(value: object, info: ValidationInfo) -> T:
        return parse(info.field_name or "value", value)

    return validate


def _reference_parser(parse: Callable[[object, str], T]) -> Callable[[object, ValidationInfo], T]:
    def validate(value: object, info: ValidationInfo) -> T:
        return parse(value, info.field_name or "value")

    return validate


_UINT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,78}$", "description": "decimal digits"},
        {"type": "integer", "minimum": 0},
    ],
    "description": "uint256: a decimal string, or a JSON integer",
}

#: a uint256 (`parse_uint`): `"1900000000"` and `1900000000` alike
Uint256 = Annotated[int, BeforeValidator(_field_parser(parse_uint)), WithJsonSchema(_UINT_SCHEMA)]
#: an amount in base units (`parse_amount`): a decimal string, or a JSON integer up to 2^53 - 1
Amount = Annotated[
    int,
    BeforeValidator(_field_parser(parse_amount)),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]{1,78}$"},
            {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_JSON_INTEGER},
        ],
        "description": "base units (uint256) as a decimal string; a JSON integer only up to "
                       "2^53 - 1, since JSON parsers round larger numbers",
    }),
]
#: an escrow id (`parse_escrow_id`): 404 for an id no escrow can have
EscrowId = Annotated[
    int,
    BeforeValidator(_reference_parser(parse_escrow_id)),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ESCROW_ID}),
]
#: a milestone index (`parse_milestone`): 404 beyond the contract's milestone limit
MilestoneIndex = Annotated[
    int,
    BeforeValidator(_reference_parser(parse_milestone)),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_MILESTONES - 1}),
]
#: an address (`parse_address`), EIP-55 encoded
Address = Annotated[
    ChecksumAddress,
    BeforeValidator(_field_parser(parse_address)),
    WithJsonSchema({"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$",
                    "description": "20-byte address; a mixed case must be its EIP-55 checksum"}),
]
#: a 32-byte hash (`parse_hash`), lower-case 0x hex
Hash32 = Annotated[
    str,
    BeforeValidator(_field_parser(parse_hash)),
    WithJsonSchema({"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}),
]
#: a KPI value (`parse_kpi_value`)
KpiValue = Annotated[
    float,
    BeforeValidator(_field_parser(parse_kpi_value)),
    WithJsonSchema({"type": "number", "minimum": -MAX_KPI_MAGNITUDE,
                    "maximum": MAX_KPI_MAGNITUDE}),
]
#: a time in unix seconds (`parse_time`)
UnixTime = Annotated[
    int,
    BeforeValidator(_field_parser(parse_time)),
    WithJsonSchema({
        "anyOf": [{"type": "integer", "minimum": 0},
                  {"type": "string", "description": "decimal unix seconds or ISO 8601 with a "
                                                    "zone"}],
        "description": "unix seconds",
    }),
]

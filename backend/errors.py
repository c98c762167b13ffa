"""The one exception root of the project. Every error raised on purpose derives from it and builds
its own message from typed fields; the API maps the families to HTTP statuses in one place
(`backend/api/errors.py`).

As web3.py's `Web3ValueError(Web3Exception, ValueError)`, a family also derives from the builtin it
refines where one fits, so code that catches the builtin keeps working: malformed, too large and
out-of-range input are `ValueError`s, an unknown thing is a `LookupError`. Families:

- `ConfigurationError`: a setting that cannot work (the command line prints it, exit 2);
- `MalformedInputError` (400), `ForbiddenSignerError` (403), `NotFoundError` (404),
  `AlreadyDoneError` (409), `DeadlinePassedError` (410), `TooLargeError` (413),
  `OutOfRangeError` (422): what an API caller or a command-line user did wrong;
- `UnavailableError` (503 with `Retry-After`): a dependency did not answer; the node's own
  subclass is `backend.chain.errors.NodeUnavailable`;
- `backend.chain.errors.ChainError`: what the chain answered (reverts, decoding, deployments).
"""

from __future__ import annotations

from typing import ClassVar


class QualityEscrowError(Exception):
    """Base of every deliberate error in Quality Escrow."""

    #: short machine-readable code, used as `error` in API responses
    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(QualityEscrowError):
    code = "configuration"


# ------------------------------------------------------------------ API-facing errors
# Each maps to one HTTP status in backend/api/errors.py; the message is built from the fields.


class MalformedInputError(QualityEscrowError, ValueError):
    """400: a body or signature that cannot be parsed."""

    code = "malformed"

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"malformed {what}: {reason}")


class ForbiddenSignerError(QualityEscrowError):
    """403: signed by someone who may not."""

    code = "forbidden_signer"

    def __init__(self, signer: str, expected: str) -> None:
        self.signer = signer
        self.expected = expected
        super().__init__(f"signed by {signer}, but only {expected} may sign this")


class NotFoundError(QualityEscrowError, LookupError):
    """404: an unknown escrow, milestone or document."""

    code = "not_found"

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"unknown {kind} {key}")


class AlreadyDoneError(QualityEscrowError):
    """409: already settled, confirmed or reported."""

    code = "conflict"

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"already done: {what}")


class DeadlinePassedError(QualityEscrowError):
    """410: a deadline has passed."""

    code = "deadline_passed"

    def __init__(self, what: str, deadline: int, now: int) -> None:
        self.what = what
        self.deadline = deadline
        self.now = now
        super().__init__(f"{what} deadline {deadline} has passed (now {now})")


class TooLargeError(QualityEscrowError, ValueError):
    """413: a body, comment or attachment over its limit."""

    code = "too_large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size}, over the limit of {limit}")


#: characters of a refused value an error message repeats at most (a 1.5 MB string is not
#: echoed back in the answer nor in the log)
SHOWN_VALUE_CHARS = 200


class OutOfRangeError(QualityEscrowError, ValueError):
    """422: a value out of range; the message shows at most `SHOWN_VALUE_CHARS` of its repr."""

    code = "out_of_range"

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > SHOWN_VALUE_CHARS:
            shown = f"{shown[:SHOWN_VALUE_CHARS - 3]}... ({len(shown)} characters)"
        super().__init__(f"{field}={shown} is out of range: expected {expected}")


class UnavailableError(QualityEscrowError):
    """503: a dependency (node, database) does not answer; asking again later may work.

    `retry_after` (seconds) is what the API sends as the `Retry-After` header (RFC 9110
    section 10.2.3)."""

    code = "unavailable"
    #: seconds a client should wait before asking again
    retry_after: ClassVar[int] = 5

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what} unavailable: {reason}")

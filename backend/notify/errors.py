"""Sign-in refusals. They derive from `ForbiddenSignerError` (403) so the API maps them even
without an entry of their own; `SignInRefusedError` is meant to map to 401."""

from __future__ import annotations

from backend.errors import ForbiddenSignerError, QualityEscrowError


class SignInRefusedError(ForbiddenSignerError):
    """401: a Sign-In with Ethereum proof that does not hold (wrong signer, domain or chain)."""

    code = "sign_in_refused"

    def __init__(self, reason: str, *, signer: str = "unknown", expected: str = "unknown") -> None:
        self.reason = reason
        self.signer = signer
        self.expected = expected
        QualityEscrowError.__init__(self, f"sign-in refused: {reason}")


class SignInExpiredError(SignInRefusedError):
    """401: the sign-in message is past its `Expiration Time` or before its `Not Before`."""

    code = "sign_in_expired"


class NonceRefusedError(SignInRefusedError):
    """401: the message's nonce was not issued here, is used up or has expired (replay)."""

    code = "nonce_refused"

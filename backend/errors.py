"""The one exception base of the project. Every error raised on purpose derives from it and builds
its own message from typed fields; the API maps the classes to HTTP statuses in one place."""

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

"""Errors from the chain: contract reverts decoded from the ABI, and transport failures.

Every custom error of the contract has its own subclass of `ContractRevert` (generated into
`revert_types.py` from the compiled ABI by `escrow compile`), carrying the error's fields as
attributes named as in Solidity.
"""

from __future__ import annotations

from typing import Any, ClassVar

from backend.errors import QualityEscrowError


class ChainError(QualityEscrowError):
    code = "chain"


class ContractRevert(ChainError):
    """A call reverted with a custom error declared in the contract's ABI."""

    code = "contract_revert"
    #: Solidity signature, e.g. ``EscrowNotFound(uint256)``
    signature: ClassVar[str] = ""
    #: 4-byte selector as 0x hex
    selector: ClassVar[str] = ""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        shown = ", ".join(f"{k}={_show(v)}" for k, v in fields.items())
        super().__init__(f"{type(self).__name__}({shown})")

    @property
    def error_name(self) -> str:
        return type(self).__name__


class ContractPanic(ChainError):
    """Solidity `Panic(uint256)`: an assertion, overflow or similar bug-class failure."""

    code = "contract_panic"

    def __init__(self, panic_code: int) -> None:
        self.panic_code = panic_code
        super().__init__(f"Panic(0x{panic_code:02x})")


class ContractErrorString(ChainError):
    """Solidity `Error(string)`, from `require(cond, "message")` (test tokens, wallets)."""

    code = "contract_error"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Error({reason!r})")


class UnknownRevert(ChainError):
    """A revert whose data matches no known error (empty data included)."""

    code = "unknown_revert"

    def __init__(self, data: str) -> None:
        self.data = data
        super().__init__(f"reverted with unknown data {data or '(empty)'}")


class TransactionFailed(ChainError):
    """A mined transaction has status 0 and replaying it gave no reason."""

    code = "transaction_failed"

    def __init__(self, tx_hash: str) -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} reverted")


class EscrowUnknown(ChainError):
    """No `EscrowCreated` event exists for this id, so its parameters are unknown."""

    code = "escrow_unknown"

    def __init__(self, escrow_id: int) -> None:
        self.escrow_id = escrow_id
        super().__init__(f"escrow {escrow_id} has no EscrowCreated event on this contract")


class DeploymentMissing(ChainError):
    code = "deployment_missing"

    def __init__(self, chain_id: int, path: str) -> None:
        self.chain_id = chain_id
        self.path = path
        super().__init__(
            f"no deployment record for chain id {chain_id} at {path}; run `escrow deploy` "
            "or set ESCROW_CONTRACT_ADDRESS"
        )


class InvalidSignature(ChainError):
    """A confirmation signature that is malformed or not canonical (checked off-chain)."""

    code = "invalid_signature"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid signature: {reason}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)

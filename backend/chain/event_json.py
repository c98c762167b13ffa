"""The JSON form of decoded events, as stored in `event_log.args` and served by the API:
integers as decimal strings, bytes as lower-case 0x hex, addresses checksummed, the escrow's
parameters in `EscrowParams.to_json` form."""

from __future__ import annotations

from typing import Any

from backend.chain.types import EscrowParams


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value


def args_to_json(event: str, args: dict[str, Any]) -> dict[str, Any]:
    out = {k: _value(v) for k, v in args.items()}
    if event == "EscrowCreated":
        out["params"] = EscrowParams.from_event(args["params"]).to_json()
    return out

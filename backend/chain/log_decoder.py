"""Fast decoding of the contract's raw logs into the stored JSON form of their arguments.

web3's `process_log` re-derives the event's ABI and builds AttributeDicts for every log, which
dominates the indexer's time on large backfills. `LogDecoder` precomputes, per event topic, how
to read each argument: static values (uintN, bool, address, bytesN) are sliced straight out of
their 32-byte words; anything dynamic (the `EscrowParams` tuple of `EscrowCreated`) goes through
eth-abi. The output equals `args_to_json(name, event_from_log(process_log(log)).args)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from backend.chain.errors import UnknownEvent
from backend.chain.event_json import args_to_json

Word = Callable[[bytes], Any]


def _uint(word: bytes) -> str:
    return str(int.from_bytes(word, "big"))


def _int(word: bytes) -> str:
    return str(int.from_bytes(word, "big", signed=True))


def _bool(word: bytes) -> bool:
    return word[-1] == 1


def _address(word: bytes) -> str:
    return to_checksum_address(word[12:])


def _fixed_bytes(size: int) -> Word:
    def convert(word: bytes) -> str:
        return "0x" + word[:size].hex()

    return convert


def _word_reader(abi_type: str) -> Word | None:
    """How to read one static ABI type from its 32-byte word; None when it is not static."""
    if abi_type.startswith("uint"):
        return _uint
    if abi_type.startswith("int"):
        return _int
    if abi_type == "bool":
        return _bool
    if abi_type == "address":
        return _address
    if abi_type.startswith("bytes") and abi_type[5:].isdigit():
        return _fixed_bytes(int(abi_type[5:]))
    return None


def abi_type(inp: Mapping[str, Any]) -> str:
    """The canonical type string of an ABI input, tuples expanded."""
    t = str(inp["type"])
    if t.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in inp["components"])
        return f"({inner}){t[len('tuple'):]}"
    return t


def event_signature(abi: Mapping[str, Any]) -> str:
    return f"{abi['name']}({','.join(abi_type(i) for i in abi['inputs'])})"


@dataclass(frozen=True)
class _EventSpec:
    name: str
    #: (argument name, indexed, reader or None) in ABI order
    inputs: tuple[tuple[str, bool, Word | None], ...]
    #: the canonical types of the non-indexed arguments (for eth-abi when not all static)
    data_types: tuple[str, ...]
    static: bool

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        if self.static:
            return self._decode_static(topics, data)
        values = iter(abi_decode(list(self.data_types), data))
        topic = iter(topics[1:])
        args: dict[str, Any] = {}
        for name, indexed, reader in self.inputs:
            if indexed:  # a dynamic indexed value is only its hash: kept as bytes
                word = bytes(next(topic))
                args[name] = word if reader is None else reader(word)
            else:
                args[name] = next(values)
        return args_to_json(self.name, args)

    def _decode_static(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        args: dict[str, Any] = {}
        t, offset = 1, 0
        for name, indexed, reader in self.inputs:
            assert reader is not None
            if indexed:
                args[name] = reader(bytes(topics[t]))
                t += 1
            else:
                args[name] = reader(data[offset : offset + 32])
                offset += 32
        return args


class LogDecoder:
    """Decodes the raw logs of one contract ABI."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._specs: dict[bytes, _EventSpec] = {}
        for item in abi:
            if item.get("type") != "event" or item.get("anonymous"):
                continue
            inputs = []
            data_types = []
            static = True
            for inp in item["inputs"]:
                typ = abi_type(inp)
                reader = _word_reader(typ)
                indexed = bool(inp.get("indexed"))
                inputs.append((str(inp["name"]), indexed, reader))
                if not indexed:
                    data_types.append(typ)
                if reader is None:
                    static = False
            topic = keccak(text=event_signature(item))
            self._specs[topic] = _EventSpec(
                str(item["name"]), tuple(inputs), tuple(data_types), static
            )

    def event_name(self, topic0: bytes) -> str:
        spec = self._specs.get(bytes(topic0))
        if spec is None:
            raise UnknownEvent(f"unknown event topic 0x{bytes(topic0).hex()}")
        return spec.name

    def decode(self, topics: Sequence[bytes], data: bytes) -> tuple[str, dict[str, Any]]:
        """(event name, arguments in their JSON form) of one log."""
        if not topics:
            raise UnknownEvent("a log without topics (anonymous event)")
        spec = self._specs.get(bytes(topics[0]))
        if spec is None:
            raise UnknownEvent(f"unknown event topic 0x{bytes(topics[0]).hex()}")
        return spec.name, spec.decode(topics, bytes(data))

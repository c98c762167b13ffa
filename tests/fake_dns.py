"""A resolver for tests that never asks a DNS server: it replaces the webhook network policy's
system resolver (`backend.notify.egress.system_resolve`), answering from `FakeDns.names`
(`localhost` is 127.0.0.1 and ::1) and reading address literals as the system does; any other
name does not resolve."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from backend.inputs import IPAddress, numeric_address


@dataclass
class FakeDns:
    names: dict[str, list[str]] = field(
        default_factory=lambda: {"localhost": ["127.0.0.1", "::1"]}
    )
    asked: list[str] = field(default_factory=list)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        literal = numeric_address(host)
        if literal is not None:
            return [literal]
        if host.lower() not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.names[host.lower()]]

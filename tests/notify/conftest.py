"""What the notify tests share: no test here asks a DNS server (`tests/fake_dns.py`). A test maps
a name with `fake_dns.names[...] = [...]`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.notify import egress
from tests.fake_dns import FakeDns


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    dns = FakeDns()
    monkeypatch.setattr(egress, "system_resolve", dns.resolve)
    yield dns

"""Webhooks reach only the outside world (`backend.notify.egress`): every form of an inside host
is refused at subscription, a name is resolved and checked again at each delivery, and the
request goes to the very address that was checked. The resolver is the fake of conftest.py;
HTTP goes to an `httpx.MockTransport` that records what would have been sent. SQLite."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from backend.config import Settings
from backend.db.models import WebhookDelivery
from backend.db.session import transaction
from backend.errors import OutOfRangeError
from backend.inputs import parse_host_list, parse_http_url
from backend.notify.dispatch import dispatch_due
from backend.notify.egress import EgressPolicy, RefusedDestinationError, refusal_reason
from backend.notify.events import Notification, enqueue
from backend.notify.webhooks import create_subscription, validate_url
from backend.services import Services, build_services
from tests.fake_dns import FakeDns
from tests.support import EscrowEnv

# ------------------------------------------------------------------ the rule, address by address

REFUSED_ADDRESSES = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "0.0.0.0": "unspecified",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "not globally reachable",  # shared address space (carrier-grade NAT)
    "192.0.2.1": "private",  # documentation
    "224.0.0.251": "multicast",
    "239.1.2.3": "multicast",
    "240.0.0.1": "private",  # reserved for future use (Python files it as private)
    "255.255.255.255": "private",  # broadcast
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fd12:3456::1": "private",
    "fec0::1": "private",  # site-local
    "ff02::1": "multicast",
    "2001:db8::1": "private",  # documentation
    "::ffff:127.0.0.1": "loopback: it carries the IPv4 address 127.0.0.1",
    "::ffff:169.254.169.254": "link-local: it carries the IPv4 address 169.254.169.254",
    "::7f00:1": "loopback: it carries the IPv4 address 127.0.0.1",  # IPv4-compatible
    "64:ff9b::a00:1": "private: it carries the IPv4 address 10.0.0.1",  # NAT64
    "2002:7f00:1::": "loopback: it carries the IPv4 address 127.0.0.1",  # 6to4
}
PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                    "2a00:1450:4001:80b::200e", "64:ff9b::808:808", "::ffff:8.8.8.8",
                    "2002:808:808::1"]


@pytest.mark.parametrize(("address", "reason"), REFUSED_ADDRESSES.items(),
                         ids=REFUSED_ADDRESSES.keys())
def test_every_address_off_the_public_internet_is_refused_with_its_reason(
    address: str, reason: str
) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


# ------------------------------------------------------------------ at subscription

#: host forms a resolver reads as inside addresses, and what the refusal names
INSIDE_FORMS = {
    "loopback": ("http://127.0.0.1/hooks", "127.0.0.1 (loopback)"),
    "localhost": ("http://localhost:8080/", "localhost (loopback, RFC 6761)"),
    "localhost-upper-dot": ("http://LocalHost./", "localhost (loopback, RFC 6761)"),
    "sub-localhost": ("http://api.localhost/", "api.localhost (loopback, RFC 6761)"),
    "unspecified": ("http://0.0.0.0/", "0.0.0.0 (unspecified)"),
    "decimal": ("http://2130706433/", "127.0.0.1 (loopback)"),
    "short": ("http://127.1/", "127.0.0.1 (loopback)"),
    "octal": ("http://0177.1/", "127.0.0.1 (loopback)"),
    "octal-whole": ("http://017700000001/", "127.0.0.1 (loopback)"),
    "hex": ("http://0x7f.0.0.1/", "127.0.0.1 (loopback)"),
    "hex-whole": ("http://0x7f000001/", "127.0.0.1 (loopback)"),
    "decimal-metadata": ("http://2852039166/", "169.254.169.254 (link-local)"),
    "metadata": ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local)"),
    "private": ("https://192.168.0.10:8443/x", "192.168.0.10 (private)"),
    "ipv6-loopback": ("http://[::1]:9000/", "::1 (loopback)"),
    "ipv6-unspecified": ("http://[::]/", ":: (unspecified)"),
    "ipv4-mapped": ("http://[::ffff:127.0.0.1]/", "loopback: it carries the IPv4 address"),
    "ipv4-mapped-hex": ("http://[::ffff:7f00:1]/", "loopback: it carries the IPv4 address"),
    "ipv6-link-local": ("http://[fe80::1]/", "fe80::1 (link-local)"),
    "multicast": ("http://224.0.0.1/", "224.0.0.1 (multicast)"),
    "name-to-loopback": ("http://rebind.example/", "rebind.example, which resolves to an "
                         "address that is loopback"),
    "name-to-one-private-of-two": ("https://split.example/", "split.example, which resolves "
                                   "to an address that is private"),
}


@pytest.mark.parametrize("case", INSIDE_FORMS.values(), ids=INSIDE_FORMS.keys())
def test_every_inside_host_form_is_refused_at_subscription(
    fake_dns: FakeDns, case: tuple[str, str]
) -> None:
    fake_dns.names["rebind.example"] = ["127.0.0.1"]
    fake_dns.names["split.example"] = ["93.184.216.34", "192.168.7.7"]
    url, why = case
    with pytest.raises(RefusedDestinationError) as refused:
        validate_url(url, EgressPolicy())
    assert refused.value.field == "url"
    assert why in refused.value.expected
    assert "192.168.7.7" not in str(refused.value)
    assert isinstance(refused.value, OutOfRangeError)  # 422 out_of_range


@pytest.mark.parametrize(
    "url",
    ["http://0177.0.0.1/", "http://127.000.000.001/", "http://a.example\\@127.0.0.1/",
     "http://127.0.0.1:0/", "http://h.example:65536/", "file:///etc/passwd",
     "gopher://127.0.0.1:25/", "http://h.example/\x00", "http://[::1/",
     # a zone id names a local interface; an escaped name is read differently by resolvers
     "http://[fe80::1%25lo]/", "http://%31%32%37.0.0.1/"],
)
def test_forms_the_http_client_would_not_read_as_we_do_are_refused_as_malformed(
    url: str,
) -> None:
    with pytest.raises(OutOfRangeError, match="expected an absolute http:// or https:// URL"):
        validate_url(url, EgressPolicy())


def test_a_public_name_and_a_name_that_does_not_resolve_yet_are_accepted(
    fake_dns: FakeDns,
) -> None:
    fake_dns.names["hooks.example"] = ["93.184.216.34", "2606:4700:4700::1111"]
    policy = EgressPolicy()
    assert validate_url("https://hooks.example/in?token=x", policy)
    assert validate_url("https://not-yet.example/in", policy)  # checked at each delivery
    assert fake_dns.asked == ["hooks.example", "not-yet.example"]


def test_the_allow_list_names_hosts_with_or_without_a_port() -> None:
    assert parse_host_list("allow", " 127.0.0.1:9000, LOCALHOST ,[::1]:8080,2130706433,") == (
        ("127.0.0.1", 9000), ("localhost", None), ("::1", 8080), ("127.0.0.1", None),
    )
    assert parse_host_list("allow", "") == ()
    for bad in ("http://127.0.0.1", "127.0.0.1:x", "a b", "h:0", "u@h", "h/path"):
        with pytest.raises(OutOfRangeError):
            parse_host_list("allow", bad)
    with pytest.raises(ValidationError, match="webhook_allow_hosts"):
        Settings(webhook_allow_hosts="localhost,http://x/")


def test_an_allowed_host_matches_by_what_the_url_says_not_by_what_a_name_resolves_to(
    fake_dns: FakeDns,
) -> None:
    fake_dns.names["evil.example"] = ["127.0.0.1"]
    policy = EgressPolicy.from_settings(Settings(webhook_allow_hosts="127.0.0.1:9000"))
    validate_url("http://127.0.0.1:9000/in", policy)
    validate_url("http://0x7f000001:9000/in", policy)
    for refused in ("http://evil.example:9000/in", "http://127.0.0.1:9001/in",
                    "http://localhost:9000/in"):
        with pytest.raises(RefusedDestinationError):
            validate_url(refused, policy)


# ------------------------------------------------------------------ at every delivery


@pytest.fixture
def services(env: EscrowEnv, tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'escrow.db'}",
                        webhook_max_attempts=3, webhook_backoff_base=30, webhook_timeout=2.0)
    built = build_services(settings, w3=env.w3, contract_address=env.escrow.address,
                           deployment_block=env.deployment_block)
    try:
        yield built
    finally:
        built.engine.dispose()


class Recorder:
    """An HTTP transport that answers 204 and keeps every request it would have sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(204)


def _queue(services: Services, url: str) -> None:
    with transaction(services.sessions) as session:
        sub = create_subscription(session, address="0x" + "AB" * 20,
                                  url=url, events=["milestone_settled"], secret="s" * 32,
                                  now=int(time.time()), limit=20,
                                  policy=EgressPolicy.from_settings(services.settings))
        enqueue(session, [Notification("milestone_settled", "milestone_settled:1:1:0",
                                       ((sub.address, "client"),), {"milestone": 0})])


def _delivery(services: Services) -> WebhookDelivery:
    with services.sessions() as session:
        return session.scalars(select(WebhookDelivery)).one()


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], ["127.0.0.1"], ["169.254.169.254"], ["::ffff:10.0.0.7"],
     ["93.184.216.34", "10.0.0.7"]],
    ids=["private", "loopback", "metadata", "mapped", "one-of-two"],
)
def test_a_name_that_resolves_inside_by_delivery_time_gets_no_request(
    services: Services, fake_dns: FakeDns, addresses: list[str]
) -> None:
    fake_dns.names["hooks.example"] = ["93.184.216.34"]
    _queue(services, "https://hooks.example/in")  # public when subscribed
    fake_dns.names["hooks.example"] = addresses  # DNS changed since
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder)) as http:
        assert dispatch_due(services, now=int(time.time()) + 1, http_client=http) == 1
    assert recorder.requests == []
    d = _delivery(services)
    inside = next(str(ipaddress.ip_address(a)) for a in addresses if a != "93.184.216.34")
    assert (d.status, d.attempts) == ("pending", 1)
    assert d.last_error is not None
    assert d.last_error.startswith(f"refused: hooks.example resolves to {inside} (")


def test_a_delivery_connects_to_the_checked_address_and_resolves_the_name_once(
    services: Services, fake_dns: FakeDns
) -> None:
    """The name is resolved once per delivery, and the request goes to that address with the
    name in `Host` and as the TLS server name: no second lookup that a rebinding DNS server
    could answer with an inside address."""
    fake_dns.names["hooks.example"] = ["93.184.216.34", "2606:4700:4700::1111"]
    _queue(services, "https://u:pw@hooks.example:8443/in?token=abc")
    fake_dns.asked.clear()
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder)) as http:
        assert dispatch_due(services, now=int(time.time()) + 1, http_client=http) == 1
    assert fake_dns.asked == ["hooks.example"]
    (request,) = recorder.requests
    assert (request.url.host, request.url.port, request.url.raw_path) == (
        "93.184.216.34", 8443, b"/in?token=abc")
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    assert request.headers["connection"] == "close"
    assert request.headers["authorization"].startswith("Basic ")  # the URL's credentials
    assert _delivery(services).status == "delivered"


def test_when_one_family_cannot_be_reached_the_other_checked_address_is_tried(
    services: Services, fake_dns: FakeDns
) -> None:
    fake_dns.names["hooks.example"] = ["2606:4700:4700::1111", "93.184.216.34"]
    _queue(services, "http://hooks.example/in")
    tried: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if ":" in request.url.host:
            raise httpx.ConnectError("Network is unreachable", request=request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        assert dispatch_due(services, now=int(time.time()) + 1, http_client=http) == 1
    assert tried == ["2606:4700:4700::1111", "93.184.216.34"]
    assert _delivery(services).status == "delivered"


def test_a_host_that_no_longer_resolves_is_a_failed_delivery(
    services: Services, fake_dns: FakeDns
) -> None:
    _queue(services, "https://gone.example/in")
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder)) as http:
        assert dispatch_due(services, now=int(time.time()) + 1, http_client=http) == 1
    assert recorder.requests == []
    d = _delivery(services)
    assert d.status == "pending" and d.last_error is not None
    assert d.last_error.startswith("HostNotResolvedError: webhook host gone.example unavailable")


def test_the_parsed_url_is_what_the_client_requests() -> None:
    url = parse_http_url("url", "https://U:P@Hooks.Example:443/a?b=c#d")
    assert (url.scheme, url.host, url.port, url.ip, url.host_header) == (
        "https", "hooks.example", 443, None, "hooks.example")
    assert url.safe == "https://hooks.example:443/a"
    v6 = parse_http_url("url", "http://[::ffff:7f00:1]:81/")
    assert (v6.host, v6.ip, v6.host_header) == (
        "::ffff:7f00:1", ipaddress.ip_address("::ffff:127.0.0.1"), "[::ffff:7f00:1]:81")

"""Where webhooks may go: the outside world only (server-side request forgery).

A webhook URL names a host; the service POSTs to it from inside its own network, where the
database, the node's RPC, a cloud's metadata service (`169.254.169.254`) and other private
services listen. So a host that is, or resolves to, an address that is not public is refused:
loopback, private (RFC 1918, unique local `fc00::/7`), link-local (`169.254.0.0/16`,
`fe80::/10`), multicast, unspecified (`0.0.0.0`, `::`), shared (`100.64.0.0/10`), reserved and
any other range IANA marks not globally reachable (Python's `ipaddress.is_global`). An IPv6
address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo) is judged by that IPv4 address too (mapped,
NAT64 and 6to4 by it alone: they are ways to reach it). Hosts are read as the system resolver
reads them, so `2130706433`, `127.1`, `0x7f.1` and `0177.1` are 127.0.0.1
(`backend.inputs.numeric_address`); a dotted quad with leading zeros (`0177.0.0.1`) is refused
as malformed by the URL parser (`backend.inputs.parse_http_url`), as the HTTP client does.

The rule is applied twice:

* at subscription (`check_subscription`): an address literal, a `localhost` name (RFC 6761) or
  a name that resolves to any refused address is a 422 saying why (the address only when the
  URL holds it: what an inside name resolves to is not told). A name that does not resolve
  (yet) is accepted: deliveries are checked anyway;
* at every delivery (`destinations`): DNS may have changed since, so the name is resolved again,
  every address it resolves to is checked (one refused address refuses the delivery), and the
  dispatcher connects to one of exactly these addresses (`backend.notify.dispatch`), never
  resolving the name a second time: a DNS rebinding between the check and the connection finds
  no second lookup to answer.

`ESCROW_WEBHOOK_ALLOW_HOSTS` names local targets for development (`127.0.0.1:9000,localhost`):
a URL whose host (an address in any form counts as its canonical text) and port match an entry
(an entry without a port matches every port) may reach any address. The match is by the URL's
host as written, never by what a name resolves to, so another name resolving to an allowed
address is still refused. There is no other exception, on a development chain neither.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend.config import Settings
from backend.errors import OutOfRangeError, UnavailableError
from backend.inputs import HttpUrl, IPAddress, parse_host_list

#: the names RFC 6761 reserves for the local host, refused before any lookup
LOCALHOST = "localhost"
#: NAT64's well-known prefix (RFC 6052): `64:ff9b::a.b.c.d` reaches a.b.c.d through a gateway
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: IPv4-compatible IPv6 addresses (deprecated, RFC 4291): `::a.b.c.d`
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

#: how a URL's host becomes addresses: `(host, port) -> addresses`, in the resolver's order;
#: raises `OSError` (`socket.gaierror`) when the name does not resolve
Resolver = Callable[[str, int], Sequence[IPAddress]]


def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `getaddrinfo` gives for `host` (TCP), in its order, each once."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
        ip = ipaddress.ip_address(str(sockaddr[0]))
        if ip not in found:
            found.append(ip)
    return found


class RefusedDestinationError(OutOfRangeError):
    """422 (`out_of_range`): a webhook URL whose host is or resolves to an address that is not
    public. `address` is the refused address, `reason` its kind (`loopback`, `private` ...).

    The message names the address only when the URL itself holds it: what an inside name
    resolves to is not told to whoever asked (`note` says it, for the operator's log)."""

    def __init__(self, field: str, url: HttpUrl, address: str, reason: str) -> None:
        self.url = url
        self.address = address
        self.reason = reason
        if url.ip is not None or url.canonical_host == address:
            where = f"{address} ({reason})"
            self.note = f"{url.host} is {address} ({reason})"
        else:
            where = f"{url.host}, which resolves to an address that is {reason}"
            self.note = f"{url.host} resolves to {address} ({reason})"
        super().__init__(
            field, url.safe,
            f"a host on the public internet, not {where}; ESCROW_WEBHOOK_ALLOW_HOSTS names "
            "local targets for development",
        )


class HostNotResolvedError(UnavailableError):
    """A webhook host that does not resolve now (a failed delivery, tried again later)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        super().__init__(f"webhook host {host}", f"does not resolve ({reason})")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address; the server's is public by definition
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is no address on the public internet (`unspecified`, `loopback`, `link-local`,
    `multicast`, `private`, `reserved`, `not globally reachable`), None for a public one; an
    IPv6 address carrying an IPv4 one is refused for that address's reason too."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = refusal_reason(inner)
            if why is not None:
                return f"{why}: it carries the IPv4 address {inner}"
            if ip.ipv4_mapped is not None or ip in NAT64 or ip.sixtofour is not None:
                return None  # a way to reach that public IPv4 address (NAT64: from IPv6-only)
        if ip.is_site_local:
            return "private"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally reachable"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """The targets named in `ESCROW_WEBHOOK_ALLOW_HOSTS` (`(canonical host, port or None)`) and
    the resolver (the system's; tests give their own)."""

    allow: tuple[tuple[str, int | None], ...] = ()
    #: None: `system_resolve` (looked up at each call, so a test can patch it)
    resolver: Resolver | None = None

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> EgressPolicy:
        allow = parse_host_list("webhook_allow_hosts", settings.webhook_allow_hosts)
        return cls(allow, resolver)

    def resolve(self, url: HttpUrl) -> list[IPAddress]:
        """The addresses the URL's host resolves to now (`OSError` when it does not)."""
        return list((self.resolver or system_resolve)(url.host, url.port))

    def allowed_by_operator(self, url: HttpUrl) -> bool:
        """Whether the operator named the URL's host (and port) as a local target."""
        host = url.canonical_host
        return any(h == host and p in (None, url.port) for h, p in self.allow)

    def _check(self, field: str, url: HttpUrl, addresses: Sequence[IPAddress]) -> None:
        for ip in addresses:
            why = refusal_reason(ip)
            if why is not None:
                raise RefusedDestinationError(field, url, str(ip), why)

    def check_subscription(self, url: HttpUrl, field: str = "url") -> None:
        """Refuses (`RefusedDestinationError`) a URL whose host is an address that is not
        public, a `localhost` name, or a name resolving to any address that is not public;
        accepts a name that does not resolve now (every delivery is checked again)."""
        if self.allowed_by_operator(url):
            return
        if url.ip is not None:
            self._check(field, url, [url.ip])
            return
        name = url.canonical_host
        if name == LOCALHOST or name.endswith("." + LOCALHOST):
            raise RefusedDestinationError(field, url, name, "loopback, RFC 6761")
        try:
            addresses = self.resolve(url)
        except (OSError, UnicodeError):
            return
        self._check(field, url, addresses)

    def destinations(self, url: HttpUrl, field: str = "url") -> list[IPAddress]:
        """The addresses a delivery to `url` may connect to: the host resolved now, every
        address checked (`RefusedDestinationError` if any is not public, unless the operator
        allowed the host); `HostNotResolvedError` when it does not resolve."""
        if url.ip is not None:
            addresses: list[IPAddress] = [url.ip]
        else:
            try:
                addresses = self.resolve(url)
            except (OSError, UnicodeError) as exc:
                raise HostNotResolvedError(url.host, str(exc) or type(exc).__name__) from None
            if not addresses:
                raise HostNotResolvedError(url.host, "no address")
        if not self.allowed_by_operator(url):
            self._check(field, url, addresses)
        return addresses

"""How a request to the node travels: the HTTP transport under `LimitedHTTPProvider`
(`backend/chain/connect.py`), for web3.py's own calls and the raw requests and batches of
`bulk_rpc` alike.

A plain `http://` node URL that nothing of the environment reroutes (no proxy for it, no
credentials, no client certificate) is posted to over one keep-alive `http.client` connection
per thread: a request costs about 0.13 ms of CPU that way, against 0.50 ms through `requests`
and urllib3 (measured on loopback against a Hardhat node; `docs/performance.md`, Relay). Everything
else (`https://`, a proxy, `~/.netrc` credentials, a CA bundle or client certificate) goes
through `requests` sessions, one per thread, that read the environment once
(`LimitedHTTPProvider`) instead of on every request.

Either way a caller sees what `requests` raises: `requests.ConnectTimeout` when no connection
was made within the timeout, `requests.ConnectionError` for a refused or broken connection,
`requests.ReadTimeout` when the node did not answer within it, and `requests.HTTPError` (with its
`response`: status code, reason, headers) for a status outside 2xx. So the provider's retries
and `backend.chain.errors.is_transport_failure` read both paths alike. A request is never sent
twice by the transport: a connection the node closed while idle (Hardhat closes them after 5 s)
is noticed before it is used, as urllib3 notices it, and replaced.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import select
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests
from eth_typing import URI
from requests.structures import CaseInsensitiveDict
from web3._utils.http_session_manager import HTTPSessionManager

#: the request settings the direct path knows; any other one (auth, cert, headers of the
#: caller's, a proxy ...) sends the request through `requests`
DIRECT_SETTINGS = frozenset({"timeout", "verify", "proxies"})
#: seconds a request waits when the caller names no timeout (web3.py's own default)
DEFAULT_TIMEOUT = 30.0


class NodeTransport(HTTPSessionManager):
    """web3.py's session manager for one node URL (see the module's docstring): `direct` posts
    over keep-alive `http.client` connections, one per thread; otherwise (or for another URL)
    web3.py's `requests` sessions, told not to read the environment per request."""

    def __init__(self, endpoint_uri: str, settings: Mapping[str, Any]) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(endpoint_uri)
        proxy = requests.utils.select_proxy(endpoint_uri, settings.get("proxies") or {})
        self.endpoint_uri = endpoint_uri
        #: whether requests to `endpoint_uri` go over `http.client` (the module's docstring)
        self.direct = (
            parts.scheme == "http" and bool(parts.hostname) and parts.username is None
            and proxy is None and set(settings) <= DIRECT_SETTINGS
        )
        self._host = parts.hostname or ""
        self._port = parts.port or 80
        self._target = requests.utils.requote_uri(
            (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        )
        self._local = threading.local()

    def cache_and_return_session(
        self, endpoint_uri: URI, session: requests.Session = None,  # type: ignore[assignment]
        request_timeout: float | None = None,
    ) -> requests.Session:
        cached = super().cache_and_return_session(endpoint_uri, session, request_timeout)
        cached.trust_env = False  # read once, by the provider
        return cached

    def make_post_request(
        self, endpoint_uri: URI, data: bytes | dict[str, Any], **kwargs: Any
    ) -> bytes:
        """The body of the node's answer to `data` POSTed to `endpoint_uri`; raises what
        `requests` raises (the module's docstring). A redirect (3xx) is followed by `requests`:
        the node did not take the request that was redirected."""
        if self.direct and endpoint_uri == self.endpoint_uri and isinstance(data, bytes):
            answer = self.post(
                data, kwargs.get("headers") or {}, kwargs.get("timeout", DEFAULT_TIMEOUT)
            )
            if answer is not None:
                return answer
        return super().make_post_request(endpoint_uri, data, **kwargs)

    def post(self, body: bytes, headers: Mapping[str, str], timeout: Any) -> bytes | None:
        """`body` POSTed over this thread's connection, `timeout` seconds (or requests'
        `(connect, read)` pair) for connecting and for each wait for the node; None for a
        redirect (3xx), which the caller leaves to `requests`."""
        connect_timeout, read_timeout = (
            timeout if isinstance(timeout, tuple) else (timeout, timeout)
        )
        connection = self._connection()
        if connection.sock is None:
            connection.timeout = connect_timeout
            try:
                connection.connect()
            except TimeoutError as exc:
                self._drop()
                raise requests.ConnectTimeout(
                    f"no connection to {self.endpoint_uri} within {connect_timeout} s"
                ) from exc
            except OSError as exc:
                self._drop()
                raise requests.ConnectionError(
                    f"cannot connect to {self.endpoint_uri}: {exc}"
                ) from exc
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        try:
            # a gateway may answer (413: the body is too large) and close before it read the
            # whole body, as urllib3 knows: its answer is read below, or the read fails
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request("POST", self._target, body, dict(headers))
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError as exc:
            self._drop()
            raise requests.ReadTimeout(
                f"{self.endpoint_uri} did not answer within {read_timeout} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise requests.ConnectionError(
                f"the connection to {self.endpoint_uri} broke: {exc!r}"
            ) from exc
        except BaseException:
            self._drop()  # halfway through a request: never used again
            raise
        if response.will_close:
            self._drop()
        if 300 <= response.status < 400:
            return None
        if not 200 <= response.status < 300:
            failed = requests.Response()
            failed.status_code = response.status
            failed.reason = response.reason
            failed.headers = CaseInsensitiveDict(response.getheaders())
            failed.url = self.endpoint_uri
            failed.raw = io.BytesIO(payload)
            failed.raise_for_status()  # requests' own HTTPError, with the response
            raise requests.HTTPError(
                f"{response.status} {response.reason} for url: {self.endpoint_uri}",
                response=failed,
            )
        return payload

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection, unless the node closed it while it was idle (readable
        before a request was sent: the end of the stream, or stray bytes), then a new one."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            sock = held.connection.sock
            if sock is None or not _readable(sock):
                return held.connection
            self._drop()
        held = self._local.held = _Held(http.client.HTTPConnection(self._host, self._port))
        return held.connection

    def _drop(self) -> None:
        held: _Held | None = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            held.connection.close()


class _Held:
    """A thread's connection, closed when the thread's storage lets it go (the thread ended,
    or the transport was dropped)."""

    __slots__ = ("connection",)

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self.connection = connection

    def __del__(self) -> None:
        self.connection.close()


def _readable(sock: socket.socket) -> bool:
    """Whether `sock` has something to read right now (poll(2), no wait)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))

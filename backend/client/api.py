"""A client of the running service's REST API (`docs/interface.md` section 4), as a wallet or a
script uses it: JSON in and out, refusals turned into the project's errors.

- A refusal (`{"error", "detail"}` with a 4xx/5xx status) raises `ServiceRefusedError`, whose
  message is `"<detail> (<code>, HTTP <status>)"`.
- A service that does not answer (connection refused, timeout) raises `ServiceUnreachableError`
  (an `UnavailableError`): "the service at <url> does not answer (start it with `escrow up`)".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import httpx

from backend.errors import QualityEscrowError, UnavailableError

__all__ = [
    "ServiceClient",
    "ServiceRefusedError",
    "ServiceTimeoutError",
    "ServiceUnreachableError",
]

#: seconds between two polls of `wait_for_escrow` / `wait_for_tx` / `wait_for_confirmation`
POLL_INTERVAL = 0.2


class ServiceRefusedError(QualityEscrowError):
    """The API answered with an error status and its `{"error": code, "detail": ...}` body.

    `status` is the HTTP status, `code` the body's `error` (a name of docs/interface.md section
    4.2, or a revert's name), `detail` what was wrong. A body that is not the API's (a proxy's
    HTML page) gives `code` `http_<status>` and the start of the text as `detail`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        # the API's own code per instance (the class attribute is the family's default)
        setattr(self, "code", code)  # noqa: B010  (mypy: `code` is a ClassVar of the root)
        self.detail = detail
        super().__init__(f"{detail} ({code}, HTTP {status})")


class ServiceUnreachableError(UnavailableError):
    """No answer from the service at `url` (refused connection, timeout, a broken reply)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__("service", reason)
        self.url = url
        self.message = f"the service at {url} does not answer (start it with `escrow up`)"
        self.args = (self.message,)


class ServiceTimeoutError(UnavailableError):
    """The service answered, but what was waited for (an escrow in the index, a relayed
    confirmation, a mined transaction) did not come within the time given."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(what, f"not there after {seconds:g} s")
        self.message = f"{what} did not come within {seconds:g} s"
        self.args = (self.message,)


class ServiceClient:
    """The REST API at `base_url` (`http://127.0.0.1:8000`), over one `httpx.Client`.

    Every call returns the decoded JSON answer (or bytes) and raises `ServiceRefusedError` for
    a refusal and `ServiceUnreachableError` when the service does not answer. `transport` lets
    tests talk to an app in process (`httpx.ASGITransport`-like, or `httpx.MockTransport`)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._config: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            raise ServiceUnreachableError(self.base_url, str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            raise _refusal(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceUnreachableError(
                self.base_url, f"{response.request.url} answered no JSON"
            ) from exc

    # ------------------------------------------------------------------ calls

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """`GET path` (relative to the base URL, e.g. `/api/escrows/7`) with query `params`
        (None values left out); the JSON answer."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._json(self._request("GET", path, params=query))

    def post_json(self, path: str, body: Any = None) -> Any:
        """`POST path` with the JSON `body` (None: an empty body); the JSON answer."""
        if body is None:
            return self._json(self._request("POST", path))
        return self._json(self._request("POST", path, json=body))

    def get_bytes(self, path: str) -> bytes:
        """`GET path`; the raw answer (CSV, PDF, an attachment)."""
        return self._request("GET", path).content

    def upload(self, name: str, content: bytes, media_type: str) -> dict[str, Any]:
        """`POST /api/attachments` of one file: `{sha256, name, media_type, size}` (the digest
        to list in a delivery, dispute or review). 413 over 10 MiB, 422 an unsupported type."""
        files = {"file": (name, content, media_type)}
        answer: dict[str, Any] = self._json(self._request("POST", "/api/attachments", files=files))
        return answer

    def config(self) -> dict[str, Any]:
        """`GET /api/config` (chain id, RPC URL for wallets, contract, oracle, relayer, arbiter,
        native currency, limits), asked once per client."""
        if self._config is None:
            self._config = self.get_json("/api/config")
        return self._config

    # ------------------------------------------------------------------ waiting

    def poll(
        self,
        path: str,
        ready: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 60.0,
        *,
        absent_is_pending: bool = False,
        pause: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """`GET path` until `ready(answer)` holds; the answer. With `absent_is_pending` a 404
        means "not yet" (the index or the node has not seen it); any other refusal is raised.
        `pause` runs between tries (default: sleep `POLL_INTERVAL` seconds).
        `ServiceTimeoutError` naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer: dict[str, Any] = self.get_json(path)
            except ServiceRefusedError as exc:
                if not (absent_is_pending and exc.status == 404):
                    raise
            else:
                if ready(answer):
                    return answer
            if time.monotonic() > deadline:
                raise ServiceTimeoutError(what, timeout)
            if pause is None:
                time.sleep(POLL_INTERVAL)
            else:
                pause()

    def wait_for_escrow(
        self,
        escrow_id: int,
        until: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 60.0,
        *,
        what: str | None = None,
        pause: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """`GET /api/escrows/{escrow_id}` polled until the index has the escrow (a 404 means
        not yet) and `until(detail)` holds; the detail. `ServiceTimeoutError` after `timeout`
        seconds."""
        return self.poll(
            f"/api/escrows/{escrow_id}", until or (lambda _detail: True),
            what or f"escrow {escrow_id} in the service's index", timeout,
            absent_is_pending=True, pause=pause,
        )

    def wait_for_tx(self, tx_hash: str, timeout: float = 60.0) -> dict[str, Any]:
        """`GET /api/tx/{tx_hash}` polled until the transaction is `mined` or `reverted`; the
        report `{tx_hash, status, block_number, from, to, escrow_ids, events, error}`."""
        return self.poll(
            f"/api/tx/{tx_hash}", lambda report: report.get("status") != "pending",
            f"transaction {tx_hash}", timeout, absent_is_pending=True,
        )

    def wait_for_confirmation(self, request_id: int, timeout: float = 60.0) -> dict[str, Any]:
        """`GET /api/confirmations/{request_id}` polled until the relayed confirmation is
        `mined` or `failed`; its progress (`status`, `tx_hash`, `error`, ...)."""
        return self.poll(
            f"/api/confirmations/{request_id}",
            lambda progress: progress.get("status") in ("mined", "failed"),
            f"confirmation request {request_id}", timeout,
        )

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _refusal(response: httpx.Response) -> ServiceRefusedError:
    """The API's `{"error", "detail"}` of an error answer, or the start of whatever came."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ServiceRefusedError(status, body["error"], str(body.get("detail", "")))
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return ServiceRefusedError(status, f"http_{status}", text)

"""Bounds on every request body, applied before any route, dependency or parser sees a byte of it:
`BodyBounds`, the outermost ASGI middleware of `create_app` (the process's recursion limit is put
back where CPython's C stack is safe by `backend.chain.connect.bound_recursion`).

Why (docs/reliability.md, "Requests that could kill the process"): importing `py_ecc` (through
`eth_keyfile`, which web3.py's account support imports) runs `sys.setrecursionlimit(100_000)`, and
py-evm (the in-process chain) raises it to at least 12,288. On CPython 3.11 the C JSON parser counts
its nesting against that same limit, so a 200 KB body of 100,000 nested `[` no longer stops at a
`RecursionError`: it overflows the 8 MiB C stack first (measured: a main thread segfaults between
60,000 and 80,000 levels) and the whole process, API and workers together, dies with SIGSEGV.

What is bounded, per request (`BODY_RULES`, first match on the path wins):

- size: a `Content-Length` over the limit is refused at once, without reading the body; a body
  without one (chunked) is counted as it streams and refused the moment it passes the limit.
  JSON bodies: `MAX_JSON_BODY_BYTES` (2 MiB), measurement batches `MAX_MEASUREMENTS_BYTES`
  (4 MiB); the attachment upload (multipart) `MAX_UPLOAD_BODY_BYTES`, the attachment limit plus
  `UPLOAD_ENVELOPE_BYTES` of multipart framing. Each route keeps its own tighter limit (a terms
  document 64 KiB): this is the backstop for all of them.
- nesting: every body but the upload's is scanned, as it streams, for `[` and `{` outside JSON
  strings; deeper than `MAX_JSON_DEPTH` (64) levels is refused. A body is scanned whatever its
  `Content-Type` says, because FastAPI parses a body without one as JSON and the raw-body routes
  (terms, measurements) call `json.loads` on any. No document of the interface nests beyond 6.

A refusal is the API's error body (`backend.api.errors.Refusal`): 413 `too_large`
(`TooLargeError`) or 400 `malformed` (`MalformedInputError`). Once a body is refused the app gets
`http.disconnect` instead of the rest of it, and whatever it answers to that is replaced by the
refusal; the remaining bytes are never read (uvicorn closes the connection).

The scan costs a few C-level passes per chunk (`bytes.translate`, `re.sub`, `bytes.find`) and one
`itertools.accumulate` over the brackets only when a chunk may reach the limit: linear in the
body. Measured (2 shared cores, 64 KiB chunks): 2 ms to refuse the 200 KB attack, 5 ms for a
10,000-sample measurement batch (780 KB), 0.1 to 0.25 s for the costliest 4 MiB bodies
(2 million `[]` or empty strings), the order of `json.loads` on a body that size.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.errors import Refusal, refusal_of
from backend.api.routes.measurements import MAX_MEASUREMENTS_BYTES
from backend.confirmations.reviews import MAX_ATTACHMENT_BYTES
from backend.errors import MalformedInputError, TooLargeError

#: the deepest nesting of `[`/`{` a body may have (the interface's documents nest at most 6)
MAX_JSON_DEPTH = 64
#: bytes of a JSON body on any route without a rule of its own (the largest JSON route
#: without its own limit, `POST /api/escrows/prepare` with a 64 KiB terms document, is far below)
MAX_JSON_BODY_BYTES = 2 * 1024 * 1024
#: the multipart framing (boundaries, part headers) around the one file of an upload (the room
#: `backend/api/routes/attachments.py` leaves too)
UPLOAD_ENVELOPE_BYTES = 64 * 1024
#: bytes of the whole multipart body of `POST /api/attachments`
MAX_UPLOAD_BODY_BYTES = MAX_ATTACHMENT_BYTES + UPLOAD_ENVELOPE_BYTES


@dataclass(frozen=True)
class BodyRule:
    """The bound of the bodies sent to the paths `path` (a regular expression matched in full):
    at most `limit` bytes, and scanned for nesting unless `multipart` (an upload, whose file is
    never parsed as JSON)."""

    path: str
    limit: int
    multipart: bool = False


#: first match wins; every other path gets `MAX_JSON_BODY_BYTES` and the nesting scan
BODY_RULES: tuple[BodyRule, ...] = (
    BodyRule(r"/api/attachments", MAX_UPLOAD_BODY_BYTES, multipart=True),
    BodyRule(r"/api/escrows/[^/]+/measurements", MAX_MEASUREMENTS_BYTES),
)

#: every byte but the four brackets, removed before counting (`bytes.translate(None, ...)`)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: openers to 1, closers to 255 (-1 as a signed byte, `array("b")`)
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
#: a backslash and the byte it escapes (JSON allows backslashes only inside strings)
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
#: a whole string once escapes are gone
_STRING = re.compile(rb'"[^"]*"')


#: byte order marks of UTF-16 and UTF-32 (codecs.BOM_UTF16_LE/BE, BOM_UTF32_LE/BE)
_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class NestingScan:
    """The JSON nesting depth of a body fed in chunks, strings and escapes skipped.

    Per chunk: escape pairs are removed (a trailing lone backslash is carried into the next
    chunk), then whole strings, then an unfinished string's tail; what remains outside strings
    is reduced to its brackets. A body that is not JSON may be scanned wrongly only after the
    point where the JSON parser itself stops at it (a backslash or a closer outside strings)."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        #: current depth (negative after stray closers; the parser refuses those anyway)
        self.depth = 0
        self._in_string = False
        self._carry = b""
        self._started = False
        #: why the body was refused (None while it is not)
        self.reason: str | None = None

    def feed(self, chunk: bytes) -> bool:
        """Takes the next chunk; False (with `reason`) once the body has gone deeper than
        `max_depth`, or shows it is not UTF-8: a NUL byte (never in UTF-8 JSON text, where
        U+0000 must be escaped) or a UTF-16/32 byte order mark. JSON between systems is UTF-8
        (RFC 8259 section 8.1), and only in UTF-8 does this byte scan see the brackets the
        parser sees (Python's parser would decode UTF-16 and UTF-32 bodies too)."""
        if (not self._started and chunk.startswith(_BOMS)) or b"\x00" in chunk:
            self.reason = "JSON must be UTF-8 (RFC 8259 section 8.1)"
            return False
        self._started = self._started or bool(chunk)
        if not self._within_depth(chunk):
            self.reason = f"JSON nested deeper than {self.max_depth} levels"
            return False
        return True

    def _within_depth(self, chunk: bytes) -> bool:
        data = _ESCAPE.sub(b"", self._carry + chunk)
        self._carry = b""
        if data.endswith(b"\\"):
            self._carry, data = b"\\", data[:-1]
        if self._in_string:
            end = data.find(b'"')
            if end < 0:
                return True
            data = data[end + 1 :]
            self._in_string = False
        data = _STRING.sub(b"", data)
        opened = data.find(b'"')
        if opened >= 0:  # a string that goes on in the next chunk
            data = data[:opened]
            self._in_string = True
        brackets = data.translate(None, _NOT_BRACKETS)
        if not brackets:
            return True
        openers = brackets.count(b"[") + brackets.count(b"{")
        if self.depth + openers > self.max_depth:  # it may go too deep: follow it level by level
            levels = accumulate(array("b", brackets.translate(_SIGNS)), initial=self.depth)
            if max(levels) > self.max_depth:
                return False
        self.depth += 2 * openers - len(brackets)
        return True


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyBounds:
    """ASGI middleware bounding each HTTP request body by `rules` (default `BODY_RULES`), the
    size of bodies without a rule by `default_limit` bytes and nesting by `max_depth` levels
    (module docstring). Non-HTTP scopes (lifespan) pass untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Sequence[BodyRule] = BODY_RULES,
        default_limit: int = MAX_JSON_BODY_BYTES,
        max_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.rules = [(re.compile(rule.path), rule) for rule in rules]
        self.default = BodyRule(".*", default_limit)
        self.max_depth = max_depth

    def rule_for(self, path: str) -> BodyRule:
        return next((rule for regex, rule in self.rules if regex.fullmatch(path)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rule_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > rule.limit:
            await _send(refusal_of(TooLargeError("request body", declared, rule.limit)), scope,
                        receive, send)
            return
        scan = None if rule.multipart else NestingScan(self.max_depth)
        received = 0
        refused: Refusal | None = None
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, refused
            if refused is not None:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > rule.limit:
                refused = refusal_of(TooLargeError("request body", received, rule.limit))
            elif scan is not None and not scan.feed(chunk):
                refused = refusal_of(MalformedInputError("body", scan.reason or "refused"))
            return {"type": "http.disconnect"} if refused is not None else message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                return  # the app's answer to a cut body: the refusal replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            await _send(refused, scope, receive, send)


async def _send(refusal: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
    response = refusal.response()
    response.headers["Connection"] = "close"  # the rest of the body is never read
    await response(scope, receive, send)

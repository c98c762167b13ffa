"""Node reads with a deadline, for the answers that must come quickly whatever the node does:
`/api/health`, `/metrics` and the API's deployment check (`backend/api/deps.py`).

A node that accepts connections and never answers holds a read for the provider's whole timeout
(`ESCROW_RPC_TIMEOUT`). `NodeProbe.read` runs the read in a daemon thread of its key's and waits
for it at most `timeout` seconds; past that it raises `NodeNotAnswering` and the read goes on
alone until the provider gives up. One read per key at a time: a caller that comes while the
previous read of its key is still waiting for the node waits on that same read, so a frozen node
holds at most one thread per key, never one per request. A key's thread serves its reads one
after the other and ends after `IDLE_SECONDS` without one (a thread started per read cost the
API about a millisecond of CPU per POST).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from backend.chain.errors import NodeUnavailable

T = TypeVar("T")


class NodeNotAnswering(NodeUnavailable):
    """The node did not answer `what` within `seconds` (a 503 where it reaches the API)."""

    def __init__(self, what: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(what, f"no answer within {seconds:g} s")


#: seconds a key's reading thread waits for its next read before it ends
IDLE_SECONDS = 1.0


class _Reader:
    """The daemon thread that runs one key's reads, in turn; it ends once `IDLE_SECONDS` pass
    without a read. `lock` is the probe's: a read is handed over only to a reader still
    `alive`, and a reader ends only with nothing handed over, both under it."""

    def __init__(self, name: str, lock: threading.Lock) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.alive = True
        self._lock = lock
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self.jobs.empty():
                        self.alive = False
                        return
                continue
            job()


class NodeProbe:
    """Deadline-bound node reads (see the module's docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: the last read of each key and when it finished (monotonic seconds; None: under way)
        self._reads: dict[str, tuple[Future[Any], float | None]] = {}
        #: the thread reading for each key
        self._readers: dict[str, _Reader] = {}

    def start(self, key: str, read: Callable[[], T], *, max_age: float = 0.0) -> Future[T]:
        """The read of `key` under way, or its last answer when it came less than `max_age`
        seconds ago (an error is never reused), or `read` started now in the key's thread."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                result = read()
            except BaseException as exc:  # handed to whoever waits
                future.set_exception(exc)
            else:
                future.set_result(result)
            with self._lock:
                if self._reads.get(key, (None, None))[0] is future:
                    self._reads[key] = (future, time.monotonic())

        now = time.monotonic()
        with self._lock:
            last = self._reads.get(key)
            if last is not None:
                previous, finished = last
                if finished is None or (
                    now - finished < max_age and previous.exception() is None
                ):
                    return previous
            self._reads[key] = (future, None)
            reader = self._readers.get(key)
            if reader is None or not reader.alive:
                reader = self._readers[key] = _Reader(f"node-probe-{key}", self._lock)
            reader.jobs.put(run)  # under the lock: the reader cannot end before it takes it
        return future

    def read(
        self, key: str, read: Callable[[], T], timeout: float, *, what: str = "",
        max_age: float = 0.0,
    ) -> T:
        """`read()` (or the read of `key` under way, or one that answered less than `max_age`
        seconds ago), waited for at most `timeout` seconds. Raises `NodeNotAnswering(what or
        key)` past it, and whatever the read raised."""
        future = self.start(key, read, max_age=max_age)
        return wait(future, time.monotonic() + timeout, what or key, timeout)

    async def read_async(
        self, key: str, read: Callable[[], T], timeout: float, *, what: str = "",
        max_age: float = 0.0,
    ) -> T:
        """`read` as an event loop awaits it: no thread of the caller's waits for the node (the
        read runs in the probe's own thread, as `read` does). Same answers, same errors."""
        future = self.start(key, read, max_age=max_age)
        # shielded: a caller that gives up leaves the read, which others may wait on, alone
        waiting = asyncio.shield(asyncio.wrap_future(future))
        try:
            return await asyncio.wait_for(waiting, timeout)
        except TimeoutError:
            raise NodeNotAnswering(what or key, timeout) from None


def wait(future: Future[T], deadline: float, what: str, timeout: float) -> T:
    """The result of `future` by `deadline` (a `time.monotonic()` value); `NodeNotAnswering`
    after it, naming `what` and the `timeout` it was given."""
    try:
        return future.result(max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        raise NodeNotAnswering(what, timeout) from None

"""Admission control of one API process: backpressure instead of 30-second waits
(docs/performance.md, "Many clients at once").

What stalled: every sync route and sync dependency runs on anyio's threadpool (40 threads); a
request's session took one of the pool's connections at its first statement and gave it back
only once FastAPI had validated the response, which needs one more thread. With 64 requests in
flight all 40 threads waited for one of the 15 connections, whose holders waited for a thread:
nothing moved until the pool's 30-second timeout, and health and the workers starved with them.

The rule now: a request takes a place (`Admission.place`) before it opens its database session
(`backend.api.deps.get_session`, after its body was read, so a slow client holds nothing), and
gives it back once its transaction is committed or rolled back and its connection returned,
before the response leaves. There are `ESCROW_API_MAX_CONCURRENCY` places (default
`ESCROW_DB_POOL_SIZE` - 2), the pool keeps 2 connections more for `/api/health` and `/metrics`,
and the threadpool has `ESCROW_API_THREADS` threads (at least as many as the places and those 2:
`backend.config.Settings` refuses less). So an admitted request always finds a connection at
once and a thread soon, and never holds a connection while waiting for one.

A request that finds every place taken waits for one at most `ESCROW_API_QUEUE_TIMEOUT`
seconds (0: not at all), then is refused with 503 `overloaded` and `Retry-After: 1`
(`ServiceOverloaded`): nothing was read or written for it, so asking again is safe. It is
refused at once, without waiting, when the requests already waiting could not all be admitted
within that time at the pace places are given back (`Admission.max_waiting`): under a burst the
excess is told to come back at once instead of being parked for the whole timeout. The workers
have a pool of their own (`backend.services.worker_services`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio.to_thread

from backend.config import Settings
from backend.errors import UnavailableError


class ServiceOverloaded(UnavailableError):
    """503 `overloaded` with `Retry-After`: every place of the API process was taken for
    `ESCROW_API_QUEUE_TIMEOUT` seconds (`Admission`). The request was not started: nothing of
    it was read or written, asking again is safe."""

    code = "overloaded"
    retry_after = 1


@dataclass
class Admission:
    """The places of one API process (`limit`) and how long a request waits for one
    (`queue_timeout`, seconds). Used from the event loop only; counts what it did for
    the benchmarks and tests."""

    limit: int
    queue_timeout: float
    #: requests admitted, and refused with `ServiceOverloaded`, since start
    admitted: int = 0
    refused: int = 0
    #: the most places in use at once since start
    peak: int = 0
    _in_use: int = 0
    _waiting: int = 0
    #: seconds a place is held, smoothed (exponential moving average); None before the first
    _hold: float | None = None
    _semaphore: asyncio.Semaphore | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(settings.api_concurrency, settings.api_queue_timeout)

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for a place now."""
        return self._waiting

    def max_waiting(self) -> int | None:
        """How many requests may wait for a place: as many as the places serve within
        `queue_timeout` at the smoothed hold time (at least `limit`); None (no bound) before
        a place was first given back."""
        if self._hold is None:
            return None
        return max(self.limit, int(self.limit * self.queue_timeout / max(self._hold, 1e-3)))

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """Holds one place while the block runs; raises `ServiceOverloaded` when none frees up
        within `queue_timeout` seconds, or at once when `max_waiting` requests wait already."""
        if self._semaphore is None:  # made in the loop that serves (uvicorn's)
            self._semaphore = asyncio.Semaphore(self.limit)
        semaphore = self._semaphore
        if semaphore.locked():
            bound = self.max_waiting()
            if self.queue_timeout <= 0 or (bound is not None and self._waiting >= bound):
                self._refuse(f"{self._waiting} requests wait already")
            self._waiting += 1
            try:
                await asyncio.wait_for(semaphore.acquire(), self.queue_timeout)
            except TimeoutError:
                self._refuse(f"none was given back within {self.queue_timeout:g} s")
            finally:
                self._waiting -= 1
        else:
            await semaphore.acquire()
        self.admitted += 1
        self._in_use += 1
        self.peak = max(self.peak, self._in_use)
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            yield
        finally:
            self._in_use -= 1
            held = loop.time() - start
            self._hold = held if self._hold is None else 0.8 * self._hold + 0.2 * held
            semaphore.release()

    def _refuse(self, why: str) -> None:
        self.refused += 1
        raise ServiceOverloaded(
            "service",
            f"all {self.limit} places of this API process are taken and {why} "
            "(ESCROW_API_MAX_CONCURRENCY, ESCROW_API_QUEUE_TIMEOUT)",
        )


def set_thread_limit(settings: Settings) -> None:
    """Gives the running loop's default threadpool (anyio's limiter, which Starlette and
    FastAPI use for sync routes, dependencies and response validation) `ESCROW_API_THREADS`
    threads (`Settings` checked that they are at least the places and the health reserve).
    Called from the app's lifespan, inside the serving loop."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads

"""The admission limit of an API process (backend/api/admission.py) and the capacity settings it
is set with (backend/config.py)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from backend.api.admission import Admission, ServiceOverloaded
from backend.api.errors import refusal_of
from backend.config import Settings


async def _hold(admission: Admission, entered: asyncio.Event, release: asyncio.Event) -> None:
    async with admission.place():
        entered.set()
        await release.wait()


def test_a_request_waits_for_a_place_at_most_the_queue_timeout_then_is_overloaded() -> None:
    async def scenario() -> tuple[float, ServiceOverloaded]:
        admission = Admission(limit=1, queue_timeout=0.2)
        entered, release = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(_hold(admission, entered, release))
        await entered.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ServiceOverloaded) as refused:
            async with admission.place():
                pass
        waited = loop.time() - start
        release.set()
        await holder
        assert (admission.admitted, admission.refused, admission.peak) == (1, 1, 1)
        return waited, refused.value

    waited, error = asyncio.run(scenario())
    assert 0.15 <= waited < 2.0
    refusal = refusal_of(error)
    assert (refusal.status, refusal.code, refusal.headers) == (
        503, "overloaded", {"Retry-After": "1"}
    )


def test_a_place_given_back_in_time_admits_the_waiting_request() -> None:
    async def scenario() -> Admission:
        admission = Admission(limit=1, queue_timeout=5.0)
        entered, release = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(_hold(admission, entered, release))
        await entered.wait()
        asyncio.get_running_loop().call_later(0.05, release.set)
        async with admission.place():
            assert admission.in_use == 1
        await holder
        return admission

    admission = asyncio.run(scenario())
    assert (admission.admitted, admission.refused, admission.in_use) == (2, 0, 0)


def test_no_queue_timeout_refuses_at_once_when_every_place_is_taken() -> None:
    async def scenario() -> None:
        admission = Admission(limit=2, queue_timeout=0)
        entered = [asyncio.Event(), asyncio.Event()]
        release = asyncio.Event()
        holders = [asyncio.create_task(_hold(admission, e, release)) for e in entered]
        for e in entered:
            await e.wait()
        with pytest.raises(ServiceOverloaded):
            async with admission.place():
                pass
        release.set()
        await asyncio.gather(*holders)

    asyncio.run(scenario())


def test_requests_beyond_what_the_places_serve_within_the_timeout_are_refused_at_once() -> None:
    async def scenario() -> float:
        admission = Admission(limit=1, queue_timeout=0.5)
        async with admission.place():  # a place held 0.2 s: 2 may wait (0.5 s / 0.2 s)
            await asyncio.sleep(0.2)
        assert admission.max_waiting() == 2
        entered, release = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(_hold(admission, entered, release))
        await entered.wait()
        waiters = [asyncio.create_task(_hold(admission, asyncio.Event(), release))
                   for _ in range(2)]
        await asyncio.sleep(0.01)  # both wait now
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ServiceOverloaded, match="2 requests wait already"):
            async with admission.place():
                pass
        refused_after = loop.time() - start
        release.set()
        await asyncio.gather(holder, *waiters)
        assert (admission.admitted, admission.refused) == (4, 1)
        return refused_after

    assert asyncio.run(scenario()) < 0.1  # at once, not after the 0.5 s timeout


def test_the_places_default_to_the_pool_less_the_health_reserve() -> None:
    assert Settings(db_pool_size=10).api_concurrency == 8
    assert Settings(db_pool_size=10, api_max_concurrency=3).api_concurrency == 3


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"db_pool_size": 10, "api_max_concurrency": 9}, "ESCROW_DB_POOL_SIZE"),
        ({"db_pool_size": 50, "api_threads": 40}, "ESCROW_API_THREADS"),
    ],
)
def test_capacity_settings_that_do_not_fit_are_refused(
    settings: dict[str, int], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**settings)  # type: ignore[arg-type]

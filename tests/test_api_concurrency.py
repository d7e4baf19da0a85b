"""API concurrency: key cache (shared store checks, background re-check) and LoopScanner."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import KeyCache, Principal, authenticate
from api.limits import RateLimiter


class SlowStore:
    """verify_api_key answers after ``delay`` seconds and counts its calls."""

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        self.calls = 0
        self.revoked = False
        self._lock = threading.Lock()

    def verify_api_key(self, token: str):
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.revoked:
            return None
        return SimpleNamespace(key_id="k1", name="case system", role="scanner")


def fake_request(store, ttl: float):
    state = SimpleNamespace(store=store, key_cache=KeyCache(ttl), key_inflight={},
                            rate_limiter=RateLimiter(per_minute=10**6, burst=10**6),
                            metrics=SimpleNamespace())
    return SimpleNamespace(app=SimpleNamespace(state=state), state=SimpleNamespace())


CRED = HTTPAuthorizationCredentials(scheme="Bearer", credentials="flg_k1_secret")


def test_concurrent_misses_share_one_store_check():
    store = SlowStore(delay=0.1)
    req = fake_request(store, ttl=5)

    async def main():
        return await asyncio.gather(*(authenticate(req, CRED) for _ in range(8)))

    principals = asyncio.run(main())
    assert store.calls == 1
    assert all(p == Principal("k1", "case system", "scanner") for p in principals)
    assert req.app.state.key_inflight == {}


def test_entry_near_expiry_is_rechecked_in_the_background():
    store = SlowStore(delay=0.05)
    req = fake_request(store, ttl=2.0)

    async def main():
        await authenticate(req, CRED)  # miss: checked and cached
        assert store.calls == 1
        await authenticate(req, CRED)  # fresh: no check
        assert store.calls == 1
        await asyncio.sleep(2.0 * KeyCache.REFRESH_SHARE + 0.02)
        store.revoked = True  # revoked elsewhere
        started = time.perf_counter()
        p = await authenticate(req, CRED)  # old entry: answered from cache at once...
        assert time.perf_counter() - started < store.delay
        assert p.key_id == "k1"
        await asyncio.sleep(store.delay * 3)  # ...while the background check runs
        assert store.calls == 2
        # still inside the entry's 2 s life, so only the background check can have
        # removed it
        assert req.app.state.key_cache.get(CRED.credentials) is None
        with pytest.raises(HTTPException) as exc:  # the check dropped the revoked key
            await authenticate(req, CRED)
        assert exc.value.status_code == 401

    asyncio.run(main())


def test_no_cache_checks_every_time():
    store = SlowStore(delay=0)
    req = fake_request(store, ttl=0)

    async def main():
        for _ in range(3):
            await authenticate(req, CRED)

    asyncio.run(main())
    assert store.calls == 3


def test_lookup_ages():
    cache = KeyCache(ttl=10)
    assert cache.lookup("t") == (None, False)
    cache.put("t", Principal("k", "n", "scanner"))
    p, refresh = cache.lookup("t")
    assert p is not None and refresh is False
    cache._items[KeyCache.digest("t")] = (p, time.monotonic() - 9)
    assert cache.lookup("t") == (p, True)
    cache._items[KeyCache.digest("t")] = (p, time.monotonic() - 11)
    assert cache.lookup("t") == (None, False)


# -- LoopScanner (api/service.py): short scans on the loop, first come first served ----

class RecordingFlagger:
    def __init__(self):
        self.order = []

    def scan_many(self, records):
        for r in records:
            self.order.append(r["id"])
            time.sleep(0.002)  # CPU-bound work blocks the loop, as a real scan does
            yield r["id"]


def test_loop_scanner_serves_in_arrival_order_and_yields_between_scans():
    from api.service import LoopScanner

    fl = RecordingFlagger()
    ticks = []

    async def main():
        scanner = LoopScanner()

        async def ticker():  # other loop work must run between two scans
            for _ in range(50):
                ticks.append(len(fl.order))
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        jobs = [asyncio.create_task(scanner.scan(fl, [{"id": f"n{i}"}])) for i in range(10)]
        results = await asyncio.gather(*jobs)
        await tick
        scanner.close()
        return results

    results = asyncio.run(main())
    assert results == [[f"n{i}"] for i in range(10)]
    assert fl.order == [f"n{i}" for i in range(10)]
    # the ticker saw the scans advance one at a time, not all ten in one loop turn
    assert len(set(ticks)) >= 5


def test_loop_scanner_skips_a_job_whose_request_went_away():
    from api.service import LoopScanner

    fl = RecordingFlagger()

    async def main():
        scanner = LoopScanner()
        first = asyncio.create_task(scanner.scan(fl, [{"id": "a"}]))
        gone = asyncio.create_task(scanner.scan(fl, [{"id": "b"}]))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        assert await first == ["a"]
        assert await scanner.scan(fl, [{"id": "c"}]) == ["c"]
        scanner.close()

    asyncio.run(main())
    assert fl.order == ["a", "c"]

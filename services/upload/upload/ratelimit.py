"""Token buckets per client: `burst` requests at once, then `per_minute` sustained.

Memory is bounded: a bucket idle long enough to have refilled is the same as no bucket, so
it is dropped (oldest first, as requests come); past `max_clients` the least recently seen
client is dropped too, which only ever makes its limit more lenient.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_CLIENTS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(max(burst, 1))
        self._max_clients = max_clients
        self._clock = clock
        self._refill = self._burst / self._rate if self._rate else 0.0
        """Seconds an empty bucket takes to fill up again."""
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently seen first

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> int:
        """Spend one request of `key`'s bucket: 0 when allowed, else the whole seconds to
        wait before the next one is (Retry-After)."""
        if not self.enabled:
            return 0
        now = self._clock()
        self._evict(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self._rate))

    def _evict(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            full_again = now - oldest.updated >= self._refill
            if not full_again and len(self._buckets) < self._max_clients:
                return
            self._buckets.popitem(last=False)

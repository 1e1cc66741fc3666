"""Work in flight, counted per client and in all, each count with a cap: uploads being
received, images being sent and progress streams open each hold a slot while they last.
Past a cap, `hold` raises the refusal its owner chose (429 or 503, with Retry-After)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from .errors import ApiError

Scope = Literal["client", "total"]
Refusal = Callable[[Scope, int, int], ApiError]
"""(which cap is full, how many are held there, the cap) -> the error to answer with."""


class Slots:
    def __init__(self, *, total: int, per_client: int, refuse: Refusal) -> None:
        self._total = total
        self._per_client = per_client
        self._refuse = refuse
        self._held: Counter[str] = Counter()

    @property
    def in_use(self) -> int:
        return self._held.total()

    def held_by(self, client: str) -> int:
        return self._held[client]

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """One slot for `client` while the block runs; the refusal if its cap or the
        total is reached."""
        if self._held[client] >= self._per_client:
            raise self._refuse("client", self._held[client], self._per_client)
        if self.in_use >= self._total:
            raise self._refuse("total", self.in_use, self._total)
        self._held[client] += 1
        try:
            yield
        finally:
            self._held[client] -= 1
            if not self._held[client]:
                del self._held[client]  # memory follows what is in flight, not who came

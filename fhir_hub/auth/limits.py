"""Per-client rate limits weighted by cost (``FHIR_HUB_RATE_LIMIT``, cost units per second).

One client must not starve the others on a shared server: each client_id has a token bucket
that refills at the configured rate and holds five seconds of it, and each request takes what it
costs (a read 1, a write 2, a search or history 5, more with includes, an operation over a whole
record 20, a bundle 1 per entry). A request that finds too little in its client's bucket is
answered 429 with ``Retry-After`` (whole seconds until the bucket holds enough) and an
OperationOutcome, and takes nothing. A request costing more than the bucket can ever hold is
let through when the bucket is full, so no request is refused forever.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from fhir_hub.errors import FhirError, error

#: Seconds of the rate a bucket holds (the burst).
BURST_SECONDS = 5
#: Buckets kept, least recently used dropped first (a dropped bucket comes back full).
MAX_CLIENTS = 10_000


def cost(method: str, seg: Sequence[str], pairs: Sequence[tuple[str, str]], body: bytes) -> int:
    """What a request costs, by its shape (pure)."""
    n = len(seg)
    if method == "POST" and n == 0:
        return 1 + body.count(b'"request"')  # a bundle: one per entry
    if seg and seg[-1] in ("$everything", "$summary"):
        return 20
    if method in ("GET", "HEAD") and (n == 2 and seg[1][:1] not in ("_", "$") or n == 4 and seg[2] == "_history"):
        return 1
    if method in ("PUT", "PATCH", "DELETE") or (method == "POST" and n == 1 and seg[0][:1] not in ("_", "$")):
        return 2
    includes = sum(1 for name, _ in pairs if name.split(":")[0] in ("_include", "_revinclude"))
    return 5 + 5 * includes


class RateLimits:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = rate * BURST_SECONDS
        self.clock = clock
        #: client_id → (units left, when counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client_id: str, units: int) -> None:
        """Take ``units`` from the client's bucket, or raise the 429 to answer."""
        now = self.clock()
        left, then = self._buckets.get(client_id, (self.capacity, now))
        left = min(self.capacity, left + (now - then) * self.rate)
        need = min(units, self.capacity)
        if left < need:
            self._buckets[client_id] = (left, now)
            self._buckets.move_to_end(client_id)
            wait = max(1, math.ceil((need - left) / self.rate))
            raise FhirError(429, error("throttled", f"client {client_id!r} is over its rate limit ({self.rate:g} "
                                       f"cost units per second; this request costs {units}); retry in {wait} s"),
                            {"Retry-After": str(wait)})
        self._buckets[client_id] = (left - need, now)
        self._buckets.move_to_end(client_id)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)


class FailedLogins:
    """Sign-in guessing: after ``attempts`` wrong passwords for one national id within ``window``
    seconds, that id cannot sign in (even with the right password) until the oldest of them is
    ``window`` seconds old. Kept per process, at most :data:`MAX_CLIENTS` ids."""

    def __init__(self, attempts: int = 5, window: float = 900.0, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if kept:
            self._failures[key] = kept
            self._failures.move_to_end(key)
        else:
            self._failures.pop(key, None)
        return kept

    def locked(self, key: str) -> int:
        """Seconds until ``key`` may try again (0: it may now)."""
        now = self.clock()
        recent = self._recent(key, now)
        if len(recent) < self.attempts:
            return 0
        return max(1, math.ceil(recent[-self.attempts] + self.window - now))

    def failed(self, key: str) -> None:
        now = self.clock()
        self._failures[key] = [*self._recent(key, now), now][-self.attempts:]
        self._failures.move_to_end(key)
        if len(self._failures) > MAX_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


__all__ = ["FailedLogins", "RateLimits", "cost"]

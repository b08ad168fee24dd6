"""What the simulator serves around the imports: API keys, injected faults, a rate limit and
the count of what it was asked, shared by the HTTP server and the tests that drive it."""

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .store import ImportStore

FAULT_KINDS = ("500", "502_html", "503", "429", "reset", "slow", "truncated", "html_200")


@dataclass
class FaultPlan:
    """Which requests fail, and how.

    Args:
        queue: Faults for the next requests, in order, one each.
        rate: Share of the other requests that fail with a kind drawn from `kinds`.
        kinds: Kinds drawn when `rate` applies.
        retry_after: `retry-after` seconds sent with an injected 429.
        burst: How many 429s in a row a drawn 429 becomes.
        slow_seconds: How long a `slow` fault waits before answering.
        seed: Seed of the draws.
    """

    queue: List[str] = field(default_factory=list)
    rate: float = 0.0
    kinds: Tuple[str, ...] = FAULT_KINDS
    retry_after: float = 1.0
    burst: int = 1
    slow_seconds: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in list(self.queue) + list(self.kinds):
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, payload: Dict[str, Any]) -> "FaultPlan":
        return cls(
            queue=list(payload.get("queue", [])),
            rate=float(payload.get("rate", 0.0)),
            kinds=tuple(payload.get("kinds", FAULT_KINDS)),
            retry_after=float(payload.get("retry_after", 1.0)),
            burst=int(payload.get("burst", 1)),
            slow_seconds=float(payload.get("slow_seconds", 2.0)),
            seed=int(payload.get("seed", 0)),
        )

    def draw(self) -> Optional[str]:
        if self.queue:
            return self.queue.pop(0)
        if self.rate and self._rng.random() < self.rate:
            kind = self._rng.choice(self.kinds)
            if kind == "429":
                self.queue.extend(["429"] * (self.burst - 1))
            return kind
        return None


@dataclass
class RateLimit:
    """`limit` requests per `window` seconds, counted in windows that start with a request."""

    limit: int
    window: float = 1.0
    _start: float = 0.0
    _used: int = 0

    def take(self, now: float) -> Tuple[bool, int, float]:
        """(allowed, remaining, seconds until reset) for one request at `now`."""
        if now - self._start >= self.window:
            self._start, self._used = now, 0
        reset = self._start + self.window - now
        if self._used >= self.limit:
            return False, 0, reset
        self._used += 1
        return True, self.limit - self._used, reset


class Simulator:
    """The account, its API keys, faults, rate limit and what was asked of it."""

    def __init__(
        self,
        store: ImportStore,
        api_keys: Tuple[str, ...] = ("re_test_key",),
        rate_limit: Optional[int] = None,
        rate_window: float = 1.0,
        restricted_keys: Tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.api_keys = set(api_keys)
        self.restricted_keys = set(restricted_keys)
        self.faults = FaultPlan()
        self.rate_limit = RateLimit(rate_limit, rate_window) if rate_limit else None
        self.requests: Counter[str] = Counter()
        # Test hook: rewrites each successful API body (path, body) -> body, to serve
        # the malformed answers a real API might give.
        self.rewrite: Optional[Callable[[str, Any], Any]] = None
        # Test hooks: imports that GET answers 404 for (so many more requests), and imports
        # the list leaves out (from so many more pages that hold them): a flaky proxy
        self.not_found_for: Counter[str] = Counter()
        self.unlisted_for: Counter[str] = Counter()
        self._lock = threading.Lock()
        # other Resend accounts served on the same port, by API key: each its own imports,
        # rate limit, faults and counts
        self.others: Dict[str, Simulator] = {}

    def add_account(self, api_key: str, other: "Simulator") -> "Simulator":
        """Serves `other` (a simulator of its own) to requests with `api_key`."""
        self.others[api_key] = other
        return other

    def for_key(self, api_key: str) -> "Simulator":
        """The account a request's API key belongs to (this one for any other key)."""
        return self.others.get(api_key, self)

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return dict(self.requests)

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self.requests[key] += 1

    def hidden_from_get(self, import_id: str) -> bool:
        with self._lock:
            if self.not_found_for[import_id] <= 0:
                return False
            self.not_found_for[import_id] -= 1
            return True

    def unlisted(self, ids: List[str]) -> set[str]:
        """Which of these ids a page leaves out, counting the page against each."""
        with self._lock:
            left_out = {i for i in ids if self.unlisted_for[i] > 0}
            for import_id in left_out:
                self.unlisted_for[import_id] -= 1
            return left_out

    def take_rate(self) -> Tuple[bool, int, float, int]:
        with self._lock:
            if self.rate_limit is None:
                return True, 1000, 1.0, 1000
            allowed, remaining, reset = self.rate_limit.take(time.monotonic())
            return allowed, remaining, reset, self.rate_limit.limit

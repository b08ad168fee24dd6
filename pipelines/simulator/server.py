"""A Resend-compatible HTTP server for contact imports, on loopback, with injectable faults.

Serves `GET /contacts/imports` and `GET /contacts/imports/{id}` as Resend does, plus a
control API under `/_simulator/` for processes that do not share memory with it:
`GET truth`, `GET stats`, `POST advance?new=&seconds=`, `POST faults` (JSON body of
`FaultPlan` fields), `POST delete?id=` (an import deleted in Resend), `POST reset` (the
account as seeded), `POST reset-stats`.
"""

import json
import math
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from .store import STATUSES, ImportStore, ValidationError

FAULT_KINDS = ("500", "502_html", "503", "429", "reset", "slow", "truncated", "html_200")
LIST_PATH = "/contacts/imports"
CONTROL_PREFIX = "/_simulator/"


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


def _encode(sim: Simulator, path: str, body: Any) -> bytes:
    if sim.rewrite is not None:
        body = sim.rewrite(path, body)
    return json.dumps(body, separators=(",", ":")).encode()


def _error(status: int, name: str, message: str) -> Tuple[int, bytes]:
    return status, json.dumps({"statusCode": status, "name": name, "message": message}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: "SimulatorServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None

    # -- plumbing ------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        headers: Optional[Dict[str, str]] = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _reset_connection(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # -- control API ---------------------------------------------------------------
    def do_POST(self) -> None:
        sim = self.server.simulator
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if parts.path == CONTROL_PREFIX + "advance":
            result = sim.store.advance(int(query.get("new", 30)), float(query.get("seconds", 600)))
            self._send(200, json.dumps(result).encode())
        elif parts.path == CONTROL_PREFIX + "faults":
            sim.faults = FaultPlan.from_json(payload)
            self._send(200, b"{}")
        elif parts.path == CONTROL_PREFIX + "reset":
            sim.store.reset()
            sim.store.warm()
            sim.reset_stats()
            self._send(200, b"{}")
        elif parts.path == CONTROL_PREFIX + "delete":
            try:
                sim.store.delete(query.get("id", ""))
            except KeyError:
                self._send(*_error(404, "not_found", "no such import"))
                return
            self._send(200, b"{}")
        elif parts.path == CONTROL_PREFIX + "reset-stats":
            sim.reset_stats()
            self._send(200, b"{}")
        else:
            self._send(*_error(404, "not_found", "no such control endpoint"))

    # -- the API -------------------------------------------------------------------
    def do_GET(self) -> None:
        sim = self.server.simulator
        parts = urlsplit(self.path)
        if parts.path.startswith(CONTROL_PREFIX):
            if parts.path == CONTROL_PREFIX + "truth":
                self._send(200, json.dumps(sim.store.truth()).encode())
            elif parts.path == CONTROL_PREFIX + "stats":
                self._send(200, json.dumps(sim.stats()).encode())
            else:
                self._send(*_error(404, "not_found", "no such control endpoint"))
            return

        endpoint = "list" if parts.path == LIST_PATH else "get"
        sim.count("total", endpoint)
        allowed, remaining, reset, limit = sim.take_rate()
        rate_headers = {
            "ratelimit-limit": str(limit),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(max(1, math.ceil(reset))),
        }
        if not allowed:
            sim.count("status_429")
            retry = str(max(1, math.ceil(reset)))
            self._send(
                *_error(429, "rate_limit_exceeded", "Too many requests"),
                {**rate_headers, "retry-after": retry},
            )
            return

        fault = sim.faults.draw()
        if fault is not None:
            sim.count("faults", f"fault_{fault}")
            if self._inject(fault, rate_headers, sim.faults):
                return

        status, body = self._answer(parts.path, parts.query)
        sim.count(f"status_{status}")
        self._send(status, body, rate_headers)

    def _inject(self, fault: str, rate_headers: Dict[str, str], plan: FaultPlan) -> bool:
        """Applies a fault; True when the request has been answered (or dropped) by it."""
        if fault == "slow":
            time.sleep(plan.slow_seconds)
            return False
        if fault == "reset":
            self._reset_connection()
            return True
        if fault == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"object":"list","has_more":true,"data":[{"object":"contact_imp')
            self.close_connection = True
            return True
        html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        answers = {
            "500": (_error(500, "application_error", "Internal server error"), "application/json"),
            "503": (_error(503, "service_unavailable", "Service unavailable"), "application/json"),
            "502_html": ((502, html), "text/html"),
            "html_200": ((200, html), "text/html"),
            "429": (_error(429, "rate_limit_exceeded", "Too many requests"), "application/json"),
        }
        (status, body), content_type = answers[fault]
        headers = dict(rate_headers)
        if fault == "429":
            headers["retry-after"] = f"{plan.retry_after:g}"
        self._send(status, body, headers, content_type)
        return True

    def _answer(self, path: str, raw_query: str) -> Tuple[int, bytes]:
        sim = self.server.simulator
        if not self.headers.get("User-Agent"):
            return 403, b"<html><body>403 Forbidden: User-Agent required</body></html>"
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return _error(401, "missing_api_key", "Missing API key in the authorization header")
        key = auth[7:].strip()
        if key in sim.restricted_keys:
            return _error(401, "restricted_api_key", "This API key can only send emails")
        if key not in sim.api_keys:
            return _error(403, "invalid_api_key", "API key is invalid")
        query = parse_qs(raw_query, keep_blank_values=True)
        if path == LIST_PATH:
            return self._list(sim, {k: v[-1] for k, v in query.items()})
        if path.startswith(LIST_PATH + "/") and path.count("/") == 3:
            import_id = unquote(path.rsplit("/", 1)[1])
            item = None if sim.hidden_from_get(import_id) else sim.store.get(import_id)
            if item is None:
                return _error(404, "not_found", "Contact import not found")
            return 200, _encode(sim, path, item)
        return _error(404, "not_found", "The requested endpoint does not exist")

    @staticmethod
    def _list(sim: Simulator, query: Dict[str, str]) -> Tuple[int, bytes]:
        try:
            limit_text = query.get("limit", "10")
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
                raise ValidationError("limit must be an integer between 1 and 100")
            status = query.get("status")
            if status is not None and status not in STATUSES:
                raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
            page, has_more = sim.store.list_items(
                int(limit_text), query.get("after"), query.get("before"), status
            )
        except ValidationError as exc:
            return _error(422, "validation_error", str(exc))
        if sim.unlisted_for:
            left_out = sim.unlisted([item.id for item in page])
            page = [item for item in page if item.id not in left_out]
        if sim.rewrite is not None:
            data = [item.to_json() for item in page]
            return 200, _encode(
                sim, LIST_PATH, {"object": "list", "has_more": has_more, "data": data}
            )
        more = b"true" if has_more else b"false"
        items = b",".join([item.encoded() for item in page])
        return 200, b'{"object":"list","has_more":%s,"data":[%s]}' % (more, items)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, simulator: Simulator, port: int = 0) -> None:
        self.simulator = simulator
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a killed sync) is no error of the server."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class RunningSimulator:
    """A simulator served from a background thread; use as a context manager."""

    def __init__(self, simulator: Simulator, port: int = 0) -> None:
        self.simulator = simulator
        self.server = SimulatorServer(simulator, port=port)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> "RunningSimulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

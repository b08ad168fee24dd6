"""A Resend-compatible HTTP server for contact imports, on loopback, with injectable faults.

Serves `GET /contacts/imports` and `GET /contacts/imports/{id}` as Resend does, plus a
control API under `/_simulator/` for processes that do not share memory with it:
`GET truth`, `GET stats`, `POST advance?new=&seconds=`, `POST faults` (JSON body of
`FaultPlan` fields), `POST delete?id=` (an import deleted in Resend), `POST reset` (the
account as seeded), `POST reset-stats`. Several accounts share the port: a request with a
key of `Simulator.others` is that account's, with its own imports, rate limit and faults
(the control API is the first account's).
"""

import json
import math
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from .account import FaultPlan, Simulator
from .store import STATUSES, ValidationError

LIST_PATH = "/contacts/imports"
CONTROL_PREFIX = "/_simulator/"


def _encode(sim: Simulator, path: str, body: Any) -> bytes:
    if sim.rewrite is not None:
        body = sim.rewrite(path, body)
    return json.dumps(body, separators=(",", ":")).encode()


def _error(status: int, name: str, message: str) -> Tuple[int, bytes]:
    return status, json.dumps({"statusCode": status, "name": name, "message": message}).encode()


def _bearer(auth: str) -> str:
    return auth[7:].strip() if auth.startswith("Bearer ") else ""


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

        sim = sim.for_key(_bearer(self.headers.get("Authorization", "")))
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

        status, body = self._answer(sim, parts.path, parts.query)
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

    def _answer(self, sim: Simulator, path: str, raw_query: str) -> Tuple[int, bytes]:
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

"""A local HTTP receiver standing in for Slack and for a JSON webhook.

It records the bodies it accepted (answered 200) and can fail on purpose: a share of its
answers as 503, connection resets or answers slower than the client waits (timeouts), or be
down altogether (its port closed); or take a message and answer 200 with a body cut short
or late. A failed answer records nothing, as a receiver that did not take the message.
"""

import json
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

from .throwaway_postgres import free_port

FAULTS = ("503", "reset", "timeout")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = receiver.draw()
        receiver.attempts += 1
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fault == "timeout":
            time.sleep(receiver.slow_seconds)
        if fault is not None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with receiver.lock:
            receiver.received.append(
                {
                    "path": self.path,
                    "body": json.loads(body),
                    "idempotency_key": self.headers.get("Idempotency-Key"),
                }
            )
        time.sleep(receiver.hold_seconds)  # taken, not yet answered: a kill may land here
        self.send_response(200)
        cut = receiver.body_fault == "cut"  # announces 100 bytes, sends 2, closes
        self.send_header("Content-Length", "100" if cut else "2")
        self.end_headers()
        self.close_connection = cut or receiver.body_fault == "late"
        if receiver.body_fault == "late":  # the status at once, the body after the client waits
            self.wfile.flush()
            time.sleep(receiver.slow_seconds)
        self.wfile.write(b"ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, receiver: "AlertReceiver") -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", receiver.port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up before the answer (a timeout on its side)


class AlertReceiver:
    """Serves on one loopback port; `down()` and `up()` close and reopen it."""

    def __init__(self, failure_share: float = 0.0, seed: int = 0, slow_seconds: float = 1.5):
        self.port = free_port()
        self.failure_share = failure_share
        self.slow_seconds = slow_seconds
        self.hold_seconds = 0.0
        self.body_fault: Optional[str] = None  # "cut" or "late": the 200's body, not its status
        self.received: List[Dict[str, Any]] = []
        self.attempts = 0
        self.lock = threading.Lock()
        self._random = random.Random(seed)
        self._server: Optional[_Server] = None
        self.up()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def draw(self) -> Optional[str]:
        with self.lock:
            if self._random.random() < self.failure_share:
                return self._random.choice(FAULTS)
        return None

    def up(self) -> None:
        self._server = _Server(self)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def slack_keys(self) -> List[str]:
        """The alert keys of every Slack message accepted, in order (one per alert line)."""
        keys = []
        for message in self.received:
            if message["path"].startswith("/slack"):
                for line in message["body"]["text"].splitlines()[1:]:
                    if " key `" in line:
                        keys.append(line.rsplit(" key `", 1)[1].rstrip("`"))
        return keys

    def webhook_alerts(self) -> List[Dict[str, Any]]:
        return [
            alert
            for message in self.received
            if message["path"] == "/webhook"
            for alert in message["body"]["alerts"]
        ]

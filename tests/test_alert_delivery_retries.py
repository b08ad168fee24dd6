"""The alert delivery's POST under the source's retry rule (`resend_imports.http`, which the
API client shares): a channel answering 429 with odd `Retry-After` values, on loopback."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, List, Tuple

import pytest
import urllib3

from resend_imports.http import UnsafeURLError, checked_url
from resend_imports_pipelines.delivery.send import DeliveryFailedError, DeliveryPolicy, post

SECRET = "T0AAA/B0BBB/hookSecretXyz123"


class _Channel(ThreadingHTTPServer):
    """Answers its first `refusals` POSTs 429 with `retry_after`, then 200."""

    daemon_threads = True

    def __init__(self, refusals: int, retry_after: str) -> None:
        self.refusals = refusals
        self.retry_after = retry_after
        self.posts = 0
        super().__init__(("127.0.0.1", 0), _Answer)


class _Answer(BaseHTTPRequestHandler):
    server: _Channel

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts += 1
        refused = self.server.posts <= self.server.refusals
        self.send_response(429 if refused else 200)
        if refused:
            self.send_header("Retry-After", self.server.retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def channel() -> Iterator[Any]:
    started: List[_Channel] = []

    def start(refusals: int, retry_after: str) -> Tuple[_Channel, str]:
        server = _Channel(refusals, retry_after)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/hook"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _post(url: str, policy: DeliveryPolicy) -> None:
    post(urllib3.PoolManager(retries=False), url, b"{}", policy, "key-1")


@pytest.mark.parametrize("retry_after", ["0", "-3"])
@pytest.mark.parametrize("max_backoff", [0.0, 0.02])
def test_a_channel_asking_for_no_wait_gets_a_bounded_number_of_posts(
    channel: Any, retry_after: str, max_backoff: float
) -> None:
    server, url = channel(refusals=500, retry_after=retry_after)
    policy = DeliveryPolicy(
        max_attempts=3, initial_backoff_seconds=max_backoff / 4, max_backoff_seconds=max_backoff
    )
    with pytest.raises(DeliveryFailedError, match="answered 429"):
        _post(url, policy)
    # waits that grow use up the 429 budget (2 x 0.02s); with no backoff at all, a 429 that
    # waits nothing is an attempt
    assert server.posts < 20 if max_backoff else server.posts == 3


@pytest.mark.parametrize("retry_after", ["nan", "inf"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(
    channel: Any, retry_after: str
) -> None:
    server, url = channel(refusals=2, retry_after=retry_after)
    policy = DeliveryPolicy(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.05)
    _post(url, policy)
    assert server.posts == 3


def test_a_hook_url_with_a_character_that_is_not_ascii_is_refused_unseen() -> None:
    setting = "SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL"
    with pytest.raises(UnsafeURLError) as refused:
        checked_url(f"https://hooks.example.com/{SECRET}\u2019", setting, "the hook", shown=False)
    line = str(refused.value)
    assert line.startswith(f"{setting} holds a character that is not ASCII")
    assert "not shown" in line and SECRET not in line and len(line.splitlines()) == 1

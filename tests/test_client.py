"""The HTTP client against the simulator: retries, pacing, errors. Nothing really sleeps."""

import math
import random
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar, Iterator, List, Type

import pytest

from resend_imports import user_agent
from resend_imports.client import ResendClient, RetryPolicy, validate_base_url
from resend_imports.errors import (
    ResendAPIError,
    ResendAuthError,
    ResendConfigError,
    ResendDataError,
    ResendNoAnswerError,
)
from resend_imports_pipelines.simulator import (
    FAULT_KINDS,
    FaultPlan,
    ImportStore,
    RunningSimulator,
    Simulator,
)

from .conftest import API_KEY, Serve


class Recorder:
    """Stands in for time.sleep and time.monotonic: records waits, advances a fake clock."""

    def __init__(self) -> None:
        self.sleeps: List[float] = []
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def simulator(serve: Serve) -> tuple[Simulator, str]:
    return serve(ImportStore(120, seed=3))


def _client(url: str, recorder: Recorder, attempts: int = 4, **options: Any) -> ResendClient:
    return ResendClient(
        options.pop("api_key", API_KEY),
        url,
        user_agent=user_agent(),
        retry_policy=options.pop("policy", RetryPolicy(attempts, 0.5, 8.0)),
        connect_timeout=2.0,
        read_timeout=options.pop("read_timeout", 5.0),
        sleep=recorder.sleep,
        clock=recorder.clock,
        rng=random.Random(0),
    )


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried_and_survived(
    simulator: tuple[Simulator, str], kind: str
) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=[kind, kind], retry_after=3, slow_seconds=0.6)
    recorder = Recorder()
    client = _client(url, recorder, read_timeout=0.3)
    page = client.list_page(10)
    assert len(page["data"]) == 10
    assert client.stats.retries == 2
    assert sim.stats()[f"fault_{kind}"] == 2
    if kind == "429":  # retry-after wins over backoff, plus up to 25% to spread syncs apart
        assert len(recorder.sleeps) == 2 and all(3.0 <= s <= 3.75 for s in recorder.sleeps)
    else:
        assert len(recorder.sleeps) == 2 and all(0.2 <= s <= 1.0 for s in recorder.sleeps)


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(10, 0.5, 4.0)
    rng = random.Random(1)
    for attempt, (low, high) in enumerate([(0.25, 0.5), (0.5, 1), (1, 2), (2, 4), (2, 4)], 1):
        for _ in range(50):
            assert low <= policy.backoff(attempt, rng) <= high


def test_retries_exhausted_is_one_clear_error(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=["503"] * 10)
    client = _client(url, Recorder(), attempts=3)
    with pytest.raises(ResendAPIError) as failure:
        client.list_page(10)
    assert failure.value.name == "retries_exhausted"
    assert "gave up after 3 attempts" in str(failure.value)
    assert "service_unavailable" in str(failure.value)
    assert sim.stats()["total"] == 3


def test_429s_do_not_use_up_attempts_but_a_wait_budget(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=["429"] * 10, retry_after=2)
    recorder = Recorder()
    client = _client(url, recorder, attempts=3)
    assert len(client.list_page(10)["data"]) == 10  # ten 429s, yet only 3 attempts allowed
    assert client.stats.rate_limited == 10
    sim.faults = FaultPlan(queue=["429"] * 200, retry_after=60)
    with pytest.raises(ResendAPIError, match="rate limited for over 300s"):
        client.list_page(10)
    waited = sum(recorder.sleeps[10:])  # the wait that would cross 300s is not slept
    assert 300 - 75 < waited <= 300


@pytest.mark.parametrize(("key", "status"), [("", 401), ("re_wrong", 403)])
def test_rejected_key_is_not_retried(
    simulator: tuple[Simulator, str], key: str, status: int
) -> None:
    sim, url = simulator
    client = _client(url, Recorder(), api_key=key)
    with pytest.raises(ResendAuthError) as failure:
        client.list_page(10)
    assert failure.value.status_code == status
    assert sim.stats()["total"] == 1
    assert key not in str(failure.value) or not key


def test_validation_error_is_not_retried_and_carries_resend_name(
    simulator: tuple[Simulator, str],
) -> None:
    sim, url = simulator
    client = _client(url, Recorder())
    with pytest.raises(ResendAPIError) as failure:
        client.list_page(10, after="no-such-cursor")
    assert (failure.value.status_code, failure.value.name) == (422, "validation_error")
    assert sim.stats()["total"] == 1


def test_get_unknown_import_is_none_without_retry(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    assert _client(url, Recorder()).get_import("00000000-0000-4000-8000-000000000000") is None
    assert sim.stats()["total"] == 1


def test_pacing_waits_for_the_window_when_remaining_reaches_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = Simulator(ImportStore(50, seed=3), api_keys=(API_KEY,), rate_limit=3, rate_window=30)
    with RunningSimulator(sim) as running, caplog.at_level("INFO", logger="resend_imports"):
        recorder = Recorder()
        client = _client(running.url, recorder)
        for _ in range(3):
            client.list_page(5)
        # the third answer said remaining 0, reset 30: the client waits before asking again
        assert recorder.sleeps == []
        sim.rate_limit = None  # the window is over once the client has waited
        client.list_page(5)
    assert recorder.sleeps == [30.0]
    assert client.stats.paced_seconds == 30.0
    assert client.stats.rate_limited == 0
    assert [r.getMessage() for r in caplog.records] == [  # a run never waits silently
        "waiting 30s before GET /contacts/imports: Resend's rate-limit window is used up"
        " (ratelimit-remaining 0, ratelimit-reset 30)"
    ]


def test_a_window_longer_than_the_rate_limit_budget_is_not_waited_out() -> None:
    sim = Simulator(ImportStore(50, seed=3), api_keys=(API_KEY,), rate_limit=3, rate_window=600)
    with RunningSimulator(sim) as running:
        recorder = Recorder()
        client = _client(running.url, recorder)
        for _ in range(3):
            client.list_page(5)
        with pytest.raises(ResendAPIError) as failure:
            client.list_page(5)
    assert str(failure.value) == (
        "Resend GET /contacts/imports failed: HTTP 429 rate_limit_exceeded: not sent, Resend"
        " asked to wait 600s for its rate-limit window (ratelimit-remaining 0, ratelimit-reset"
        " 600): rate limited for over 300s (raise max_rate_limit_wait_seconds to wait longer)"
    )
    assert recorder.sleeps == []
    assert sim.stats()["total"] == 3


@pytest.mark.parametrize("asked", [0.0, -5.0])
def test_a_429_asking_for_no_wait_waits_a_growing_backoff_within_the_budget(
    simulator: tuple[Simulator, str], asked: float
) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=["429"] * 500, retry_after=asked)
    recorder = Recorder()
    with pytest.raises(ResendAPIError, match="rate limited for over 300s"):
        _client(url, recorder).list_page(10)
    assert sim.stats()["fault_429"] < 80  # not asked again at once, again and again
    assert min(recorder.sleeps) > 0 and max(recorder.sleeps) > 4 * recorder.sleeps[0]
    assert 300 - 8 < sum(recorder.sleeps) <= 300


def test_a_429_that_waits_nothing_under_zero_backoff_is_an_attempt(
    simulator: tuple[Simulator, str],
) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=["429"] * 500, retry_after=0)
    recorder = Recorder()
    with pytest.raises(ResendAPIError) as failure:
        _client(url, recorder, policy=RetryPolicy(3, 0.0, 0.0)).list_page(10)
    assert failure.value.message == (
        "gave up after 3 attempts, last: rate_limit_exceeded: Too many requests"
    )
    assert sim.stats()["fault_429"] == 3 and recorder.sleeps == [0.0, 0.0]


@pytest.mark.parametrize("asked", [math.nan, math.inf])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(
    simulator: tuple[Simulator, str], asked: float
) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=["429", "429"], retry_after=asked)
    recorder = Recorder()
    assert len(_client(url, recorder).list_page(10)["data"]) == 10
    # waited as the 429's ratelimit-reset (1s) says, plus up to 25%
    assert len(recorder.sleeps) == 2 and all(1.0 <= s <= 1.25 for s in recorder.sleeps)


def test_429_from_a_shared_limit_is_absorbed_by_retry_after() -> None:
    sim = Simulator(ImportStore(50, seed=3), api_keys=(API_KEY,), rate_limit=1, rate_window=0.5)
    with RunningSimulator(sim) as running:
        other_sync = _client(running.url, Recorder())
        client = ResendClient(
            API_KEY,
            running.url,
            user_agent=user_agent(),
            retry_policy=RetryPolicy(5, 0.01, 0.01),
            connect_timeout=2,
            read_timeout=5,
        )
        other_sync.list_page(5)  # uses up the shared window this client knows nothing of
        assert len(client.list_page(5)["data"]) == 5
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1
    assert sim.stats()["status_429"] == 1


def test_iter_pages_walks_the_whole_list_with_after(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    pages = list(_client(url, Recorder()).iter_pages(25))
    assert [len(p) for p in pages] == [25, 25, 25, 25, 20]
    assert [i["id"] for p in pages for i in p] == [i["id"] for i in sim.store.truth()]


def test_has_more_with_an_empty_page_is_an_error(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    sim.rewrite = lambda path, body: {**body, "data": [], "has_more": True}
    with pytest.raises(ResendDataError, match="has_more is true but the page is empty"):
        list(_client(url, Recorder()).iter_pages(25))
    assert sim.stats()["total"] == 1


def test_a_repeating_cursor_is_an_error(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    first_page = sim.store.list(25)[0]
    sim.rewrite = lambda path, body: {**body, "data": first_page, "has_more": True}
    with pytest.raises(ResendDataError, match="repeats"):
        list(_client(url, Recorder()).iter_pages(25))
    assert sim.stats()["total"] == 2


def test_a_list_without_data_is_an_error(simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    sim.rewrite = lambda path, body: {"object": "list", "has_more": False}
    with pytest.raises(ResendDataError, match="no 'data' array"):
        _client(url, Recorder()).list_page(10)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.resend.com",
        "http://10.0.0.5:8080",
        "ftp://127.0.0.1",
        "api.resend.com",
        "http://evil.example\\@127.0.0.1",  # urllib3, which sends, reads evil.example
        "https://user:s3cret@api.resend.com",
        "https://api.resend.com/\u2019",  # a pasted typographic quote
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ResendConfigError) as refused:
        validate_base_url(url)
    assert "s3cret" not in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1


@pytest.mark.parametrize(
    "url", ["https://api.resend.com/", "http://127.0.0.1:8080", "http://localhost", "http://[::1]"]
)
def test_https_and_loopback_urls_are_accepted(url: str) -> None:
    assert validate_base_url(url) == url.rstrip("/")


@contextmanager
def _serving(handler: Type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """The URL of a loopback server answering with `handler`, for answers the simulator
    does not give."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Redirect(BaseHTTPRequestHandler):
    seen_auth: ClassVar[List[str]] = []

    def do_GET(self) -> None:
        _Redirect.seen_auth.append(self.headers.get("Authorization", ""))
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.2:9/steal")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_redirects_are_not_followed_with_the_key() -> None:
    with _serving(_Redirect) as url:
        with pytest.raises(ResendAPIError, match="redirects are not followed"):
            _client(url, Recorder()).list_page(10)
    assert _Redirect.seen_auth == [f"Bearer {API_KEY}"]


class _EndlessWindow(BaseHTTPRequestHandler):
    """An empty last page whose rate-limit headers say the window never ends."""

    def do_GET(self) -> None:
        body = b'{"object": "list", "has_more": false, "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ratelimit-remaining", "0")
        self.send_header("ratelimit-reset", "inf")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def test_a_rate_limit_reset_that_is_no_number_of_seconds_is_ignored() -> None:
    recorder = Recorder()
    with _serving(_EndlessWindow) as url:
        client = _client(url, recorder)
        client.list_page(10)
        assert client.list_page(10)["data"] == []
    assert recorder.sleeps == []


def test_user_agent_names_the_connector(simulator: tuple[Simulator, str]) -> None:
    assert user_agent().startswith("resend-imports/")
    client = _client(simulator[1], Recorder())
    assert client._headers["User-Agent"] == user_agent()
    assert API_KEY not in repr(client)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("html_200", "gave up after 2 attempts, last: invalid_json: 2xx body is not valid JSON"),
        ("502_html", "gave up after 2 attempts, last: http_error: Bad Gateway (text/html body)"),
        ("truncated", "no complete answer from {host}: response body cut short; gave up after"),
        ("reset", "no complete answer from {host}: connection reset or closed; gave up after"),
    ],
)
def test_exhausted_retries_say_what_went_wrong_last(
    simulator: tuple[Simulator, str], kind: str, said: str
) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=[kind, kind])
    recorder = Recorder()
    with pytest.raises(ResendAPIError) as failure:
        _client(url, recorder, attempts=2).list_page(10)
    assert said.format(host=url.removeprefix("http://")) in str(failure.value)
    if isinstance(failure.value, ResendNoAnswerError):  # the server and the time it took
        assert str(failure.value).endswith(f" 2 attempts in {sum(recorder.sleeps):.1f} s")


def test_a_host_that_does_not_resolve_is_one_readable_line() -> None:
    recorder = Recorder()
    with pytest.raises(ResendNoAnswerError) as failure:
        _client("https://api.resend.invalid", recorder, attempts=3).list_page(10)
    assert str(failure.value) == (
        "cannot reach api.resend.invalid: the host name does not resolve (DNS); gave up after"
        f" 3 attempts in {sum(recorder.sleeps):.1f} s"
    )


def test_a_429_is_logged_as_a_wait_and_other_retries_with_their_attempt(
    simulator: tuple[Simulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    sim, url = simulator
    sim.faults = FaultPlan(queue=["429", "503", "429", "503"], retry_after=1)
    with caplog.at_level("WARNING", logger="resend_imports"):
        _client(url, Recorder(), attempts=3).list_page(10)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4
    assert "rate limited (HTTP 429), waiting as Resend asks" in lines[0]
    assert lines[0].endswith("waiting as Resend asks (not an attempt)")
    assert "(attempt 2 of 3): HTTP 503" in lines[1]
    assert "rate limited (HTTP 429)" in lines[2]
    assert "(attempt 3 of 3): HTTP 503" in lines[3]

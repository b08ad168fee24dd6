"""The bundled simulator behaves as Resend documents, by its own OpenAPI spec and its SDK."""

import http.client
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from resend_imports.records import parse_timestamp
from resend_imports_pipelines.simulator import ImportStore, RunningSimulator, Simulator

from .conftest import API_KEY, Serve

SPEC_PATH = Path(__file__).resolve().parent / "spec" / "resend-openapi.yaml"
PUBLIC_API = "https://api.resend.com"
DAY = timedelta(days=1)
HEADERS = {"Authorization": f"Bearer {API_KEY}", "User-Agent": "resend-imports-tests"}


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    if not SPEC_PATH.exists():
        pytest.fail(f"Resend's OpenAPI spec is expected at {SPEC_PATH}")
    return OpenAPI.from_file_path(str(SPEC_PATH))


@pytest.fixture
def served(serve: Serve) -> tuple[Simulator, str]:
    return serve(ImportStore(230, seed=5, tie_rate=0.2))


def _get(
    url: str, path: str, params: Optional[Dict[str, Any]] = None, openapi: Optional[OpenAPI] = None
) -> requests.Response:
    response = requests.get(url + path, params=params, headers=HEADERS, timeout=5)
    if openapi is not None:
        # The spec names the public server: validate the same request as if sent there.
        as_public = requests.Request("GET", PUBLIC_API + path, params=params, headers=HEADERS)
        openapi.validate_request(RequestsOpenAPIRequest(as_public))
        openapi.validate_response(
            RequestsOpenAPIRequest(as_public), RequestsOpenAPIResponse(response)
        )
    return response


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"limit": 100},
        {"limit": 1},
        {"limit": 7, "status": "completed"},
        {"limit": 50, "status": "queued"},
        {"limit": 50, "status": "in_progress"},
    ],
)
def test_list_answers_match_the_openapi_spec(
    served: tuple[Simulator, str], openapi: OpenAPI, params: Dict[str, Any]
) -> None:
    _, url = served
    response = _get(url, "/contacts/imports", params, openapi)
    assert response.status_code == 200


def test_every_import_and_a_single_get_match_the_spec(
    served: tuple[Simulator, str], openapi: OpenAPI
) -> None:
    sim, url = served
    sim.store.advance(new=10, seconds=60)  # open imports with and without counts
    truth = sim.store.truth()
    statuses = {item["status"] for item in truth}
    assert statuses == {"queued", "in_progress", "completed", "failed"}
    assert any("counts" not in item for item in truth)
    after = None
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        body = _get(url, "/contacts/imports", params, openapi).json()
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    for item in truth[:20]:
        response = _get(url, f"/contacts/imports/{item['id']}", None, openapi)
        assert response.json() == item


def test_list_is_newest_first_with_ties_broken_stably(served: tuple[Simulator, str]) -> None:
    sim, _ = served
    truth = sim.store.truth()
    keys = [(parse_timestamp(i["created_at"]), i["id"]) for i in truth]
    assert keys == sorted(keys, reverse=True)
    created = [k[0] for k in keys]
    assert len(set(created)) < len(created), "the seeded history has ties"


def test_timestamps_mix_resend_formats(served: tuple[Simulator, str]) -> None:
    sim, _ = served
    texts = [i["created_at"] for i in sim.store.truth()]
    assert any(t.endswith("+00") and "." not in t for t in texts)
    assert any(len(t.split(".")[-1]) == 6 for t in texts if "." in t)  # 3 digits + "+00"
    assert any(len(t.split(".")[-1]) == 9 for t in texts if "." in t)  # 6 digits + "+00"
    assert any(t.endswith("Z") for t in texts)


def test_after_and_before_cursors(served: tuple[Simulator, str]) -> None:
    sim, url = served
    truth = sim.store.truth()
    ids = [i["id"] for i in truth]
    page = _get(url, "/contacts/imports", {"limit": 10, "after": ids[4]}).json()
    assert [i["id"] for i in page["data"]] == ids[5:15]
    assert page["has_more"] is True
    page = _get(url, "/contacts/imports", {"limit": 3, "before": ids[10]}).json()
    assert [i["id"] for i in page["data"]] == ids[7:10]
    assert page["has_more"] is True
    page = _get(url, "/contacts/imports", {"limit": 100, "after": ids[-3]}).json()
    assert [i["id"] for i in page["data"]] == ids[-2:]
    assert page["has_more"] is False


def test_default_limit_is_ten(served: tuple[Simulator, str]) -> None:
    assert len(_get(served[1], "/contacts/imports").json()["data"]) == 10


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"after": "unknown-cursor"},
        {"status": "paused"},
        {"after": "x", "before": "y"},
    ],
)
def test_invalid_list_requests_are_validation_errors(
    served: tuple[Simulator, str], params: Dict[str, Any]
) -> None:
    response = _get(served[1], "/contacts/imports", params)
    assert response.status_code == 422
    assert response.json()["name"] == "validation_error"


def test_status_filter(served: tuple[Simulator, str]) -> None:
    sim, url = served
    failed = [i["id"] for i in sim.store.truth() if i["status"] == "failed"]
    body = _get(url, "/contacts/imports", {"limit": 100, "status": "failed"}).json()
    assert [i["id"] for i in body["data"]] == failed


def test_auth_and_user_agent(served: tuple[Simulator, str]) -> None:
    _, url = served
    list_url = url + "/contacts/imports"
    missing = requests.get(list_url, headers={"User-Agent": "t"}, timeout=5)
    assert (missing.status_code, missing.json()["name"]) == (401, "missing_api_key")
    wrong = requests.get(
        list_url, headers={"User-Agent": "t", "Authorization": "Bearer re_x"}, timeout=5
    )
    assert (wrong.status_code, wrong.json()["name"]) == (403, "invalid_api_key")
    host, port = url.removeprefix("http://").split(":")
    raw = http.client.HTTPConnection(host, int(port), timeout=5)  # sends no User-Agent
    raw.request("GET", "/contacts/imports", headers={"Authorization": f"Bearer {API_KEY}"})
    assert raw.getresponse().status == 403
    raw.close()
    unknown = _get(url, "/contacts/imports/00000000-0000-4000-8000-000000000000")
    assert (unknown.status_code, unknown.json()["name"]) == (404, "not_found")


def test_rate_limit_headers_and_429() -> None:
    sim = Simulator(ImportStore(20, seed=1), api_keys=(API_KEY,), rate_limit=2, rate_window=60)
    with RunningSimulator(sim) as running:
        answers = [_get(running.url, "/contacts/imports") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert all(a.headers["ratelimit-limit"] == "2" for a in answers)
    assert 59 <= int(answers[2].headers["retry-after"]) <= 60
    assert answers[2].json()["name"] == "rate_limit_exceeded"


def test_advance_progresses_open_imports_and_adds_new_ones() -> None:
    store = ImportStore(500, seed=2)
    store.advance(new=40, seconds=600)
    before = {i["id"]: i for i in store.truth()}
    stuck_and_open = set(store.open_ids())
    result = store.advance(new=25, seconds=600)
    after = {i["id"]: i for i in store.truth()}
    assert len(after) == 565 and result["new"] == 25
    changed = {i for i in before if before[i] != after[i]}
    assert changed and changed <= stuck_and_open
    assert all(before[i] == after[i] for i in before if before[i]["status"] in ("completed",))
    newest_before = max(parse_timestamp(i["created_at"]) for i in before.values())
    assert all(
        parse_timestamp(after[i]["created_at"]) >= newest_before for i in after.keys() - before
    )


def test_same_seed_same_account() -> None:
    assert ImportStore(300, seed=9).truth() == ImportStore(300, seed=9).truth()
    assert ImportStore(300, seed=9).truth() != ImportStore(300, seed=10).truth()


def test_an_account_of_the_present_has_just_created_its_open_imports() -> None:
    now = datetime.now(UTC)
    store = ImportStore(2000, seed=4, stuck=2, history_end=now)
    truth = store.truth()
    created = {i["id"]: parse_timestamp(i["created_at"]) for i in truth}
    assert now - timedelta(hours=1) < max(created.values()) <= now
    open_ages = sorted(now - created[i] for i in store.open_ids())
    assert len(open_ages) >= 3  # the newest few, and the two stuck ones
    assert all(age <= timedelta(minutes=15) for age in open_ages[:-2])
    assert all(age > timedelta(days=1) for age in open_ages[-2:])
    # what a real account's alerts would flag: a few failures, not every other import
    finished = [i for i in truth if i["status"] in ("completed", "failed")]
    failed = sum(i["status"] == "failed" for i in finished)
    high = sum(
        i["status"] == "completed" and i["counts"]["failed"] >= 0.05 * i["counts"]["total"]
        for i in finished
    )
    assert 0 < failed < 0.05 * len(finished) and 0 < high < 0.08 * len(finished)


def test_ids_never_repeat_across_advances_and_restarts() -> None:
    """The same seed at another clock (a simulator started again) hands out other ids; one
    account never adds an id twice; seed and clock together give the same account."""
    clock = datetime(2026, 11, 1, tzinfo=UTC)
    accounts = [ImportStore(300, seed=5, history_end=at) for at in (clock, clock, clock + DAY)]
    for store in accounts:
        for _ in range(3):
            store.advance(new=30, seconds=600)
    ids = [[i["id"] for i in store.truth()] for store in accounts]
    assert all(len(set(each)) == len(each) == 390 for each in ids)
    assert accounts[0].truth() == accounts[1].truth()
    assert not set(ids[0]) & set(ids[2])


def test_the_served_simulator_lives_at_the_real_clock_or_at_now() -> None:
    fixed = datetime(2026, 11, 1, tzinfo=UTC)
    truths = []
    for now in ("2026-11-01T00:00:00Z", None):
        flags = ["--imports", "50", "--seed", "3", *(["--now", now] if now else [])]
        server = subprocess.Popen(
            [sys.executable, "-m", "resend_imports_pipelines.simulator", *flags],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            truths.append(requests.get(url + "/_simulator/truth", timeout=5).json())
        finally:
            server.terminate()
            server.wait(timeout=10)
    assert truths[0] == ImportStore(50, seed=3, history_end=fixed).truth()
    newest = max(parse_timestamp(i["created_at"]) for i in truths[1])
    assert datetime.now(UTC) - timedelta(hours=2) < newest <= datetime.now(UTC)
    assert not {i["id"] for i in truths[0]} & {i["id"] for i in truths[1]}


def test_control_api_for_other_processes(served: tuple[Simulator, str]) -> None:
    sim, url = served
    truth = requests.get(url + "/_simulator/truth", timeout=5).json()
    assert truth == sim.store.truth()
    requests.post(url + "/_simulator/advance?new=5&seconds=60", timeout=5).raise_for_status()
    assert len(sim.store) == 235
    requests.post(url + "/_simulator/faults", json={"queue": ["500"]}, timeout=5)
    assert _get(url, "/contacts/imports").status_code == 500
    assert requests.get(url + "/_simulator/stats", timeout=5).json()["fault_500"] == 1


SDK_SCRIPT = """
import json, resend
resend.api_key = {key!r}
listed = resend.Contacts.Imports.list({{"limit": 5, "status": "completed"}})
one = resend.Contacts.Imports.get(listed["data"][0]["id"])
print(json.dumps({{"listed": listed["data"], "one": one}}, default=str))
"""


def test_official_sdk_lists_and_gets_imports(served: tuple[Simulator, str]) -> None:
    sim, url = served
    completed = [i for i in sim.store.truth() if i["status"] == "completed"]
    result = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT.format(key=API_KEY)],
        env={**os.environ, "RESEND_API_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert [i["id"] for i in answer["listed"]] == [i["id"] for i in completed[:5]]
    assert answer["one"]["id"] == completed[0]["id"]
    assert answer["one"]["counts"] == completed[0]["counts"]

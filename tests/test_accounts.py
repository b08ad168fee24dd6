"""Several Resend accounts in one table (issue 20): each account its own run into the same
tables, keyed by (account, id), listed concurrently; a failed account does not stop the
others; a single key stays the account `default`."""

import json
from typing import Any, Dict, List

import pytest

from resend_imports_pipelines.simulator import ImportStore, Simulator
from resend_imports_pipelines.simulator.verify import differences

from .conftest import API_KEY, Account, assert_one_line_error, run_cli
from .scenarios import resource_state

KEYS = {"acme": API_KEY, "globex": "re_globex_key_0001", "initech": "re_initech_key_0002"}


def with_accounts(account: Account, sizes: Dict[str, int], rate_limit: Any = None) -> Account:
    """`account` (its store is `acme`'s) with more accounts served on its port, by key."""
    for seed, (name, imports) in enumerate(sizes.items(), start=2):
        store = ImportStore(imports, seed=seed)
        other = Simulator(store, api_keys=(KEYS[name],), rate_limit=rate_limit)
        account.simulator.add_account(KEYS[name], other)
    return account


def store_of(account: Account, name: str) -> ImportStore:
    return account.store if name == "acme" else account.simulator.others[KEYS[name]].store


def each_equal_to_its_truth(account: Account, names: List[str]) -> None:
    checker = account.pipeline("truth_check")
    for name in names:
        assert differences(checker, store_of(account, name).truth(), name) == [], name


def rows_by_account(account: Account, table: str = "contact_imports") -> Dict[str, int]:
    rows = account.query(f"SELECT account, count(*) FROM {{dataset}}.{table} GROUP BY account")
    return {name: int(count) for name, count in rows}


def test_several_accounts_load_one_table_each_equal_to_its_truth(
    destination_name: str, make_account: Any
) -> None:
    account = with_accounts(make_account(imports=300), {"globex": 250, "initech": 120})
    pipeline = account.pipeline()

    summary = account.sync(pipeline, accounts=KEYS)

    each_equal_to_its_truth(account, list(KEYS))
    assert rows_by_account(account) == {"acme": 300, "globex": 250, "initech": 120}
    assert {r.account: r.new for r in summary.per_account()} == {
        "acme": 300,
        "globex": 250,
        "initech": 120,
    }
    assert summary.new == 670 and not summary.failed_accounts
    history = rows_by_account(account, "contact_import_status_history")
    assert history == {"acme": 300, "globex": 250, "initech": 120}
    state = resource_state(pipeline)
    assert set(state["accounts"]) == {"acme", "globex", "initech"}  # a state each

    for name in KEYS:
        store_of(account, name).advance(new=5, seconds=600)
    summary = account.sync(pipeline, accounts=KEYS)

    each_equal_to_its_truth(account, list(KEYS))
    for report in summary.per_account():
        assert report.mode == "incremental" and report.new == 5, report
        assert report.requests <= 3, report  # each from its own frontier
    lines = summary.lines()
    assert sum(line.startswith("  account ") for line in lines) == 3
    assert any(line.startswith("  total: new 15") for line in lines), lines


def test_an_id_in_two_accounts_is_two_rows(make_account: Any) -> None:
    account = make_account(imports=80, seed=7)
    twin = Simulator(ImportStore(80, seed=7), api_keys=(KEYS["globex"],))  # the same ids
    account.simulator.add_account(KEYS["globex"], twin)
    keys = {"acme": API_KEY, "globex": KEYS["globex"]}

    account.sync(accounts=keys)
    twin.store.delete(twin.store.truth()[0]["id"])
    account.sync(accounts=keys, full_refresh=True)

    assert rows_by_account(account) == {"acme": 80, "globex": 80}
    each_equal_to_its_truth(account, ["acme", "globex"])  # the deletion is globex's only


def cli_accounts(keys: Dict[str, str]) -> Dict[str, str]:
    return {"SOURCES__RESEND_IMPORTS__ACCOUNTS": json.dumps(keys)}


def test_the_account_flag_limits_the_run_and_a_removed_account_keeps_its_rows(
    make_account: Any,
) -> None:
    account = with_accounts(make_account(imports=150), {"globex": 90})
    keys = {"acme": API_KEY, "globex": KEYS["globex"]}

    only = run_cli(account, "sync", "--account", "globex", env=cli_accounts(keys), key=None)
    assert only.returncode == 0, only.stderr
    assert rows_by_account(account) == {"globex": 90}
    assert "  account globex: new 90" in only.stdout, only.stdout

    both = run_cli(account, "sync", env=cli_accounts(keys), key=None)
    assert both.returncode == 0, both.stderr
    assert "  account acme: new 150" in both.stdout and "  account globex: new 0" in both.stdout
    assert "  total: new 150" in both.stdout, both.stdout

    removed = run_cli(account, "sync", env=cli_accounts({"acme": API_KEY}), key=None)
    assert removed.returncode == 0, removed.stderr
    assert rows_by_account(account) == {"acme": 150, "globex": 90}  # left as they are
    each_equal_to_its_truth(account, ["acme", "globex"])

    unknown = run_cli(account, "sync", "--account", "hooli", env=cli_accounts(keys), key=None)
    assert_one_line_error(unknown, "no account named hooli is configured")


def test_a_bad_key_fails_its_account_only_and_the_next_run_makes_it_whole(
    destination_name: str, make_account: Any
) -> None:
    account = with_accounts(make_account(imports=200), {"globex": 140})
    broken = {"acme": API_KEY, "globex": "re_wrong_key_Secret99"}

    where = ["--destination", account.destination_name]
    result = run_cli(account, "sync", *where, env=cli_accounts(broken), key=None)

    assert_one_line_error(result, "account globex:")
    assert result.returncode == 1
    assert "re_wrong_key_Secret99" not in result.stdout + result.stderr
    assert "invalid_api_key" in result.stderr
    assert "  account globex: FAILED" in result.stdout, result.stdout
    assert rows_by_account(account) == {"acme": 200}  # the others loaded

    keys = {name: KEYS[name] for name in broken}
    fixed = run_cli(account, "sync", *where, env=cli_accounts(keys), key=None)
    assert fixed.returncode == 0, fixed.stderr
    each_equal_to_its_truth(account, ["acme", "globex"])


def test_a_single_key_stays_the_account_default_and_can_become_one_of_several(
    make_account: Any,
) -> None:
    account = with_accounts(make_account(imports=120), {"globex": 60})
    pipeline = account.pipeline()
    first = account.sync(pipeline)  # RESEND_API_KEY's way: one key
    assert first.lines()[0].startswith("synced 120 contact imports into")  # as before
    assert rows_by_account(account) == {"default": 120}

    account.store.advance(new=3, seconds=600)
    keys = {"default": API_KEY, "globex": KEYS["globex"]}
    summary = account.sync(pipeline, accounts=keys)

    reports = {r.account: r for r in summary.per_account()}
    assert reports["default"].mode == "incremental" and reports["default"].requests == 1
    assert reports["globex"].mode == "first"
    assert rows_by_account(account) == {"default": 123, "globex": 60}


@pytest.mark.parametrize(
    "accounts, text",
    [
        ({"a b": "re_x"}, "account name 'a b' is not a short identifier"),
        ({}, "accounts must be a table of account name = API key"),
        ("re_x", "config value accounts = *** is not a valid"),  # the value never shown
        ('{"acme": 1}', "the API key of account acme is not text"),
        (  # every import twice, once under each name
            {"acme": "re_x", "globex": " re_x"},
            "accounts acme and globex have the same API key: every import of that Resend"
            " account would load twice",
        ),
    ],
)
def test_bad_accounts_settings_fail_in_one_line(account: Account, accounts: Any, text: str) -> None:
    value = accounts if isinstance(accounts, str) else json.dumps(accounts)
    result = run_cli(account, "sync", env={"SOURCES__RESEND_IMPORTS__ACCOUNTS": value}, key=None)
    assert_one_line_error(result, text)
    assert "re_x" not in result.stderr


def test_accounts_from_the_toml_table_and_the_earlier_section(make_account: Any) -> None:
    account = with_accounts(make_account(imports=40), {"globex": 30})
    dlt_folder = account.workdir / ".dlt"
    dlt_folder.mkdir()
    (dlt_folder / "secrets.toml").write_text(
        f'[sources.resend_imports.accounts]\nacme = "{API_KEY}"\nglobex = "{KEYS["globex"]}"\n'
    )
    result = run_cli(account, "sync", key=None)
    assert result.returncode == 0, result.stderr
    assert rows_by_account(account) == {"acme": 40, "globex": 30}

    (dlt_folder / "secrets.toml").unlink()
    earlier = {"SOURCES__RESEND__ACCOUNTS": json.dumps({"globex": KEYS["globex"]})}
    result = run_cli(account, "sync", env=earlier, key=None)
    assert result.returncode == 0, result.stderr
    assert "SOURCES__RESEND__ACCOUNTS" in result.stderr  # one WARNING: move it
    assert "  account globex: new 0" in result.stdout, result.stdout


def test_the_report_and_the_views_per_account(make_account: Any) -> None:
    account = with_accounts(make_account(imports=120), {"globex": 70})
    account.sync(accounts={"acme": API_KEY, "globex": KEYS["globex"]})

    def imports_reported(*args: str) -> int:
        result = run_cli(account, "report", "--format", "json", "--days", "3650", *args)
        assert result.returncode == 0, result.stderr
        return sum(day["imports"] for day in json.loads(result.stdout)["daily"])

    assert imports_reported("--account", "globex") == 70
    assert imports_reported("--account", "acme") == 120
    assert imports_reported() == 190
    daily = account.query(
        "SELECT account, sum(imports) FROM {dataset}.contact_imports_daily GROUP BY account"
    )
    assert dict(daily) == {"acme": 120, "globex": 70}
    enriched = account.query(
        "SELECT count(*) FROM {dataset}.contact_imports_enriched WHERE account = 'globex'"
    )
    assert enriched == [(70,)]

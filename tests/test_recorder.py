"""The source counts the alerts it raises itself (`recorder`): an alert under a key the
alerts table holds already is not raised again, so dlt's resource metrics, which any
pipeline reads, say what the table gained."""

from resend_imports_pipelines.run.trace import report_of

from .conftest import Account
from .scenarios import NOT_AN_INTEGER, corrupting


def alert_keys(account: Account) -> list[str]:
    """The keys the alerts table holds (none before a run raised any: no table yet)."""
    tables = account.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = %s",
        "contact_import_alerts",
    )
    if not tables[0][0]:
        return []
    rows = account.query("SELECT alert_key FROM {dataset}.contact_import_alerts ORDER BY 1")
    return [row[0] for row in rows]


def test_an_alert_the_table_holds_is_not_raised_again(account: Account) -> None:
    pipeline = account.pipeline()
    account.sync(pipeline)
    account.store.advance(new=10, seconds=600)
    target = next(i["id"] for i in account.store.truth() if i["status"] in ("completed", "failed"))
    account.simulator.rewrite = corrupting({target: NOT_AN_INTEGER})
    before = alert_keys(account)
    account.sync(pipeline)
    held = alert_keys(account)
    assert report_of(pipeline).alerts_raised == len(held) - len(before) >= 1  # its own count
    assert any(key.startswith(f"{target}|") and key.endswith("|malformed") for key in held)
    summary = account.sync(pipeline)  # the same malformed record again, its alert again
    assert summary.mode == "incremental" and summary.quarantined == 1
    assert report_of(pipeline).alerts_raised == 0
    assert alert_keys(account) == held

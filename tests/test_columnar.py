"""Every idea the two intakes apply, in its row form and its columnar form, gives the same
result: parsing, what is new or changed, what a listing showed, history rows and alerts
(see `sources/resend_imports/intake.py`)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List

import pytest

from pipelines.simulator import ImportStore
from sources.resend_imports import COLUMNS, arrow
from sources.resend_imports.alerts import AlertRules, raised_on_rows, raised_on_table
from sources.resend_imports.history import (
    Observations,
    history_rows,
    history_table,
    observation_key,
)
from sources.resend_imports.incremental import DeletedImport, RunObserver, SyncState
from sources.resend_imports.known import Comparison, StateKnowledge, compare
from sources.resend_imports.records import fingerprint, to_row


def _listing(store: ImportStore) -> List[Dict[str, Any]]:
    items: List[Dict[str, Any]] = []
    after = None
    while True:
        page, has_more = store.list(100, after)
        items += page
        if not has_more:
            return items
        after = page[-1]["id"]


def _row_by_row(items: List[Dict[str, Any]]) -> Any:
    return arrow.to_arrow([to_row(item) for item in items], COLUMNS)


def test_columnar_table_equals_row_by_row_on_every_timestamp_style_and_state() -> None:
    store = ImportStore(3000, seed=7, stuck=5)
    store.advance(new=200, seconds=600)  # open imports with and without counts
    items = _listing(store)
    for start in range(0, len(items), 1000):
        batch = items[start : start + 1000]
        table = arrow.page_table(batch, COLUMNS)
        assert table is not None
        assert table.equals(_row_by_row(batch), check_metadata=True)


def test_offsets_other_than_utc_are_converted_the_same() -> None:
    batch: List[Dict[str, Any]] = [
        {"id": "a", "status": "queued", "created_at": "2026-05-15 20:32:37.5+02:00"},
        {"id": "b", "status": "queued", "created_at": "2026-05-15 13:02:37-0530", "counts": None},
        {"id": "c", "status": "completed", "created_at": "2026-05-15T18:32:37Z",
         "completed_at": "2026-05-15 18:40:00.123456+00", "counts": {"total": 3, "failed": 1}},
    ]  # fmt: skip
    table = arrow.page_table(batch, COLUMNS)
    assert table is not None
    assert table.equals(_row_by_row(batch))


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": "2026-05-15 18:32:37"},  # no offset
        {"created_at": "2026-02-30 18:32:37+00"},  # no such day
        {"created_at": None},
        {"completed_at": "soon"},
        {"counts": {"total": "12"}},
        {"counts": {"total": True}},
        {"counts": {"total": 1.5}},
        {"counts": {"total": 1, "bounced": 2}},  # a count Resend may add
        {"counts": [1, 2]},
        {"id": ""},
        {"id": None},
        {"status": 3},
        {"priority": "high"},  # a field Resend may add
    ],
)
def test_anything_unusual_goes_row_by_row(change: Dict[str, Any]) -> None:
    good = {"id": "a", "status": "completed", "created_at": "2026-05-15 18:32:37+00"}
    assert arrow.page_table([good], COLUMNS) is not None
    assert arrow.page_table([good, {**good, "id": "b", **change}], COLUMNS) is None


def test_non_objects_go_row_by_row() -> None:
    assert arrow.page_table([{"id": "a"}, "not an import"], COLUMNS) is None
    assert arrow.page_table([], COLUMNS) is None


def test_history_table_keys_rows_as_observation_key_does() -> None:
    """A state observed in a listed batch and the same state of a deleted import's last row
    must be keyed alike (the deletion row adds its own suffix)."""
    items: List[Dict[str, Any]] = [
        {"id": "a", "status": "queued", "created_at": "2026-05-15 18:32:37+00"},
        {"id": "b", "status": "in_progress", "created_at": "2026-05-15 18:32:38+00",
         "counts": {"total": 5, "created": 0}},
        {"id": "c", "created_at": "2026-05-15 18:32:39+00"},  # no status
    ]  # fmt: skip
    observations = Observations()
    at = datetime(2026, 5, 15, 19, tzinfo=UTC)
    comparison = Comparison(
        [True] * 3, [None, "queued", None], [None, "queued|||||", None], [""] * 3
    )
    observations.extend(comparison, [at] * 3)
    table = arrow.page_table(items, COLUMNS)
    assert table is not None
    history = history_table(table, observations)
    assert history is not None
    keys = history.column("observation_key").to_pylist()
    assert keys == [observation_key(to_row(item)) for item in items]
    assert history.column("previous_status").to_pylist() == [None, "queued", None]


def _state_after_a_run(items: List[Dict[str, Any]]) -> SyncState:
    observer = RunObserver(100)
    for item in items:
        observer.listed(to_row(item))
    return observer.next_state(SyncState())


def _changed_account() -> tuple[SyncState, List[Dict[str, Any]]]:
    """A state after a first run, and the listing after time passed (new, progressed,
    finished imports; some stuck open)."""
    store = ImportStore(2000, seed=11, stuck=3)
    previous = _state_after_a_run(_listing(store))
    assert previous.open_imports
    store.advance(new=150, seconds=600)
    store.advance(new=0, seconds=600)  # most of the new ones finish
    store.advance(new=0, seconds=600)
    return previous, _listing(store)


def test_fingerprints_of_a_table_equal_fingerprints_of_its_rows() -> None:
    _, items = _changed_account()
    for start in range(0, len(items), 500):
        batch = items[start : start + 500]
        table = arrow.page_table(batch, COLUMNS)
        assert table is not None
        assert arrow.fingerprints(table) == [fingerprint(row) for row in map(to_row, batch)]


def test_listing_a_table_equals_listing_its_rows() -> None:
    store = ImportStore(1200, seed=12, stuck=2)
    store.advance(new=100, seconds=600)
    items = _listing(store)
    by_rows, by_tables = RunObserver(100), RunObserver(100)
    for start in range(0, len(items), 100):
        page = items[start : start + 100]
        for item in page:
            by_rows.listed(to_row(item))
        table = arrow.page_table(page, COLUMNS)
        assert table is not None
        by_tables.listed_table(table)
    now = datetime.now(UTC)
    rows_state = by_rows.next_state(SyncState(), now)
    tables_state = by_tables.next_state(SyncState(), now)
    assert not rows_state.changes_from(tables_state)
    assert rows_state.open_imports


def _observed_batch(
    previous: SyncState, batch: List[Dict[str, Any]]
) -> tuple[Any, List[Dict[str, Any]], Observations]:
    table = arrow.page_table(batch, COLUMNS)
    rows = [to_row(item) for item in batch]
    printed = [fingerprint(row) for row in rows]
    known = StateKnowledge(previous).lookup(
        [row["id"] for row in rows], [row["created_at"] for row in rows], printed
    )
    observations = Observations()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    observations.extend(compare(printed, known), [at] * len(batch))
    return table, rows, observations


def test_history_table_equals_history_rows() -> None:
    previous, items = _changed_account()
    table, rows, observations = _observed_batch(previous, items)
    history = history_table(table, observations)
    assert history is not None and history.num_rows > 150
    assert history.to_pylist() == history_rows(rows, observations)


@pytest.mark.parametrize(
    "rules",
    [
        AlertRules(),
        AlertRules(failure_rate=0.01),
        AlertRules(failed=False),
        AlertRules(high_failure_rate=False),
        AlertRules(enabled=False),
    ],
)
@pytest.mark.parametrize("first_run", [True, False])
def test_alerts_on_a_table_equal_alerts_on_its_rows(rules: AlertRules, first_run: bool) -> None:
    previous, items = _changed_account()
    if first_run:
        previous = SyncState()
    finished = [i["id"] for i in items if i["status"] in ("failed", "completed")]
    # imports marked deleted and back: open, failed or of unknown status before
    for import_id, status in zip(finished[:6], ["queued", "failed", None] * 2, strict=True):
        previous.deleted[import_id] = DeletedImport("2026-10-31T00:00:00+00:00", status)
    table, rows, observations = _observed_batch(previous, items)
    history = history_table(table, observations)
    seen = [row for row, o in zip(rows, observations.observed, strict=True) if o]
    # the first run's limit (now - since_hours) falls between the creation and the end of
    # finished imports: which of the two times counts decides whether they are alerted
    slow = [
        r for r in rows if r["completed_at"] and (r["completed_at"] - r["created_at"]).seconds > 60
    ]
    middle = slow[len(slow) // 2]
    limit = middle["created_at"] + (middle["completed_at"] - middle["created_at"]) / 2
    now = limit + timedelta(hours=rules.since_hours)
    import pyarrow as pa

    before = [observations.before[i] for i in observations.chosen()]
    context = (before, rules, now, first_run)
    by_table = raised_on_table(table.filter(pa.array(observations.observed)), history, *context)
    by_rows = raised_on_rows(seen, history_rows(rows, observations), *context)
    assert by_table == by_rows
    if rules.enabled:
        assert by_rows


def _outputs(items: Any) -> Dict[str, List[Dict[str, Any]]]:
    """What an intake handed to dlt, by table, as plain rows with every hinted column."""
    from dlt.extract.items import DataItemWithMeta

    tables: Dict[str, List[Dict[str, Any]]] = {}
    for item in items:
        name, data = "contact_imports", item
        if isinstance(item, DataItemWithMeta):
            name, data = item.meta.table_name, item.data
        rows = data.to_pylist() if hasattr(data, "to_pylist") else data
        if name == "contact_imports":
            rows = [{column: row.get(column) for column in COLUMNS} for row in rows]
        tables.setdefault(name, []).extend(rows)
    return tables


@pytest.mark.parametrize("first_run", [True, False])
def test_both_intakes_hand_dlt_the_same_rows_history_alerts_and_state(
    first_run: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pages and fetched imports, through RowIntake and TableIntake."""
    from sources.resend_imports.intake import Alerting, RowIntake, SyncReport, TableIntake

    monkeypatch.setattr(arrow, "with_dlt_columns", lambda table: table)  # needs a load id
    previous, items = _changed_account()
    if first_run:
        previous = SyncState()
    fetched = items[-3:]  # read again by id: already yielded, so not taken twice
    seen_at = datetime(2026, 11, 1, 1, tzinfo=UTC)
    now = datetime(2026, 11, 1, 6, tzinfo=UTC)
    results: List[Any] = []
    for kind in (RowIntake, TableIntake):
        report, observer = SyncReport(), RunObserver(100)
        alerting = Alerting(AlertRules(open_hours=1.0), now, first_run)
        knowledge = StateKnowledge(previous)
        intake = kind(previous, report, observer, COLUMNS, alerting, knowledge)
        emitted: List[Any] = []
        for start in range(0, len(items), 100):
            intake.take_page(items[start : start + 100], seen_at)
            emitted += intake.emit()
        intake.finish()
        taken = [intake.take_fetched(raw, seen_at, raw["id"]) for raw in fetched]
        emitted += intake.emit(flush=True)
        raised, alerted = alerting.on_open(observer, previous.open_alerted)
        state = observer.next_state(previous, now, True, alerted)
        results.append((_outputs(emitted), vars(report), taken, raised, state))
    by_rows, by_table = results
    assert by_rows[0] == by_table[0]  # what dlt gets, table by table
    assert by_rows[1] == by_table[1] and by_rows[1]["rows"] == len(items)  # the report
    assert by_rows[2:4] == by_table[2:4]  # fetched imports taken, open-too-long alerts
    assert not by_rows[4].changes_from(by_table[4])  # the next state
    assert by_rows[0]["contact_import_status_history"] and by_rows[0]["contact_import_alerts"]


def test_a_short_incremental_run_never_imports_pyarrow(account: Any) -> None:
    """The reason there are two intakes: importing pyarrow would cost such a run ~0.1 s."""
    import subprocess
    import sys

    from .conftest import API_KEY

    script = (
        "import sys\n"
        "from tests.conftest import FAST_RETRIES\n"
        "from pipelines.run import make_pipeline, run_sync\n"
        "import dlt\n"
        f"pipeline = make_pipeline(dlt.destinations.duckdb({str(account.duckdb_path)!r}),"
        f" pipelines_dir={str(account.workdir / 'pipelines')!r})\n"
        f"summary = run_sync(pipeline, api_key={API_KEY!r}, base_url={account.url!r})\n"
        "print(summary.mode, 'pyarrow' in sys.modules)\n"
    )
    account.sync(account.pipeline())  # the first run reads everything: Arrow
    account.store.advance(new=20, seconds=600)
    repository = Path(__file__).parents[1]
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, cwd=repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["incremental", "False"]

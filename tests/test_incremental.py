"""The incremental state: what is new, what changed, and what the next run must refresh."""

from datetime import UTC, datetime, timedelta
from typing import Any, Dict, List, Optional

from resend_imports.incremental import OpenImport, SyncState
from resend_imports.known import StateKnowledge, compare
from resend_imports.observer import RunObserver, imports_to_page
from resend_imports.records import Row, fingerprint

T0 = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)


def _row(import_id: str, minutes_ago: float, status: str = "completed") -> Row:
    return {
        "id": import_id,
        "status": status,
        "created_at": T0 - timedelta(minutes=minutes_ago),
        "completed_at": None,
    }


def test_open_imports_on_the_first_page_are_paged() -> None:
    assert imports_to_page([0, 5, 99], page_size=100) == 3


def test_a_lone_open_import_deep_in_history_is_fetched_by_id() -> None:
    assert imports_to_page([3, 5000], page_size=100) == 1
    assert imports_to_page([5000], page_size=100) == 0


def test_many_open_imports_a_few_pages_down_are_cheaper_to_page() -> None:
    positions = list(range(150, 450, 2))  # 150 open imports on pages 2 to 5
    assert imports_to_page(positions, page_size=100) == len(positions)


def test_one_page_behind_is_a_tie_and_goes_by_id() -> None:
    assert imports_to_page([150], page_size=100) == 0  # 2 pages vs 1 page + 1 GET


def _observe(*rows: Row, page_size: int = 100) -> SyncState:
    observer = RunObserver(page_size)
    for row in rows:
        observer.listed(row)
    return observer.next_state(SyncState())


def test_frontier_is_newest_when_nothing_is_open() -> None:
    state = _observe(_row("a", 0), _row("b", 1), _row("c", 2))
    assert state.frontier() == T0
    assert state.open_imports == {}


def test_frontier_is_the_oldest_paged_open_import() -> None:
    state = _observe(
        _row("a", 0, "queued"), _row("b", 1), _row("c", 2, "in_progress"), _row("d", 3)
    )
    assert state.frontier() == T0 - timedelta(minutes=2)
    assert state.ids_refreshed_by_id() == []


def test_deep_open_import_is_watched_and_does_not_move_the_frontier() -> None:
    rows = [_row(f"i{n}", n) for n in range(300)]
    rows[250] = _row("stuck", 250, "queued")
    state = _observe(*rows)
    assert state.ids_refreshed_by_id() == ["stuck"]
    assert state.frontier() == T0


def test_unknown_status_stays_open() -> None:
    state = _observe(_row("a", 0, "paused"), _row("b", 1))
    assert set(state.open_imports) == {"a"}


def _seen(state: SyncState, *rows: Dict[str, Any]) -> List[tuple[bool, Optional[str]]]:
    """What a run without SQL access to the table observes of `rows` (`StateKnowledge`)."""
    printed = [fingerprint(row) for row in rows]
    known = StateKnowledge(state).lookup(
        [row["id"] for row in rows], [row["created_at"] for row in rows], printed
    )
    comparison = compare(printed, known)
    return list(zip(comparison.observed, comparison.previous_status, strict=True))


def test_new_and_updated_against_the_previous_state() -> None:
    previous = _observe(_row("a", 0, "queued"), _row("t", 0), _row("b", 1))
    assert _seen(previous, _row("n", -1)) == [(True, None)]  # created later
    assert _seen(previous, _row("tie", 0)) == [(True, None)]  # same instant, an unseen id
    assert _seen(previous, _row("t", 0)) == [(False, "completed")]
    assert _seen(previous, _row("a", 0, "completed")) == [(True, "queued")]
    assert _seen(previous, _row("a", 0, "queued"))[0][0] is False
    assert _seen(previous, _row("b", 1))[0][0] is False


def test_state_round_trips_through_plain_json() -> None:
    state = _observe(_row("a", 0, "queued"), _row("b", 1))
    stored: Dict[str, Any] = {}
    state.save(stored)
    assert SyncState.load(stored) == state
    assert SyncState.load({"version": 999}).is_empty


def test_nothing_listed_keeps_the_previous_newest() -> None:
    previous = _observe(_row("a", 0))
    assert RunObserver(100).next_state(previous).newest_created_at == previous.newest_created_at


def test_states_saved_before_the_renames_load_the_same() -> None:
    older = {"created_at": T0.isoformat(), "status": "in_progress", "by_get": True,
             "fingerprint": "in_progress|10,4,None,None,None", "missing_runs": 1}  # fmt: skip
    loaded = OpenImport.from_stored(older)
    row = {"status": "in_progress", "counts__total": 10, "counts__created": 4}
    assert loaded.refresh_by_id and loaded.missing_runs == 1
    state = SyncState(T0.isoformat(), ["a"], {"a": loaded})
    assert _seen(state, {"id": "a", "created_at": T0, **row})[0][0] is False
    assert _seen(state, {"id": "a", "created_at": T0, **row, "counts__created": 5})[0][0]

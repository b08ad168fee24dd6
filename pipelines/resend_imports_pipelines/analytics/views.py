"""SQL views over `contact_imports`, brought up to date after each successful sync on any SQL
destination.

The views leave out imports marked deleted (`deleted_at` set): they describe what Resend has.

The views are written once, in DuckDB's dialect, and translated with sqlglot (which dlt
ships) into the destination's dialect. Table names are filled in after translation, with
the destination's own quoting and qualification.

The enriched view puts its computed columns first and the table's `*` last: PostgreSQL
expands `*` when a view is created, and `CREATE OR REPLACE VIEW` may only add columns at the
end, so a new field of the API reaches the view without dropping it (which a user's own view
on it would block). On DuckDB and PostgreSQL one query of `information_schema.columns` tells
whether the views are current, so a run whose views are current runs no DDL; other SQL
destinations recreate them after every load.
"""

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import dlt
import sqlglot
from dlt.common.destination.exceptions import DestinationException, SqlClientNotAvailable
from dlt.common.exceptions import DltException
from dlt.destinations.job_client_impl import SqlJobClientBase

from resend_imports.causes import causes
from resend_imports.errors import ResendError
from resend_imports.settings import TABLE_NAME, TERMINAL_STATUSES
from resend_imports.typed_columns import retyped_columns

from ..destinations import destination_name
from ..destinations.duckdb import held_file

logger = logging.getLogger("resend_imports")

ENRICHED_VIEW = "contact_imports_enriched"
DAILY_VIEW = "contact_imports_daily"
VIEWS = (ENRICHED_VIEW, DAILY_VIEW)  # in the order they are created
CATALOG_CHECKED = ("duckdb", "postgres")  # destinations whose views are checked, not recreated
DEPENDENT_OBJECTS_STILL_EXIST = "2BP01"  # SQLSTATE of a DROP that a dependent view blocks

_SOURCE = "__resend_source_table__"
_ENRICHED = "__resend_enriched_view__"
_TERMINAL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))
_DAY = "CAST(created_at AT TIME ZONE 'UTC' AS DATE)"

ENRICHED_COLUMNS: Dict[str, str] = {  # before every column of the table
    "duration_seconds": "date_diff('microsecond', created_at, completed_at) / 1000000.0",
    "failure_rate": "CAST(counts__failed AS DOUBLE) / NULLIF(counts__total, 0)",
    "is_terminal": f"status IN ({_TERMINAL})",
}
DAILY_COLUMNS: Dict[str, str] = {
    "day": _DAY,
    "imports": "COUNT(*)",
    "completed_imports": "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END)",
    "failed_imports": "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)",
    "open_imports": "SUM(CASE WHEN is_terminal THEN 0 ELSE 1 END)",
    "rows_total": "SUM(counts__total)",
    "rows_created": "SUM(counts__created)",
    "rows_updated": "SUM(counts__updated)",
    "rows_skipped": "SUM(counts__skipped)",
    "rows_failed": "SUM(counts__failed)",
    "median_duration_seconds": "MEDIAN(duration_seconds)",
    "account": "account",  # last: a view from before accounts is replaced in place
}


def _selects(columns: Mapping[str, str]) -> str:
    return ", ".join(f"{expression} AS {name}" for name, expression in columns.items())


VIEW_SQL: Dict[str, str] = {
    ENRICHED_VIEW: f"SELECT {_selects(ENRICHED_COLUMNS)}, * FROM {_SOURCE}"
    " WHERE deleted_at IS NULL",
    DAILY_VIEW: f"SELECT {_selects(DAILY_COLUMNS)} FROM {_ENRICHED} GROUP BY {_DAY}, account",
}

# which view depends on which of ours, from PostgreSQL's catalog (a view's rewrite rule
# depends on every relation it reads)
_DEPENDENTS_SQL = """
    SELECT DISTINCT dependent_ns.nspname, dependent.relname, dependent.relkind, ours.relname
    FROM pg_depend AS d
    JOIN pg_rewrite AS rule ON rule.oid = d.objid
    JOIN pg_class AS dependent ON dependent.oid = rule.ev_class
    JOIN pg_namespace AS dependent_ns ON dependent_ns.oid = dependent.relnamespace
    JOIN pg_class AS ours ON ours.oid = d.refobjid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = ANY(ARRAY[to_regclass(%s), to_regclass(%s)]::oid[])
      AND NOT (dependent.relnamespace = ours.relnamespace AND dependent.relname IN (%s, %s))
    ORDER BY 1, 2, 4
"""
_RELKINDS = {"v": "view", "m": "materialized view"}


class ViewsNotRebuiltError(ResendError):
    """The views could not be brought up to date; the data loaded before stays loaded.

    Its own type so that a run can report the load as done and this as the one failure,
    never as a load that may have lost data.
    """


@dataclass(frozen=True)
class ViewPlan:
    """What brings the views up to date: the views to drop (dependents first) and to create.

    `reasons` says, for each view that must be dropped, why: a view of the user on it blocks
    the drop on PostgreSQL, and the user needs to know what the rebuild is for.
    """

    drops: Tuple[str, ...] = ()
    creates: Tuple[str, ...] = ()
    reasons: Tuple[Tuple[str, str], ...] = ()


def plan_views(found: Mapping[str, Sequence[str]]) -> ViewPlan:
    """What makes the views current, from the columns the catalog has for each relation.

    A view whose columns begin like the current definition's only lacks new columns at the
    end, which `CREATE OR REPLACE VIEW` adds in place; any other difference (an older
    version's column order) needs a drop. No table, no views.
    """
    table = list(found.get(TABLE_NAME, ()))
    if not table:
        return ViewPlan()
    expected = {ENRICHED_VIEW: [*ENRICHED_COLUMNS, *table], DAILY_VIEW: list(DAILY_COLUMNS)}
    reasons: Dict[str, str] = {}
    creates: List[str] = []
    for view in VIEWS:
        have, want = list(found.get(view, ())), expected[view]
        if have == want and ENRICHED_VIEW not in reasons:
            continue
        creates.append(view)
        if not have:
            continue
        if view == DAILY_VIEW and ENRICHED_VIEW in reasons:
            reasons[view] = f"is rebuilt with {ENRICHED_VIEW}"
        elif have != want[: len(have)]:
            missing = [column for column in want if column not in have]
            needs = [f"new columns ({', '.join(missing)})"] if missing else []
            reasons[view] = "needs " + " and ".join([*needs, "this version's column layout"])
    drops = tuple(view for view in reversed(VIEWS) if view in reasons)
    return ViewPlan(drops, tuple(creates), tuple(reasons.items()))


def create_views(pipeline: dlt.Pipeline) -> Tuple[str, ...]:
    """Brings the views up to date with the table, and returns the views it (re)created.

    On DuckDB and PostgreSQL only what is missing or older than the table is rebuilt (none
    when all is current: no DDL); elsewhere both are recreated.

    Raises:
        ViewsNotRebuiltError: the destination refused or failed; the message says why and,
            for a view of the user that blocks the rebuild, which one and what to do.
        SqlClientNotAvailable: the destination has no SQL.
    """
    plan: Optional[ViewPlan] = None
    destination: Any = pipeline.destination
    if not issubclass(destination.client_class, SqlJobClientBase):
        # dlt's filesystem answers SQL through an in-memory DuckDB: views there last a query
        raise SqlClientNotAvailable("pipeline", pipeline.pipeline_name, str(pipeline.destination))
    try:
        with pipeline.sql_client() as client:
            plan, catalog = _plan_of(pipeline, client)
            if plan.creates:
                _execute(client, _statements(pipeline, client, plan, catalog))
                logger.debug("views (re)created: %s", ", ".join(plan.creates))
            return plan.creates
    except SqlClientNotAvailable:
        raise
    except DestinationException as exc:
        raise ViewsNotRebuiltError(_why_not(pipeline, exc, plan)) from exc


def _plan_of(pipeline: dlt.Pipeline, client: Any) -> Tuple[ViewPlan, bool]:
    """The plan, and whether it came from the catalog (else: recreate both)."""
    name = destination_name(pipeline)
    if name not in CATALOG_CHECKED:
        return ViewPlan(tuple(reversed(VIEWS)), VIEWS), False
    rows = client.execute_sql(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_catalog = current_database() AND table_schema = %s"
        " AND table_name IN (%s, %s, %s) ORDER BY table_name, ordinal_position",
        client.dataset_name,
        TABLE_NAME,
        *VIEWS,
    )
    found: Dict[str, List[str]] = {}
    for relation, column in rows or []:
        found.setdefault(relation, []).append(column)
    plan = plan_views(found)
    if name == "postgres" and ENRICHED_VIEW in found and not _reads_the_table(client):
        # PostgreSQL binds a view to a table, not a name: after a person renamed the table
        # and the run created it again, the view still reads the renamed one
        reason = f"reads another table than {TABLE_NAME} (renamed by a person?)"
        return ViewPlan(tuple(reversed(VIEWS)), VIEWS, ((ENRICHED_VIEW, reason),)), True
    return plan, True


def _reads_the_table(client: Any) -> bool:
    """Whether the enriched view depends on the table now named `contact_imports`."""
    rows = client.execute_sql(
        "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        " WHERE r.ev_class = to_regclass(%s) AND d.refobjid = to_regclass(%s)",
        client.make_qualified_table_name(ENRICHED_VIEW),
        client.make_qualified_table_name(TABLE_NAME),
    )
    return bool(rows and rows[0][0])


def _statements(pipeline: dlt.Pipeline, client: Any, plan: ViewPlan, catalog: bool) -> List[str]:
    """The plan's DROP and CREATE statements, in the destination's dialect."""
    destination = pipeline.destination
    assert destination is not None, "the pipeline has no destination"
    dialect = destination.capabilities().sqlglot_dialect or "duckdb"
    statements = [f"DROP VIEW IF EXISTS {client.make_qualified_table_name(v)}" for v in plan.drops]
    # DuckDB and PostgreSQL replace in place, keeping the views of users on them
    create = "CREATE OR REPLACE VIEW" if catalog else "CREATE VIEW"
    return statements + view_statements(client, plan.creates, dialect, create)


def view_statements(
    client: Any, views: Sequence[str] = VIEWS, dialect: str = "duckdb", create: str = "CREATE VIEW"
) -> List[str]:
    """The statements creating `views` through `client` (a dlt SQL client), in `dialect`."""
    names = {
        _SOURCE: client.make_qualified_table_name(TABLE_NAME),
        _ENRICHED: client.make_qualified_table_name(ENRICHED_VIEW),
    }
    statements = []
    for view in views:
        body = sqlglot.transpile(VIEW_SQL[view], read="duckdb", write=dialect)[0]
        for placeholder, qualified in names.items():
            body = body.replace(placeholder, qualified)
        statements.append(f"{create} {client.make_qualified_table_name(view)} AS {body}")
    return statements


def _execute(client: Any, statements: List[str]) -> None:
    with client.begin_transaction():  # all or nothing: never one view without the other
        for statement in statements:
            client.execute_sql(statement)


def _why_not(pipeline: dlt.Pipeline, exc: BaseException, plan: Optional[ViewPlan]) -> str:
    """Why the views were not rebuilt, in one line, with what to do."""
    if plan is not None and any(
        getattr(cause, "pgcode", None) == DEPENDENT_OBJECTS_STILL_EXIST for cause in causes(exc)
    ):
        blocked = _blocked_by(pipeline, plan)
        if blocked:
            return f"the views were not rebuilt: {blocked}"
    retyped = retyped_columns(pipeline)
    if retyped:  # the next run fails the same way: say what stands in the way
        return (
            f"the views were not rebuilt ({database_words(exc)}): {retyped}; change it back,"
            " and the next run rebuilds them"
        )
    return f"the views were not rebuilt ({database_words(exc)}); the next run tries again"


def _blocked_by(pipeline: dlt.Pipeline, plan: ViewPlan) -> Optional[str]:
    """Which objects of the user block the drop of which view, from PostgreSQL's catalog."""
    try:
        with pipeline.sql_client() as client:
            dataset = client.dataset_name
            qualified = [f'"{dataset}"."{view}"' for view in VIEWS]
            rows = client.execute_sql(_DEPENDENTS_SQL, *qualified, *VIEWS)
    except DestinationException:
        return None  # the plain reason then
    reasons = dict(plan.reasons)
    found = [
        f"{_RELKINDS.get(kind, 'object')} {schema}.{name} depends on {dataset}.{view},"
        f" which {reasons.get(view, 'must be rebuilt')}"
        for schema, name, kind, view in rows or []
    ]
    if not found:
        return None
    what = "it" if len(found) == 1 else "them"
    return f"{'; '.join(found)}: drop {what}, run again, recreate {what}"


def database_words(exc: BaseException) -> str:
    """The first line of the database's own error under dlt's wrappers; DuckDB's refusal of
    a file another process holds, shortened to that (its advice is about its own CLI)."""
    for cause in causes(exc):
        if not isinstance(cause, DltException):
            words = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            held = held_file(words)
            if held is not None and held[1] is not None:
                return f"another process (PID {held[1]}) holds the DuckDB file {held[0]}"
            return words
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

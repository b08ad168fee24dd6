"""The command line of `resend-imports`: its commands, options and help."""

import argparse
import math
from typing import Any, Callable, List, Optional

from sources.resend_imports.settings import STATUSES

from ..run import DATASET_NAME, DEFAULT_DESTINATION

DESCRIPTION = "`resend-imports`: sync Resend contact imports, or try it on the bundled simulator."
EXIT_ALERTS = 4  # --fail-on-alert: synced, and the run raised alerts
PROGRESS_CHOICES = ("auto", "lines", "none")

SETTINGS_HELP = """settings it reads (variables win over .dlt/config.toml and .dlt/secrets.toml):
  API key         RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY, or api_key under
                  [sources.resend_imports]
  API URL         RESEND_API_URL or SOURCES__RESEND_IMPORTS__BASE_URL
                  (default https://api.resend.com)
  DuckDB file     --duckdb PATH or DESTINATION__DUCKDB__CREDENTIALS
                  (default ./resend_imports.duckdb)
  PostgreSQL      DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/db
  working folder  DLT_DATA_DIR (default ~/.dlt): local state, pending loads, the lock file"""
SYNC_EPILOG = f"""{SETTINGS_HELP}
  source          SOURCES__RESEND_IMPORTS__PAGE_SIZE, ..._MAX_ATTEMPTS, ..._GONE_AFTER_RUNS,
                  ..._FULL_REFRESH_EVERY_DAYS and the others in README, Configuration
  lock wait       --wait, or SOURCES__RESEND_IMPORTS__WAIT_SECONDS
  alerts          SOURCES__RESEND_IMPORTS__ALERTS__ENABLED, ..._FAILED, ..._FAILURE_RATE,
                  ..._HIGH_FAILURE_RATE, ..._OPEN_TOO_LONG, ..._OPEN_HOURS, ..._SINCE_HOURS,
                  ..._MALFORMED (or [sources.resend_imports.alerts]); channels
                  RUNTIME__SLACK_INCOMING_HOOK and SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL
                  (https; http only to loopback)

exit codes: 0 synced, 1 failed (one line says why), 2 bad command line, 3 bug,
4 synced and alerts raised (only with --fail-on-alert), 75 another sync holds the lock,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)"""
REPORT_EPILOG = f"""{SETTINGS_HELP}

Times are UTC. Imports marked deleted are left out of both tables and counted below them."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the connector (default INFO; DEBUG also shows dlt's own log)",
    )
    parser = argparse.ArgumentParser(
        prog="resend-imports", description=DESCRIPTION, parents=[common], allow_abbrev=False
    )
    parser.set_defaults(log_level="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    sync = commands.add_parser(
        "sync",
        help="one sync of contact imports into the destination",
        description="One sync of contact imports into the destination.",
        epilog=SYNC_EPILOG,
        formatter_class=formatter,
        parents=[common],
        allow_abbrev=False,
    )
    _add_destination_options(sync)
    sync.add_argument(
        "--full-refresh", action="store_true", help="list every import again and merge"
    )
    sync.add_argument(
        "--status", choices=STATUSES, help="only imports with this status (state left alone)"
    )
    sync.add_argument(
        "--progress",
        choices=PROGRESS_CHOICES,
        default="auto",
        help="a progress line every 2 s (auto: on a terminal; every 10 s in a log)",
    )
    sync.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="wait this long for another sync that holds the lock (default 0), then exit 75",
    )
    sync.add_argument(
        "--fail-on-alert",
        action="store_true",
        help=f"exit {EXIT_ALERTS} after a successful load when the run raised alerts",
    )
    sync.add_argument("--no-alerts", action="store_true", help="raise no alert in this run")
    sync.add_argument(
        "--alert-failure-rate",
        type=_rate,
        metavar="RATE",
        help="alert on completed imports with counts.failed/total >= RATE (default 0.05)",
    )
    sync.add_argument(
        "--alert-open-hours",
        type=_hours,
        metavar="HOURS",
        help="alert once on imports open longer than HOURS (default 24)",
    )

    report = commands.add_parser(
        "report",
        help="daily summary and worst imports, from the table",
        description="Daily summary of the most recent days with imports, and the worst"
        " finished imports by failure rate among them, read from the table.",
        epilog=REPORT_EPILOG,
        formatter_class=formatter,
        parents=[common],
        allow_abbrev=False,
    )
    _add_destination_options(report)
    report.add_argument(
        "--days", type=_positive_int, default=14, help="most recent days with imports (14)"
    )
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.add_argument("--wide", action="store_true", help="every column (wider than 100)")

    sql = commands.add_parser(
        "sql",
        help="one SQL query on the destination, read-only, printed as a table",
        description="One SQL query on the destination (DuckDB or PostgreSQL), read-only:"
        " the README's example queries, or your own. Tables named without a schema are the"
        " dataset's.",
        epilog="The DuckDB file: --duckdb PATH or DESTINATION__DUCKDB__CREDENTIALS (default"
        " ./resend_imports.duckdb); PostgreSQL: --destination postgres and"
        " DESTINATION__POSTGRES__CREDENTIALS. Exit 1 with one line when the database refuses"
        " the query.",
        parents=[common],
        allow_abbrev=False,
    )
    _add_destination_options(sql)
    sql.add_argument(
        "query", metavar="QUERY", help='e.g. "SELECT count(*) FROM resend.contact_imports"'
    )

    demo = commands.add_parser(
        "demo",
        help="sync the bundled simulator into demo.duckdb",
        parents=[common],
        allow_abbrev=False,
    )
    demo.add_argument(
        "--imports", type=_positive_int, default=3000, help="imports in the simulated history"
    )
    demo.add_argument("--file", default="demo.duckdb", help="DuckDB file to (re)create")
    return parser


def _add_destination_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--destination",
        default=DEFAULT_DESTINATION,
        help="a dlt destination name: duckdb (default), postgres, motherduck, bigquery, ...",
    )
    command.add_argument(
        "--duckdb", metavar="PATH", help="the DuckDB file (default ./resend_imports.duckdb)"
    )
    command.add_argument("--dataset", default=DATASET_NAME, help="dataset/schema (default resend)")


def _number(text: str, accept: Callable[[float], bool], expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # accepted by no rule
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _seconds(text: str) -> float:
    return _number(text, lambda value: value >= 0, "a number of seconds, 0 or more")


def _rate(text: str) -> float:
    return _number(text, lambda value: 0 < value <= 1, "a rate above 0 and at most 1")


def _hours(text: str) -> float:
    return _number(text, lambda value: value > 0, "a number of hours above 0")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    """The arguments; an unknown one is reported with the usage of its own command."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands: Any = next(
            action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        )
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args

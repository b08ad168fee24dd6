"""The command line of `resend-imports`: its commands, options and help."""

import argparse
import difflib
from typing import Any, Callable, List, Optional, Sequence

from resend_imports.settings import STATUSES

from ..run import DATASET_NAME, DEFAULT_DESTINATION
from ..run.pipeline import DESTINATION_ENV, working_folder
from .flag_values import MAX_DAYS, days, hours, positive_int, rate, seconds

DESCRIPTION = "`resend-imports`: sync Resend contact imports, or try it on the bundled simulator."
EXIT_ALERTS = 4  # --fail-on-alert: synced, and the run raised alerts
PROGRESS_CHOICES = ("auto", "lines", "none")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("table", "csv", "json")
DEMO_IMPORTS = 3000
DEMO_FILE = "demo.duckdb"

READ_SETTINGS = "settings it reads (variables win over .dlt/config.toml and .dlt/secrets.toml):"
SOURCE_HELP = """\
  API key         RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY, or api_key under
                  [sources.resend_imports]; several accounts: name = key under
                  [sources.resend_imports.accounts] (or JSON in SOURCES__RESEND_IMPORTS__ACCOUNTS)
  API URL         RESEND_API_URL or SOURCES__RESEND_IMPORTS__BASE_URL
                  (default https://api.resend.com)"""
DESTINATION_HELP = """\
  DuckDB file     --duckdb PATH or DESTINATION__DUCKDB__CREDENTIALS
                  (default ./resend_imports.duckdb)
  PostgreSQL      DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/db"""
SYNC_SETTINGS_TAIL = """\
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
REPORT_DESCRIPTION = """\
Reads the destination and writes nothing: a DuckDB file is opened read-only (beside other
readers of it, not while a sync writes it), PostgreSQL in read-only sessions. Four sections:
  - contact imports per day, the N most recent days with imports, with a bar of the
    imports of the day and of its failure rate;
  - the worst finished imports by failure rate among them;
  - how many imports are marked deleted in Resend;
  - the alerts raised in the last N days."""
REPORT_EPILOG_TAIL = """
Times are UTC. A failure rate is failed contacts over all contacts of the imported files
(Resend's counts.failed / counts.total). Imports marked deleted are left out of the first
two sections and counted in the third.

exit codes: 0 printed, 1 cannot read (one line says why), 2 bad command line"""
DEMO_DESCRIPTION = """\
Tries the whole connector with no API key and no network: serves two simulated Resend
accounts (acme, and globex, a smaller team) on a free loopback port, syncs both in one run
into a new DuckDB file, configured as [sources.resend_imports.accounts] configures several
accounts, lets time pass, syncs again, and checks each account's rows against its simulator
after each run. Explore the file afterwards with `resend-imports report --duckdb FILE`
(`--account NAME`: one account)."""


def working_folder_help() -> str:
    """The working folder's line of the help, with the folder dlt resolves for this user."""
    return (
        f"  working folder  DLT_DATA_DIR, here {working_folder()} (dlt's default: ~/.dlt, and"
        "\n                  /var/dlt for root): local state, pending loads, the lock file"
    )


def sync_epilog() -> str:
    return "\n".join(
        [READ_SETTINGS, SOURCE_HELP, DESTINATION_HELP, working_folder_help(), SYNC_SETTINGS_TAIL]
    )


def report_epilog() -> str:
    return "\n".join([READ_SETTINGS, DESTINATION_HELP, REPORT_EPILOG_TAIL])


class _Parser(argparse.ArgumentParser):
    """argparse, saying "did you mean" for a mistyped command or choice, with an epilog
    made when the help is printed (`epilog_of`: it asks dlt where its working folder is,
    which must not happen before the log levels are set)."""

    def __init__(
        self, *args: Any, epilog_of: Optional[Callable[[], str]] = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_of = epilog_of

    def format_help(self) -> str:
        if self.epilog_of is not None:
            self.epilog = self.epilog_of()
        return super().format_help()

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(choice) for choice in action.choices]
            message = f"invalid choice: {value!r} (choose from {', '.join(choices)})"
            raise argparse.ArgumentError(action, message + did_you_mean(str(value), choices))


def did_you_mean(word: str, known: Sequence[str]) -> str:
    """`; did you mean X?` for the known word closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(word, known, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        type=str.upper,
        choices=LOG_LEVELS,
        help="log level of the connector, in any case (default INFO; DEBUG also shows dlt's"
        " own log)",
    )
    parser = _Parser(
        prog="resend-imports", description=DESCRIPTION, parents=[common], allow_abbrev=False
    )
    parser.set_defaults(log_level="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    sync = commands.add_parser(
        "sync",
        help="one sync of contact imports into the destination",
        description="One sync of contact imports into the destination.",
        epilog_of=sync_epilog,
        formatter_class=formatter,
        parents=[common],
        allow_abbrev=False,
    )
    _add_destination_options(sync)
    sync.add_argument(
        "--table-format",
        choices=("delta", "iceberg"),
        help="with --destination filesystem: write Delta or Iceberg tables on the bucket",
    )
    sync.add_argument(
        "--full-refresh", action="store_true", help="list every import again and merge"
    )
    _add_account_option(sync, "sync only this account of [sources.resend_imports.accounts]")
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
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="wait this long for another sync that holds the lock (default 0), saying which"
        " one, then exit 75",
    )
    sync.add_argument(
        "--fail-on-alert",
        action="store_true",
        help=f"exit {EXIT_ALERTS} after a successful load when the run raised alerts",
    )
    sync.add_argument("--no-alerts", action="store_true", help="raise no alert in this run")
    sync.add_argument(
        "--alert-failure-rate",
        type=rate,
        metavar="RATE",
        help="alert on completed imports with counts.failed/total >= RATE (default 0.05)",
    )
    sync.add_argument(
        "--alert-open-hours",
        type=hours,
        metavar="HOURS",
        help="alert once on imports open longer than HOURS (default 24)",
    )

    report = commands.add_parser(
        "report",
        help="imports per day, worst imports and alerts, read from the destination",
        description=REPORT_DESCRIPTION,
        epilog_of=report_epilog,
        formatter_class=formatter,
        parents=[common],
        allow_abbrev=False,
    )
    _add_destination_options(report)
    report.add_argument(
        "--days",
        type=days,
        default=14,
        metavar="N",
        help=f"the N most recent days with imports, and alerts of the last N days (default 14,"
        f" at most {MAX_DAYS})",
    )
    report.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: for people, 100 columns wide (default); csv: one block per section, a"
        " blank line apart; json: one object of sections",
    )
    report.add_argument(
        "--wide", action="store_true", help="table with every column (wider than 100)"
    )
    report.add_argument("--account", metavar="NAME", help="only this account's imports")

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
        help="try it on the bundled simulator: no key, no network",
        description=DEMO_DESCRIPTION,
        formatter_class=formatter,
        parents=[common],
        allow_abbrev=False,
    )
    demo.add_argument(
        "--imports",
        type=positive_int,
        default=DEMO_IMPORTS,
        metavar="N",
        help=f"imports in acme's simulated history; globex a quarter as many, at least 1"
        f" (default {DEMO_IMPORTS})",
    )
    demo.add_argument(
        "--file",
        default=DEMO_FILE,
        metavar="PATH",
        help=f"the DuckDB file to create, replacing one already there (default ./{DEMO_FILE})",
    )
    return parser


def _add_destination_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--destination",
        default=None,
        help="a dlt destination name: duckdb, postgres, motherduck, bigquery, ... (default:"
        f" {DESTINATION_ENV}, else {DEFAULT_DESTINATION})",
    )
    command.add_argument(
        "--duckdb", metavar="PATH", help="the DuckDB file (default ./resend_imports.duckdb)"
    )
    command.add_argument("--dataset", default=DATASET_NAME, help="dataset/schema (default resend)")


def _add_account_option(command: argparse.ArgumentParser, text: str) -> None:
    command.add_argument(
        "--account", action="append", metavar="NAME", help=f"{text} (repeatable; default all)"
    )


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    """The arguments; an unknown one is reported with the usage of its own command, and the
    option it is closest to."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands: Any = next(
            action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        )
        command = commands.choices[args.command]
        options = [name for action in command._actions for name in action.option_strings]
        hints = [did_you_mean(word.split("=")[0], options) for word in unknown if word[:1] == "-"]
        command.error(f"unrecognized arguments: {' '.join(unknown)}{''.join(hints[:1])}")
    return args

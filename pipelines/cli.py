"""`resend-imports`: sync Resend contact imports, or try it on the bundled simulator."""

import _thread
import argparse
import logging
import math
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any, Callable, Dict, List, Optional

from sources.resend_imports.settings import STATUSES

from .failures import causes, explain
from .locking import SyncLockedError, configured_wait_seconds
from .resend_imports import DATASET_NAME, DEFAULT_DESTINATION

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 3
EXIT_ALERTS = 4  # --fail-on-alert: synced, and the run raised alerts
EXIT_LOCKED = 75  # EX_TEMPFAIL: another sync holds the lock; try again later
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
PROGRESS_CHOICES = ("auto", "lines", "none")
LINES_EVERY_SECONDS = 2.0  # progress on a terminal, or with --progress lines
LOG_EVERY_SECONDS = 10.0  # progress in a log (cron, Airflow)

SETTINGS_HELP = """settings it reads (variables win over .dlt/config.toml and .dlt/secrets.toml):
  API key         RESEND_API_KEY, SOURCES__RESEND__API_KEY, or api_key under [sources.resend]
  API URL         RESEND_API_URL or SOURCES__RESEND__BASE_URL (default https://api.resend.com)
  DuckDB file     --duckdb PATH or DESTINATION__DUCKDB__CREDENTIALS
                  (default ./resend_imports.duckdb)
  PostgreSQL      DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/db
  working folder  DLT_DATA_DIR (default ~/.dlt): local state, pending loads, the lock file"""
SYNC_EPILOG = f"""{SETTINGS_HELP}
  source          SOURCES__RESEND__PAGE_SIZE, ..._MAX_ATTEMPTS, ..._GONE_AFTER_RUNS,
                  ..._FULL_REFRESH_EVERY_DAYS and the others in README, Configuration
  lock wait       --wait, or RESEND_IMPORTS__WAIT_SECONDS
  alerts          ALERTS__ENABLED, ALERTS__FAILED, ALERTS__HIGH_FAILURE_RATE,
                  ALERTS__FAILURE_RATE, ALERTS__OPEN_TOO_LONG, ALERTS__OPEN_HOURS,
                  ALERTS__SINCE_HOURS (or [alerts]); channels RUNTIME__SLACK_INCOMING_HOOK
                  and ALERTS__WEBHOOK_URL (https; http only to loopback)

exit codes: 0 synced, 1 failed (one line says why), 2 bad command line, 3 bug,
4 synced and alerts raised (only with --fail-on-alert), 75 another sync holds the lock,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)"""
REPORT_EPILOG = f"""{SETTINGS_HELP}

Times are UTC. Imports marked deleted are left out of both tables and counted below them."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C's KeyboardInterrupt."""


class _Interrupts:
    """Ctrl-C and SIGTERM, raised where the program is.

    Python drops an exception raised while it runs a `__del__` (a connection pool the garbage
    collector happens to collect just then): the signal is remembered and raised again in the
    main thread until the run has ended on it, and the dropped one is not printed.
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.handled = threading.Event()

    def install(self) -> Callable[[], None]:
        previous = {number: signal.signal(number, self._raise) for number in _SIGNALS}

        def restore() -> None:
            self.handled.set()
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore

    def _raise(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.handled.is_set():
            return  # the run is ending on the first one
        if self.received is None:
            self.received = signum
            threading.Thread(target=self._insist, daemon=True).start()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def _insist(self) -> None:
        while not self.handled.wait(0.5) and self.received is not None:
            _thread.interrupt_main(signal.Signals(self.received))


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _quiet_about_interrupts(unraisable: Any) -> None:
    """`sys.unraisablehook`: an interruption dropped in a `__del__` is raised again (see
    `_Interrupts`), not printed as a traceback."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the connector (default INFO; DEBUG also shows dlt's own log)",
    )
    parser = argparse.ArgumentParser(
        prog="resend-imports", description=__doc__, parents=[common], allow_abbrev=False
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


def _alert_settings(args: argparse.Namespace) -> None:
    """The alert flags, as the variables dlt reads `[alerts]` from (they win over files)."""
    if args.no_alerts:
        os.environ["ALERTS__ENABLED"] = "false"
    if args.alert_failure_rate is not None:
        os.environ["ALERTS__FAILURE_RATE"] = str(args.alert_failure_rate)
    if args.alert_open_hours is not None:
        os.environ["ALERTS__OPEN_HOURS"] = str(args.alert_open_hours)


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


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("resend_imports")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    # dlt's own log lines (job tracebacks, internal warnings) are for debugging: every
    # failure reaches the user as the one line of `explain`
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "DEBUG" if level == "DEBUG" else "CRITICAL")
    # Ctrl-C and SIGTERM stop the run where it is (dlt would delay them during a load and
    # could forget them): every stage heals on the next run
    os.environ.setdefault("RUNTIME__INTERCEPT_SIGNALS", "false")


def _destination(args: argparse.Namespace) -> Any:
    from .resend_imports import PIPELINE_NAME, duckdb_destination

    if args.duckdb is not None:
        if args.destination not in (DEFAULT_DESTINATION, "duckdb"):
            raise _UsageError(f"--duckdb goes with --destination duckdb, not {args.destination}")
        return duckdb_destination(args.duckdb)
    if args.destination == "duckdb" and not _duckdb_file_configured():
        # dlt's own default is the folder of the pipeline's first run, wherever that was
        return duckdb_destination(f"{PIPELINE_NAME}.duckdb")
    return args.destination


DUCKDB_CREDENTIALS = "destination.duckdb.credentials"


def _duckdb_file_configured() -> bool:
    import dlt

    if os.environ.get("DESTINATION__DUCKDB__CREDENTIALS"):
        return True  # the common case, without reading the files
    configured: Any = dlt.secrets.get(DUCKDB_CREDENTIALS) or dlt.config.get(DUCKDB_CREDENTIALS)
    return bool(configured)


class _UsageError(Exception):
    """A command line argparse accepts but the command cannot run (exit 2)."""


def _progress_every(choice: str) -> float:
    if choice == "none":
        return 0.0  # never
    if choice == "lines" or sys.stderr.isatty():
        return LINES_EVERY_SECONDS
    return LOG_EVERY_SECONDS


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.imports, args.file)
    from .resend_imports import StaleViewsAfterLoadError, make_pipeline, run_sync

    pipeline = make_pipeline(_destination(args), args.dataset)
    if args.command == "report":
        from .report import read_report, render

        if args.destination == "postgres":
            from .postgres import check

            check(pipeline)  # an unreachable server in one line

        print(render(read_report(pipeline, args.days), args.format, wide=args.wide))
        return 0
    options: Dict[str, Any] = {"progress_every_seconds": _progress_every(args.progress)}
    _alert_settings(args)
    wait = args.wait if args.wait is not None else configured_wait_seconds()
    try:
        summary = run_sync(
            pipeline,
            full_refresh=args.full_refresh,
            status=args.status,
            wait_seconds=wait,
            **options,
        )
    except StaleViewsAfterLoadError as exc:  # the data loaded: its summary, then the one error
        print("\n".join(exc.summary.lines()))
        raise
    print("\n".join(summary.lines()))
    return EXIT_ALERTS if args.fail_on_alert and summary.alerts_raised else 0


def _interruption(exc: BaseException) -> Optional[KeyboardInterrupt]:
    """The Ctrl-C or SIGTERM behind a failure, also when dlt wrapped it in its own error."""
    for cause in causes(exc):
        if isinstance(cause, KeyboardInterrupt):
            return cause
    return None


def _interrupted(interruption: KeyboardInterrupt) -> int:
    # ours for SIGTERM, or dlt's SignalReceivedException when dlt had taken the signal over
    terminated = isinstance(interruption, Terminated) or (
        getattr(interruption, "signal_code", None) == signal.SIGTERM
    )
    print(
        f"resend-imports: {'terminated (SIGTERM)' if terminated else 'interrupted (Ctrl-C)'}:"
        " nothing was half-committed; the table and its state are as the last good run left"
        " them, and the next run loads or lists again what this one had not committed",
        file=sys.stderr,
    )
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    _configure_logging(args.log_level)
    interrupts = _Interrupts()
    restore = interrupts.install()
    sys.unraisablehook = _quiet_about_interrupts
    try:
        code = _run(args)
        if interrupts.received is not None:  # dropped where it was raised, and the run ended
            raise Terminated if interrupts.received == signal.SIGTERM else KeyboardInterrupt
        return code
    except _UsageError as exc:
        print(f"resend-imports {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SyncLockedError as exc:
        print(f"resend-imports: locked: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except BrokenPipeError:  # the reader (say `| head`) stopped reading: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt as exc:
        interrupts.handled.set()
        return _interrupted(exc)
    except Exception as exc:  # noqa: BLE001  (every failure ends in one line)
        interruption = _interruption(exc)
        if interruption is not None:
            interrupts.handled.set()
            return _interrupted(interruption)
        message = explain(exc)
        if message is None:
            traceback.print_exc()
            print(f"resend-imports: unexpected error: {type(exc).__name__}", file=sys.stderr)
            return EXIT_UNEXPECTED
        print(f"resend-imports: error: {message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        restore()


def entry_point() -> None:
    code = main()
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # an interrupted run can leave dlt's load threads behind: do not wait for them (what
        # is committed is committed; the rest loads on the next run)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

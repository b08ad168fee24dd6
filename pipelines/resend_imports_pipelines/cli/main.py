"""`resend-imports`: the commands run, every failure ended in one line and an exit code."""

import argparse
import gc
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import dlt
from dlt.common.destination.exceptions import (
    InvalidDestinationReference,
    UnknownDestinationModule,
)

from resend_imports.causes import causes

from ..analytics.render import render
from ..analytics.report import read_report
from ..analytics.sql import format_result, run_query
from ..destinations import SyncLockedError
from ..failures import explain, unknown_destination
from ..run import (
    DEFAULT_DESTINATION,
    StaleViewsAfterLoadError,
    configured_wait_seconds,
    make_pipeline,
    run_sync,
)
from ..run.pipeline import (
    DUCKDB_FILE_ENV,
    configured_destination,
    default_duckdb_file,
    duckdb_destination,
)
from ..simulator.demo import run_demo
from .interrupts import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Interrupts,
    interrupted,
    quiet_about_interrupts,
)
from .parser import EXIT_ALERTS, parse

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL: another sync holds the lock; try again later
LINES_EVERY_SECONDS = 2.0  # progress on a terminal, or with --progress lines
LOG_EVERY_SECONDS = 10.0  # progress in a log (cron, Airflow)
DUCKDB_CREDENTIALS = "destination.duckdb.credentials"


class _UsageError(Exception):
    """A command line argparse accepts but the command cannot run (exit 2)."""


def _alert_settings(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The alert flags, as settings that win over `[sources.resend_imports.alerts]`."""
    settings: Dict[str, Any] = {}
    if args.no_alerts:
        settings["enabled"] = False
    if args.alert_failure_rate is not None:
        settings["failure_rate"] = args.alert_failure_rate
    if args.alert_open_hours is not None:
        settings["open_hours"] = args.alert_open_hours
    return settings or None


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
    """--duckdb, else --destination, else RESEND_IMPORTS_DESTINATION (as the DAG reads it),
    else DuckDB in the current folder."""
    if args.duckdb is not None:
        if args.destination not in (None, DEFAULT_DESTINATION, "duckdb"):
            raise _UsageError(f"--duckdb goes with --destination duckdb, not {args.destination}")
        return duckdb_destination(args.duckdb)
    name = args.destination or configured_destination()
    if name == "duckdb" and not _duckdb_file_configured():
        return duckdb_destination(default_duckdb_file(Path.cwd()))
    return name


def _duckdb_file_configured() -> bool:
    if os.environ.get(DUCKDB_FILE_ENV):
        return True  # the common case, without reading the files
    configured: Any = dlt.secrets.get(DUCKDB_CREDENTIALS) or dlt.config.get(DUCKDB_CREDENTIALS)
    return bool(configured)


def _progress_every(choice: str) -> float:
    if choice == "none":
        return 0.0  # never
    if choice == "lines" or sys.stderr.isatty():
        return LINES_EVERY_SECONDS
    return LOG_EVERY_SECONDS


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return run_demo(args.imports, args.file)
    try:
        pipeline = make_pipeline(_destination(args), args.dataset)
    except (UnknownDestinationModule, InvalidDestinationReference) as exc:
        name = getattr(exc, "ref", None) or getattr(exc, "refs", None)
        raise _UsageError(unknown_destination(name)) from None
    if args.command == "report":
        print(render(read_report(pipeline, args.days, args.account), args.format, wide=args.wide))
        return 0
    if args.command == "sql":
        print(format_result(run_query(pipeline, args.query)))
        return 0
    options: Dict[str, Any] = {
        "progress_every_seconds": _progress_every(args.progress),
        "alert_settings": _alert_settings(args),
    }
    if args.account:
        options["account_names"] = args.account
    if args.table_format:
        options["table_format"] = args.table_format
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
    failed = summary.failed_accounts  # the others loaded: one line each, exit 1
    for report in failed:
        print(f"resend-imports: error: account {report.account}: {report.error}", file=sys.stderr)
    if failed:
        return EXIT_FAILED
    return EXIT_ALERTS if args.fail_on_alert and summary.alerts_raised else 0


def _interruption(exc: BaseException) -> Optional[KeyboardInterrupt]:
    """A Ctrl-C or SIGTERM behind a failure that did not come through `Interrupts` (dlt's
    `SignalReceivedException`, where dlt was set to take the signals over)."""
    for cause in causes(exc):
        if isinstance(cause, KeyboardInterrupt):
            return cause
    return None


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    _configure_logging(args.log_level)
    interrupts = Interrupts()
    restore = interrupts.install()
    sys.unraisablehook = quiet_about_interrupts
    try:
        code = _run(args)
        dropped = interrupts.raised()
        if dropped is not None:  # dropped where it was raised, and the run ended
            raise dropped
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
        return interrupted(exc)
    except Exception as exc:  # noqa: BLE001  (every failure ends in one line)
        # after a signal, whatever it became where it landed (DuckDB's `Query interrupted`)
        behind = interrupts.raised() or _interruption(exc)
        if behind is not None:
            interrupts.handled.set()
            return interrupted(behind)
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
    # The objects of the modules imported so far (dlt, DuckDB, Arrow: about 100,000) live
    # until the process ends: frozen, the collections a sync's rows trigger skip them, and
    # so do Python's collections at exit, after the command is done (about 0.2 s each way).
    gc.freeze()
    try:
        code = main()
    except KeyboardInterrupt as exc:  # before `main` had its handlers (reading the arguments)
        code = interrupted(exc)
    gc.freeze()
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # an interrupted run can leave dlt's load threads behind: do not wait for them (what
        # is committed is committed; the rest loads on the next run)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

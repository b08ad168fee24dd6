"""`resend-imports`: sync Resend contact imports, or try it on the bundled simulator."""

import argparse
import logging
import os
import sys
import traceback
from typing import List, Optional

from sources.resend.settings import STATUSES

from .failures import explain
from .locking import SyncLockedError, configured_wait_seconds
from .resend_imports import DATASET_NAME, DEFAULT_DESTINATION, PROGRESS_CHOICES

EXIT_FAILED = 1
EXIT_UNEXPECTED = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL: another sync holds the lock; try again later


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resend-imports", description=__doc__)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the connector (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    sync = commands.add_parser("sync", help="one sync of contact imports into the destination")
    sync.add_argument(
        "--destination",
        default=DEFAULT_DESTINATION,
        help="any dlt destination (default duckdb: ./resend_imports.duckdb)",
    )
    sync.add_argument("--dataset", default=DATASET_NAME, help="dataset/schema (default resend)")
    sync.add_argument(
        "--full-refresh", action="store_true", help="list every import again and merge"
    )
    sync.add_argument(
        "--status", choices=STATUSES, help="only imports with this status (state left alone)"
    )
    sync.add_argument(
        "--progress", choices=PROGRESS_CHOICES, default="none", help="dlt progress display"
    )
    sync.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="wait this long for another sync that holds the lock (default 0, or"
        " wait_seconds under [resend_imports] / RESEND_IMPORTS__WAIT_SECONDS); then exit 75",
    )

    report = commands.add_parser("report", help="daily summary and worst imports, from the table")
    report.add_argument("--destination", default=DEFAULT_DESTINATION, help="as for sync")
    report.add_argument("--dataset", default=DATASET_NAME, help="as for sync")
    report.add_argument(
        "--days", type=_positive_int, default=14, help="most recent days with imports (14)"
    )
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")

    demo = commands.add_parser("demo", help="sync the bundled simulator into demo.duckdb")
    demo.add_argument("--imports", type=int, default=3000, help="imports in the simulated history")
    demo.add_argument("--file", default="demo.duckdb", help="DuckDB file to (re)create")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


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


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.imports, args.file)
        from .resend_imports import make_pipeline, run_sync

        if args.command == "report":
            from .report import read_report, render

            pipeline = make_pipeline(args.destination, args.dataset)
            print(render(read_report(pipeline, args.days), args.format))
            return 0
        pipeline = make_pipeline(args.destination, args.dataset, progress=args.progress)
        wait = args.wait if args.wait is not None else configured_wait_seconds()
        summary = run_sync(
            pipeline, full_refresh=args.full_refresh, status=args.status, wait_seconds=wait
        )
        print("\n".join(summary.lines()))
        return 0
    except SyncLockedError as exc:
        print(f"resend-imports: locked: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except BrokenPipeError:  # the reader (say `| head`) stopped reading: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("resend-imports: interrupted; run again to finish", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (every failure ends in one line)
        message = explain(exc)
        if message is None:
            traceback.print_exc()
            print(f"resend-imports: unexpected error: {type(exc).__name__}", file=sys.stderr)
            return EXIT_UNEXPECTED
        print(f"resend-imports: error: {message}", file=sys.stderr)
        return EXIT_FAILED


def entry_point() -> None:
    sys.exit(main())

"""`python -m resend_imports_pipelines.simulator`: serve a simulated Resend account until
interrupted."""

import argparse
import threading
from datetime import UTC, datetime

from . import ImportStore, RunningSimulator, Simulator


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m resend_imports_pipelines.simulator", description=__doc__
    )
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument("--imports", type=int, default=1000, help="imports in the history")
    parser.add_argument(
        "--seed", type=int, default=0, help="the account's data: the same seed, the same imports"
    )
    parser.add_argument(
        "--api-key", default="re_test_key", help="the key it accepts (default re_test_key)"
    )
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per second")
    parser.add_argument("--stuck", type=int, default=None, help="imports open forever")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="accounts served (each its own imports and rate limit); the keys of the others"
        " are the key with _2, _3, ... appended",
    )
    parser.add_argument(
        "--now",
        type=_moment,
        default=None,
        metavar="TIMESTAMP",
        help="where the history ends, e.g. 2026-11-01T00:00:00Z (default: the real clock;"
        " with --seed, the same account every time)",
    )
    args = parser.parse_args()
    now = args.now or datetime.now(UTC)
    store = ImportStore(args.imports, args.seed, stuck=args.stuck, history_end=now)
    store.warm()
    simulator = Simulator(store, (args.api_key,), args.rate_limit)
    for number in range(2, args.accounts + 1):
        key = f"{args.api_key}_{number}"
        other = ImportStore(args.imports, args.seed + number, stuck=args.stuck, history_end=now)
        other.warm()
        simulator.add_account(key, Simulator(other, (key,), args.rate_limit))
    with RunningSimulator(simulator, args.port) as running:
        print(running.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO timestamp, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


if __name__ == "__main__":
    main()

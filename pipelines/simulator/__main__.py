"""`python -m pipelines.simulator`: serve a simulated Resend account until interrupted."""

import argparse
import threading

from . import ImportStore, RunningSimulator, Simulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument("--imports", type=int, default=1000, help="imports in the history")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default="re_test_key")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per second")
    parser.add_argument("--stuck", type=int, default=None, help="imports open forever")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="accounts served (each its own imports and rate limit); the keys of the others"
        " are the key with _2, _3, ... appended",
    )
    args = parser.parse_args()
    store = ImportStore(args.imports, args.seed, stuck=args.stuck)
    store.warm()
    simulator = Simulator(store, (args.api_key,), args.rate_limit)
    for number in range(2, args.accounts + 1):
        key = f"{args.api_key}_{number}"
        other = ImportStore(args.imports, args.seed + number, stuck=args.stuck)
        other.warm()
        simulator.add_account(key, Simulator(other, (key,), args.rate_limit))
    with RunningSimulator(simulator, args.port) as running:
        print(running.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

"""`make bench BENCH_ARGS=--accounts`: several Resend accounts in one run (issue 20).

Measured in one run, each sync a `resend-imports sync` process of its own on a fresh
working folder and DuckDB file, against the simulator serving every account on one port
(each its own imports and rate limit):
- 8 accounts x 1,000 imports, each limited to 10 requests/s: the first sync of all 8 in one
  run against the sum of 8 single-account first syncs (target <= 0.4);
- an incremental run of all 8 against one single-account incremental run (target <= 2);
- 100 accounts x 100 imports: an incremental run of all of them (target <= 5 s, peak RSS
  <= 400 MiB), and the requests per account.
"""

import json
import re
import tempfile
from pathlib import Path
from typing import Dict, List

from .contenders import API_KEY, RESEND_IMPORTS, Run, SimulatorProcess, run_contender

SYNC = [RESEND_IMPORTS, "sync", "--progress", "none"]
ACCOUNT_LINE = re.compile(r"^  account (\S+): .*; requests (\d+) ")


def keys(count: int) -> Dict[str, str]:
    """The accounts the simulator serves (`--accounts`), by name."""
    return {
        f"team{number:03d}": API_KEY if number == 1 else f"{API_KEY}_{number}"
        for number in range(1, count + 1)
    }


def sync(sim: SimulatorProcess, workdir: Path, accounts: Dict[str, str]) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    if len(accounts) == 1:
        environment = {"RESEND_API_KEY": next(iter(accounts.values()))}
    else:
        environment = {"SOURCES__RESEND_IMPORTS__ACCOUNTS": json.dumps(accounts)}
    run = run_contender(SYNC, workdir, sim, environment)
    if not run.ok:
        raise SystemExit(f"sync failed in {workdir}:\n{run.output[-2000:]}")
    return run


def requests_per_account(output: str) -> List[int]:
    return [
        int(match.group(2)) for line in output.splitlines() if (match := ACCOUNT_LINE.match(line))
    ]


def eight_rate_limited(folder: Path) -> List[str]:
    accounts = keys(8)
    lines = ["8 accounts x 1,000 imports, each rate-limited at 10 requests/s:"]
    with SimulatorProcess(1000, 0, rate_limit=10, accounts=8) as sim:
        singles = [
            sync(sim, folder / f"single-{name}", {name: key}) for name, key in accounts.items()
        ]
        together = sync(sim, folder / "all", accounts)
        single_incremental = sync(sim, folder / "single-team001", {"team001": API_KEY})
        all_incremental = sync(sim, folder / "all", accounts)
    total = sum(run.wall for run in singles)
    first = together.wall / total
    incremental = all_incremental.wall / single_incremental.wall
    lines += [
        f"  first sync, 8 single runs: {', '.join(f'{r.wall:.2f}' for r in singles)} s,"
        f" sum {total:.2f} s",
        f"  first sync, one run of all 8: {together.wall:.2f} s, peak RSS"
        f" {together.peak_rss_mib:.0f} MiB: ratio {first:.3f} (target <= 0.4)"
        f" {'met' if first <= 0.4 else 'MISSED'}",
        f"  incremental, one account: {single_incremental.wall:.2f} s; all 8:"
        f" {all_incremental.wall:.2f} s: ratio {incremental:.3f} (target <= 2)"
        f" {'met' if incremental <= 2 else 'MISSED'}",
        f"  requests per account, first sync of all 8: {requests_per_account(together.output)}",
    ]
    return lines


def hundred(folder: Path) -> List[str]:
    accounts = keys(100)
    with SimulatorProcess(100, 0, accounts=100) as sim:
        first = sync(sim, folder / "hundred", accounts)
        incremental = sync(sim, folder / "hundred", accounts)
    per_account = requests_per_account(incremental.output)
    met = incremental.wall <= 5 and incremental.peak_rss_mib <= 400
    return [
        "100 accounts x 100 imports (no rate limit):",
        f"  first sync: {first.wall:.2f} s, peak RSS {first.peak_rss_mib:.0f} MiB",
        f"  incremental: {incremental.wall:.2f} s (target <= 5), peak RSS"
        f" {incremental.peak_rss_mib:.0f} MiB (target <= 400) {'met' if met else 'MISSED'}",
        f"  requests per account (incremental): min {min(per_account, default=0)}, max"
        f" {max(per_account, default=0)}, over {len(per_account)} accounts",
    ]


def run_accounts_bench() -> List[str]:
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as folder:
        return eight_rate_limited(Path(folder)) + hundred(Path(folder))


if __name__ == "__main__":
    print("\n".join(run_accounts_bench()))

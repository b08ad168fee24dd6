"""The benchmark's report: Markdown tables of the figures, and the ratios its targets are
stated in, each against contenders measured in the same run (the machine is shared and
noisy, so a figure is compared only with others of its run)."""

import statistics
from typing import Any, Dict, List, Optional, Sequence

from .contenders import (
    DLT_FLOOR,
    HAND_LOOP,
    OURS,
    OURS_POSTGRES,
    OURS_POSTGRES_INSERTS,
    REST_API,
    Results,
    Run,
)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    imports: int,
    results: Dict[str, Results],
    quiet: tuple[int, float],
    limited: Optional[Dict[str, Any]],
    scaled: List[tuple[int, str, Run, Run]],
    baseline: Optional[str] = None,
) -> List[str]:
    """Markdown tables of the figures and the ratios the targets are stated in."""
    lines = [
        f"### Full sync of {imports:,} imports, then an incremental run (30 new, open ones"
        " progressed)",
        "",
        "| contender | full wall (s) | peak RSS (MiB) | requests | incremental wall (s) |"
        " incremental requests | correct after change |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {_median([r.wall for r in result.full]):.2f}"
            f" | {max(r.peak_rss_mib for r in result.full + result.incremental):.0f}"
            f" | {result.full[-1].requests}"
            f" | {_median([r.wall for r in result.incremental]):.2f}"
            f" | {result.incremental[-1].requests}"
            f" | {'yes' if all(result.correct) else 'no'}"
            f"{'' if all(r.ok for r in result.full + result.incremental) else ' (failed)'} |"
        )
    ours, rest, hand = results[OURS], results[REST_API], results[HAND_LOOP]
    full_ours = _median([r.wall for r in ours.full])
    full_hand = _median([r.wall for r in hand.full])
    full_floor = _median([r.wall for r in results[DLT_FLOOR].full])
    incremental_ratio = _median([r.wall for r in ours.incremental]) / _median(
        [r.wall for r in rest.incremental]
    )
    lines += [
        "",
        "| ratio | value | target |",
        "| --- | ---: | --- |",
        f"| full: ours / rest_api (jsonl) | {full_ours / _median([r.wall for r in rest.full]):.2f}"
        " | ≤ 0.5 |",
        f"| full: ours / hand loop | {full_ours / full_hand:.2f} | ≤ 2 |",
        f"| full: dlt floor / hand loop | {full_floor / full_hand:.2f} | for information: what"
        " any dlt pipeline costs |",
        f"| full: ours / dlt floor | {full_ours / full_floor:.2f} | for information: what the"
        " connector costs above dlt |",
        f"| incremental: ours / rest_api (jsonl) | {incremental_ratio:.2f} | ≤ 1.3 |",
        f"| peak RSS, ours (MiB) | {max(r.peak_rss_mib for r in ours.full):.0f} | ≤ 300 |",
        f"| requests, full sync: ours | {ours.full[-1].requests} | {-(-imports // 100)} |",
        f"| requests, run with nothing new or open: ours | {quiet[0]} | 1 |",
    ]
    if OURS_POSTGRES in results:
        on_postgres, inserts = results[OURS_POSTGRES], results[OURS_POSTGRES_INSERTS]
        full_postgres = _median([r.wall for r in on_postgres.full])
        lines += [
            f"| PostgreSQL full sync: csv / DuckDB | {full_postgres / full_ours:.2f}"
            f" ({full_postgres:.2f}s, {max(r.peak_rss_mib for r in on_postgres.full):.0f} MiB)"
            " | for information |",
            f"| PostgreSQL full sync: csv / insert_values |"
            f" {full_postgres / _median([r.wall for r in inserts.full]):.2f} | ≤ 0.8 keeps csv |",
        ]
    if limited:
        lines.append(
            f"| rate-limited (10/s, 5,000 imports): wall {limited['wall']:.2f}s,"
            f" {limited['requests']} requests, {limited['429s']} 429s, {limited['retries']} retries"
            f" | bound {limited['bound']:.2f}s | ≤ 1.1 x requests/10 + start-up, no 429 |"
        )
    if baseline is not None and baseline in results:
        before, after = results[baseline], ours
        lines += [
            "",
            f"| before ({baseline}) vs after (this tree), same run | before | after | after /"
            " before |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, pick in (
            ("full sync wall (s)", "full"),
            ("incremental wall (s)", "incremental"),
        ):
            was = _median([r.wall for r in getattr(before, pick)])
            now = _median([r.wall for r in getattr(after, pick)])
            lines.append(f"| {label} | {was:.2f} | {now:.2f} | {now / was:.2f} |")
        lines.append(
            f"| incremental requests | {before.incremental[-1].requests}"
            f" | {after.incremental[-1].requests} | |"
        )
        was_rss = max(r.peak_rss_mib for r in before.full)
        now_rss = max(r.peak_rss_mib for r in after.full)
        lines.append(f"| full sync peak RSS (MiB) | {was_rss:.0f} | {now_rss:.0f} | |")
    if scaled:
        lines += [
            "",
            "| imports | contender | first sync wall (s) | peak RSS (MiB) | --full-refresh wall (s)"
            " | peak RSS (MiB) | requests | ok |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for size, name, first, refresh in scaled:
            ok = "yes" if first.ok and refresh.ok else "FAILED"
            lines.append(
                f"| {size:,} | {name} | {first.wall:.2f} | {first.peak_rss_mib:.0f}"
                f" | {refresh.wall:.2f} | {refresh.peak_rss_mib:.0f} | {refresh.requests} | {ok} |"
            )
    if imports < 100_000:
        lines += [
            "",
            f"The time and memory targets are stated for 100,000 imports; at {imports:,} every"
            " contender's wall is mostly start-up, so these ratios say little.",
        ]
    return lines

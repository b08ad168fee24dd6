"""The report as people read it (a terminal table, 100 columns wide unless `--wide`) and as
programs read it (CSV, JSON).

In the terminal every count has thousands separators, durations read `4m13s`, rates are
percentages, and each day has a bar of its imports and of its failure rate (failed contacts
over all contacts of its files), each scaled to the largest of the period. Headers say what
they count: the imports of a day, and the contacts (rows) of their files. CSV and JSON keep
the columns' names and plain numbers.
"""

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence

from ..formatting import count, duration
from .report import DAILY_COLUMNS, DELETED_COLUMNS, REPORT_ALERT_COLUMNS, WORST_COLUMNS, Table

FORMATS = ("table", "csv", "json")
ALERTS_LIMIT = 20
BAR_WIDTH = 12
EIGHTHS = " ▏▎▍▌▋▊▉"  # a bar's last cell, in eighths of a cell
FULL = "█"
IMPORTS_BAR, FAILURE_BAR = "imports_bar", "failure_bar"  # drawn columns, not in the data
DAY_FAILURE_RATE = "day_failure_rate"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    group: str = ""  # a header over the columns beside it that share it
    wide: bool = False  # only with --wide


IMPORTS, CONTACTS = "imports", "contacts in the files"
DAILY = (
    Column("day", "day (UTC)"),
    Column("imports", "all", IMPORTS),
    Column("completed_imports", "completed", IMPORTS, wide=True),
    Column("failed_imports", "failed", IMPORTS),
    Column("open_imports", "open", IMPORTS),
    Column(IMPORTS_BAR, "", IMPORTS),
    Column("rows_total", "all", CONTACTS),
    Column("rows_created", "created", CONTACTS, wide=True),
    Column("rows_updated", "updated", CONTACTS, wide=True),
    Column("rows_skipped", "skipped", CONTACTS, wide=True),
    Column("rows_failed", "failed", CONTACTS),
    Column(DAY_FAILURE_RATE, "failed %", CONTACTS),
    Column(FAILURE_BAR, "", CONTACTS),
    Column("median_duration_seconds", "median", "duration"),
)
WORST = (
    Column("id", "import"),
    Column("status", "status"),
    Column("created_at", "created at (UTC)"),
    Column("counts__total", "all", "contacts"),
    Column("counts__failed", "failed", "contacts"),
    Column("failure_rate", "failed %", "contacts"),
)
ALERTS = (
    Column("raised_at", "raised (UTC)"),
    Column("import_id", "import"),
    Column("rule", "rule"),
    Column("status", "status"),
    Column("failure_rate", "failed %"),
    Column("delivered_at", "delivered (UTC)", wide=True),
)
RATES = ("failure_rate", DAY_FAILURE_RATE)


def render(report: Dict[str, Table], output_format: str, wide: bool = False) -> str:
    """The report as a terminal table, CSV (the sections a blank line apart) or JSON."""
    if output_format == "json":
        plain = {
            k: [{c: _plain(v) for c, v in row.items()} for row in t] for k, t in report.items()
        }
        return json.dumps(plain, indent=2)
    if output_format == "csv":
        return _csv(report)
    daily = _with_bars(report["daily"])
    deleted = report["deleted"][0]["deleted_imports"]
    return "\n\n".join(
        [
            _text_table("Contact imports per day", DAILY, daily, wide),
            _text_table(
                "Worst finished imports by failure rate", WORST, report["worst_imports"], wide
            ),
            "Imports deleted in Resend (kept in the table with deleted_at, left out above):"
            f" {count(int(deleted))}",
            _alerts_text(report["alerts"], wide),
        ]
    )


def _csv(report: Dict[str, Table]) -> str:
    blocks = []
    for columns, key in (
        (DAILY_COLUMNS, "daily"),
        (WORST_COLUMNS, "worst_imports"),
        (DELETED_COLUMNS, "deleted"),
        (REPORT_ALERT_COLUMNS, "alerts"),
    ):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_cell(row[c]) for c in columns] for row in report[key]])
        blocks.append(buffer.getvalue())
    return "\n".join(blocks).rstrip("\n")


def _with_bars(daily: Table) -> Table:
    """The days with their failure rate and their two bars, each scaled to the period's
    largest."""
    rates = [_rate(row["rows_failed"], row["rows_total"]) for row in daily]
    most_imports = max((int(row["imports"] or 0) for row in daily), default=0)
    worst_rate = max((rate for rate in rates if rate is not None), default=0.0)
    return [
        {
            **row,
            DAY_FAILURE_RATE: rate,
            IMPORTS_BAR: bar(int(row["imports"] or 0), most_imports),
            FAILURE_BAR: bar(rate or 0.0, worst_rate),
        }
        for row, rate in zip(daily, rates, strict=True)
    ]


def _rate(failed: Any, total: Any) -> Optional[float]:
    return float(failed) / float(total) if failed is not None and total else None


def bar(value: float, largest: float, width: int = BAR_WIDTH) -> str:
    """A bar of `value` out of `largest` in `width` cells (eighths of a cell at its end); a
    value above 0 shows at least an eighth."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(8 * width * min(value / largest, 1.0)))
    full, rest = divmod(eighths, 8)
    return FULL * full + (EIGHTHS[rest] if rest else "")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _csv_cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _cell(value: Any, key: str) -> str:
    """A value as the terminal table shows it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    value = _plain(value)
    if value is None or isinstance(value, str):
        return value or ""
    if key in RATES:
        return f"{100 * value:.1f}%"
    if key == "median_duration_seconds":
        return duration(value)
    if isinstance(value, int):
        return count(value)
    return f"{value:,.1f}"


def _text_table(title: str, columns: Sequence[Column], rows: Table, wide: bool) -> str:
    shown = [column for column in columns if wide or not column.wide]
    cells = [[_cell(row[c.key], c.key) for c in shown] for row in rows]
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(shown)]
    bars = {i for i, c in enumerate(shown) if c.key in (IMPORTS_BAR, FAILURE_BAR)}
    widths = [BAR_WIDTH if i in bars else w for i, w in enumerate(widths)]

    def line(values: List[str]) -> str:
        aligned = [
            v.ljust(w) if i in bars else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(aligned).rstrip()

    lines = [title]
    if any(c.group for c in shown):
        lines.append(_group_line(shown, widths))
    lines.append(line([c.header for c in shown]))
    lines += [line(r) for r in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def _group_line(columns: Sequence[Column], widths: Sequence[int]) -> str:
    """The groups' names centred over their columns, as `---- imports ----`."""
    parts: List[str] = []
    index = 0
    while index < len(columns):
        group, span = columns[index].group, widths[index]
        end = index + 1
        while end < len(columns) and group and columns[end].group == group:
            span += 2 + widths[end]
            end += 1
        label = f" {group} ".center(span, "-") if group else " " * span
        parts.append(label)
        index = end
    return "  ".join(parts).rstrip()


def _alerts_text(alerts: Table, wide: bool) -> str:
    waiting = sum(alert["delivered_at"] is None for alert in alerts)
    title = f"Alerts of the period: {count(len(alerts))}, {count(waiting)} not delivered yet"
    if len(alerts) > ALERTS_LIMIT:
        title += f" (the {ALERTS_LIMIT} most recent below)"
    return _text_table(title, ALERTS, alerts[:ALERTS_LIMIT], wide)

"""Usage history: what each finished API request leaves, and the tables and charts of it.

Every request under ``/v1/`` adds, when its response is closed (a stream's
end, or the client hanging up), one line to the activity ring (time, key name,
model, status, duration, account fingerprint: never a prompt or an answer) and
its counters to its hour's bucket per key and model. Recording is best effort:
a failure is logged, never raised into the request.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from glm_proxy.console.charts import Bar
from glm_proxy.console.data import USAGE_FIELDS, Activity, ConsoleData, UsageRow
from glm_proxy.observability.record import RequestRecord

log = logging.getLogger(__name__)

PASSTHROUGH = "(passthrough)"
ANONYMOUS = "-"  # a request refused before it was known who sent it
MODEL_CHARS = 64  # a caller picks the model name: it is cut to this length


def key_of(record: RequestRecord) -> str:
    caller = record.caller or ""
    if caller.startswith("key:"):
        return caller[4:]
    return PASSTHROUGH if caller.startswith("passthrough:") else ANONYMOUS


def record_request(data: ConsoleData, record: RequestRecord, status: int, path: str) -> None:
    """Count one finished request (a response close callback; never raises)."""
    try:
        status = record.status or status
        activity = Activity(
            at=time.time(),
            key=key_of(record),
            model=(record.model or "-")[:MODEL_CHARS],
            status=status,
            duration=round(time.perf_counter() - record.started, 3),
            account=record.account or "",
            path=path[:80],
        )
        amounts = {"requests": 1, "errors": int(status >= 400 or bool(record.error))}
        usage = record.usage if isinstance(record.usage, dict) else {}
        for name in USAGE_FIELDS[2:]:
            value = usage.get(name)
            if isinstance(value, int) and value > 0:
                amounts[name] = value
        data.record(activity, amounts)
    except Exception as exc:  # noqa: BLE001 - the answer was sent; history is best effort
        log.warning("could not record console usage: %s", type(exc).__name__)


# -- views of the history --------------------------------------------------------------


def now_hour() -> int:
    return int(time.time() // 3600)


def hour_label(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%H:00")


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%m-%d")


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, row: UsageRow | Totals, share: float = 1.0) -> None:
        if share == 1.0:
            self.requests += row.requests
            self.errors += row.errors
            self.prompt_tokens += row.prompt_tokens
            self.completion_tokens += row.completion_tokens
            self.total_tokens += row.total_tokens
            return
        self.requests += round(row.requests * share)
        self.errors += round(row.errors * share)
        self.prompt_tokens += round(row.prompt_tokens * share)
        self.completion_tokens += round(row.completion_tokens * share)
        self.total_tokens += round(row.total_tokens * share)


def hourly_bars(rows: Iterable[UsageRow], hours: int = 24, last: int | None = None) -> list[Bar]:
    """One bar per hour (requests, errors in part) for the ``hours`` up to ``last``."""
    last = now_hour() if last is None else last
    per: dict[int, Totals] = defaultdict(Totals)
    for row in rows:
        per[row.hour].add(row)
    first = last - hours + 1
    return [Bar(hour_label(h), per[h].requests, per[h].errors) for h in range(first, last + 1)]


def daily_bars(rows: Iterable[UsageRow], days: int = 30) -> list[Bar]:
    per: dict[int, Totals] = defaultdict(Totals)
    for row in rows:
        per[row.hour // 24].add(row)
    last = now_hour() // 24
    return [
        Bar(day_label(d), per[d].requests, per[d].errors) for d in range(last - days + 1, last + 1)
    ]


def last_hour_and_day(rows: Iterable[UsageRow], now: float | None = None) -> tuple[Totals, Totals]:
    """Totals of the last 60 minutes and the last 24 hours, from hourly buckets.

    The oldest bucket counts in proportion to the part of it still inside the
    window (the estimate ``KEY_RPM`` makes of its sliding minute), so the
    figures slide smoothly instead of dropping to nothing on the hour.
    """
    now = time.time() if now is None else now
    current, into = int(now // 3600), (now % 3600) / 3600
    per: dict[int, Totals] = defaultdict(Totals)
    for row in rows:
        per[row.hour].add(row)
    hour, day = Totals(), Totals()
    hour.add(per[current])
    hour.add(per[current - 1], 1 - into)
    for h in range(current - 23, current + 1):
        day.add(per[h])
    day.add(per[current - 24], 1 - into)
    return hour, day


@dataclass
class Table:
    """Usage grouped by one column (key or model) and period (hour or day)."""

    by: str
    period: str
    rows: list[tuple[str, str, Totals]] = field(default_factory=list)


def table(rows: Iterable[UsageRow], by: str, period: str) -> Table:
    """Rows (period label, key or model, totals), newest period first."""
    grouped: dict[tuple[int, str], Totals] = defaultdict(Totals)
    for row in rows:
        slot = row.hour if period == "hour" else row.hour // 24
        grouped[(slot, row.key if by == "key" else row.model)].add(row)
    label = hour_stamp if period == "hour" else day_stamp
    ordered = sorted(grouped.items(), key=lambda item: (-item[0][0], item[0][1]))
    return Table(by, period, [(label(slot), name, t) for (slot, name), t in ordered])


def hour_stamp(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d %H:00")


def day_stamp(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


def per_name(rows: Iterable[UsageRow], since_hour: int, by: str = "key") -> dict[str, Totals]:
    found: dict[str, Totals] = defaultdict(Totals)
    for row in rows:
        if row.hour >= since_hour:
            found[row.key if by == "key" else row.model].add(row)
    return found


def to_csv(rows: Iterable[UsageRow], period: str) -> str:
    """Per key and model, by hour or day: what a spreadsheet wants."""
    grouped: dict[tuple[int, str, str], Totals] = defaultdict(Totals)
    for row in rows:
        slot = row.hour if period == "hour" else row.hour // 24
        grouped[(slot, row.key, row.model)].add(row)
    label = hour_stamp if period == "hour" else day_stamp
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([period, "key", "model", *USAGE_FIELDS])
    for (slot, key, model), t in sorted(grouped.items()):
        writer.writerow(
            [label(slot), _cell(key), _cell(model), *(getattr(t, f) for f in USAGE_FIELDS)]
        )
    return out.getvalue()


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") and text != "-" else text

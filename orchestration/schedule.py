"""Cron, read one way: by `validate` (the config's `schedule.cron`), by `orchestrate schedule` (the preview of
the next fire times) and by beat (its crontab entries).

Celery's crontab parser is the reader. A cron is valid when that parser accepts every field (ranges that
wrap around, such as `22-2` for 22:00 to 02:59, are read as Celery reads them) and the expression can ever
fire (`0 0 31 2 *` never does); the error names the field. Fields are minute, hour, day of month, month and
day of week (0-6, Sunday is 0; names are read from their first three letters).

This module sits below `config`: it imports nothing of orchestration, and of Celery only `celery.schedules`
(no app). Loading it costs that import, so `config` imports it only when a config has a cron.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab, crontab_parser

# (name in messages, crontab keyword, lowest value, highest value), in the order of the five fields.
FIELDS: tuple[tuple[str, str, int, int], ...] = (
    ("minute", "minute", 0, 59),
    ("hour", "hour", 0, 23),
    ("day", "day_of_month", 1, 31),
    ("month", "month_of_year", 1, 12),
    ("weekday", "day_of_week", 0, 6),
)
# One comma-separated part: `*` or a number / name or a range of them, with an optional step. Stricter than
# Celery's own patterns, which would read `1-5-7` as `1-5` and ignore the rest.
_PART = re.compile(r"(\*|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/(\d+))?")
# How far the preview looks ahead: a 29 February on a given weekday can be decades away.
PREVIEW_YEARS = 50
# Reads a weekday or month name (0-12) wherever it stands, to say which bound of a part is wrong.
_NAMES = crontab_parser(13, 0)


class CronError(ValueError):
    """A cron Celery cannot read, or one that can never fire; the message names the field."""


class zoned_crontab(crontab):  # type: ignore[misc]  # Celery ships no type information
    """A crontab read in its own timezone rather than the app's (Celery matches fields in `self.tz`).

    Picklable (the default shelve scheduler stores entries), so no closures.
    """

    def __init__(self, *args: Any, timezone_name: str = "UTC", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timezone_name = timezone_name

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone_name)

    def __reduce__(self) -> tuple[Any, ...]:
        cls, args, state = super().__reduce__()
        return cls, args, {**(state or {}), "timezone_name": self.timezone_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.timezone_name = state.pop("timezone_name", "UTC")
        super().__setstate__(state)

    def __repr__(self) -> str:
        return f"<zoned_crontab: {super().__repr__()} {self.timezone_name}>"


def _split(cron: str) -> list[str]:
    fields = cron.split()
    if len(fields) != len(FIELDS):
        raise CronError(f"expected 5 cron fields (minute hour day month weekday), got {len(fields)}")
    return fields


def _field_problem(text: str, lo: int, hi: int) -> str | None:
    """Why Celery's parser refuses one field, in words; None when it reads it."""
    parser = crontab_parser(hi - lo + 1, lo)
    for part in text.split(","):
        m = _PART.fullmatch(part.lower())
        if not m:
            return f"cannot parse {part!r}"
        if m.group(4) is not None and int(m.group(4)) == 0:
            return "step must be positive"
        try:
            parser.parse(part)
        except Exception as exc:  # Celery raises ValueError, KeyError or its own ParseException
            return _bound_problem(m.group(2), m.group(3), lo=lo, hi=hi) or f"cannot read {part!r}: {exc}"
    return None


def _bound_problem(*bounds: str | None, lo: int, hi: int) -> str | None:
    for bound in filter(None, bounds):
        try:
            (value,) = {int(bound)} if bound.isdigit() else _NAMES.parse(bound)  # Celery's number for a name
        except Exception:
            return f"unknown name {bound!r} (expected a number, or a weekday or month name)"
        if not lo <= value <= hi:
            shown = str(value) if bound.isdigit() else f"{bound!r} ({value})"
            return f"{shown} is outside {lo}-{hi}"
    return None


def parse(cron: str, timezone: str = "UTC", app: Any = None) -> zoned_crontab:
    """The crontab beat runs for `cron` in `timezone`; raises CronError naming the field it cannot use."""
    fields = _split(cron)
    for text, (name, _key, lo, hi) in zip(fields, FIELDS, strict=True):
        why = _field_problem(text, lo, hi)
        if why:
            hint = " (Sunday is 0)" if name == "weekday" and "outside" in why else ""
            raise CronError(f"invalid cron {name} field {text!r}: {why}{hint}")
    kwargs = {key: text for text, (_name, key, _lo, _hi) in zip(fields, FIELDS, strict=True)}
    try:
        return zoned_crontab(**kwargs, timezone_name=timezone, app=app)
    except ValueError:
        # Every field reads; what is left is a day of month that no month of the month field has.
        day, month = fields[2], fields[3]
        raise CronError(
            f"invalid cron day field {day!r}: no month in the month field {month!r} has such a day, "
            "so it would never fire"
        ) from None


def problem(cron: str) -> str | None:
    """Why `cron` cannot be used, or None when Celery reads it and it can fire."""
    try:
        parse(cron)
    except CronError as exc:
        return str(exc)
    return None


def _day_matches(c: crontab, local: datetime) -> bool:
    return local.month in c.month_of_year and local.day in c.day_of_month and local.isoweekday() % 7 in c.day_of_week


def next_fires(cron: str, timezone: str, count: int, now: datetime | None = None) -> list[datetime]:
    """The next `count` fire times of `cron` in `timezone`, as aware datetimes in that zone.

    Walks real (UTC) minutes and matches them in the zone: no wall-clock time that DST skips, and a
    repeated hour fires twice, as a cron daemon in that zone would. Days that cannot match are skipped whole.
    """
    c = parse(cron, timezone)
    zone = ZoneInfo(timezone)
    minute = timedelta(minutes=1)
    t = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0) + minute
    end = t + timedelta(days=366 * PREVIEW_YEARS)
    found: list[datetime] = []
    while t < end and len(found) < count:
        local = t.astimezone(zone)
        if not _day_matches(c, local):
            # The first real minute of the next local day (a midnight DST skips maps to the minute after it).
            midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
            nxt = midnight.astimezone(UTC)
            t = nxt if nxt > t else t + minute
            continue
        if local.minute in c.minute and local.hour in c.hour:
            found.append(local)
        t += minute
    return found


def previous_fire(cron: str, timezone: str, now: datetime | None = None, within_days: int = 8) -> datetime | None:
    """The latest fire time of `cron` in `timezone` at or before `now` (to the minute), looking back at
    most `within_days`; None when there is none in that span. The mirror of `next_fires`."""
    c = parse(cron, timezone)
    zone = ZoneInfo(timezone)
    minute = timedelta(minutes=1)
    t = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    start = t - timedelta(days=within_days)
    while t >= start:
        local = t.astimezone(zone)
        if not _day_matches(c, local):
            # The last real minute of the previous local day.
            midnight = datetime.combine(local.date(), datetime.min.time(), zone).astimezone(UTC)
            prev = midnight - minute
            t = prev if prev < t else t - minute
            continue
        if local.minute in c.minute and local.hour in c.hour:
            return local
        t -= minute
    return None

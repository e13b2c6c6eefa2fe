"""Cron is read one way: `validate` (the config), `orchestrate schedule` (the preview) and beat's entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestration import schedule
from orchestration.config import ConfigError, parse_config
from orchestration.schedule import CronError, next_fires, zoned_crontab


def cron_errors(cron: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"workspace": {"repo": "/x"}, "schedule": {"cron": cron}})
    return [line for line in info.value.errors if line.startswith("schedule.cron:")]


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("0 0 31 2 *", "day field '31'"),
        ("0 0 30,31 feb *", "day field '30,31'"),
        ("0 0 31 4,6,9,11 *", "day field '31'"),
    ],
)
def test_a_date_that_never_comes_is_refused_naming_the_field(cron: str, fragment: str) -> None:
    errors = cron_errors(cron)
    assert errors and fragment in errors[0] and "never fire" in errors[0], errors
    assert schedule.problem(cron) is not None


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("61 * * * *", "minute field '61': 61 is outside 0-59"),
        ("0 5-25 * * *", "hour field '5-25': 25 is outside 0-23"),
        ("0 0 0 * *", "day field '0': 0 is outside 1-31"),
        ("0 0 * 13 *", "month field '13': 13 is outside 1-12"),
        ("0 0 * * 7", "weekday field '7': 7 is outside 0-6 (Sunday is 0)"),
        ("0 0 * * funday", "weekday field 'funday': unknown name 'funday'"),
        ("*/0 * * * *", "minute field '*/0': step must be positive"),
        ("1-5-7 * * * *", "minute field '1-5-7': cannot parse '1-5-7'"),
        ("* * * *", "expected 5 cron fields"),
    ],
)
def test_what_celery_cannot_read_is_refused_naming_the_field(cron: str, fragment: str) -> None:
    errors = cron_errors(cron)
    assert errors and fragment in errors[0], errors
    with pytest.raises(CronError):
        schedule.parse(cron)


def test_ranges_that_wrap_around_are_read_as_celery_reads_them() -> None:
    # Celery's parser reads 22-2 as 22, 23, 0, 1, 2 (hours) and fri-mon as Friday to Monday.
    cfg = parse_config({"workspace": {"repo": "/x"}, "schedule": {"cron": "0 22-2 * * fri-mon"}})
    assert cfg.schedule.cron == "0 22-2 * * fri-mon"
    c = schedule.parse("0 22-2 * * fri-mon")
    assert c.hour == {22, 23, 0, 1, 2}
    assert c.day_of_week == {5, 6, 0, 1}
    fires = next_fires("0 22-2 * * *", "UTC", 6, now=datetime(2026, 6, 10, 12, 0, tzinfo=UTC))
    assert [f.hour for f in fires] == [22, 23, 0, 1, 2, 22]


def test_a_29_february_can_fire_and_is_found_years_ahead() -> None:
    assert schedule.problem("0 0 29 2 *") is None
    fires = next_fires("0 0 29 2 1", "UTC", 2, now=datetime(2026, 12, 2, tzinfo=UTC))
    assert [f.date().isoformat() for f in fires] == ["2044-02-29", "2072-02-29"]  # Mondays


CRONS = ["*/20 9-17 * * mon-fri", "0 22-2 * * *", "15 10 1 * *", "0 12 * * sun", "5 4 13 * 5", "30 8 * jan-jun/2 *"]


@pytest.mark.parametrize("cron", CRONS)
def test_validate_preview_and_beat_read_a_cron_the_same_way(cron: str, tmp_path: Path) -> None:
    import beat_schedule

    tz = "Europe/Paris"
    path = tmp_path / "w.json"
    cfg = parse_config({"workspace": {"repo": "/x"}, "schedule": {"cron": cron, "timezone": tz}})  # validate
    entry = beat_schedule.entry_for(path, cfg)
    assert entry is not None
    beat = entry["schedule"]
    assert isinstance(beat, zoned_crontab) and beat.timezone_name == tz
    preview = schedule.parse(cron, tz)
    for field in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"):
        assert getattr(beat, field) == getattr(preview, field), field
    # Beat's own arithmetic (Celery's next run after the last one, in the zone) gives the preview's times.
    beat.nowfun = lambda: datetime.now(UTC)  # no app needed to tell the time
    now = datetime(2026, 6, 10, 8, 7, tzinfo=UTC)
    last = now.astimezone(ZoneInfo(tz))
    by_beat = []
    for _ in range(6):
        start, delta, _now = beat.remaining_delta(last)
        last = start + delta
        by_beat.append(last)
    assert next_fires(cron, tz, 6, now=now) == by_beat


def test_beat_leaves_out_a_config_whose_cron_it_cannot_read(tmp_path: Path) -> None:
    import beat_schedule

    for name, cron in (("good", "0 3 * * *"), ("never", "0 0 31 2 *")):
        config = {"id": name, "workspace": {"repo": "/x"}, "schedule": {"cron": cron}}
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    entries, errors = beat_schedule.build_beat_schedule(tmp_path)
    assert list(entries) == ["orchestrate:good"]
    assert [Path(e.source).name for e in errors] == ["never.json"]
    assert "day field '31'" in str(errors[0])


def test_the_beat_entry_survives_pickling_with_its_zone() -> None:
    import pickle

    c = schedule.parse("30 2 * * *", "America/New_York")
    again = pickle.loads(pickle.dumps(c))
    assert isinstance(again, zoned_crontab) and again.timezone_name == "America/New_York"
    assert again.hour == {2} and again.minute == {30}
    # Entries a beat stored before the class moved here name it `beat_schedule.zoned_crontab`.
    old = pickle.dumps(c, protocol=0).replace(b"orchestration.schedule\nzoned_crontab", b"beat_schedule\nzoned_crontab")
    assert b"beat_schedule" in old
    assert isinstance(pickle.loads(old), zoned_crontab)


def test_a_redbeat_entry_keeps_its_zone_in_redis(redis_url: str) -> None:
    """RedBeat stores entries as JSON: a plain crontab there reads back in UTC, firing a Paris 02:30 an hour
    or two off. Ours round-trips through a real Redis with its zone."""
    from celery import Celery

    import beat_schedule

    app = Celery("zone-test", set_as_current=False)
    app.conf.update(redbeat_redis_url=redis_url, redbeat_key_prefix="zone-test:redbeat:")
    entry = beat_schedule.RedBeatScheduler.Entry(
        "orchestrate:paris", "orchestrate.launch", schedule.parse("30 2 * * *", "Europe/Paris"), app=app
    ).save()
    try:
        again = beat_schedule.RedBeatScheduler.Entry.from_key(entry.key, app=app).schedule
        assert isinstance(again, zoned_crontab) and again.timezone_name == "Europe/Paris"
        assert again.hour == {2} and again.minute == {30} and again.tz == ZoneInfo("Europe/Paris")
    finally:
        entry.delete()


# -- DST: the preview walks real minutes in the zone ------------------------------------------------------


def test_a_time_dst_skips_does_not_fire() -> None:
    # New York springs forward on 2026-03-08 at 02:00: there is no 02:30 that day.
    fires = next_fires("30 2 * * *", "America/New_York", 3, now=datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    assert [f.isoformat() for f in fires] == [
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
        "2026-03-11T02:30:00-04:00",
    ]


def test_a_repeated_hour_fires_twice() -> None:
    # New York falls back on 2026-11-01 at 02:00: 01:30 happens once in EDT and once in EST.
    fires = next_fires("30 1 * * *", "America/New_York", 3, now=datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    assert [f.isoformat() for f in fires] == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-02T01:30:00-05:00",
    ]
    assert fires[1].astimezone(UTC) - fires[0].astimezone(UTC) == timedelta(hours=1)


def test_a_midnight_dst_skips_still_starts_the_day() -> None:
    # Santiago springs forward at 24:00 on the first Saturday of September: 2026-09-06 starts at 01:00.
    fires = next_fires("*/30 * 6 9 *", "America/Santiago", 2, now=datetime(2026, 9, 5, 12, 0, tzinfo=UTC))
    assert [f.isoformat() for f in fires] == ["2026-09-06T01:00:00-03:00", "2026-09-06T01:30:00-03:00"]

"""Scheduled fires: which fire starts a cycle, after what jitter, and that each fire starts at most one
(a second beat, a late duplicate, a catch-up), on real Redis code (fakeredis) and on the local state."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.config import ConfigError, parse_config
from orchestration.cycle import CATCH_UP_AFTER_S, LATE_S, jitter, plan_fire, window_left_s
from orchestration.schedule import previous_fire
from orchestration.services import Services

NIGHT = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)  # a fire of */30 1-5 * * *


def cfg(**schedule: Any) -> Any:
    base = {"cron": "*/30 1-5 * * *", "timezone": "UTC", "window": {"start": "01:00", "end": "05:00"}}
    return parse_config({"workspace": {"repo": "/srv/repos/x"}, "schedule": {**base, **schedule}})


def test_a_fire_on_time_starts_one_cycle_whoever_asks(svc: Services) -> None:
    c = cfg()
    first = plan_fire(c, svc, NIGHT + timedelta(seconds=2))
    assert first.start and first.fire_ts == int(NIGHT.timestamp()) and first.countdown == 0
    # A second beat process, or the same fire delivered again: the fire is taken.
    again = plan_fire(c, svc, NIGHT + timedelta(seconds=5))
    assert not again.start and "already started" in again.why
    # The next fire is a new one.
    assert plan_fire(c, svc, NIGHT + timedelta(minutes=30, seconds=1)).start


def test_a_late_fire_is_skipped_under_skip_and_made_up_once_under_catch_up(svc: Services) -> None:
    late = NIGHT + timedelta(seconds=LATE_S + 60)  # beat came back, or the workers did
    skipped = plan_fire(cfg(on_missed="skip"), svc, late)
    assert not skipped.start and "missed" in skipped.why
    assert not plan_fire(cfg(on_missed="skip"), svc, late, catch_up=True).start

    c = cfg(on_missed="run")  # `run` is read as catch_up
    assert c.schedule.on_missed == "catch_up"
    made_up = plan_fire(c, svc, late, catch_up=True)
    assert made_up.start and made_up.why == "catch-up of a missed fire"
    # Never a pile: the same missed fire is not made up for again, minute after minute.
    for minute in range(1, 5):
        assert not plan_fire(c, svc, late + timedelta(minutes=minute), catch_up=True).start


def test_a_catch_up_waits_for_the_fire_itself_and_for_the_window(svc: Services) -> None:
    c = cfg(on_missed="catch_up", cron="0 4 * * *", window={"start": "01:00", "end": "03:00"})
    four = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    assert "no missed fire" in plan_fire(c, svc, four + timedelta(seconds=CATCH_UP_AFTER_S - 10), catch_up=True).why
    waiting = plan_fire(c, svc, four + timedelta(hours=1), catch_up=True)
    assert not waiting.start and "window" in waiting.why
    # The next night's window: the missed fire of 04:00 is made up for at 01:00, once.
    next_night = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    assert plan_fire(c, svc, next_night, catch_up=True).start
    assert not plan_fire(c, svc, next_night + timedelta(minutes=1), catch_up=True).start


def test_jitter_stays_within_its_bound_the_window_and_the_budget() -> None:
    rng = random.Random(7)
    c = cfg(jitter_s=600)
    draws = [jitter(c, NIGHT, rng) for _ in range(200)]
    assert all(0 <= d <= 600 for d in draws) and max(draws) > 400  # spread over the whole bound
    # Ten minutes before the window closes: at most nine (a minute is kept so that start finds it open).
    near_end = datetime(2026, 12, 2, 4, 50, tzinfo=UTC)
    assert window_left_s(c, near_end) == 600
    assert all(jitter(c, near_end, rng) <= 540 for _ in range(100))
    short = parse_config(
        {"workspace": {"repo": "/r"}, "budget": {"cycle_s": 60}, "schedule": {"cron": "* * * * *", "jitter_s": 900}}
    )
    assert all(jitter(short, NIGHT, rng) <= 60 for _ in range(100))
    assert jitter(cfg(jitter_s=0), NIGHT, rng) == 0.0


def test_window_left_across_midnight_and_outside() -> None:
    c = cfg(window={"start": "22:00", "end": "02:00"}, timezone="Europe/Paris")
    at = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)  # 00:00 in Paris
    assert window_left_s(c, at) == 2 * 3600
    assert window_left_s(c, datetime(2026, 12, 2, 12, 0, tzinfo=UTC)) == 0.0
    assert window_left_s(cfg(window=None), at) is None


def test_previous_fire_reads_the_zone_and_skips_what_dst_skips() -> None:
    assert previous_fire("*/30 1-5 * * *", "UTC", NIGHT + timedelta(minutes=10)) == NIGHT
    # 02:30 does not exist in New York on 2026-03-08: the latest fire is the day before's.
    fire = previous_fire("30 2 * * *", "America/New_York", datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    assert fire is not None and fire.isoformat() == "2026-03-07T02:30:00-05:00"
    assert previous_fire("0 0 29 2 *", "UTC", NIGHT) is None  # none in the days it looks back


@pytest.mark.parametrize("bad", ["0930", "T09:00", "09", "09:00+05:00", "24:00", "9:00", "09:60"])
def test_a_window_is_exactly_hh_mm(bad: str) -> None:
    with pytest.raises(ConfigError, match="expected HH:MM"):
        cfg(window={"start": bad, "end": "05:00"})

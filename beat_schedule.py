"""Builds Celery's beat_schedule from the config directory (SPEC §9).

`celery -A beat_schedule beat` (what `orchestrate beat` runs) imports this module: it loads the app,
reads ORCH_CONFIG_DIR, and installs one crontab entry per valid config that has `schedule.cron`.
Invalid configs are reported on stderr and left out; the others still run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab

from orchestration.config import ConfigError, WorkspaceConfig, load_config_dir
from orchestration.cycle import config_problems
from orchestration.settings import get_settings
from tasks.app import app

LAUNCH_TASK = "orchestrate.launch"
# A fire that waits longer than this in the queue (no worker, beat restarted late) is dropped, not piled up.
FIRE_EXPIRES_S = 900


class zoned_crontab(crontab):
    """A crontab read in its own timezone rather than the app's (Celery matches fields in `self.tz`).

    Picklable (the default shelve scheduler stores entries), so no closures.
    """

    def __init__(self, *args: Any, timezone_name: str = "UTC", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timezone_name = timezone_name

    @property
    def tz(self) -> ZoneInfo:  # type: ignore[override]
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


def entry_for(path: Path, cfg: WorkspaceConfig) -> dict[str, Any] | None:
    if not cfg.schedule.cron:
        return None
    minute, hour, day_of_month, month_of_year, day_of_week = cfg.schedule.cron.split()
    schedule = zoned_crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone_name=cfg.schedule.timezone,
        app=app,
    )
    return {
        "task": LAUNCH_TASK,
        "schedule": schedule,
        "args": (str(path.resolve()), "schedule"),
        "options": {"queue": "orchestrate", "expires": FIRE_EXPIRES_S},
    }


def build_beat_schedule(config_dir: str | Path) -> tuple[dict[str, dict[str, Any]], list[ConfigError]]:
    good, bad = load_config_dir(config_dir)
    schedule: dict[str, dict[str, Any]] = {}
    for path, cfg in good:
        problems = config_problems(cfg, get_settings())
        if problems:
            bad.append(ConfigError(str(path), problems))
            continue
        entry = entry_for(path, cfg)
        if entry is not None:
            schedule[f"orchestrate:{cfg.id}"] = entry
    return schedule, bad


JANITOR_EVERY_S = 60.0


def install() -> dict[str, dict[str, Any]]:
    schedule, errors = build_beat_schedule(get_settings().config_dir)
    # Cycles whose worker died never reach their error callback: the janitor ends them.
    schedule["orchestrate:janitor"] = {
        "task": "orchestrate.janitor",
        "schedule": JANITOR_EVERY_S,
        "options": {"queue": "orchestrate", "expires": JANITOR_EVERY_S - 5},
    }
    for err in errors:
        print(f"orchestrate beat: skipping invalid config: {err}", file=sys.stderr)
    app.conf.beat_schedule = schedule
    return schedule


beat_schedule = install()

__all__ = ["app", "beat_schedule", "build_beat_schedule", "entry_for"]

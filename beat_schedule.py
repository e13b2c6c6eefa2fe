"""Builds Celery's beat_schedule from the config directory (SPEC §9).

`celery -A beat_schedule beat` (what `orchestrate beat` runs) imports this module: it loads the app,
reads ORCH_CONFIG_DIR, and installs one crontab entry per valid config that has `schedule.cron`.
Invalid configs are reported on stderr and left out; the others still run.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab

from orchestration.config import ConfigError, WorkspaceConfig, load_config_dir
from orchestration.settings import get_settings
from tasks.app import app

LAUNCH_TASK = "orchestrate.launch"
# A fire that waits longer than this in the queue (no worker, beat restarted late) is dropped, not piled up.
FIRE_EXPIRES_S = 900


def entry_for(path: Path, cfg: WorkspaceConfig) -> dict[str, Any] | None:
    if not cfg.schedule.cron:
        return None
    minute, hour, day_of_month, month_of_year, day_of_week = cfg.schedule.cron.split()
    tz = ZoneInfo(cfg.schedule.timezone)
    schedule = crontab(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
        day_of_week=day_of_week, nowfun=lambda: datetime.now(tz), app=app,
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
        entry = entry_for(path, cfg)
        if entry is not None:
            schedule[f"orchestrate:{cfg.id}"] = entry
    return schedule, bad


def install() -> dict[str, dict[str, Any]]:
    schedule, errors = build_beat_schedule(get_settings().config_dir)
    for err in errors:
        print(f"orchestrate beat: skipping invalid config: {err}", file=sys.stderr)
    app.conf.beat_schedule = schedule
    return schedule


beat_schedule = install()

__all__ = ["app", "beat_schedule", "build_beat_schedule", "entry_for"]

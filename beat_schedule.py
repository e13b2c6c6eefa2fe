"""Builds Celery's beat_schedule from the config directory.

`celery -A beat_schedule beat` (what `orchestrate beat` runs) finds the app here. Importing this module
reads nothing: when the app is configured (beat reads its config before it builds its scheduler), `install`
reads ORCH_CONFIG_DIR and sets one crontab entry per valid config that has `schedule.cron`, plus the
janitor. Invalid configs are reported on stderr and left out; the others still run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orchestration import schedule as cron
from orchestration.config import ConfigError, WorkspaceConfig, load_config_dir
from orchestration.cycle import config_problems
from orchestration.schedule import zoned_crontab  # beat's shelve file may hold entries pickled under this name
from orchestration.settings import get_settings
from tasks.app import app

LAUNCH_TASK = "orchestrate.launch"
CATCH_UP_TASK = "orchestrate.catch_up"
CATCH_UP_EVERY_S = 60.0
# A fire that waits longer than this in the queue (no worker, beat restarted late) is dropped, not piled up.
FIRE_EXPIRES_S = 900


def entry_for(path: Path, cfg: WorkspaceConfig) -> dict[str, Any] | None:
    if not cfg.schedule.cron:
        return None
    schedule = cron.parse(cfg.schedule.cron, cfg.schedule.timezone, app=app)
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
        try:
            entry = entry_for(path, cfg)
        except cron.CronError as exc:
            bad.append(ConfigError(str(path), [f"schedule.cron: {exc}"]))
            continue
        if entry is not None:
            schedule[f"orchestrate:{cfg.id}"] = entry
            if cfg.schedule.on_missed == "catch_up":
                # Every minute: the latest fire, if it never started a cycle, starts one inside the window.
                schedule[f"orchestrate:{cfg.id}:catch-up"] = {
                    "task": CATCH_UP_TASK,
                    "schedule": CATCH_UP_EVERY_S,
                    "args": (str(path.resolve()),),
                    "options": {"queue": "orchestrate", "expires": CATCH_UP_EVERY_S - 5},
                }
    return schedule, bad


JANITOR_EVERY_S = 60.0


def install(target: Any = app) -> dict[str, dict[str, Any]]:
    """Reads ORCH_CONFIG_DIR and sets the app's beat_schedule; invalid configs are reported and left out."""
    schedule, errors = build_beat_schedule(get_settings().config_dir)
    # Cycles whose worker died never reach their error callback: the janitor ends them.
    schedule["orchestrate:janitor"] = {
        "task": "orchestrate.janitor",
        "schedule": JANITOR_EVERY_S,
        "options": {"queue": "orchestrate", "expires": JANITOR_EVERY_S - 5},
    }
    for err in errors:
        print(f"orchestrate beat: skipping invalid config: {err}", file=sys.stderr)
    target.conf.beat_schedule = schedule
    return schedule


@app.on_after_configure.connect(weak=False)
def _install_when_configured(sender: Any, **_: Any) -> None:
    install(sender)


__all__ = ["app", "build_beat_schedule", "entry_for", "install", "zoned_crontab"]

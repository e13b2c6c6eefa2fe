"""Builds Celery's beat_schedule from the config directory.

`celery -A beat_schedule beat` (what `orchestrate beat` runs) finds the app here. Importing this module
reads nothing: when the app is configured (beat reads its config before it builds its scheduler), `install`
reads ORCH_CONFIG_DIR and sets one crontab entry per valid config that has `schedule.cron`, plus the
janitor. Invalid configs are reported on stderr and left out; the others still run.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.beat import PersistentScheduler
from redbeat import RedBeatScheduler as _RedBeat
from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis

from orchestration import schedule as cron
from orchestration.config import ConfigError, WorkspaceConfig, load_config_dir
from orchestration.deployment import config_problems
from orchestration.schedule import zoned_crontab  # beat's shelve file may hold entries pickled under this name
from orchestration.settings import get_settings
from tasks.app import app

LAUNCH_TASK = "orchestrate.launch"
CATCH_UP_TASK = "orchestrate.catch_up"
CATCH_UP_EVERY_S = 60.0
NEVER = datetime(2000, 1, 1, tzinfo=UTC)  # the last run of an entry that has not run yet: due at once
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
                # A new entry is due at once: when beat comes back after a pause, that is the next chance.
                schedule[f"orchestrate:{cfg.id}:catch-up"] = {
                    "task": CATCH_UP_TASK,
                    "schedule": CATCH_UP_EVERY_S,
                    "args": (str(path.resolve()),),
                    "options": {"queue": "orchestrate", "expires": CATCH_UP_EVERY_S - 5},
                    "last_run_at": NEVER,
                }
    return schedule, bad


JANITOR_EVERY_S = 60.0


log = logging.getLogger(__name__)
_reported: set[str] = set()


def install(target: Any = app) -> dict[str, dict[str, Any]]:
    """Reads ORCH_CONFIG_DIR and sets the app's beat_schedule; invalid configs are reported (once each, as
    long as they stay invalid) and left out."""
    schedule, errors = build_beat_schedule(get_settings().config_dir)
    # Cycles whose worker died never reach their error callback: the janitor ends them.
    schedule["orchestrate:janitor"] = {
        "task": "orchestrate.janitor",
        "schedule": JANITOR_EVERY_S,
        "options": {"queue": "orchestrate", "expires": JANITOR_EVERY_S - 5},
    }
    texts = {str(err) for err in errors}
    for text in sorted(texts - _reported):
        print(f"orchestrate beat: skipping invalid config: {text}", file=sys.stderr)
    _reported.clear()
    _reported.update(texts)
    target.conf.beat_schedule = schedule
    return schedule


class _Reloading:
    """Beat reads the config directory again every `ORCH_BEAT_RELOAD_S`: a config added, changed or removed
    takes effect without a restart."""

    _next_reload = 0.0

    def reload_configs(self) -> None:
        raise NotImplementedError

    def tick(self, *args: Any, **kwargs: Any) -> float:
        every = get_settings().beat_reload_s
        now = time.monotonic()
        if now >= self._next_reload:
            self._next_reload = now + every
            try:
                self.reload_configs()
            except Exception:  # a bad moment (Redis away, a file half written): the next reload tries again
                log.exception("reading the config directory again failed")
        return float(min(super().tick(*args, **kwargs), every))  # type: ignore[misc]


class Scheduler(_Reloading, PersistentScheduler):  # type: ignore[misc]
    """Celery's default scheduler (a schedule file), reloading the configs."""

    def reload_configs(self) -> None:
        self.merge_inplace(install(self.app))


class _ZonedEncoder(RedBeatJSONEncoder):  # type: ignore[misc]
    """RedBeat's JSON for entries, with a crontab's own timezone kept (RedBeat writes a plain crontab, which
    reads back in UTC: a Europe/Paris 02:00 would fire at 02:00 UTC)."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, zoned_crontab):
            return {**super().default(obj), "__type__": "zoned_crontab", "timezone": obj.timezone_name}
        return super().default(obj)


class _ZonedDecoder(RedBeatJSONDecoder):  # type: ignore[misc]
    def dict_to_object(self, d: dict[str, Any]) -> Any:
        if d.get("__type__") == "zoned_crontab":
            fields = {k: v for k, v in d.items() if k not in ("__type__", "timezone")}
            return zoned_crontab(timezone_name=str(d.get("timezone") or "UTC"), **fields)
        return super().dict_to_object(d)


class _ZonedEntry(RedBeatSchedulerEntry):  # type: ignore[misc]
    """RedBeat's entry, stored and read with the JSON above."""

    @staticmethod
    def decode_definition(definition: Any) -> Any:
        return json.loads(definition, cls=_ZonedDecoder)

    def save(self) -> _ZonedEntry:
        # RedBeatSchedulerEntry.save, with the encoder that keeps the timezone.
        definition = {
            "name": self.name,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "schedule": self.schedule,
            "enabled": self.enabled,
        }
        meta = {"last_run_at": self.last_run_at}
        with get_redis(self.app).pipeline() as pipe:
            pipe.hset(self.key, "definition", json.dumps(definition, cls=_ZonedEncoder))
            pipe.hsetnx(self.key, "meta", json.dumps(meta, cls=_ZonedEncoder))
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()
        return self


class RedBeatScheduler(_Reloading, _RedBeat):  # type: ignore[misc]
    """RedBeat (entries and a lock in Redis: several beat processes, one active), reloading the configs."""

    Entry = _ZonedEntry

    def reload_configs(self) -> None:
        install(self.app)
        self.setup_schedule()  # adds and updates entries, removes the ones whose config is gone


@app.on_after_configure.connect(weak=False)
def _install_when_configured(sender: Any, **_: Any) -> None:
    install(sender)


__all__ = ["RedBeatScheduler", "Scheduler", "app", "build_beat_schedule", "entry_for", "install", "zoned_crontab"]

"""Beat reads the config directory again while it runs: an added config gets an entry, a changed cron is
used, a removed config loses its entry (Celery's default scheduler; the RedBeat one is run for real in
tests/integration/test_beat.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.settings import get_settings


def write(directory: Path, name: str, cron: str) -> None:
    (directory / f"{name}.json").write_text(
        json.dumps({"id": name, "workspace": {"repo": "/srv/repos/x"}, "schedule": {"cron": cron}})
    )


def test_the_default_scheduler_follows_the_config_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    write(configs, "kept", "0 3 1 1 *")  # never due during the test: nothing is sent
    write(configs, "gone", "0 4 1 1 *")
    monkeypatch.setenv("ORCH_CONFIG_DIR", str(configs))
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing may reach a broker here
    get_settings.cache_clear()
    import beat_schedule

    scheduler = beat_schedule.Scheduler(app=beat_schedule.app, schedule_filename=str(tmp_path / "schedule"), lazy=False)
    try:
        scheduler.tick()
        assert {"orchestrate:kept", "orchestrate:gone", "orchestrate:janitor"} <= set(scheduler.schedule)
        (configs / "gone.json").unlink()
        write(configs, "kept", "0 5 1 1 *")
        write(configs, "added", "0 6 1 1 *")
        scheduler._next_reload = 0.0  # the reload is due
        scheduler.tick()
        names = set(scheduler.schedule)
        assert "orchestrate:gone" not in names and {"orchestrate:kept", "orchestrate:added"} <= names
        assert scheduler.schedule["orchestrate:kept"].schedule.hour == {5}
    finally:
        scheduler.close()
        get_settings.cache_clear()

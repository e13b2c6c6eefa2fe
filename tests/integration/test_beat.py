"""A real beat process reading a config directory starts a cycle when its crontab entry is due."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from orchestration.keys import Keys
from tests.helpers import ROOT, celery_worker, make_repo, orchestrate_process, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


@pytest.mark.timeout(150)
def test_beat_fires_a_cycle_for_a_due_entry(tmp_path: Path, orch_env: dict[str, str]) -> None:
    repo, _bare = make_repo(tmp_path)
    config_dir = Path(orch_env["ORCH_CONFIG_DIR"])
    config_dir.mkdir()
    (config_dir / "demo.json").write_text(
        json.dumps(
            {
                "id": "demo",
                "workspace": {"repo": str(repo)},
                "schedule": {"cron": "* * * * *", "timezone": "Europe/Paris"},
                "budget": {"cycle_s": 60},
                "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
                "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
                "pr": {"enabled": False},
            }
        )
    )
    (config_dir / "broken.json").write_text(json.dumps({"workspace": {"repo": "/x"}, "bogus": 1}))
    env = dict(orch_env)
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    prefix = env["ORCH_KEY_PREFIX"]
    beat_log = tmp_path / "beat.log"
    beat_args = ["beat", "-s", str(tmp_path / "beat-schedule")]
    with celery_worker(env, tmp_path / "worker.log"), orchestrate_process(beat_args, env, beat_log):
        ids = wait_for(lambda: r.zrange(Keys(prefix).cycles("demo"), 0, -1), timeout=75, interval=0.5)
        assert ids, beat_log.read_text()[-3000:]
        cycle_id = ids[0].decode()
        status = wait_for(
            lambda: (
                (r.hget(Keys(prefix).cycle(cycle_id), "status") or b"").decode()
                in ("succeeded", "failed", "timed_out", "skipped")
                and r.hget(Keys(prefix).cycle(cycle_id), "status")
            ),
            timeout=60,
            interval=0.5,
        )
        assert status == b"succeeded", r.hgetall(Keys(prefix).cycle(cycle_id))
        assert r.hget(Keys(prefix).cycle(cycle_id), "trigger") == b"schedule"
    log = beat_log.read_text()
    assert "broken.json" in log and "bogus" in log  # the invalid config was reported and left out


@pytest.mark.timeout(200)
def test_two_redbeat_beats_fire_once_and_pick_up_a_config_added_while_they_run(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Two beat processes with RedBeat on one Redis: one holds the lock and sends, each fire starts one
    cycle; a config written into the directory while they run is scheduled without a restart."""
    import time

    repo, _bare = make_repo(tmp_path)
    config_dir = Path(orch_env["ORCH_CONFIG_DIR"])
    config_dir.mkdir()

    def write(name: str) -> None:
        (config_dir / f"{name}.json").write_text(
            json.dumps(
                {
                    "id": name,
                    "workspace": {"repo": str(repo)},
                    "schedule": {"cron": "* * * * *"},
                    "budget": {"cycle_s": 60},
                    "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
                    "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
                    "pr": {"enabled": False},
                }
            )
        )

    write("early")
    env = dict(orch_env, ORCH_BEAT_RELOAD_S="2")
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    keys = Keys(env["ORCH_KEY_PREFIX"])
    beats = ["beat", "-S", "redbeat.RedBeatScheduler", "--max-interval", "2"]
    with (
        celery_worker(env, tmp_path / "worker.log"),
        orchestrate_process(beats, env, tmp_path / "beat1.log", ready=b"beat: Starting"),
        orchestrate_process(beats, env, tmp_path / "beat2.log", ready=b"beat: Starting"),
    ):
        time.sleep(3)
        write("late")  # added while both beats run
        both = wait_for(
            lambda: r.zcard(keys.cycles("early")) and r.zcard(keys.cycles("late")), timeout=150, interval=0.5
        )
        logs = (tmp_path / "beat1.log").read_text() + (tmp_path / "beat2.log").read_text()
        assert both, logs[-4000:]
        time.sleep(3)  # a second sender, if there were one, would have sent by now
        for name in ("early", "late"):
            cycles = r.zcard(keys.cycles(name))
            fires = len(list(r.scan_iter(match=f"{env['ORCH_KEY_PREFIX']}:fire:{name}:*")))
            sent = logs.count(f"Sending due task orchestrate:{name} (orchestrate.launch)")
            assert cycles == fires >= 1, (name, cycles, fires)  # one cycle per fire
            assert sent == fires, (name, sent, fires)  # only the beat holding the lock sends
    assert "orchestrate:late" in logs

"""A real beat process reading a config directory starts a cycle when its crontab entry is due."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestration.keys import Keys
from tests.helpers import ROOT, celery_worker, make_repo, orchestrate_process, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


def config(tmp_path: Path, repo: Path, name: str, **schedule: Any) -> dict[str, Any]:
    return {
        "id": name,
        "workspace": {"repo": str(repo)},
        "schedule": schedule,
        "budget": {"cycle_s": 60},
        "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
        "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
        "pr": {"enabled": False},
    }


@pytest.mark.timeout(200)
def test_beat_fires_due_entries_in_their_window_with_jitter_and_makes_up_a_missed_fire_once(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Real beat on a config directory: a due fire inside its window starts a cycle; one outside its window
    ends `skipped`/`outside_window`; a jittered one starts late, within its bound; a fire missed while beat
    was down (`on_missed: catch_up`) starts one cycle when beat comes back, and a second beat start does not
    start another; an invalid config is reported and the valid ones still run."""
    from datetime import UTC, datetime, timedelta

    repos = {name: make_repo(tmp_path, name)[0] for name in ("demo", "outside", "jittered", "missed")}
    now = datetime.now(UTC)
    later = (now + timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=3)).strftime("%H:%M")
    missed = now - timedelta(minutes=3)
    configs = {
        "demo": config(tmp_path, repos["demo"], "demo", cron="* * * * *", timezone="Europe/Paris"),
        "outside": config(
            tmp_path, repos["outside"], "outside", cron="* * * * *", window={"start": later[0], "end": later[1]}
        ),
        "jittered": config(tmp_path, repos["jittered"], "jittered", cron="* * * * *", jitter_s=20),
        "missed": config(
            tmp_path, repos["missed"], "missed", cron=f"{missed.minute} {missed.hour} * * *", on_missed="catch_up"
        ),
    }
    config_dir = Path(orch_env["ORCH_CONFIG_DIR"])
    config_dir.mkdir()
    for name, data in configs.items():
        (config_dir / f"{name}.json").write_text(json.dumps(data))
    (config_dir / "broken.json").write_text(json.dumps({"workspace": {"repo": "/x"}, "bogus": 1}))
    env = dict(orch_env)
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    keys = Keys(env["ORCH_KEY_PREFIX"])

    def first(name: str) -> dict[str, str]:
        ids = r.zrange(keys.cycles(name), 0, 0)
        record = r.hgetall(keys.cycle(ids[0].decode())) if ids else {}
        return {k.decode(): v.decode() for k, v in record.items()}

    def ended(name: str) -> bool:
        return bool(first(name).get("finished_at"))

    beat_log, worker_log = tmp_path / "beat.log", tmp_path / "worker.log"
    with celery_worker(env, worker_log):
        with orchestrate_process(["beat", "-s", str(tmp_path / "beat-schedule")], env, beat_log):
            done = wait_for(lambda: all(ended(name) for name in configs), timeout=150, interval=0.5)
            assert done, {name: first(name) for name in configs} | {"log": beat_log.read_text()[-3000:]}
        # beat comes back (a fresh schedule, as after a move): its catch-up check runs at once and finds the
        # missed fire already made up.
        checks = lambda: worker_log.read_text().count("Task orchestrate.catch_up[")  # noqa: E731
        before = checks()
        with orchestrate_process(["beat", "-s", str(tmp_path / "beat-schedule-2")], env, tmp_path / "beat2.log"):
            assert wait_for(lambda: checks() > before, timeout=30), worker_log.read_text()[-3000:]
    assert (first("demo")["status"], first("demo")["trigger"]) == ("succeeded", "schedule"), first("demo")
    assert (first("outside")["status"], first("outside")["reason"]) == ("skipped", "outside_window")
    assert first("missed")["status"] == "succeeded" and r.zcard(keys.cycles("missed")) == 1
    assert "catch-up of a missed fire" in worker_log.read_text()

    jittered = first("jittered")
    assert jittered["status"] == "succeeded", jittered
    events = [json.loads(f[b"event"]) for _, f in r.xrange(keys.events(jittered["cycle_id"]))]
    delay = next(e["data"]["delay_s"] for e in events if e["kind"] == "cycle.queued")
    waited = (
        datetime.fromisoformat(jittered["started_at"]) - datetime.fromisoformat(jittered["queued_at"])
    ).total_seconds()
    assert 0 < delay <= 20 and delay - 1 <= waited <= 20 + 5, (delay, waited)

    log = beat_log.read_text()
    assert "broken.json" in log and "bogus" in log  # the invalid config was reported and left out


@pytest.mark.timeout(200)
def test_two_redbeat_beats_fire_once_and_follow_configs_added_and_removed_while_they_run(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Two beat processes with RedBeat on one Redis: one holds the lock and sends, each fire starts one
    cycle; a config written into the directory while they run is scheduled without a restart, and one
    removed is unscheduled."""
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
        # a config removed while they run: its entry leaves RedBeat's schedule at the next reload
        entry = f"{env['ORCH_KEY_PREFIX']}:redbeat:orchestrate:early"
        assert r.zscore(f"{env['ORCH_KEY_PREFIX']}:redbeat::schedule", entry) is not None
        (config_dir / "early.json").unlink()
        gone = wait_for(lambda: not r.exists(entry), timeout=20, interval=0.5)
        assert gone, sorted(k.decode() for k in r.scan_iter(match=f"{env['ORCH_KEY_PREFIX']}:redbeat*"))
        assert r.zscore(f"{env['ORCH_KEY_PREFIX']}:redbeat::schedule", entry) is None
        assert r.exists(f"{env['ORCH_KEY_PREFIX']}:redbeat:orchestrate:late")
    assert "orchestrate:late" in logs

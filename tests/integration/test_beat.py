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


def records(r: redis.Redis, keys: Keys, name: str) -> dict[str, str]:
    """The first cycle of workspace `name`, as its Redis hash (empty while none)."""
    ids = r.zrange(keys.cycles(name), 0, 0)
    record = r.hgetall(keys.cycle(ids[0].decode())) if ids else {}
    return {k.decode(): v.decode() for k, v in record.items()}


@pytest.mark.timeout(240)
def test_beat_processes_on_config_directories_fire_in_window_with_jitter_once_and_follow_changes(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Two deployments side by side on one Redis (each its own key prefix, config directory and worker), so
    that one wait for the minute's fire serves both.

    A: beat with the default scheduler. A due fire inside its window starts a cycle; one outside its window
    ends `skipped`/`outside_window`; a jittered one starts late, within its bound; a fire missed while beat
    was down (`on_missed: catch_up`) starts one cycle when beat comes back, and a second beat start does not
    start another; an invalid config is reported and the valid ones still run.

    B: two beat processes with RedBeat: one holds the lock and sends, each fire starts one cycle; a config
    written into the directory while they run is scheduled without a restart, and one removed is unscheduled."""
    import time
    from datetime import UTC, datetime, timedelta

    # -- A: the default scheduler -----------------------------------------------------------------
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
    env_a = dict(orch_env)
    dir_a = Path(env_a["ORCH_CONFIG_DIR"])
    dir_a.mkdir()
    for name, data in configs.items():
        (dir_a / f"{name}.json").write_text(json.dumps(data))
    (dir_a / "broken.json").write_text(json.dumps({"workspace": {"repo": "/x"}, "bogus": 1}))
    r = redis.Redis.from_url(env_a["ORCH_REDIS_URL"])
    keys_a = Keys(env_a["ORCH_KEY_PREFIX"])

    def first(name: str) -> dict[str, str]:
        return records(r, keys_a, name)

    # -- B: two RedBeat beats -----------------------------------------------------------------------
    prefix_b = f"{env_a['ORCH_KEY_PREFIX']}b"
    dir_b = tmp_path / "configs-b"
    dir_b.mkdir()
    url_b = orch_env["ORCH_REDIS_URL"].rsplit("/", 1)[0] + "/1"  # its own database: its own broker queues too
    env_b = dict(
        orch_env,
        ORCH_REDIS_URL=url_b,
        ORCH_KEY_PREFIX=prefix_b,
        ORCH_CONFIG_DIR=str(dir_b),
        ORCH_STATE_DIR=str(tmp_path / "state-b"),
        ORCH_BEAT_RELOAD_S="2",
    )
    keys_b = Keys(prefix_b)
    rb = redis.Redis.from_url(url_b)
    repo_b = make_repo(tmp_path, "shared")[0]

    def write_b(name: str) -> None:
        (dir_b / f"{name}.json").write_text(json.dumps(config(tmp_path, repo_b, name, cron="* * * * *")))

    write_b("early")
    redbeat = ["beat", "-S", "redbeat.RedBeatScheduler", "--max-interval", "2"]
    beat_log, worker_log = tmp_path / "beat.log", tmp_path / "worker.log"
    b_logs = [tmp_path / "redbeat1.log", tmp_path / "redbeat2.log"]
    with (
        celery_worker(env_a, worker_log),
        celery_worker(env_b, tmp_path / "worker-b.log"),
        orchestrate_process(redbeat, env_b, b_logs[0], ready=b"beat: Starting"),
        orchestrate_process(redbeat, env_b, b_logs[1], ready=b"beat: Starting"),
    ):
        with orchestrate_process(["beat", "-s", str(tmp_path / "beat-schedule")], env_a, beat_log):
            time.sleep(3)
            write_b("late")  # added while both RedBeat beats run

            def all_fired() -> bool:
                a_done = all(first(name).get("finished_at") for name in configs)
                return bool(a_done and rb.zcard(keys_b.cycles("early")) and rb.zcard(keys_b.cycles("late")))

            done = wait_for(all_fired, timeout=150, interval=0.5)
            b_text = "".join(p.read_text() for p in b_logs)
            assert done, {name: first(name) for name in configs} | {
                "a": beat_log.read_text()[-2000:],
                "b": b_text[-2000:],
            }
        # A: beat comes back (a fresh schedule, as after a move): its catch-up check runs at once and finds
        # the missed fire already made up.
        checks = lambda: worker_log.read_text().count("Task orchestrate.catch_up[")  # noqa: E731
        before = checks()
        with orchestrate_process(["beat", "-s", str(tmp_path / "beat-schedule-2")], env_a, tmp_path / "beat2.log"):
            assert wait_for(lambda: checks() > before, timeout=30), worker_log.read_text()[-3000:]
        # B: one cycle per fire, sent by the beat holding the lock only.
        b_text = "".join(p.read_text() for p in b_logs)
        for name in ("early", "late"):
            cycles = rb.zcard(keys_b.cycles(name))
            fires = len(list(rb.scan_iter(match=f"{prefix_b}:fire:{name}:*")))
            sent = b_text.count(f"Sending due task orchestrate:{name} (orchestrate.launch)")
            assert cycles == fires >= 1, (name, cycles, fires)
            assert sent == fires, (name, sent, fires)
        # B: a config removed while they run leaves RedBeat's schedule at the next reload.
        entry = f"{prefix_b}:redbeat:orchestrate:early"
        assert rb.zscore(f"{prefix_b}:redbeat::schedule", entry) is not None
        (dir_b / "early.json").unlink()
        gone = wait_for(lambda: not rb.exists(entry), timeout=20, interval=0.5)
        assert gone, sorted(k.decode() for k in rb.scan_iter(match=f"{prefix_b}:redbeat*"))
        assert rb.zscore(f"{prefix_b}:redbeat::schedule", entry) is None
        assert rb.exists(f"{prefix_b}:redbeat:orchestrate:late")

    assert (first("demo")["status"], first("demo")["trigger"]) == ("succeeded", "schedule"), first("demo")
    assert (first("outside")["status"], first("outside")["reason"]) == ("skipped", "outside_window")
    assert first("missed")["status"] == "succeeded" and r.zcard(keys_a.cycles("missed")) == 1
    assert "catch-up of a missed fire" in worker_log.read_text()
    jittered = first("jittered")
    assert jittered["status"] == "succeeded", jittered
    events = [json.loads(f[b"event"]) for _, f in r.xrange(keys_a.events(jittered["cycle_id"]))]
    delay = next(e["data"]["delay_s"] for e in events if e["kind"] == "cycle.queued")
    waited = (
        datetime.fromisoformat(jittered["started_at"]) - datetime.fromisoformat(jittered["queued_at"])
    ).total_seconds()
    assert 0 < delay <= 20 and delay - 1 <= waited <= 20 + 5, (delay, waited)
    log = beat_log.read_text()
    assert "broken.json" in log and "bogus" in log  # the invalid config was reported and left out

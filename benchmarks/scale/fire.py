"""Beat's fire accuracy, measured on a real beat process.

Two `orchestrate beat` processes (the product's command: its scheduler, its Celery settings) run side by side
on the benchmark's own redis-server, one over `small` generated configs (redis db 1) and one over `big`
(db 0). Every config has a daily cron at the same upcoming minute (in Europe/Paris) and `on_missed:
catch_up`, as in a real deployment: two entries each, the catch-up entry due at once when beat starts. No
worker runs, so every message beat sends stays in the `orchestrate` list of its db.

When each message was sent is read from the message itself: beat builds its `expires` header as
`app.now() + expires` right before it publishes (`orchestrate.launch`: FIRE_EXPIRES_S, the catch-up entry:
CATCH_UP_EVERY_S - 5), so `expires - that` is beat's own clock at the send, to the microsecond. The
benchmark only reads the list (LLEN, then LRANGE of the new head) twice a second.

Figures per beat: start-up (process spawned → first message sent: interpreter, imports, reading every config,
the schedule file), the first wave of catch-up sends, then the cron minute's fires: seconds from the minute to
the first, p50, p99 and last send, and beat's resident memory (now and peak).
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis

from benchmarks.scale.procs import rss_mb, spawned, wait_for

LAUNCH = "orchestrate.launch"
QUEUE = "orchestrate"
TZ = "Europe/Paris"


def expires_offsets() -> dict[str, float]:
    """Task name → the `expires` (seconds) beat puts on its messages."""
    from beat_schedule import CATCH_UP_EVERY_S, CATCH_UP_TASK, FIRE_EXPIRES_S, JANITOR_EVERY_S, LAUNCH_TASK

    return {
        LAUNCH_TASK: FIRE_EXPIRES_S,
        CATCH_UP_TASK: CATCH_UP_EVERY_S - 5,
        "orchestrate.janitor": JANITOR_EVERY_S - 5,
    }


def write_fire_configs(directory: Path, n: int, minute: datetime, on_missed: str = "catch_up", tz: str = TZ) -> None:
    """`n` configs whose daily cron fires at `minute` (a whole UTC minute), written in the time of `tz`;
    with `on_missed: catch_up` each has a second entry, every 60 s."""
    local = minute.astimezone(ZoneInfo(tz))
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        config = {
            "id": f"ws{i:04d}",
            "workspace": {"repo": f"/srv/repos/ws{i:04d}"},
            "schedule": {
                "cron": f"{local.minute} {local.hour} * * *",
                "timezone": tz,
                "on_missed": on_missed,
            },
            "budget": {"cycle_s": 1800},
        }
        (directory / f"ws{i:04d}.json").write_text(json.dumps(config))


@dataclass
class Watched:
    """One beat and what it has sent so far: (task name, sent at), oldest first."""

    name: str
    configs: int
    client: redis.Redis
    spawned_at: float = 0.0
    sends: list[tuple[str, float]] = field(default_factory=list)
    seen: int = 0
    offsets: dict[str, float] = field(default_factory=expires_offsets)

    def poll(self) -> None:
        length = int(self.client.llen(QUEUE))
        new = length - self.seen
        if new <= 0:
            return
        raws = self.client.lrange(QUEUE, 0, new - 1)  # LPUSH: the newest are at the head
        for raw in reversed(raws):
            headers = json.loads(raw)["headers"]
            task = headers["task"]
            sent = datetime.fromisoformat(headers["expires"]).timestamp() - self.offsets.get(task, 0.0)
            self.sends.append((task, sent))
        self.seen = length

    def times(self, task: str) -> list[float]:
        return sorted(t for name, t in self.sends if name == task)

    def others(self) -> list[float]:
        return sorted(t for name, t in self.sends if name != LAUNCH)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else math.nan


def beat_argv(scheduler: str, schedule_file: Path) -> list[str]:
    orchestrate = Path(sys.executable).parent / "orchestrate"
    argv = [str(orchestrate), "beat", "-s", str(schedule_file)]
    if scheduler == "redbeat":
        argv += ["-S", "redbeat.RedBeatScheduler"]
    return argv


def beat_fire(
    base: Path,
    url: str,
    small: int,
    big: int,
    scheduler: str = "default",
    lead_s: float = 40.0,
    on_missed: str = "catch_up",
    tz: str = TZ,
) -> dict[str, Any]:
    """Starts the two beats (small first, each waited for until it sends its catch-up wave, or with `skip`
    until it logs that it starts), waits for the cron minute and every fire of it (at most 90 s past the
    minute), and returns the figures of each."""
    minute = datetime.fromtimestamp(math.ceil((time.time() + lead_s) / 60) * 60, UTC)
    at = minute.timestamp()
    out: dict[str, Any] = {"scheduler": scheduler, "minute": minute.isoformat(), "on_missed": on_missed, "timezone": tz}
    root = url.rsplit("/", 1)[0]
    runs = {"small": (small, 1), "big": (big, 0)}
    watched: dict[str, Watched] = {}
    for name, (n, db) in runs.items():
        write_fire_configs(base / f"fire-{name}", n, minute, on_missed, tz)
        watched[name] = Watched(name, n, redis.Redis.from_url(f"{root}/{db}"))
    procs = {}
    with ExitStack() as stack:
        for name, (n, db) in runs.items():
            env = {
                "ORCH_REDIS_URL": f"{root}/{db}",
                "ORCH_CONFIG_DIR": str(base / f"fire-{name}"),
                "ORCH_KEY_PREFIX": f"scale-{name}",
                "ORCH_STATE_DIR": str(base / f"state-{name}"),
            }
            w = watched[name]
            w.spawned_at = time.time()
            log = base / f"beat-{name}.log"
            procs[name] = stack.enter_context(spawned(beat_argv(scheduler, base / f"beat-{name}.db"), env, log))

            def started(w: Watched = w, log: Path = log) -> bool:
                if on_missed != "catch_up":
                    return "beat: Starting..." in log.read_text(errors="replace")
                w.poll()
                return len(w.others()) >= w.configs

            if not wait_for(started, 120, 0.2):
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"beat over {n} configs did not start in 120 s (sent {len(w.sends)}):\n{tail}")
            out[name] = {"configs": n}
            ready = w.others()
            if on_missed == "catch_up":
                out[name].update(
                    startup_s=ready[0] - w.spawned_at,
                    first_wave_s=ready[n - 1] - ready[0],
                    ready_before_minute_s=at - ready[n - 1],
                )
        if time.time() > at:
            out["late"] = "a beat was not ready before the cron minute; raise --beat-lead"

        def all_fired() -> bool:
            for w in watched.values():
                w.poll()
            return all(len(w.times(LAUNCH)) >= w.configs for w in watched.values())

        wait_for(all_fired, max(0.0, at - time.time()) + 90, 0.5)
        for name, w in watched.items():
            fires = [t - at for t in w.times(LAUNCH)]
            last = fires[-1] if fires else math.nan
            rss, peak = rss_mb(procs[name].pid)
            out[name].update(
                fired=len(fires),
                first_s=fires[0] if fires else math.nan,
                p50_s=_pct(fires, 0.5),
                p99_s=_pct(fires, 0.99),
                last_s=last,
                rss_mb=rss,
                peak_rss_mb=peak,
                # what beat sent besides the fires from the minute to its last fire (catch-up entries, janitor)
                others_during_fires=sum(1 for t in w.others() if at <= t <= at + last),
            )
    return out


def report(out: dict[str, Any]) -> None:
    s, b = out["small"], out["big"]
    print(
        f"beat fire ({out['scheduler']} scheduler, on_missed {out['on_missed']}, cron in {out['timezone']}, "
        f"minute {out['minute']}; "
        "sent times from each message's expires header):"
    )
    for r in (s, b):
        start = ""
        if "startup_s" in r:
            start = (
                f"start-up {r['startup_s']:.2f} s (spawn -> first send), catch-up wave of {r['configs']} "
                f"{r['first_wave_s']:.2f} s, done {r['ready_before_minute_s']:.0f} s before the minute; "
            )
        print(
            f"  {r['configs']:>5} configs: {start}{r['fired']} fires: first +{r['first_s']:.3f} s, "
            f"p50 +{r['p50_s']:.3f} s, p99 +{r['p99_s']:.3f} s, last +{r['last_s']:.3f} s "
            f"({r['others_during_fires']} other sends among them); "
            f"RSS {r['rss_mb']:.0f} MB (peak {r['peak_rss_mb']:.0f} MB)"
        )
    ratio = f"last fire x{b['last_s'] / s['last_s']:.0f}, RSS x{b['rss_mb'] / s['rss_mb']:.2f}"
    if "startup_s" in b:
        wave = b["first_wave_s"] / s["first_wave_s"]
        ratio = f"start-up x{b['startup_s'] / s['startup_s']:.2f}, catch-up wave x{wave:.0f}, {ratio}"
    print(f"  {b['configs']} vs {s['configs']} configs: {ratio}")
    if "late" in out:
        print(f"  WARNING: {out['late']}")

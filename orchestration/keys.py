"""The Redis key layout, in one place: state, the hub and the tests all name keys through `Keys`.

Every key and channel sits under the deployment's prefix (`ORCH_KEY_PREFIX`), so several deployments can
share one Redis. Tools outside the project read these keys, so their shapes are stable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def cycle(self, cycle_id: str) -> str:
        """Hash: the cycle record and its report."""
        return self._key("cycle", cycle_id)

    def cycles(self, workspace: str) -> str:
        """Sorted set: the workspace's cycle ids by the time they were queued."""
        return self._key("cycles", workspace)

    @property
    def all_cycles(self) -> str:
        """Pattern matching every workspace's `cycles` set."""
        return self._key("cycles", "*")

    def lock(self, workspace: str) -> str:
        """The workspace lock (one cycle per workspace at a time), held by token with a TTL."""
        return self._key("lock", workspace)

    def spend(self, workspace: str, day: str) -> str:
        """USD spent in a workspace on one UTC day (`YYYY-MM-DD`)."""
        return self._key("spend", workspace, day)

    def tasks(self, workspace: str) -> str:
        """Sorted set: the decided tasks by time, for dedupe and the agent ranking."""
        return self._key("tasks", workspace)

    def backlog(self, workspace: str) -> str:
        """List: tasks people queued by hand, taken first."""
        return self._key("backlog", workspace)

    def fire(self, workspace: str, fire_ts: int) -> str:
        """Set once a scheduled fire of the workspace (its cron time, unix seconds) has started a cycle: a
        second beat, a late duplicate or a catch-up of the same fire never starts another."""
        return self._key("fire", workspace, str(fire_ts))

    def worker(self, host: str, node: str) -> str:
        """A live worker's heartbeat (JSON `WorkerBeat`), with a TTL: one per worker process, so that two
        workers on one host each say what they hold; all of a host's gone means the host's workers are gone."""
        return self._key("worker", host, node)

    def host_workers(self, host: str) -> str:
        """Pattern matching the heartbeats of one host's workers (host names hold no glob characters)."""
        return self._key("worker", host, "*")

    @property
    def all_workers(self) -> str:
        """Pattern matching every worker's heartbeat."""
        return self._key("worker", "*")

    def cancel(self, cycle_id: str) -> str:
        """Set while a cancel of the cycle is requested."""
        return self._key("cancel", cycle_id)

    @property
    def updates(self) -> str:
        """Pub/sub channel carrying every cycle's events live."""
        return self._key("updates")

    def events(self, cycle_id: str) -> str:
        """Stream: the cycle's events, for replay."""
        return self._key("cycle", cycle_id, "events")

    def seq(self, cycle_id: str) -> str:
        """Counter: the last `seq` given to one of the cycle's events."""
        return self._key("cycle", cycle_id, "seq")

"""What a stage works with: durable state, the event hub, and this worker's state directory.

Kept apart from the lifecycle so that commands which only read state (`status`, `watch`) do not load the
machinery that runs cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from redis.retry import Retry

    from orchestration.hub import Hub
    from orchestration.state import State

# How long a worker's Redis commands ride out a Redis that is away (a restart, a failover) before failing.
WORKER_PATIENCE_S = 60.0
# ... and the CLI's, while it follows a cycle (`run`, `watch`): long enough for a restart, short for a person.
CLI_PATIENCE_S = 15.0


@dataclass
class Services:
    state: State
    hub: Hub
    state_dir: Path


def redis_client(url: str, patience_s: float) -> redis.Redis:
    """A client whose commands, when Redis is away (refused, reset, timed out, still loading its data), are
    tried again with a backoff of up to a second for about `patience_s` before the error is raised."""
    import redis

    return redis.Redis.from_url(url, retry=patience(patience_s), socket_connect_timeout=5, health_check_interval=30)


def patience(seconds: float) -> Retry:
    """Retries on connection errors and timeouts (Redis loading its data is one) for about `seconds`."""
    from redis.backoff import ExponentialBackoff, NoBackoff
    from redis.retry import Retry

    if seconds <= 0:
        return Retry(NoBackoff(), 0)
    return Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=int(seconds) + 3)

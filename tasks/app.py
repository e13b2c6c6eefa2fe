"""The Celery app, configured in one place from ORCH_* settings."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu.transport import TRANSPORT_ALIASES

from orchestration.redact import install_logging_filter
from orchestration.settings import get_settings

# Importing this module reads no settings: the app is configured on first use (a worker or beat starting,
# a task being sent), when Celery loads its configuration and sends `on_after_configure`.
app = Celery("orchestrate", include=["tasks.cycle"])
# redis:// brokers use kombu's Redis transport with the repairs that let a worker ride out a Redis restart
# (tasks.broker.RedisTransport); the name stays `redis`, so URLs and logs read as usual.
TRANSPORT_ALIASES["redis"] = "tasks.broker:RedisTransport"

STATIC_CONF: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": False,  # a lost child fails its task (errback ends the cycle), never reruns it
    "worker_prefetch_multiplier": 1,
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "task_track_started": True,
    "result_extended": True,
    "result_expires": 7 * 86400,
    "broker_connection_retry_on_startup": True,
    "worker_pool": "prefork",
    "worker_soft_shutdown_timeout": 30.0,
    "worker_enable_soft_shutdown_on_idle": True,
    "task_default_queue": "orchestrate",
    "task_create_missing_queues": True,
    "timezone": "UTC",
    "enable_utc": True,
    "worker_hijack_root_logger": False,
}


def settings_conf() -> dict[str, Any]:
    """The app's configuration from the ORCH_* settings (read when called)."""
    settings = get_settings()
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        **STATIC_CONF,
        "broker_url": settings.broker,
        "result_backend": settings.backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        # RedBeat (`orchestrate beat -S redbeat.RedBeatScheduler`) keeps its entries and its lock in Redis,
        # under the deployment's prefix, whatever the broker is.
        "redbeat_redis_url": settings.redis_url,
        "redbeat_redis_options": {},
        "redbeat_key_prefix": f"{settings.key_prefix}:redbeat:",  # entries <prefix>:redbeat:<name>
        "redbeat_lock_timeout": 60,
    }


# How long one broker call of a process that only sends (`orchestrate run`) may wait for an answer.
SENDER_BROKER_CALL_S = 4.0


def bound_broker_calls(seconds: float = SENDER_BROKER_CALL_S) -> None:
    """For a process that only sends: a Redis broker that takes the connection but never answers (a frozen
    server, a proxy without its backend) would hold it forever, as kombu's Redis transport waits without a
    timeout. AMQP connections are bounded by Celery's own connect timeout."""
    if get_settings().broker_is_amqp:
        return
    options = dict(app.conf.broker_transport_options or {})
    options.update(socket_timeout=seconds, socket_connect_timeout=seconds)
    app.conf.broker_transport_options = options


@app.on_after_configure.connect(weak=False)
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(settings_conf())


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger: Any = None, **_: Any) -> None:
    """Worker logs leave the machine too (files, collectors): secrets are masked in every record."""
    install_logging_filter(logger)

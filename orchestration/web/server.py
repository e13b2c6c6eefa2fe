"""Runs the monitor under uvicorn, with logs that never carry a secret.

Every log line uvicorn writes (its own and the access log) passes the project's redacting filter, which
masks the values of secret-named environment variables, ORCH_SERVE_TOKEN included, wherever they appear. The
token itself is never in a URL (it travels in a header or a form body, neither of which is logged).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from orchestration.web.app import ServeConfig, create_app

GRACEFUL_S = 5  # open event streams are ended at shutdown; this is what the rest gets


class AccessLogFilter(logging.Filter):
    """Masks the parts of an access-log line (client, method, path, version, status) one by one: uvicorn's
    access formatter reads them from the record's arguments, which the general filter folds into the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        from orchestration.redact import default_redactor

        if isinstance(record.args, tuple):
            red = default_redactor()
            record.args = tuple(red.text(a) if isinstance(a, str) else a for a in record.args)
        return True


def logging_config() -> dict[str, Any]:
    """uvicorn's own logging setup with a redacting filter on each of its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "redact": {"()": "orchestration.redact.RedactingFilter"},
        "redact_access": {"()": "orchestration.web.server.AccessLogFilter"},
    }
    config["handlers"]["default"]["filters"] = ["redact"]
    config["handlers"]["access"]["filters"] = ["redact_access"]
    return config


def run(cfg: ServeConfig, host: str, port: int) -> None:
    """Serves until SIGINT or SIGTERM."""
    import uvicorn

    config = uvicorn.Config(
        create_app(cfg),
        host=host,
        port=port,
        log_config=logging_config(),
        proxy_headers=True,  # X-Forwarded-Proto/For from a proxy on this host (FORWARDED_ALLOW_IPS)
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        lifespan="on",
    )
    uvicorn.Server(config).run()

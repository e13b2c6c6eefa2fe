"""Importing costs no I/O and no heavy dependency: settings and configs are read when they are used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_importing_tasks_and_beat_schedule_reads_and_prints_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "ORCH_CONFIG_DIR": str(tmp_path / "missing"), "PYTHONPATH": str(ROOT)}
    code = (
        "import json\n"
        "import tasks, beat_schedule\n"
        "from orchestration.settings import get_settings\n"
        "print(json.dumps({'settings_read': get_settings.cache_info().currsize, 'configured': tasks.app.configured}))\n"
    )
    proc = python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {"settings_read": 0, "configured": False}


def test_the_app_reads_its_settings_and_beat_its_configs_when_first_configured(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ORCH_CONFIG_DIR": str(tmp_path / "missing"),
        "ORCH_REDIS_URL": "redis://127.0.0.1:1/7",
        "ORCH_VISIBILITY_TIMEOUT_S": "7200",
        "PYTHONPATH": str(ROOT),
    }
    code = (
        "import json\n"
        "import beat_schedule\n"
        "conf = beat_schedule.app.conf\n"
        "print(json.dumps({'broker': conf.broker_url, 'backend': conf.result_backend,\n"
        "    'visibility': conf.broker_transport_options['visibility_timeout'],\n"
        "    'queue': conf.task_default_queue, 'entries': sorted(conf.beat_schedule)}))\n"
    )
    proc = python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "broker": "redis://127.0.0.1:1/7",
        "backend": "redis://127.0.0.1:1/7",
        "visibility": 7200,
        "queue": "orchestrate",
        "entries": ["orchestrate:janitor"],  # the janitor runs even when no config can be read
    }
    assert "missing" in proc.stderr and "config directory does not exist" in proc.stderr


def test_the_cli_module_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, json\n"
        "import orchestration.cli\n"
        "heavy = ('redis', 'celery', 'openai', 'rich.progress', 'orchestration.cycle', 'orchestration.sessions',\n"
        "         'orchestration.config', 'orchestration.state', 'starlette', 'uvicorn', 'sse_starlette',\n"
        "         'prometheus_client', 'orchestration.web.app')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    proc = python(code, {**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []

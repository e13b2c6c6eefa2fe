"""What leaves the process is clean: hub events are redacted, the CLI prints no terminal control sequences,
and the PR body renders nothing that came from people or agents as markdown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from orchestration import cli
from orchestration.hub import LocalHub, RedisHub
from orchestration.keys import Keys
from orchestration.models import AgentResult, Decision, Event, Status
from orchestration.pr import commit_message, pr_title, render_body

pytestmark = pytest.mark.timeout(60)

SECRET = "hub-Secret-value-31337"
GH = "ghp_" + "Zz9" * 12
CONTROL = ("\x1b", "\x9b", "\x9d", "\r", "\x07", "\x00")


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETY_TEST_TOKEN", SECRET)


def leaky_data() -> dict[str, Any]:
    return {
        "text": f"the key is {SECRET} and {GH}",
        "nested": {"cmd": [f"curl -H 'Authorization: Bearer {SECRET}'", "https://u:pw-123456@h/x"]},
    }


# --- the hub ----------------------------------------------------------------------------------------------


def test_local_hub_event_data_is_redacted(tmp_path: Path) -> None:
    printed: list[Event] = []
    hub = LocalHub(tmp_path, printed.append)
    ev = hub.emit("c1", "ws", "execute", "agent.message", leaky_data())
    stored = hub.path("c1").read_text()
    for text in (ev.model_dump_json(), stored, printed[0].model_dump_json()):
        assert SECRET not in text and GH not in text and "pw-123456" not in text
    assert ev.data["text"] == "the key is *** and ***"
    assert ev.data["nested"]["cmd"][1] == "https://u:***@h/x"


def test_redis_hub_event_data_is_redacted() -> None:
    r = fakeredis.FakeRedis()
    hub = RedisHub(r, "t")
    returned = hub.emit("c1", "ws", "execute", "agent.message", leaky_data())
    [(_, replayed)] = hub.replay("c1")
    raw = b"".join(fields[b"event"] for _, fields in r.xrange(Keys("t").events("c1")))
    assert SECRET.encode() not in raw and GH.encode() not in raw
    assert returned.data == replayed.data
    assert replayed.data["text"] == "the key is *** and ***"


# --- the CLI ------------------------------------------------------------------------------------------------

HOSTILE = "ok\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[31mred\x1b[0m\rover\x9b2J\x1b]8;;http://e/\x1b\\link\x1b]8;;\x1b\\"


def event(kind: str, data: dict[str, Any], stage: str = "execute") -> Event:
    # Built directly, as a watcher reads it from Redis: whoever wrote it may not have redacted anything.
    return Event(
        cycle_id="c\x1b[2J1", workspace="ws", seq=3, ts="2026-11-25T01:30:00.000Z", stage=stage, kind=kind, data=data
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("agent.message", {"text": HOSTILE + f" {SECRET}"}),
        ("agent.tool_call", {"tool": "Bash\x1b[2J", "command": HOSTILE}),
        ("agent.command", {"command": HOSTILE + "\nline two"}),
        ("decision.made", {"title": HOSTILE, "agent": "claude-code\x07", "source": "llm", "confidence": 0.5}),
        ("stage.failed", {"error": HOSTILE + f" {GH}"}),
        ("pr.skipped", {"reason": HOSTILE}),
        ("cycle.finished", {"status": "failed\x1b[8m", "reason": HOSTILE}),
    ],
)
def test_event_lines_carry_no_control_sequence_and_no_secret(
    kind: str, data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ev = event(kind, data, stage="exec\x1b[1A")
    line = cli.event_line(ev)
    cli.print_event(ev)
    printed = capsys.readouterr()
    for text in (line, printed.out, printed.err):
        assert not any(c in text for c in CONTROL), repr(text)
        assert SECRET not in text and GH not in text
        assert "\n" not in text.rstrip("\n")  # one event, one line
    assert "ok" in line or kind in ("agent.tool_call",)


def test_report_and_json_report_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "cycle_id": "c1",
        "workspace": "ws\x1b]0;pwned\x07",
        "status": "failed",
        "reason": HOSTILE,
        "decision": {"title": HOSTILE + f" {SECRET}", "source": "llm", "confidence": 0.5, "agent": "claude-code"},
        "agent": {"status": "failed", "files_changed": ["a\x1b[2J.py", f"{GH}.txt"], "tokens": {}},
        "branch": "agent/x\x9b2J",
        "pr": {"status": "skipped", "reason": HOSTILE},
    }
    cli.print_report(report, as_json=False)
    cli.print_report(report, as_json=True)
    text = capsys.readouterr().out
    assert not any(c in text for c in CONTROL), repr(text)
    assert "\\u001b" not in text  # not even escaped in the JSON
    assert SECRET not in text and GH not in text
    assert "red" in text and "link" in text  # the visible text stays


# --- the PR body --------------------------------------------------------------------------------------------

PAYLOADS = ("Closes #9", "![x](http://evil/p.png)", "@someone", "<img src=x onerror=alert(1)>", "# Heading")


def outside_fences(body: str) -> list[str]:
    """The lines of a markdown body that are not inside a fenced code block (CommonMark fence rules)."""
    outside: list[str] = []
    fence: str | None = None
    for line in re.split(r"\r\n|\r|\n", body):
        stripped = line.strip()
        if fence is None:
            m = re.fullmatch(r"(`{3,}|~{3,}).*", stripped)
            if m:
                fence = m.group(1)
                continue
            outside.append(line)
        elif re.fullmatch(re.escape(fence[0]) + "{" + str(len(fence)) + ",}", stripped):
            fence = None
    assert fence is None, "a fence was left open"
    return outside


def decision(task: str, rationale: str, title: str = "Fix it") -> Decision:
    return Decision(
        task=task, title=title, agent="claude-code", rationale=rationale, confidence=0.7, source="llm", op_hash="h"
    )


def test_markdown_from_people_and_agents_renders_only_inside_fences() -> None:
    rationale = "\n".join(PAYLOADS) + "\n```\nCloses #10\n````\n@other"
    task = "Do it\n```\n# Not a heading\n```"
    files = ["src/ok.py", "evil\nCloses #11\n![y](http://evil/q.png)", "tick```s.py", "ctl\x1b[2J\r.py", "@mention.py"]
    body = render_body(
        cycle_id="c-1",
        decision=decision(task, rationale),
        agent=AgentResult(status="succeeded"),
        cycle_status=Status.SUCCEEDED,
        duration_s=3,
        files=files,
    )
    outside = outside_fences(body)
    headings = {"### Task", "### Rationale", "### Run", f"### Files changed ({len(files)})"}
    for line in outside:
        stripped = line.strip()
        if stripped.startswith("#"):
            assert stripped in headings, line
        for payload in (*PAYLOADS, "Closes #10", "Closes #11", "@other", "![y]", "@mention", "<img"):
            assert payload not in line, line
    # every payload is still shown, inside a block
    for payload in PAYLOADS:
        assert payload in body
    # one file name a line, control characters shown escaped
    assert "\nevil\\nCloses #11\\n![y](http://evil/q.png)\n" in body
    assert "\nctl\\x1b[2J\\r.py\n" in body and "\x1b" not in body and "\r" not in body
    assert "<!-- orchestrate:cycle=c-1 -->" in outside
    assert "| Cycle status | `succeeded` |" in outside


def test_body_title_and_commit_message_are_redacted() -> None:
    dec = decision(
        task=f"use {SECRET} and {GH}", rationale=f"because https://x:{SECRET}@h", title=f"Rotate {GH}\x1b[2J now"
    )
    body = render_body(
        cycle_id="c-2", decision=dec, agent=None, cycle_status=Status.SUCCEEDED, duration_s=1, files=[f"{SECRET}.txt"]
    )
    title = pr_title(dec, Status.SUCCEEDED, "c-2")
    message = commit_message(dec, "c-2")
    for text in (body, title, message):
        assert SECRET not in text and GH not in text
    assert title == "Rotate *** now"
    assert message.startswith("Rotate *** now\n\n")


# --- worker logs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_name", ["after_setup_logger", "after_setup_task_logger"])
def test_worker_logging_setup_installs_the_redacting_filter(signal_name: str) -> None:
    import io
    import logging

    from celery import signals

    import tasks  # noqa: F401 - connects the app's signal handlers
    from orchestration.redact import RedactingFilter

    stream = io.StringIO()
    logger = logging.getLogger(f"test_worker_logs_{signal_name}")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        getattr(signals, signal_name).send(
            sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="%(message)s", colorize=False
        )
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        logger.warning("push to https://x:%s@github.com failed with %s", SECRET, GH)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "push to https://x:***@github.com failed with ***\n"

"""The agent registry: the two agents' specs build the same command lines as before, and a third agent CLI
defined here (its config model, its module's spec, a stand-in CLI written to tmp_path) runs through
`run_agent` end to end, and is seen by the policy, the decision, the worker's queues and the analyzer.

The third agent's config section cannot join the process-wide `Agents` model at runtime (that model, and
`WorkspaceConfig` which embeds it, are built once from AGENT_CONFIGS at import); the test builds the same
models from an extended table with `agents_model`, exactly as the one new AGENT_CONFIGS entry would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from pydantic import Field, create_model
from typer.testing import CliRunner

from orchestration import cli
from orchestration.agents import claude, codex
from orchestration.agents.base import BASE_ENV, EnvGrant, RunTally, parse_event, relative_to
from orchestration.agents.process import Verdict
from orchestration.agents.registry import AGENTS, AgentSpec, RunContext, SessionSource, register
from orchestration.agents.runner import agent_env, run_agent
from orchestration.config import (
    AGENT_CONFIGS,
    AgentConfigBase,
    ClaudeAgent,
    CliArg,
    CodexAgent,
    Command,
    ConfigError,
    Sessions,
    WorkspaceConfig,
    agents_model,
    parse_config,
)
from orchestration.decide.orchestrator import rank_agents
from orchestration.policy import HostPolicy, policy_problems, shell_warning
from orchestration.sessions import analyze_sessions, analyzer
from orchestration.sessions._common import SessionStats, Workspace, list_jsonl, read_objects
from orchestration.settings import Settings
from tests.helpers import live_with_marker, wait_for

pytestmark = pytest.mark.timeout(60)

ECHO = "echo-agent"


# -- the existing two agents --------------------------------------------------------------------------------


def claude_cfg(**section: Any) -> WorkspaceConfig:
    return parse_config(
        {
            "workspace": {"repo": "/tmp/r"},
            "agents": {"claude-code": section},
            "budget": {"max_turns": 17, "max_cost_usd": 2.5},
        }
    )


def test_the_registry_is_the_config_table_in_order() -> None:
    assert list(AGENTS) == list(AGENT_CONFIGS) == ["claude-code", "codex"]
    assert AGENTS["claude-code"] is claude.AGENT and AGENTS["codex"] is codex.AGENT
    for name, spec in AGENTS.items():
        assert spec.name == name and spec.config is AGENT_CONFIGS[name]
        assert spec.queue == f"agent.{name}"
    assert [s.default_command for s in AGENTS.values()] == ["claude", "codex"]
    assert (AGENTS["claude-code"].env, AGENTS["codex"].env) == (claude.ENV, codex.ENV)
    assert list(analyzer.session_sources()) == ["claude-code", "codex"]
    with pytest.raises(KeyError, match="no agent named 'nope'"):
        AGENTS["nope"]


def test_claude_spec_builds_the_same_argv_as_before(tmp_path: Path) -> None:
    spec = AGENTS["claude-code"]
    argv = spec.argv("/usr/bin/claude", claude_cfg(), "write tests", tmp_path)
    assert argv == [
        "/usr/bin/claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--max-turns",
        "17",
        "--max-budget-usd",
        "2.5",
        "--",
        "write tests",
    ]
    assert argv == claude.build_argv("/usr/bin/claude", claude_cfg(), "write tests")
    cfg = claude_cfg(
        model="claude-sonnet-4-5",
        permission_mode="plan",
        allowed_tools=["Edit", "Bash(git *)"],
        disallowed_tools=["WebFetch", "WebSearch"],
    )
    argv = spec.argv("claude", cfg, "-rf --help", tmp_path)
    assert argv == [
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "plan",
        "--max-turns",
        "17",
        "--max-budget-usd",
        "2.5",
        "--model",
        "claude-sonnet-4-5",
        "--allowedTools",
        "Edit,Bash(git *)",
        "--disallowedTools",
        "WebFetch,WebSearch",
        "--",
        "-rf --help",
    ]
    assert argv == claude.build_argv("claude", cfg, "-rf --help")


def test_codex_spec_builds_the_same_argv_as_before(tmp_path: Path) -> None:
    spec = AGENTS["codex"]
    cfg = parse_config({"workspace": {"repo": "/x"}, "agents": {"codex": {"model": "gpt-5", "sandbox": "read-only"}}})
    argv = spec.argv("codex", cfg, "review", tmp_path)
    assert argv == [
        "codex",
        "exec",
        "--json",
        "--sandbox",
        "read-only",
        "-C",
        str(tmp_path),
        "--skip-git-repo-check",
        "--model",
        "gpt-5",
        "--",
        "review",
    ]
    assert argv == codex.build_argv("codex", cfg, "review", tmp_path)
    default = spec.argv("/opt/codex", parse_config({"workspace": {"repo": "/x"}}), "-x", tmp_path)
    assert default[:7] == ["/opt/codex", "exec", "--json", "--sandbox", "workspace-write", "-C", str(tmp_path)]
    assert default[7:] == ["--skip-git-repo-check", "--", "-x"]


def test_specs_say_what_bypasses_and_what_gives_a_shell() -> None:
    claude_spec, codex_spec = AGENTS["claude-code"], AGENTS["codex"]
    assert claude_spec.bypass(ClaudeAgent()) is None and claude_spec.shell(ClaudeAgent()) is None
    bypassing = ClaudeAgent(permission_mode="bypassPermissions")
    assert claude_spec.bypass(bypassing) == ("permission_mode", "bypassPermissions")
    assert claude_spec.shell(bypassing) == "permission_mode bypassPermissions"
    assert claude_spec.shell(ClaudeAgent(allowed_tools=["Bash(npm test:*)"])) == "allowed_tools includes Bash"
    assert codex_spec.bypass(CodexAgent()) is None and codex_spec.shell(CodexAgent(sandbox="read-only")) is None
    full = CodexAgent(sandbox="danger-full-access")
    assert codex_spec.bypass(full) == ("sandbox", "danger-full-access")
    assert codex_spec.shell(full) == "sandbox danger-full-access"


def test_live_codex_cost_and_the_analyzer_count_a_rollout_the_same_way(tmp_path: Path) -> None:
    """One TokenCounter: totals that do not advance, repeated events and total-only events are counted by
    the same rules while Codex runs as when the analyzer reads the finished rollout."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def tc(inp: int, cached: int, out: int) -> dict[str, int]:
        return {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out}

    def token_count(minute: int, total: dict[str, int] | None, last: dict[str, int] | None) -> dict[str, Any]:
        info = {k: v for k, v in (("total_token_usage", total), ("last_token_usage", last)) if v is not None}
        payload = {"type": "token_count", "info": info}
        return {"timestamp": f"2025-11-19T10:0{minute}:00.000Z", "type": "event_msg", "payload": payload}

    lines = [
        {"timestamp": "2025-11-19T10:00:00.000Z", "type": "session_meta", "payload": {"id": "s1", "cwd": str(repo)}},
        {"timestamp": "2025-11-19T10:00:01.000Z", "type": "turn_context", "payload": {"model": "gpt-5"}},
        token_count(1, tc(1000, 200, 50), tc(1000, 200, 50)),
        token_count(2, tc(1000, 200, 50), tc(1000, 200, 50)),  # the total did not advance: nothing
        token_count(3, tc(2500, 1200, 300), tc(1500, 1000, 250)),
        token_count(3, tc(2500, 1200, 300), tc(1500, 1000, 250)),  # a repeat
        token_count(4, tc(2600, 1200, 310), None),  # total only: the difference
    ]
    rollout = tmp_path / "codex" / "sessions" / "2025" / "11" / "19" / "rollout-2025-11-19T10-00-00-s1.jsonl"
    rollout.parent.mkdir(parents=True)
    rollout.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    os.utime(rollout, (time.time(), time.time()))

    events: list[tuple[str, dict[str, Any]]] = []
    live = codex.CodexStream(lambda k, d: events.append((k, d)), RunTally(), repo, 100.0, {}, tmp_path / "codex", None)
    live.feed(b'{"type":"thread.started","thread_id":"s1"}')
    assert live.poll() is None
    t = live.tally
    insights = analyze_sessions(
        repo, Sessions(providers=["codex"], codex_dir=str(tmp_path / "codex"), claude_dir=str(tmp_path)), cache_dir=None
    )
    tokens = insights.providers["codex"].tokens
    assert (tokens.input, tokens.output, tokens.cache_read) == (t.input_tokens, t.output_tokens, t.cached_tokens)
    assert (t.input_tokens, t.output_tokens, t.cached_tokens) == (800 + 500 + 100, 50 + 250 + 10, 200 + 1000)
    assert t.model == "gpt-5" and events[-1][0] == "agent.usage"


# -- a third agent ------------------------------------------------------------------------------------------


class EchoAgent(AgentConfigBase):
    """The third agent's config section: the base's command, model and env, and two settings of its own."""

    command: Command = "orchestrate-echo-agent"
    greeting: CliArg = "hello"
    mode: Literal["safe", "yolo"] = "safe"


# One more entry in the config table, and the models the config layer derives from it.
ECHO_CONFIGS = {**AGENT_CONFIGS, ECHO: EchoAgent}
EchoAgents = agents_model(ECHO_CONFIGS)
EchoWorkspaceConfig = create_model(
    "EchoWorkspaceConfig", __base__=WorkspaceConfig, agents=(EchoAgents, Field(default_factory=EchoAgents))
)

# The stand-in CLI: one JSON event per line, in this agent's own little protocol.
ECHO_CLI = """#!{python}
import json, os, sys, time
argv = sys.argv[1:]
assert argv[-2] == "--", argv
prompt, greeting = argv[-1], argv[argv.index("--greeting") + 1]
def out(o): print(json.dumps(o), flush=True)
with open(os.environ["ECHO_DUMP"], "w") as fh:
    json.dump({{"argv": argv, "env": sorted(os.environ), "cwd": os.getcwd()}}, fh)
out({{"kind": "start", "session": "echo-1"}})
out({{"kind": "say", "text": greeting + ", " + prompt}})
print("not json")
with open("echoed.txt", "w") as fh:
    fh.write(prompt + "\\n")
out({{"kind": "wrote", "path": os.path.abspath("echoed.txt")}})
if prompt.startswith("spend"):
    for _ in range(100):
        out({{"kind": "spent", "usd": 0.4}})
        time.sleep(0.1)
out({{"kind": "spent", "usd": 0.25}})
out({{"kind": "done", "ok": True, "summary": "echoed " + prompt}})
"""


class EchoStream:
    """The third agent's stream parser: fills the tally, emits the usual agent.* events."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.cost = 0.0

    def feed(self, line: bytes) -> str:
        t = self.run.tally
        ev = parse_event(line, t)
        if ev is None:
            return Verdict.CONTINUE
        kind = ev.get("kind")
        if kind == "start":
            t.session_id = ev["session"]
            self.run.emit("agent.started", {"agent": ECHO, "session_id": t.session_id, "model": None})
        elif kind == "say":
            t.last_text = ev["text"]
            self.run.emit("agent.message", {"text": ev["text"]})
        elif kind == "wrote":
            rel = relative_to(ev["path"], self.run.worktree)
            t.files.add(rel)
            t.tool_calls += 1
            self.run.emit("agent.file_change", {"path": rel, "tool": "echo"})
        elif kind == "spent":
            self.cost += ev["usd"]
            self.run.emit("agent.usage", {"cost_usd": round(self.cost, 6), "estimated": False})
        elif kind == "done":
            t.final_seen, t.success, t.summary = True, bool(ev["ok"]), ev["summary"]
            t.cost_usd, t.cost_reported = self.cost, True
            return Verdict.FINAL
        return Verdict.STOP_COST if self.cost >= self.run.cfg.budget.max_cost_usd else Verdict.CONTINUE

    def current_cost(self) -> float:
        return self.cost

    def poll(self) -> str | None:
        return None


class EchoSessions:
    """The third agent's session files for the analyzer: `{"session", "cwd"}`, then `{"prompt"}` / `{"tool"}`."""

    def __init__(self, path: str, mtime: float) -> None:
        self.st = SessionStats(path=path, mtime=mtime)

    def read(self, ws: Workspace, start: int = 0, pos: list[int] | None = None) -> None:
        for offset, obj in read_objects(self.st.path, self.st.skipped, start=start, pos=pos):
            if "cwd" in obj:
                self.st.session_id, self.st.in_workspace = obj["session"], ws.contains(obj["cwd"])
            elif "prompt" in obj:
                self.st.prompts[f"{self.st.path}:{offset}"] = (None, obj["prompt"])
            elif "tool" in obj:
                self.st.tool_calls[f"{self.st.path}:{offset}"] = obj["tool"]

    def result(self) -> SessionStats:
        return self.st


def echo_argv(command: str, cfg: WorkspaceConfig, prompt: str, worktree: Path) -> list[str]:
    section = cfg.agents.section(ECHO)
    assert isinstance(section, EchoAgent)
    return [command, "--jsonl", "--greeting", section.greeting, "--", prompt]


def echo_spec(session_dir: Path) -> AgentSpec[EchoAgent]:
    return AgentSpec(
        name=ECHO,
        config=EchoAgent,
        env=EnvGrant(names=frozenset({"ECHO_API_KEY"})),
        argv=echo_argv,
        stream=EchoStream,
        sessions=SessionSource(
            directory=lambda _sessions: str(session_dir),
            find=lambda root, skipped: list_jsonl(root, skipped),
            reader=EchoSessions,
        ),
        bypass=lambda section: ("mode", section.mode) if section.mode == "yolo" else None,
        shell=lambda section: f"mode {section.mode}" if section.mode == "yolo" else None,
    )


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AgentSpec[EchoAgent]]:
    """The third agent's spec, registered for the duration of one test."""
    spec = echo_spec(tmp_path / "echo-sessions")
    monkeypatch.setitem(AGENTS, ECHO, spec)
    yield spec
    assert AGENTS[ECHO] is spec


def echo_cfg(tmp_path: Path, **agents: Any) -> WorkspaceConfig:
    cli_path = tmp_path / "echo-cli"
    cli_path.write_text(ECHO_CLI.format(python=sys.executable))
    cli_path.chmod(0o755)
    section = {"command": str(cli_path), "greeting": "hi", "env": {"ECHO_DUMP": str(tmp_path / "dump.json")}}
    data = {
        "workspace": {"repo": str(tmp_path)},
        "budget": {"max_cost_usd": 1.0, "idle_timeout_s": 30},
        "agents": {"allow": [ECHO], "prefer": ECHO, ECHO: section, **agents},
    }
    return EchoWorkspaceConfig.model_validate(data)


def run_echo(cfg: WorkspaceConfig, worktree: Path, prompt: str) -> tuple[Any, list[tuple[str, dict[str, Any]]], str]:
    marker = f"orch-registry-test-{uuid.uuid4().hex}"
    events: list[tuple[str, dict[str, Any]]] = []
    result = run_agent(
        agent=ECHO,
        cfg=cfg,
        worktree=worktree,
        prompt=f"{prompt} {marker}",
        deadline=time.time() + 30,
        emit=lambda kind, data: events.append((kind, data)),
        should_cancel=lambda: False,
        log_dir=worktree.parent / "logs",
    )
    assert wait_for(lambda: live_with_marker(marker) == [], timeout=3), live_with_marker(marker)
    return result, events, marker


def test_the_config_layer_derives_a_third_agents_section(tmp_path: Path) -> None:
    assert list(EchoAgents.model_fields) == ["allow", "prefer", "claude_code", "codex", "echo_agent"]
    cfg = echo_cfg(tmp_path)
    assert cfg.agents.section(ECHO) == EchoAgent(
        command=str(tmp_path / "echo-cli"), greeting="hi", env={"ECHO_DUMP": str(tmp_path / "dump.json")}
    )
    assert cfg.agents.command_for(ECHO) == str(tmp_path / "echo-cli")
    assert cfg.agents.env_for(ECHO) == {"ECHO_DUMP": str(tmp_path / "dump.json")}
    assert cfg.agents.command_for("codex") == "codex"
    defaults = EchoWorkspaceConfig.model_validate({"workspace": {"repo": "/x"}})
    assert defaults.agents.allow == ["claude-code", "codex", ECHO] and defaults.agents.prefer == "claude-code"
    dumped = cfg.model_dump(mode="json", by_alias=True)["agents"]
    assert list(dumped) == ["allow", "prefer", "claude-code", "codex", ECHO]
    assert EchoWorkspaceConfig.model_validate({**cfg.model_dump(mode="json", by_alias=True)}) == cfg
    with pytest.raises(ValueError, match=r"echo-agent\.bogus"):
        EchoWorkspaceConfig.model_validate({"workspace": {"repo": "/x"}, "agents": {ECHO: {"bogus": 1}}})
    with pytest.raises(ValueError, match="env_allow"):  # the whole-config checks cover the new section too
        EchoWorkspaceConfig.model_validate({"workspace": {"repo": "/x"}, "agents": {ECHO: {"env": {"A": "${env.S}"}}}})
    # The process-wide config knows only the table it was built from.
    with pytest.raises(ConfigError):
        parse_config({"workspace": {"repo": "/x"}, "agents": {ECHO: {}}})


def test_a_third_agent_runs_end_to_end(
    echo: AgentSpec[EchoAgent], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ECHO_API_KEY", "zq-granted-value-987654")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "zq-not-granted-555555")
    monkeypatch.setenv("OPENAI_API_KEY", "zq-not-granted-555555")
    worktree = tmp_path / "wt"
    worktree.mkdir()
    cfg = echo_cfg(tmp_path)
    result, events, marker = run_echo(cfg, worktree, "say this")

    assert result.status == "succeeded" and result.exit_code == 0 and result.stop_reason is None
    assert result.session_id == "echo-1"
    assert result.files_changed == ["echoed.txt"]
    assert result.cost_usd == pytest.approx(0.25)
    assert result.summary == f"echoed say this {marker}"
    assert (worktree / "echoed.txt").read_text() == f"say this {marker}\n"
    kinds = [k for k, _ in events]
    assert kinds[0] == "agent.started" and kinds[-1] == "agent.finished"
    assert events[0][1] == {"agent": ECHO, "session_id": "echo-1", "model": None}
    assert ("agent.message", {"text": f"hi, say this {marker}"}) in events
    assert ("agent.file_change", {"path": "echoed.txt", "tool": "echo"}) in events
    finished = events[-1][1]
    assert finished["agent"] == ECHO and finished["status"] == "succeeded" and finished["bad_lines"] == 1
    assert (tmp_path / "logs" / f"{ECHO}.stderr.log").exists()

    seen = json.loads((tmp_path / "dump.json").read_text())
    assert seen["argv"] == ["--jsonl", "--greeting", "hi", "--", f"say this {marker}"]
    assert Path(seen["cwd"]).resolve() == worktree.resolve()
    # Its own grant and its config's env, the base environment, nothing granted to the other agents.
    assert "ECHO_API_KEY" in seen["env"] and "ECHO_DUMP" in seen["env"]
    assert "ANTHROPIC_API_KEY" not in seen["env"] and "OPENAI_API_KEY" not in seen["env"]
    env = agent_env(cfg, ECHO, {"PATH": "/bin", "ECHO_API_KEY": "k", "OPENAI_API_KEY": "o", "GH_TOKEN": "g"})
    assert env == {"PATH": "/bin", "ECHO_API_KEY": "k", "ECHO_DUMP": str(tmp_path / "dump.json")}
    assert BASE_ENV.grants("PATH")


def test_a_third_agents_cost_cap_stops_it(echo: AgentSpec[EchoAgent], tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    worktree.mkdir()
    t0 = time.monotonic()
    result, _events, _marker = run_echo(echo_cfg(tmp_path), worktree, "spend")
    assert result.status == "failed" and result.stop_reason == "cost_limit"
    assert 1.0 <= result.cost_usd < 1.5
    assert time.monotonic() - t0 < 15


def test_policy_decision_and_analyzer_see_a_registered_agent(
    echo: AgentSpec[EchoAgent], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yolo = echo_cfg(tmp_path, **{ECHO: {"mode": "yolo"}})
    assert policy_problems(yolo, HostPolicy()) == [
        'agents.echo-agent.mode: yolo is not allowed on this host (ORCH_ALLOW lacks "bypass")'
    ]
    assert policy_problems(yolo, HostPolicy.parse("bypass")) == []
    warning = shell_warning(yolo, Settings())
    assert warning is not None and warning.startswith("echo-agent (mode yolo) can run shell commands")
    assert policy_problems(echo_cfg(tmp_path), HostPolicy()) == []
    assert shell_warning(echo_cfg(tmp_path), Settings()) is None

    both = EchoWorkspaceConfig.model_validate(
        {"workspace": {"repo": "/x"}, "agents": {"allow": [ECHO, "codex"], "prefer": ECHO}}
    )
    assert rank_agents(both, None, []) == [ECHO, "codex"]

    # The analyzer reads its sessions and reports them under its name.
    repo = tmp_path / "repo"
    repo.mkdir()
    session = tmp_path / "echo-sessions" / "s.jsonl"
    session.parent.mkdir()
    rows = [{"session": "e1", "cwd": str(repo)}, {"prompt": "add a README"}, {"tool": "echo"}, {"tool": "echo"}]
    session.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sessions = Sessions.model_construct(providers=[ECHO, "codex"], codex_dir=str(tmp_path / "none"))
    insights = analyze_sessions(repo, sessions, cache_dir=None)
    assert list(insights.providers) == [ECHO, "codex"]
    mine = insights.providers[ECHO]
    assert (mine.sessions, mine.tools, mine.goals) == (1, {"echo": 2}, ["add a README"])

    # `orchestrate worker` finds it by its default command on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("orchestrate-echo-agent", "codex"):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("ORCH_AGENT_USER", raising=False)
    execs: list[list[str]] = []

    def fake_execve(_path: str, argv: list[str], env: dict[str, str]) -> None:
        assert env["ORCH_HOSTNAME"] == "build-7"
        execs.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execve", fake_execve)
    monkeypatch.setenv("ORCH_HOSTNAME", "build-7")
    cli.get_settings.cache_clear()
    try:
        assert CliRunner().invoke(cli.app, ["worker"]).exit_code == 0
        assert execs[0][execs[0].index("-Q") + 1] == "orchestrate,agent.codex,agent.echo-agent,host.build-7"
        assert execs[0][-2:] == ["-n", "orchestrate@build-7"]
        assert CliRunner().invoke(cli.app, ["worker", "--agents", ECHO, "-n", "w1@build-7"]).exit_code == 0
        assert execs[1][execs[1].index("-Q") + 1] == "orchestrate,agent.echo-agent,host.build-7"
    finally:
        cli.get_settings.cache_clear()


def test_a_spec_needs_a_default_command_and_one_module_per_name() -> None:
    class NoDefault(AgentConfigBase):
        pass

    with pytest.raises(ValueError, match="needs a default program name"):
        AgentSpec(name="x", config=NoDefault, env=EnvGrant(), argv=echo_argv, stream=EchoStream)
    codex_spec = AGENTS["codex"]
    assert register(codex_spec) is codex_spec  # the same spec again is no conflict
    with pytest.raises(ValueError, match="registered twice"):
        register(dataclasses.replace(codex_spec))
    with pytest.raises(ValueError, match="registered as"):
        AGENTS["other"] = codex_spec
    assert AGENTS["codex"] is codex_spec and "other" not in AGENTS
    assert ECHO not in AGENTS  # the other tests' registration ended with them

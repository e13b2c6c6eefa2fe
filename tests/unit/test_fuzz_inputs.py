"""Property tests of every parser of outside input, each driven through the entry point the product calls.

Workspace config data and files (parse_config, load_config, load_config_dir, a manifest file named by a
config), session files read whole and resumed line by line (the Claude and Codex readers), the agents' JSON
streams (the stream parser the registry builds, plus Codex's rollout poll), the decision LLM's answer
(make_decision over a stand-in OpenAI client) and gh's output (publish on a real git repository, with gh's
answers made up). Bad input must end as the module's own error or a counted, skipped line, never as an
exception. Pipeline manifests given as data are covered by test_pipeline_fuzz.py; the analyzer over
arbitrary session lines by test_sessions.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestration import pr as pr_mod
from orchestration.agents import codex as codex_agent
from orchestration.agents.base import RunTally
from orchestration.agents.process import Verdict
from orchestration.agents.registry import AGENTS, RunContext
from orchestration.config import (
    ConfigError,
    WorkspaceConfig,
    load_config,
    load_config_dir,
    parse_config,
)
from orchestration.decide.llm import ATTEMPTS
from orchestration.decide.orchestrator import make_decision
from orchestration.git import Tree
from orchestration.models import AgentResult, Decision, PRResult, Status
from orchestration.sessions import claude as claude_sessions
from orchestration.sessions import codex as codex_sessions
from orchestration.sessions._common import SessionStats, Workspace

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written into the repository (.hypothesis/)
    derandomize=True,  # the same examples on every run: a failure here is reproducible
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_REPO = "/tmp/orchestrate-fixtures/repo"  # the cwd of every captured session and stream
CLAUDE_SESSION = (
    FIXTURES / "sessions/claude/projects/-tmp-orchestrate-fixtures-repo/ee0344ad-f75e-42d1-96c9-1784086e80e8.jsonl"
)
CODEX_ROLLOUT = (
    FIXTURES
    / "sessions/codex/sessions/2026/11/25/rollout-2026-11-25T11-37-50-01a2127f-6b25-7643-ab0a-c0ea440b8ffe.jsonl"
)
CODEX_THREAD = "01a2127f-6b25-7643-ab0a-c0ea440b8ffe"  # the thread of codex_stream_sample.jsonl and CODEX_ROLLOUT


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _keys(value: Any, out: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(value, list):
        for v in value:
            _keys(v, out)
    return out


# -- shared strategies ----------------------------------------------------------------------------------------

# Fragments that, repeated, make the long inputs parsers tend to trip over: deep paths, digit runs beyond
# int()'s limit, nesting, escapes, separators.
REPEATED = ["a/", "9", "[", '{"a":', "\\", "é", "../", " ", "-", "${", "\n", "\x00", "🚀"]
long_text = st.lists(st.tuples(st.sampled_from(REPEATED), st.integers(1, 700)), min_size=1, max_size=3).map(
    lambda parts: "".join(f * n for f, n in parts)
)
text = st.one_of(st.text(max_size=30), long_text, st.sampled_from(["", " ", "-x", "UTC", "main", "claude-code"]))


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    """What a JSON parser can give (64-bit integers, finite floats), with plausible keys in objects."""
    scalar = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    )
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), inner, max_size=5),
        ),
        max_leaves=10,
    )


def _slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON value, so that an edit can reach any field at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        out.append((value, key))
        _slots(child, out)
    return out


@st.composite
def mutated(draw: st.DrawFn, templates: list[Any], keys: list[str]) -> Any:
    """A template with up to four fields replaced by random JSON, repeated, deleted or given a new key."""
    obj = orjson.loads(orjson.dumps(draw(st.sampled_from(templates))))
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(obj, [])
        if not slots:
            break
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        how = draw(st.integers(0, 5))
        if how <= 2:
            container[key] = draw(json_values(keys))
        elif how == 3 and isinstance(container[key], str):
            sep = draw(st.sampled_from(["/", "", " ", ",", "."]))
            container[key] = sep.join([container[key]] * draw(st.integers(2, 3000)))
        elif how == 4 and isinstance(container, dict):
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.sampled_from(keys))] = draw(json_values(keys))
    return obj


# A line that is not a JSON object: garbage bytes, a JSON value of another kind, or a real line cut short.
def garbage_lines(real: list[bytes]) -> st.SearchStrategy[bytes]:
    cuttable = [line for line in real if len(line) > 2]
    return st.one_of(
        st.tuples(st.sampled_from([b"#", b"x", b"\xff", b"]", b"<", b"\x00"]), st.binary(max_size=60)).map(
            lambda t: t[0] + t[1].replace(b"\n", b" ")
        ),
        json_values(["type", "a"]).filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
        st.tuples(st.sampled_from(cuttable), st.floats(0, 1)).map(
            lambda t: t[0][: max(1, min(len(t[0]) - 1, int(len(t[0]) * t[1])))]
        ),
    )


# -- 1. workspace configs ---------------------------------------------------------------------------------

MANIFEST = orjson.loads((FIXTURES.parent.parent / "examples/pipelines/manifests/tests-then-pr.json").read_bytes())
FULL_CONFIG: dict[str, Any] = {
    "id": "acme-api",
    "workspace": {"repo": "/srv/repos/acme", "base_branch": "main", "remote": "origin"},
    "schedule": {
        "cron": "30 1 * * 1-5",
        "timezone": "Europe/Paris",
        "window": {"start": "01:00", "end": "05:00"},
        "jitter_s": 60,
        "on_missed": "catch_up",
    },
    "budget": {
        "cycle_s": 1800,
        "max_turns": 40,
        "max_cost_usd": 5.0,
        "daily_cost_usd": 25.0,
        "idle_timeout_s": 300,
        "prices": {"claude-sonnet-4": {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_per_mtok": 0.3}},
    },
    "sessions": {"providers": ["claude-code", "codex"], "since_days": 14, "max_sessions": 200},
    "goals": ["Raise test coverage of the billing module"],
    "focus": {"include": ["src/**"], "exclude": ["vendor/**"]},
    "agents": {
        "allow": ["claude-code", "codex"],
        "prefer": "claude-code",
        "claude-code": {
            "command": "claude",
            "model": "claude-sonnet-4",
            "env": {"GOAL": "${env.NIGHTLY_GOAL}"},
            "permission_mode": "acceptEdits",
            "allowed_tools": ["Edit"],
            "disallowed_tools": ["WebFetch"],
        },
        "codex": {"command": "/usr/local/bin/codex", "sandbox": "workspace-write"},
    },
    "decision": {
        "backend": "auto",
        "min_confidence": 0.5,
        "avoid_repeat_days": 7,
        "llm": {"base_url": "http://localhost:11434/v1", "model": "qwen2.5-coder:7b", "timeout_s": 60},
    },
    "pr": {
        "enabled": True,
        "draft": True,
        "branch_prefix": "agent/orchestration/",
        "base": "main",
        "repo": "acme/api",
        "labels": ["automated"],
        "require_changes": True,
        "open_on_failure": False,
    },
    "permissions": {
        "write": ["**"],
        "deny_write": [".github/**"],
        "push": True,
        "open_pr": True,
        "shell": ["python3"],
        "network": ["api.example.com:443"],
    },
    "env_allow": ["NIGHTLY_GOAL"],
    "pipeline": MANIFEST["pipeline"],
}
CONFIG_KEYS = sorted(_keys(FULL_CONFIG, set()) | {"repo", "timezone", "cron", "pipeline", "op", "with"})
configs = st.one_of(
    mutated([FULL_CONFIG, {"workspace": {"repo": "/r"}}], CONFIG_KEYS),
    mutated([FULL_CONFIG], CONFIG_KEYS),
    json_values(CONFIG_KEYS),
)


def _check_config_error(exc: ConfigError, source: str) -> None:
    assert exc.source == source
    assert exc.errors, "a ConfigError names at least one problem"
    for line in exc.errors:
        assert isinstance(line, str) and line.strip()
        assert "Traceback" not in line
    message = str(exc)
    assert message.startswith(f"{source}: ") and "Traceback" not in message


def test_full_config_template_is_valid() -> None:
    # The mutations below start from a config that validates: what they break is what they changed.
    cfg = parse_config(FULL_CONFIG)
    assert cfg.schedule.timezone == "Europe/Paris" and cfg.pipeline and len(cfg.pipeline) == 5


@FUZZ
@given(configs)
# A time zone key of thousands of '/'-separated parts made zoneinfo recurse past the interpreter's limit
# (Hypothesis raises that limit while a test runs: outside it, some 300 parts were enough).
@example({"workspace": {"repo": "/r"}, "schedule": {"timezone": "/".join(["UTC"] * 3000)}})
def test_any_config_data_gives_a_config_or_a_config_error(data: Any) -> None:
    try:
        cfg = parse_config(data, "fuzz.json")
    except ConfigError as exc:
        _check_config_error(exc, "fuzz.json")
        return
    assert isinstance(cfg, WorkspaceConfig)
    assert cfg.id  # derived from the repo when not given
    # What validated serializes and validates again to the same config.
    assert parse_config(cfg.model_dump(mode="json", by_alias=True)) == cfg


file_bytes = st.one_of(
    st.binary(max_size=200),
    configs.map(lambda v: json.dumps(v).encode()),  # stdlib json: also integers beyond 64 bits
    long_text.map(str.encode),
)


naming_a_manifest = mutated([{**FULL_CONFIG, "pipeline": "p/m.json"}], CONFIG_KEYS).map(orjson.dumps)
manifest_bytes = st.one_of(
    file_bytes, st.just(orjson.dumps(MANIFEST)), mutated([MANIFEST], sorted(_keys(MANIFEST, set()))).map(orjson.dumps)
)


@settings(FUZZ, max_examples=50)
@given(config=st.one_of(file_bytes, naming_a_manifest), manifest=manifest_bytes)
def test_config_files_and_the_manifest_they_name_give_a_config_or_a_config_error(
    config: bytes, manifest: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ws.json"
        path.write_bytes(config)
        (Path(tmp) / "p").mkdir()
        (Path(tmp) / "p" / "m.json").write_bytes(manifest)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            _check_config_error(exc, str(path))
            cfg = None
        good, bad = load_config_dir(tmp)
        assert len(good) + len(bad) == 1  # the one config file; the manifest is not in the directory itself
        assert (cfg is None) == (len(bad) == 1)
        for error in bad:
            _check_config_error(error, str(path))
        if cfg is not None and isinstance(orjson.loads(config).get("pipeline"), str):
            # A manifest named by a config is read and put inline.
            assert cfg._manifest is not None and cfg.pipeline == cfg._manifest.pipeline


# -- 3. session files ------------------------------------------------------------------------------------

CLAUDE_LINES = _lines(CLAUDE_SESSION)
CODEX_LINES = _lines(CODEX_ROLLOUT)
READERS: dict[str, tuple[Any, list[bytes]]] = {
    "claude": (claude_sessions.Reader, CLAUDE_LINES),
    "codex": (codex_sessions.Reader, CODEX_LINES),
}
SESSION_KEYS = sorted(set().union(*(_keys(orjson.loads(line), set()) for line in [*CLAUDE_LINES, *CODEX_LINES])))
# Claude lines recognised by their first bytes are dropped unparsed: cut short, they are not counted.
FAST_SKIPPED = b'{"type":"file-history-snapshot"'


def _summary(st_: SessionStats) -> tuple[Any, ...]:
    """What a file contributed, without the keys that name a line by its byte offset."""
    return (
        st_.session_id,
        st_.in_workspace,
        len(st_.prompts),
        sorted(st_.tool_calls.values()),
        sorted(map(tuple, st_.files.values())),
        sorted(st_.failures.values()),
        sorted(st_.usage.values()),
        round(sum(st_.cost.values()), 9),
        (st_.ts_min, st_.ts_max),
        len(st_.interruptions),
        st_.ends_on_error,
        st_.ends_interrupted,
    )


def _read_whole(reader_cls: Any, path: Path) -> SessionStats:
    reader = reader_cls(str(path), 0.0)
    reader.read(Workspace(FIXTURE_REPO))
    result: SessionStats = reader.result()
    return result


@st.composite
def with_garbage(draw: st.DrawFn, provider: str) -> tuple[list[bytes], int]:
    """The real session's lines in order, with garbage lines (and blank ones) put in between."""
    real = READERS[provider][1]
    garbage = garbage_lines([line for line in real if not line.startswith(FAST_SKIPPED)])
    inserts = draw(st.lists(st.tuples(st.integers(0, len(real)), st.one_of(garbage, st.just(b"  "))), max_size=12))
    lines = list(real)
    for where, line in sorted(inserts, key=lambda t: -t[0]):
        lines.insert(where, line)
    return lines, sum(1 for _, line in inserts if line.strip())


@settings(FUZZ, max_examples=60)
@given(provider=st.sampled_from(sorted(READERS)), data=st.data())
def test_garbage_lines_in_a_session_file_are_counted_once_and_change_nothing_else(provider: str, data: Any) -> None:
    reader_cls, real = READERS[provider]
    lines, n_garbage = data.draw(with_garbage(provider))
    with tempfile.TemporaryDirectory() as tmp:
        clean, dirty = Path(tmp) / "clean.jsonl", Path(tmp) / "dirty.jsonl"
        clean.write_bytes(b"\n".join(real) + b"\n")
        dirty.write_bytes(b"\n".join(lines) + b"\n")
        want, got = _read_whole(reader_cls, clean), _read_whole(reader_cls, dirty)
    assert got.skipped - want.skipped == Counter({"malformed_line": n_garbage} if n_garbage else {})
    assert want.skipped - got.skipped == Counter()
    want.session_id = got.session_id = ""  # named after the file
    assert _summary(got) == _summary(want)


@settings(FUZZ, max_examples=25)
@given(provider=st.sampled_from(sorted(READERS)), data=st.data())
def test_a_session_file_read_as_it_grows_gives_what_one_read_gives(provider: str, data: Any) -> None:
    """Appended a few lines at a time (any mix of real, damaged and garbage lines), the resumed reads add up
    to one read of the whole file: nothing counted twice, nothing lost."""
    reader_cls, real = READERS[provider]
    line = st.one_of(
        st.sampled_from(real),
        mutated([orjson.loads(x) for x in real], SESSION_KEYS).map(lambda v: json.dumps(v).encode()),
        garbage_lines([x for x in real if not x.startswith(FAST_SKIPPED)]),
    )
    lines = data.draw(st.lists(line, min_size=1, max_size=15))
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(lines)), max_size=4))) | {len(lines)})
    ws = Workspace(FIXTURE_REPO)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.jsonl"
        path.write_bytes(b"")
        grown = reader_cls(str(path), 0.0)
        pos, done = [0], 0
        for cut in cuts:
            with path.open("ab") as fh:
                fh.write(b"".join(x + b"\n" for x in lines[done:cut]))
            done = cut
            grown.read(ws, pos[0], pos)
            if grown.st.in_workspace is False:
                break  # the analyzer reads another workspace's session no further
        whole = _read_whole(reader_cls, path)
        assert grown.result() == whole
        assert sum(whole.skipped.values()) <= len(lines)


# -- 4. agent streams ------------------------------------------------------------------------------------

CLAUDE_STREAM = _lines(FIXTURES / "claude_stream_sample.jsonl")
CODEX_STREAM = _lines(FIXTURES / "codex_stream_sample.jsonl")
STREAMS = {"claude-code": CLAUDE_STREAM, "codex": CODEX_STREAM}
STREAM_KEYS = sorted(set().union(*(_keys(orjson.loads(x), set()) for x in [*CLAUDE_STREAM, *CODEX_STREAM])))
STREAM_CFG = parse_config({"workspace": {"repo": FIXTURE_REPO}, "budget": {"max_cost_usd": 1e9}})


class Recorder:
    """The run's emitter: keeps every event, and checks that the hub could send it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        assert kind.startswith("agent.") and isinstance(data, dict)
        orjson.dumps(data)  # the hub serializes events with orjson
        self.events.append((kind, data))


def _stream(agent: str, home: Path) -> tuple[Any, RunTally, Recorder]:
    tally, rec = RunTally(), Recorder()
    run = RunContext(cfg=STREAM_CFG, worktree=Path(FIXTURE_REPO), env={"CODEX_HOME": str(home)}, emit=rec, tally=tally)
    return AGENTS[agent].stream(run), tally, rec


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line.strip()), dict)
    except orjson.JSONDecodeError:
        return False


def _rises(parser: Any, tally: RunTally, last: float) -> float:
    """The running estimate, checked against the one before: it never falls, for either agent (also when
    Codex's `turn.completed` counts fewer tokens than its rollout did)."""
    estimate: float = parser.estimated_cost
    assert math.isfinite(estimate) and estimate >= 0
    assert estimate >= last, f"estimate fell from {last} to {estimate}"
    return estimate


def _check_feed(parser: Any, tally: RunTally, lines: list[bytes]) -> None:
    """Feeds every line: never raises, every verdict is one, and the estimate never goes down."""
    last = 0.0
    for line in lines:
        assert isinstance(parser.feed(line), Verdict)
        last = _rises(parser, tally, last)
    assert tally.events == sum(1 for x in lines if x.strip() and _is_object(x))


@settings(FUZZ, max_examples=30)
@given(agent=st.sampled_from(sorted(STREAMS)), data=st.data())
def test_garbage_in_a_real_stream_is_counted_exactly(agent: str, data: Any) -> None:
    real = STREAMS[agent]
    inserts = data.draw(
        st.lists(st.tuples(st.integers(0, len(real)), st.one_of(garbage_lines(real), st.just(b""))), max_size=10)
    )
    lines = list(real)
    for where, line in sorted(inserts, key=lambda t: -t[0]):
        lines.insert(where, line)
    with tempfile.TemporaryDirectory() as tmp:
        clean, clean_tally, clean_rec = _stream(agent, Path(tmp))
        for line in real:
            clean.feed(line)
        parser, tally, rec = _stream(agent, Path(tmp))
        _check_feed(parser, tally, lines)
    assert tally.bad_lines == sum(1 for _, line in inserts if line.strip())
    assert rec.events == clean_rec.events
    assert (tally.success, tally.files, tally.cost_usd) == (
        clean_tally.success,
        clean_tally.files,
        clean_tally.cost_usd,
    )


@settings(FUZZ, max_examples=40)
@given(agent=st.sampled_from(sorted(STREAMS)), data=st.data())
def test_any_stream_lines_are_handled_and_the_estimate_never_falls(agent: str, data: Any) -> None:
    real = STREAMS[agent]
    line = st.one_of(
        st.sampled_from(real),
        mutated([orjson.loads(x) for x in real], STREAM_KEYS).map(lambda v: json.dumps(v).encode()),
        garbage_lines(real),
        st.binary(max_size=80),
    )
    lines = data.draw(st.lists(line, max_size=25))
    with tempfile.TemporaryDirectory() as tmp:
        parser, tally, _rec = _stream(agent, Path(tmp))
        _check_feed(parser, tally, lines)
    nonblank = [x for x in lines if x.strip()]
    assert sum(1 for x in nonblank if not _is_object(x)) <= tally.bad_lines <= len(nonblank)
    assert min(tally.input_tokens, tally.output_tokens, tally.cached_tokens, tally.cache_write_tokens) >= 0
    assert all(isinstance(f, str) for f in tally.files)


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_codex_rollout_read_while_the_stream_runs_never_raises(data: Any) -> None:
    """Codex's live cost comes from its rollout file: any rollout content, appended between stream lines."""
    rollout_line = st.one_of(
        st.sampled_from(CODEX_LINES),
        mutated(
            [orjson.loads(x) for x in CODEX_LINES if b"token_count" in x or b"turn_context" in x], SESSION_KEYS
        ).map(lambda v: json.dumps(v).encode()),
        garbage_lines(CODEX_LINES).map(lambda g: b'"token_count"' + g),
    )
    steps = data.draw(
        st.lists(st.tuples(st.sampled_from(CODEX_STREAM[1:]), st.lists(rollout_line, max_size=3)), max_size=12)
    )
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(codex_agent, "ROLLOUT_POLL_S", 0.0):
        home = Path(tmp)
        rollout = home / "sessions" / "2026" / "11" / "25" / CODEX_ROLLOUT.name
        rollout.parent.mkdir(parents=True)
        rollout.write_bytes(b"")
        parser, tally, _rec = _stream("codex", home)
        parser.feed(CODEX_STREAM[0])  # thread.started: names the rollout
        assert tally.session_id == CODEX_THREAD
        last = 0.0
        for stream_line, appended in steps:
            with rollout.open("ab") as fh:
                fh.write(b"".join(x + b"\n" for x in appended))
            assert parser.poll() in (None, Verdict.STOP_COST)
            assert isinstance(parser.feed(stream_line), Verdict)
            last = _rises(parser, tally, last)
        assert min(tally.input_tokens, tally.output_tokens, tally.cached_tokens) >= 0


# -- 5. the decision LLM's answer ---------------------------------------------------------------------------

VALID_CHOICE = {
    "candidate": 0,
    "title": "Raise coverage of billing",
    "task": "Add unit tests for src/billing.py until its coverage passes 90%.",
    "agent": "codex",
    "rationale": "Billing is the least tested module.",
    "confidence": 0.8,
    "estimated_minutes": 20,
    "evidence": ["E1"],
}
DECIDE_CFG = parse_config(
    {
        "workspace": {"repo": "/srv/repos/acme"},
        "goals": ["Raise test coverage of billing"],
        "decision": {"backend": "llm"},
    }
)


def _wrapped(choice: dict[str, Any]) -> st.SearchStrategy[str]:
    body = json.dumps(choice)
    return st.sampled_from(
        [body, f"```json\n{body}\n```", f"Here is my answer:\n{body}\nGood luck.", f"```\n{body}\n```  "]
    )


valid_choices = st.fixed_dictionaries(
    {
        "candidate": st.one_of(st.none(), st.integers(-3, 5)),
        "title": st.text(min_size=1, max_size=60).map(lambda t: "Fix " + t),
        "task": st.text(max_size=200).map(lambda t: "Write the tests for " + t),
        "agent": st.sampled_from(["claude-code", "codex", "gpt", ""]),
        "rationale": st.text(max_size=100).map(lambda t: "Because " + t),
        "confidence": st.floats(0.5, 1),
        "estimated_minutes": st.integers(1, 24 * 60),
        "evidence": st.lists(st.sampled_from(["E1", "E2", "E3", " E1 "]), min_size=1, max_size=3),
    }
)
answers = st.one_of(
    st.text(max_size=200),
    long_text,
    mutated([VALID_CHOICE], sorted(VALID_CHOICE)).map(json.dumps),
    json_values(sorted(VALID_CHOICE)).map(json.dumps),
    mutated([VALID_CHOICE], sorted(VALID_CHOICE)).flatmap(_wrapped),
)
# Replies that are not even a chat completion with text in it.
odd_replies = st.sampled_from(
    [
        SimpleNamespace(choices=[]),
        SimpleNamespace(choices=None),
        SimpleNamespace(),
        None,
        SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=None))]),
        SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=["{}"]))]),
        SimpleNamespace(choices=[SimpleNamespace(message=None)]),
    ]
)


def _reply(content: str) -> Any:
    return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=content))])


class FakeOpenAI:
    """Stands in for openai.OpenAI: each completion is the next of `replies` (the last one repeats)."""

    replies: ClassVar[list[Any]] = []
    calls: ClassVar[int] = 0

    def __init__(self, **_kwargs: Any) -> None:
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, **_kwargs: Any) -> Any:
        cls = type(self)
        reply = cls.replies[min(cls.calls, len(cls.replies) - 1)]
        cls.calls += 1
        return reply


def _decide(replies: list[Any]) -> tuple[Decision, int]:
    FakeOpenAI.replies, FakeOpenAI.calls = replies, 0
    with mock.patch("openai.OpenAI", FakeOpenAI):
        outcome = make_decision(
            insights=None, cfg=DECIDE_CFG, history=[], backlog=[], available=lambda _a: True, now=1.9e9
        )
    assert outcome.decision is not None
    return outcome.decision, FakeOpenAI.calls


def _check_decision(decision: Decision) -> None:
    assert isinstance(decision, Decision)
    if decision.source == "llm":
        assert decision.fallback_reason is None
        assert decision.agent in DECIDE_CFG.agents.allow
        assert DECIDE_CFG.decision.min_confidence <= decision.confidence <= 1
        assert 60 <= decision.estimated_s <= max(60, int(DECIDE_CFG.budget.cycle_s))
        assert "Rules:" in decision.task and len(decision.title) <= 72
    else:
        assert decision.source == "heuristic"
        assert isinstance(decision.fallback_reason, str) and decision.fallback_reason.strip()
        assert "Traceback" not in decision.fallback_reason


@settings(FUZZ, max_examples=80)
@given(st.lists(st.one_of(answers.map(_reply), odd_replies), min_size=1, max_size=ATTEMPTS))
def test_any_llm_answer_gives_a_decision_or_the_heuristic_with_a_reason(replies: list[Any]) -> None:
    decision, calls = _decide(replies)
    _check_decision(decision)
    assert 1 <= calls <= ATTEMPTS


@settings(FUZZ, max_examples=40)
@given(valid_choices.flatmap(_wrapped))
def test_a_well_formed_answer_is_taken_however_it_is_wrapped(answer: str) -> None:
    decision, calls = _decide([_reply(answer)])
    _check_decision(decision)
    assert decision.source == "llm" and calls == 1


# -- 6. gh's output --------------------------------------------------------------------------------------

BRANCH = "agent/orchestration/fuzz"
PR_ITEM = {"number": 7, "url": "https://github.com/acme/api/pull/7", "state": "OPEN", "isDraft": True}
gh_json = st.one_of(
    st.lists(mutated([PR_ITEM], sorted(PR_ITEM)), max_size=3).map(json.dumps),
    mutated([PR_ITEM], sorted(PR_ITEM)).map(json.dumps),
    st.just("[]"),
    st.just(json.dumps([PR_ITEM])),
)
gh_url = st.tuples(
    st.sampled_from(["https://github.com/acme/api/pull/", "http://x/pull/", "https://github.com/acme/api/pull/-"]),
    st.one_of(st.integers(0, 10**6).map(str), st.integers(4000, 6000).map(lambda n: "1" * n), st.just("٣")),
    st.sampled_from(["", "\n", "\nWarning: 1 uncommitted change\n", " trailing"]),
).map("".join)
gh_stdout = st.one_of(st.text(max_size=100), long_text, gh_json, gh_url)
gh_answer = st.tuples(st.sampled_from([0, 0, 0, 1, 4]), gh_stdout, st.sampled_from(["", "HTTP 502", "already exists"]))


@pytest.fixture(scope="module")
def gh_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tree, WorkspaceConfig]]:
    """A clone of a bare remote with a worktree on BRANCH holding one change: publish gets as far as gh."""
    tmp = tmp_path_factory.mktemp("gh")
    remote, clone, wt = tmp / "remote.git", tmp / "clone", tmp / "wt"

    def git(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603

    git("init", "-q", "--bare", "-b", "main", str(remote))
    git("clone", "-q", str(remote), str(clone))
    git("config", "user.name", "Test User", cwd=clone)
    git("config", "user.email", "test@example.com", cwd=clone)
    git("checkout", "-q", "-b", "main", cwd=clone)
    (clone / "README.md").write_text("hello\n")
    git("add", "-A", cwd=clone)
    git("commit", "-q", "-m", "initial", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    git("worktree", "add", "-q", "-b", BRANCH, str(wt), "origin/main", cwd=clone)
    (wt / "src.py").write_text("x = 1\n")
    yield Tree.discover(wt), WorkspaceConfig.model_validate({"workspace": {"repo": str(clone)}})


DECISION = Decision(
    task="Add tests.", title="Raise coverage", agent="codex", rationale="Untested.", confidence=0.8, op_hash="h"
)


@settings(FUZZ, max_examples=20)
@given(
    listed=st.lists(gh_answer, min_size=1, max_size=2),
    created=st.lists(gh_answer, min_size=1, max_size=3),
    viewed=gh_answer,
)
@example(
    listed=[(0, "[]", "")], created=[(0, "https://github.com/acme/api/pull/" + "1" * 5000, "")], viewed=(0, "", "")
)
@example(listed=[(0, "[" * 100_000, "")], created=[(0, "", "")], viewed=(0, "", ""))
@example(
    listed=[(0, "[]", "")], created=[(0, "https://github.com/acme/api/pull/7\n", "")], viewed=(0, "[" * 100_000, "")
)
def test_any_gh_output_ends_publish_with_a_result_and_a_reason(
    gh_repo: tuple[Tree, WorkspaceConfig],
    listed: list[tuple[int, str, str]],
    created: list[tuple[int, str, str]],
    viewed: tuple[int, str, str],
) -> None:
    tree, cfg = gh_repo
    answers = {"list": list(listed), "create": list(created), "view": [viewed]}
    calls: Counter[str] = Counter()

    def fake_gh(
        gh: str, args: list[str], cwd: Path, input_text: str | None = None, **_: Any
    ) -> subprocess.CompletedProcess[str]:
        if args[:2] == ["auth", "status"]:
            return subprocess.CompletedProcess([gh, *args], 0, "Logged in", "")
        which = args[1]
        queue = answers[which]
        code, stdout, stderr = queue[min(calls[which], len(queue) - 1)]
        calls[which] += 1
        return subprocess.CompletedProcess([gh, *args], code, stdout, stderr)

    events: list[tuple[str, dict[str, Any]]] = []
    with mock.patch.object(pr_mod, "run_gh", fake_gh):
        result = pr_mod.publish(
            tree=tree,
            branch=BRANCH,
            cfg=cfg,
            cycle_id="c-fuzz",
            decision=DECISION,
            agent=AgentResult(status="succeeded"),
            cycle_status=Status.SUCCEEDED,
            duration_s=1.0,
            base_ref="origin/main",
            emit=lambda kind, data: events.append((kind, data)),
            retry=pr_mod.RetryPolicy(push_backoff_s=(0.0,), create_backoff_s=0.0),
        )
    assert isinstance(result, PRResult) and result.pushed
    if result.status in ("created", "exists"):
        assert isinstance(result.url, str) and result.url.startswith(("http://", "https://"))
        assert isinstance(result.number, int) and result.number > 0
        assert events[-1][0] == "pr.opened"
    else:
        assert result.status in ("failed", "skipped")
        assert result.reason and result.reason.strip()
        # publish's last-resort handler: gh's output reached it instead of a reason of its own
        assert not result.reason.startswith("publish_error"), result.reason
        assert events[-1][0] == "pr.skipped"


# -- 7. gh's output for the issue source ------------------------------------------------------------------

ISSUE_ITEM = {"number": 3, "author": {"login": "octocat"}, "createdAt": "2026-11-20T10:00:00Z"}
ISSUE_VIEW = {
    "number": 3,
    "title": "Fix it",
    "body": "text",
    "url": "https://github.com/acme/api/issues/3",
    "author": {"login": "octocat"},
    "comments": [{"author": {"login": "octocat"}, "body": "more"}],
}
PR_WITH_MARKER = {"number": 9, "state": "OPEN", "body": "<!-- orchestrate:cycle=c1 issue=3 -->", "closedAt": None}
issue_json = st.one_of(
    st.lists(mutated([ISSUE_ITEM], sorted(ISSUE_ITEM)), max_size=3).map(json.dumps),
    mutated([ISSUE_VIEW], sorted(ISSUE_VIEW)).map(json.dumps),
    st.lists(mutated([PR_WITH_MARKER], sorted(PR_WITH_MARKER)), max_size=2).map(json.dumps),
    json_values(["permission", "role_name", "number", "author", "login"]).map(json.dumps),
    st.just(json.dumps([ISSUE_ITEM])),
    st.just(json.dumps(ISSUE_VIEW)),
    st.just('{"permission": "write"}'),
)
issue_answer = st.tuples(
    st.sampled_from([0, 0, 0, 1, 4]),
    st.one_of(st.text(max_size=100), long_text, issue_json),
    st.sampled_from(["", "HTTP 401", "API rate limit exceeded", "Could not resolve to a Repository"]),
)


@settings(FUZZ, max_examples=40)
@given(answers=st.lists(issue_answer, min_size=1, max_size=6))
def test_any_gh_output_leaves_the_issue_source_with_issues_or_a_reason(
    answers: list[tuple[int, str, str]],
) -> None:
    from orchestration import issues as issues_mod

    cfg = parse_config({"workspace": {"repo": "/srv/x"}, "issues": {"enabled": True}, "pr": {"repo": "acme/api"}})
    queue = list(answers)

    def fake_gh(gh: str, args: list[str], cwd: Path, **_: Any) -> subprocess.CompletedProcess[str]:
        code, stdout, stderr = queue.pop(0) if len(queue) > 1 else queue[0]
        return subprocess.CompletedProcess([gh, *args], code, stdout, stderr)

    with mock.patch.object(issues_mod, "run_gh", fake_gh):
        found, report = issues_mod.read_issues(cfg, Path("/tmp"))
    if report.error is not None:
        assert found == [] and report.error.strip()
    for issue in found:  # anything read came from an author who passed the rule, and is bounded
        assert issue.number > 0 and len(issue.body) <= issues_mod.MAX_BODY_CHARS

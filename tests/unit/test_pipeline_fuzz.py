"""Property tests of the pipeline layer on random data: manifests (random dicts, lists and strings holding
`${`, `$${` and `}`, random op names and arguments) through parse_manifest and check_steps, and random strings
through parse, render and Condition.parse. The only exceptions allowed are ConfigError (parse_manifest) and
ExprError (substitution); check_steps never raises for steps the Step model accepts."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestration.config import ConfigError, WorkspaceConfig, parse_config, parse_manifest
from orchestration.pipeline.check import check_steps
from orchestration.pipeline.expr import Condition, ExprError, Ref, lookup, parse, render
from orchestration.pipeline.manifest import Manifest, Step
from orchestration.pipeline.registry import OPS

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written into the repository (.hypothesis/)
    report_multiple_bugs=False,
    derandomize=True,  # the same examples on every run: a failure here is reproducible, never flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

OP_NAMES = list(OPS)
ARG_NAMES = sorted({info.alias or name for op in OPS.values() for name, info in op.Args.model_fields.items()})
STEP_NAMES = ["tests", "decision", "run", "insights", "pr", "a", "b-2", "_x", "env", "cycle", "bad name", ""]
FRAGMENTS = [
    "${",
    "$${",
    "}",
    "{",
    "$",
    ".",
    "-",
    "not ",
    " ",
    "${tests.ok}",
    "${decision.title}",
    "${decision.titel}",
    "${run.files_changed.0}",
    "${run.files_changed.x}",
    "${insights.providers.claude-code.sessions}",
    "${cycle.id}",
    "${date}",
    "${workspace.repo}",
    "${env.NIGHTLY_GOAL}",
    "${env.SECRET}",
    "${env}",
    "${}",
    "${a..b}",
    "${1x}",
    "https://hooks.example.com/",
    "https://evil.example.com/",
    "ftp://x/",
    "python3",
    "/usr/bin/make",
    "claude-code",
    "codex",
    "\x00",
    "\n",
    "é",
]

text = st.one_of(
    st.text(alphabet=st.sampled_from("${}.-_ aZ09n!t\\/:é"), max_size=16),
    st.lists(st.sampled_from(FRAGMENTS), max_size=5).map("".join),
    st.text(max_size=8),
)
# What JSON gives: orjson.loads turns integers beyond 64 bits into floats, so these stay within them.
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(text, st.sampled_from(ARG_NAMES)), inner, max_size=4),
    ),
    max_leaves=12,
)
with_args = st.dictionaries(st.one_of(st.sampled_from(ARG_NAMES), text), json_value, max_size=5)


@st.composite
def step_dicts(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)  # not even an object
    step: dict[str, Any] = {
        "op": draw(st.one_of(st.sampled_from(OP_NAMES), st.sampled_from(["no.such", "shell"]), text))
    }
    if draw(st.booleans()):
        step["with"] = draw(st.one_of(with_args, json_value))
    if draw(st.booleans()):
        step["as"] = draw(st.one_of(st.sampled_from(STEP_NAMES), text))
    if draw(st.booleans()):
        step["if"] = draw(st.one_of(text, st.sampled_from(["${tests.ok}", "not ${tests.ok}", "${a} ${b}"])))
    if draw(st.integers(0, 3)) == 0:
        step["timeout_s"] = draw(st.one_of(st.integers(-5, 10**6), text, st.none()))
    if draw(st.integers(0, 5)) == 0:
        step[draw(text)] = draw(json_value)
    return step


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)
    data: dict[str, Any] = {"pipeline": draw(st.one_of(st.lists(step_dicts(), max_size=6), json_value))}
    for key, value in [
        ("id", st.one_of(st.just("nightly"), text)),
        ("version", st.one_of(st.sampled_from(["1.0.0", "1.0", "2.1.3-rc.1+b5", "01.0.0"]), text)),
        ("title", st.one_of(text, scalar)),
        ("description", text),
        ("$schema", text),
    ]:
        if draw(st.booleans()):
            data[key] = draw(value)
    if draw(st.integers(0, 5)) == 0:
        data[draw(text)] = draw(json_value)
    return data


def _config(**overrides: Any) -> WorkspaceConfig:
    return parse_config({"workspace": {"repo": "/srv/repos/acme"}, **overrides})


CONFIGS: list[WorkspaceConfig | None] = [
    None,
    _config(),
    _config(permissions={"shell": True, "network": ["hooks.example.com"]}, env_allow=["NIGHTLY_GOAL"]),
    _config(permissions={"shell": ["python3", "pytest"], "network": ["hooks.example.com:443"]}),
]


def _check_all(pipeline: list[Step]) -> None:
    for cfg in CONFIGS:
        problems = check_steps(pipeline, cfg)
        assert isinstance(problems, list)
        for p in problems:
            assert isinstance(p, str)
            assert p.startswith("pipeline[")


@FUZZ
@given(manifests())
def test_random_manifests_raise_only_config_error(data: Any) -> None:
    try:
        manifest = parse_manifest(data, "fuzz.json")
    except ConfigError as exc:
        assert exc.errors
        assert all(isinstance(e, str) and e for e in exc.errors)
        return
    assert isinstance(manifest, Manifest)
    _check_all(manifest.pipeline)


@FUZZ
@given(st.lists(step_dicts(), min_size=1, max_size=6))
def test_check_steps_never_raises_for_steps_the_model_accepts(items: list[Any]) -> None:
    pipeline = []
    for item in items:
        try:
            pipeline.append(Step.model_validate(item))
        except ValidationError:
            continue
    _check_all(pipeline)


@st.composite
def known_op_steps(draw: st.DrawFn) -> dict[str, Any]:
    """A step of a registered op whose `with` uses that op's own argument names (and now and then others)."""
    op = draw(st.sampled_from(OP_NAMES))
    fields = sorted(info.alias or name for name, info in OPS[op].Args.model_fields.items())
    keys = draw(st.lists(st.one_of(st.sampled_from(fields), st.sampled_from(ARG_NAMES)), max_size=4, unique=True))
    step: dict[str, Any] = {"op": op, "with": {k: draw(json_value) for k in keys}}
    if draw(st.booleans()):
        step["as"] = draw(st.sampled_from(["tests", "decision", "run", "insights", "pr", "x"]))
    if draw(st.booleans()):
        step["if"] = draw(st.one_of(st.sampled_from(FRAGMENTS), text))
    return step


@FUZZ
@given(st.lists(known_op_steps(), min_size=1, max_size=6))
def test_check_steps_never_raises_for_known_ops_with_random_arguments(items: list[dict[str, Any]]) -> None:
    pipeline = [Step.model_validate(item) for item in items]
    _check_all(pipeline)


# -- substitution on random strings -------------------------------------------------------------------------

VALUES: dict[str, Any] = {
    "tests": {"ok": True, "exit_code": 0},
    "run": {"files_changed": ["a.py"], "cost_usd": 0.5, "branch": None},
    "decision": {"title": "T", "agent": "codex"},
    "insights": {"providers": {"claude-code": {"sessions": 3}}},
}


def _resolve(ref: Ref) -> Any:
    return lookup(VALUES.get(ref.root), ref.path)


@FUZZ
@given(text)
def test_parse_raises_only_expr_error(s: str) -> None:
    try:
        parts = parse(s)
    except ExprError:
        return
    for part in parts:
        assert isinstance(part, (str, Ref))
    if "$" not in s:
        assert "".join(p for p in parts if isinstance(p, str)) == s


@FUZZ
@given(json_value)
def test_render_raises_only_expr_error(value: Any) -> None:
    with contextlib.suppress(ExprError):
        render(value, _resolve)


@FUZZ
@given(text, json_value)
def test_render_with_any_resolved_json_value_raises_only_expr_error(s: str, resolved: Any) -> None:
    with contextlib.suppress(ExprError):
        render({"a": [s, f"x {s} y"]}, lambda _ref: resolved)


@FUZZ
@given(text)
def test_condition_parse_raises_only_expr_error(s: str) -> None:
    try:
        cond = Condition.parse(s)
    except ExprError:
        return
    assert isinstance(cond.holds(_resolve), bool)


NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
SEGMENT = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)


@FUZZ
@given(NAME, st.lists(SEGMENT, max_size=4), scalar)
def test_a_string_that_is_exactly_one_reference_renders_to_the_value_itself(
    root: str, path: list[str], value: Any
) -> None:
    ref = Ref(root, tuple(path))
    assert parse(ref.text) == [ref]
    assert render(ref.text, lambda r: value if r == ref else pytest.fail(f"unexpected {r}")) == value


@FUZZ
@given(text)
def test_escaped_text_renders_back_to_itself(s: str) -> None:
    # `$${` writes a literal `${`: escaping every `${` of any text renders that text unchanged.
    assert render(s.replace("${", "$${"), _resolve) == s


def test_parse_manifest_with_an_integer_beyond_64_bits_is_a_config_error() -> None:
    # A Python caller (or stdlib json, which keeps big integers) may hand parse_manifest/parse_config such a
    # value; it must come back as a ConfigError naming the field, not a TypeError from the error formatter.
    for data in [
        {"pipeline": [{"op": "shell.run"}], "version": 2**70},
        {"pipeline": [{"op": "shell.run", "timeout_s": -(2**70)}]},
        {"pipeline": [{"op": "shell.run", "with": 2**70}]},
    ]:
        with pytest.raises(ConfigError):
            parse_manifest(data, "big.json")

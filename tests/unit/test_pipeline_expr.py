"""Substitution (orchestration.pipeline.expr): parse, refs, render, lookup, Condition and walk_type, exactly as
the contract describes them: typed whole values, rendering inside text, the `$${` escape, hyphenated keys,
list indexes, null through missing fields, and the static path checks against the real op Output models."""

from __future__ import annotations

from typing import Any

import pytest

from orchestration.pipeline.expr import (
    MAX_DEPTH,
    Condition,
    ExprError,
    Ref,
    has_refs,
    lookup,
    parse,
    refs,
    render,
    walk_type,
)
from orchestration.pipeline.registry import OPS

# What earlier steps returned, as a cycle records them (JSON values).
OUTPUTS: dict[str, Any] = {
    "tests": {"ok": True, "exit_code": 0, "stdout": "3 passed", "stderr": "", "duration_s": 1.5},
    "failed": {"ok": False, "exit_code": 1},
    "run": {"cost_usd": 0.42, "num_turns": 7, "files_changed": ["a.py", "b.py"], "branch": None, "reason": None},
    "decision": {"title": "Fix it", "agent": "codex", "task": "fix the bug", "fallback_reason": None},
    "insights": {"providers": {"claude-code": {"sessions": 3}, "codex": {"sessions": 0}}, "goals": []},
    "pr": None,
    "obj": {"k": [1, "v"], "n": None},
    "nums": [1, 2],
    "zero": 0,
    "empty": "",
}


def resolve(ref: Ref) -> Any:
    return lookup(OUTPUTS.get(ref.root), ref.path)


def only_refs(text: str) -> list[Ref]:
    return [p for p in parse(text) if isinstance(p, Ref)]


# -- parse --------------------------------------------------------------------------------------------


def test_parse_text_without_references() -> None:
    assert parse("plain text") == ["plain text"]
    assert parse("") == []
    assert parse("cost: $5 and a lone $") == ["cost: $5 and a lone $"]
    assert parse("braces { } and }{ alone") == ["braces { } and }{ alone"]


def test_parse_a_string_that_is_exactly_one_reference_is_that_reference_alone() -> None:
    # The typed-whole-value rule rests on this: one part, the reference, no empty text around it.
    assert parse("${tests.ok}") == [Ref("tests", ("ok",))]
    assert parse("${date}") == [Ref("date", ())]


def test_parse_text_and_references_in_order() -> None:
    assert parse("x ${a.b} y ${c}") == ["x ", Ref("a", ("b",)), " y ", Ref("c", ())]
    assert only_refs("${a}${b}") == [Ref("a", ()), Ref("b", ())]
    assert "".join(p for p in parse("${a}-${b}") if isinstance(p, str)) == "-"


def test_parse_hyphenated_keys_and_list_indexes() -> None:
    assert only_refs("${insights.providers.claude-code.sessions}") == [
        Ref("insights", ("providers", "claude-code", "sessions"))
    ]
    assert only_refs("${run.files_changed.0}") == [Ref("run", ("files_changed", "0"))]
    assert only_refs("${my-step_2.a_b.C-9}") == [Ref("my-step_2", ("a_b", "C-9"))]


def test_ref_text_round_trips() -> None:
    ref = only_refs("${insights.providers.claude-code.sessions}")[0]
    assert ref.text == "${insights.providers.claude-code.sessions}"
    assert Ref("date", ()).text == "${date}"


def test_escape_writes_a_literal_dollar_brace() -> None:
    assert parse("$${x}") == ["${x}"]
    assert parse("cost $${not.a.ref} here") == ["cost ${not.a.ref} here"]
    assert parse("$${") == ["${"]


def test_escape_next_to_a_real_reference() -> None:
    assert parse("$${x}${a}") == ["${x}", Ref("a", ())]
    assert parse("${a}$${x}") == [Ref("a", ()), "${x}"]
    assert parse("pre $${x} ${a.b} $${y} post") == ["pre ${x} ", Ref("a", ("b",)), " ${y} post"]


@pytest.mark.parametrize("text", ["${", "x ${a.b", "${a.b", "before ${ after", "$${ok} ${bad"])
def test_unterminated_reference_is_an_error(text: str) -> None:
    with pytest.raises(ExprError, match="unterminated"):
        parse(text)


def test_empty_reference_is_an_error() -> None:
    with pytest.raises(ExprError, match="empty reference"):
        parse("${}")
    with pytest.raises(ExprError, match="empty reference"):
        parse("x ${} y")


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("${a..b}", "''"),
        ("${a.}", "''"),
        ("${a.b c}", "'b c'"),
        ("${a.b/c}", "'b/c'"),
        ("${a.é}", "'é'"),
        ("${a.b[0]}", "'b[0]'"),
        ("${a.b:c}", "'b:c'"),
    ],
)
def test_bad_segment_characters_are_errors_naming_the_segment(text: str, bad: str) -> None:
    with pytest.raises(ExprError) as exc:
        parse(text)
    assert bad in str(exc.value)
    assert "not a path segment" in str(exc.value)


@pytest.mark.parametrize("text", ["${.a}", "${1a}", "${-a}", "${ a}", "${a b}", "${$a}"])
def test_bad_root_names_are_errors(text: str) -> None:
    with pytest.raises(ExprError, match="starts with a name"):
        parse(text)


# -- refs / has_refs ------------------------------------------------------------------------------------


def test_refs_in_nested_lists_and_objects_with_json_paths() -> None:
    value = {
        "url": "https://h/${cycle.id}",
        "json": {"a-b": ["${x}", {"k": "t ${y.z} ${w}"}], "n": 3, "flag": True, "none": None},
        "plain": "no refs $${here}",
    }
    assert list(refs(value)) == [
        ("url", Ref("cycle", ("id",))),
        ("json.a-b[0]", Ref("x", ())),
        ("json.a-b[1].k", Ref("y", ("z",))),
        ("json.a-b[1].k", Ref("w", ())),
    ]
    assert list(refs(["${a}", ["${b}"]])) == [("[0]", Ref("a", ())), ("[1][0]", Ref("b", ()))]


def test_has_refs() -> None:
    assert has_refs("${a}")
    assert has_refs({"x": [1, {"y": "z ${a.b}"}]})
    assert not has_refs("$${a}")
    assert not has_refs({"x": [1, None, True, "plain"]})
    assert not has_refs(42)


def test_refs_too_deep_is_an_error() -> None:
    deep: Any = "${a}"
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ExprError, match="nested more than"):
        list(refs(deep))


def test_refs_raises_expr_error_for_a_bad_string() -> None:
    with pytest.raises(ExprError):
        list(refs({"a": ["ok ${b}", "bad ${c"]}))


# -- lookup ---------------------------------------------------------------------------------------------


def test_lookup_fields_and_indexes() -> None:
    assert lookup(OUTPUTS["tests"], ("ok",)) is True
    assert lookup(OUTPUTS["run"], ("files_changed", "0")) == "a.py"
    assert lookup(OUTPUTS["run"], ("files_changed", "1")) == "b.py"
    assert lookup(OUTPUTS["insights"], ("providers", "claude-code", "sessions")) == 3
    assert lookup(OUTPUTS["run"], ()) is OUTPUTS["run"]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (["a", "b"], ("2",)),  # index out of range
        (["a", "b"], ("99999999999999999999",)),
        (["a", "b"], ("x",)),  # not an index
        (["a", "b"], ("-1",)),  # no negative indexes
        ({"a": 1}, ("b",)),  # missing key
        ({"a": None}, ("a", "b", "c")),  # through a null
        ({"a": 1}, ("a", "b")),  # through a number
        ({"a": "text"}, ("a", "0")),  # a string is not a list
        ({"a": True}, ("a", "x")),
        (None, ("a",)),
        (None, ()),
    ],
)
def test_lookup_yields_null_never_an_error(value: Any, path: tuple[str, ...]) -> None:
    assert lookup(value, path) is None


# -- render: typed whole values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${tests.ok}", True),
        ("${failed.ok}", False),
        ("${run.cost_usd}", 0.42),
        ("${run.num_turns}", 7),
        ("${zero}", 0),
        ("${obj}", {"k": [1, "v"], "n": None}),
        ("${run.files_changed}", ["a.py", "b.py"]),
        ("${run.files_changed.1}", "b.py"),
        ("${decision.title}", "Fix it"),
    ],
)
def test_a_string_that_is_exactly_one_reference_keeps_the_type(text: str, expected: Any) -> None:
    got = render(text, resolve)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        "${pr}",
        "${pr.url}",
        "${run.branch}",
        "${decision.fallback_reason}",
        "${decision.nope}",
        "${run.files_changed.5}",
    ],
)
def test_a_whole_null_stays_null(text: str) -> None:
    assert render(text, resolve) is None


def test_a_null_through_a_missing_field_in_a_whole_value() -> None:
    assert render("${run.missing.deeper.still}", resolve) is None
    assert render("${nobody.at.all}", resolve) is None


# -- render: inside text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok=${tests.ok}", "ok=true"),
        ("ok=${failed.ok}", "ok=false"),
        ("pr: ${pr.url}!", "pr: !"),  # null as empty text
        ("[${run.branch}]", "[]"),
        ("obj=${obj}", 'obj={"k":[1,"v"],"n":null}'),  # compact JSON
        ("files=${run.files_changed}", 'files=["a.py","b.py"]'),
        ("cost ${run.cost_usd} usd", "cost 0.42 usd"),
        ("turns ${run.num_turns}", "turns 7"),
        ("zero ${zero}", "zero 0"),
        ("title: ${decision.title}", "title: Fix it"),  # strings as they are, no quotes
        ("${decision.agent}/${decision.title}", "codex/Fix it"),
        (" ${tests.ok}", " true"),  # not exactly one expression: text
        ("${tests.ok} ", "true "),
        ("${tests.ok}${failed.ok}", "truefalse"),
        ("n=${insights.providers.claude-code.sessions}", "n=3"),
        ("first=${run.files_changed.0}", "first=a.py"),
        ("oob=${run.files_changed.7}.", "oob=."),
        ("empty=${empty}.", "empty=."),
    ],
)
def test_rendering_inside_text(text: str, expected: str) -> None:
    assert render(text, resolve) == expected


def test_render_escape() -> None:
    assert render("$${x}", resolve) == "${x}"
    assert render("$${tests.ok}", resolve) == "${tests.ok}"
    assert render("$${x} ${tests.ok}", resolve) == "${x} true"
    assert render("${tests.ok}$${x}", resolve) == "true${x}"
    assert render("$${x}${decision.title}", resolve) == "${x}Fix it"


def test_render_nested_lists_and_objects() -> None:
    value = {
        "cycle": "${tests.ok}",
        "list": ["${run.cost_usd}", "n=${run.num_turns}", ["${pr.url}", "$${lit}"]],
        "obj": {"deep": {"x": "${obj}", "t": "v=${obj.k}"}},
        "plain": 3,
        "none": None,
        "bool": False,
        "text": "no refs",
    }
    assert render(value, resolve) == {
        "cycle": True,
        "list": [0.42, "n=7", [None, "${lit}"]],
        "obj": {"deep": {"x": {"k": [1, "v"], "n": None}, "t": 'v=[1,"v"]'}},
        "plain": 3,
        "none": None,
        "bool": False,
        "text": "no refs",
    }


def test_render_does_not_change_its_input() -> None:
    value = {"a": ["${tests.ok}", {"b": "x ${run.num_turns}"}]}
    before = {"a": ["${tests.ok}", {"b": "x ${run.num_turns}"}]}
    out = render(value, resolve)
    assert value == before
    assert out is not value
    assert out["a"] is not value["a"]


@pytest.mark.parametrize("value", [5, 1.5, None, True, False])
def test_render_passes_non_strings_through(value: Any) -> None:
    assert render(value, resolve) is value


def test_render_raises_expr_error_for_bad_strings_anywhere() -> None:
    for bad in ["${", {"a": ["ok", "${}"]}, ["${a.b c}"]]:
        with pytest.raises(ExprError):
            render(bad, resolve)


def test_render_too_deep_is_an_expr_error() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 2):
        deep = {"k": deep}
    with pytest.raises(ExprError, match="nested more than"):
        render(deep, resolve)


def test_render_calls_resolve_with_the_parsed_reference() -> None:
    seen: list[Ref] = []

    def spy(ref: Ref) -> Any:
        seen.append(ref)
        return "v"

    assert render("a ${x.y-z.0} b ${w}", spy) == "a v b v"
    assert seen == [Ref("x", ("y-z", "0")), Ref("w", ())]


def test_render_a_number_beyond_64_bits_inside_text() -> None:
    # A number is rendered as JSON: a big integer is still a JSON number (Python's json writes it).
    # "render never raises anything but ExprError".
    assert render("n=${a}", lambda _ref: 2**64) == "n=18446744073709551616"


# -- Condition ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref", "negate"),
    [
        ("${tests.ok}", Ref("tests", ("ok",)), False),
        ("not ${tests.ok}", Ref("tests", ("ok",)), True),
        ("  ${tests.ok}  ", Ref("tests", ("ok",)), False),
        ("  not    ${tests.ok} ", Ref("tests", ("ok",)), True),
        ("\tnot\n${a}\n", Ref("a", ()), True),
        (
            "${insights.providers.claude-code.sessions}",
            Ref("insights", ("providers", "claude-code", "sessions")),
            False,
        ),
        ("not ${run.files_changed.0}", Ref("run", ("files_changed", "0")), True),
    ],
)
def test_condition_parse(text: str, ref: Ref, negate: bool) -> None:
    assert Condition.parse(text) == Condition(ref, negate)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tests.ok",
        "not",
        "${a} ${b}",
        "${a} and ${b}",
        "not ${a} ${b}",
        "${a} x",
        "x ${a}",
        "not${a}",
        "NOT ${a}",
        "not not ${a}",
        "!${a}",
        "$${a}",
        "${a}}",
        "{${a}}",
    ],
)
def test_condition_rejects_anything_but_one_expression(text: str) -> None:
    with pytest.raises(ExprError, match="expected one expression"):
        Condition.parse(text)


@pytest.mark.parametrize("text", ["${}", "not ${}", "${a.b c}", "${a..b}", "${1a}"])
def test_condition_with_a_bad_reference_is_an_expr_error(text: str) -> None:
    with pytest.raises(ExprError):
        Condition.parse(text)


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("${tests.ok}", True),
        ("not ${tests.ok}", False),
        ("${failed.ok}", False),
        ("not ${failed.ok}", True),
        ("${pr.url}", False),  # null is false
        ("not ${pr.url}", True),
        ("${zero}", False),
        ("${empty}", False),
        ("${run.files_changed}", True),
        ("${insights.goals}", False),
        ("${nobody.at.all}", False),
    ],
)
def test_condition_holds(text: str, holds: bool) -> None:
    assert Condition.parse(text).holds(resolve) is holds


# -- walk_type on the real op Output models -------------------------------------------------------------


def out(op: str) -> Any:
    return OPS[op].Output


@pytest.mark.parametrize(
    ("op", "path"),
    [
        ("agent.execute", ("files_changed",)),
        ("agent.execute", ("files_changed", "0")),
        ("agent.execute", ("files_changed", "12")),
        ("agent.execute", ("cost_usd",)),
        ("agent.execute", ("branch",)),
        ("agent.execute", ()),
        ("session.analyze", ("providers", "claude-code", "sessions")),
        ("session.analyze", ("providers", "codex", "tokens")),
        ("session.analyze", ("files", "src/x.py")),
        ("session.analyze", ("goals", "0")),
        ("orchestrate.decide", ("title",)),
        ("orchestrate.decide", ("agent",)),
        ("orchestrate.decide", ("fallback_reason",)),
        ("shell.run", ("ok",)),
        ("shell.run", ("exit_code",)),
        ("pr.create", ("url",)),
        ("pr.create", ("number",)),
        ("http.notify", ("status_code",)),
        ("git.commit", ("sha",)),
        ("git.commit", ("files", "0")),
    ],
)
def test_walk_type_accepts_declared_paths(op: str, path: tuple[str, ...]) -> None:
    assert walk_type(out(op), path) is None


@pytest.mark.parametrize(
    ("op", "path", "words"),
    [
        ("agent.execute", ("files_changed", "x"), ["files_changed", "list", "'x'", "not an index"]),
        ("agent.execute", ("nope",), ["no field 'nope'", "files_changed"]),
        ("agent.execute", ("files_changed", "0", "x"), ["files_changed.0", "'x'"]),
        ("agent.execute", ("status", "x"), ["status", "'x'"]),
        ("session.analyze", ("providers", "claude-code", "nope"), ["providers.claude-code", "no field 'nope'"]),
        ("session.analyze", ("files", "a", "b"), ["files.a", "'b'"]),
        ("orchestrate.decide", ("titel",), ["no field 'titel'", "title"]),
        ("shell.run", ("ok", "x"), ["ok", "bool", "'x'"]),
        ("shell.run", ("okk",), ["no field 'okk'"]),
        ("pr.create", ("url", "host"), ["url", "'host'"]),
        ("http.notify", ("body",), ["no field 'body'"]),
        ("git.commit", ("files", "first"), ["files", "not an index"]),
    ],
)
def test_walk_type_rejects_paths_the_output_cannot_have(op: str, path: tuple[str, ...], words: list[str]) -> None:
    problem = walk_type(out(op), path)
    assert problem is not None
    for word in words:
        assert word in problem

"""Validation of a pipeline before anything runs: every problem of every step, each naming `pipeline[i]`,
the op and the JSON path of what is wrong.

Checked: unknown ops; unknown, missing and ill-typed `with` arguments (those without `${...}`; substituted
values are checked again when the step runs); duplicate `as`; references to names that are undefined,
defined later, or to fields the named step's output does not declare; `${env.NAME}` not in `env_allow`;
an `if` that is not one expression; and, given a config, the permissions each step needs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestration.pipeline.expr import MAX_DEPTH, Condition, ExprError, Ref, has_refs, parse, walk_type
from orchestration.pipeline.manifest import Step
from orchestration.pipeline.registry import OPS

if TYPE_CHECKING:
    from orchestration.config import WorkspaceConfig

# The built-in names and the fields below them.
BUILTINS: dict[str, set[tuple[str, ...]]] = {
    "cycle": {("id",), ("deadline",), ("status",), ("reason",)},
    "workspace": {("id",), ("repo",)},
    "date": {()},
}


def _near(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_steps(steps: list[Step], cfg: WorkspaceConfig | None = None) -> list[str]:
    """All problems of a pipeline; `cfg` None checks a bare manifest (no env names, no permissions)."""
    problems: list[str] = []
    names: dict[str, int] = {}
    later = {s.as_: i for i, s in reversed(list(enumerate(steps))) if s.as_}
    ops_before: list[str] = []
    for i, step in enumerate(steps):
        where = f"pipeline[{i}]"
        tag = f"({step.op})"
        op = OPS.get(step.op)
        if op is None:
            problems.append(f"{where}.op {tag}: unknown operation (known: {', '.join(OPS)}){_near(step.op, list(OPS))}")
        if step.as_ and step.as_ in names:
            problems.append(f"{where}.as {tag}: {step.as_!r} is already the name of pipeline[{names[step.as_]}]")
        # References, in `with` and in `if`; a malformed one is reported where it is and hides nothing else.
        found: list[tuple[str, Ref]] = []
        for path, text in _strings(step.with_, f"{where}.with", problems, tag):
            try:
                found += [(path, part) for part in parse(text) if isinstance(part, Ref)]
            except ExprError as exc:
                problems.append(f"{path} {tag}: {exc}")
        if step.if_ is not None:
            try:
                found.append((f"{where}.if", Condition.parse(step.if_).ref))
            except ExprError as exc:
                problems.append(f"{where}.if {tag}: {exc}")
        for path, ref in found:
            problem = _ref_problem(ref, i, steps, names, later, cfg)
            if problem:
                problems.append(f"{path} {tag}: {ref.text}: {problem}")
        if op is not None:
            arg_problems, bad_args = _arg_problems(op, step, where, tag)
            problems += arg_problems
            for arg, p in op.check(step.with_, ops_before, cfg):
                problems.append(f"{where}.with.{arg} {tag}: {p}" if arg else f"{where} {tag}: {p}")
            if cfg is not None:
                for arg, p in op.needs(step.with_, cfg, None):
                    if arg not in bad_args:  # a value its model refuses is said once
                        problems.append(f"{where}.with.{arg} {tag}: {p}" if arg else f"{where} {tag}: {p}")
        if step.as_ and step.as_ not in names:
            names[step.as_] = i
        ops_before.append(step.op)
    return problems


def _strings(value: Any, path: str, problems: list[str], tag: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """Every string in a `with` value, with its JSON path; too deep a nesting is a problem, not a crash."""
    if depth > MAX_DEPTH:
        problems.append(f"{path} {tag}: nested more than {MAX_DEPTH} levels deep")
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}", problems, tag, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]", problems, tag, depth + 1)


def _arg_problems(op: Any, step: Step, where: str, tag: str) -> tuple[list[str], set[str]]:
    """Unknown and missing arguments, and the literal ones (no `${...}`) checked against the op's model,
    its validators included; a value with a reference is checked once substituted, when the step runs."""
    fields = {info.alias or name: info for name, info in op.Args.model_fields.items()}
    out = []
    for key in step.with_:
        if key not in fields:
            known = ", ".join(fields) or "none"
            out.append(f"{where}.with.{key} {tag}: unknown argument (known: {known}){_near(key, list(fields))}")
    for name, info in fields.items():
        if name not in step.with_ and info.is_required():
            out.append(f"{where}.with.{name} {tag}: required argument is missing")
    literal = {k: v for k, v in step.with_.items() if k in fields and not has_refs(v)}
    bad: set[str] = set()
    try:
        op.Args.model_validate(literal, strict=True)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if not loc or loc[0] not in literal:
                continue  # missing (said above) or holding a reference
            bad.add(str(loc[0]))
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            msg = err["msg"].removeprefix("Value error, ")
            out.append(f"{where}.with{path} {tag}: {msg} (got {shown(err.get('input'))})")
    return out, bad


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _ref_problem(
    ref: Ref,
    index: int,
    steps: list[Step],
    names: dict[str, int],
    later: dict[str, int],
    cfg: WorkspaceConfig | None,
) -> str | None:
    if ref.root == "env":
        if len(ref.path) != 1:
            return "expected ${env.NAME}"
        if cfg is not None and ref.path[0] not in cfg.env_allow:
            return f"{ref.path[0]} is not listed in env_allow"
        return None
    if ref.root in BUILTINS:
        allowed = BUILTINS[ref.root]
        if ref.path not in allowed:
            shown = ", ".join("${" + ".".join((ref.root, *p)) + "}" for p in sorted(allowed))
            return f"unknown built-in field (there are: {shown})"
        return None
    if ref.root not in names:
        if ref.root in later and later[ref.root] >= index:
            j = later[ref.root]
            if j == index:
                return f"refers to this step's own output ({ref.root!r})"
            return f"refers to {ref.root!r}, which is defined later (pipeline[{j}]); a step sees only earlier outputs"
        known = sorted(names) + sorted(BUILTINS) + ["env"]
        return f"no earlier step is named {ref.root!r} (names here: {', '.join(known)}){_near(ref.root, known)}"
    source = steps[names[ref.root]]
    op = OPS.get(source.op)
    if op is None:
        return None  # its own error says why
    problem = walk_type(op.Output, ref.path)
    if problem:
        return f"{ref.root} ({source.op}): {problem}"
    return None

"""Substitution: `${name.path}` references in step arguments, rendered from earlier steps' outputs.

- A string that is exactly one reference takes the referenced value with its type (`"${tests.ok}"` is a
  boolean, a null stays null); inside longer text the value is rendered (null as empty text, true/false,
  numbers as JSON, objects and lists as compact JSON).
- `$${` writes a literal `${`.
- A path segment is letters, digits, `_` or `-` (`${insights.providers.claude-code.sessions}`), or a list
  index (`${run.files_changed.0}`). A path through a null or a missing field yields null, never an error:
  whether a field can exist at all is checked before anything runs (`walk_type`).

Pure: no I/O. Every problem is an `ExprError` with a message that says what is wrong and where.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Union

import orjson
from pydantic import BaseModel

SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
CONDITION = re.compile(r"\s*(not\s+)?(\$\{[^{}]*\})\s*")
MAX_DEPTH = 32


class ExprError(ValueError):
    """A reference or condition that cannot be read."""


@dataclass(frozen=True)
class Ref:
    """`${root.seg.seg}`: the name it starts from and the path below it."""

    root: str
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return "${" + ".".join((self.root, *self.path)) + "}"


def parse_ref(body: str) -> Ref:
    """The inside of `${...}`."""
    if not body:
        raise ExprError("empty reference ${}")
    parts = body.split(".")
    if not ROOT.fullmatch(parts[0]):
        raise ExprError(f"${{{body}}}: a reference starts with a name (letters, digits, '_' or '-')")
    for seg in parts[1:]:
        if not SEGMENT.fullmatch(seg):
            raise ExprError(
                f"${{{body}}}: {seg!r} is not a path segment (letters, digits, '_' or '-', or a list index)"
            )
    return Ref(parts[0], tuple(parts[1:]))


def parse(text: str) -> list[str | Ref]:
    """Literal text and references, in order; `$${` is a literal `${`."""
    parts: list[str | Ref] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:j])
        if text.startswith("$${", j):
            literal.append("${")
            i = j + 3
        elif text.startswith("${", j):
            end = text.find("}", j + 2)
            if end < 0:
                raise ExprError(f"unterminated reference in {text[j : j + 40]!r} (write $${{ for a literal ${{)")
            if "".join(literal):
                parts.append("".join(literal))
            literal = []
            parts.append(parse_ref(text[j + 2 : end]))
            i = end + 1
        else:
            literal.append("$")
            i = j + 1
    if literal and "".join(literal):
        parts.append("".join(literal))
    return parts


def refs(value: Any, where: str = "", depth: int = 0) -> Iterator[tuple[str, Ref]]:
    """Every reference in a value (strings in nested lists and objects too), with its JSON path."""
    if depth > MAX_DEPTH:
        raise ExprError(f"{where or '(value)'}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        for part in parse(value):
            if isinstance(part, Ref):
                yield where, part
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from refs(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from refs(item, f"{where}[{i}]", depth + 1)


def has_refs(value: Any) -> bool:
    """Whether a value holds a reference; a malformed one counts (validation reports it where it is)."""
    try:
        return next(refs(value), None) is not None
    except ExprError:
        return True


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`; null through a null, a missing key or an index out of range."""
    for seg in path:
        if isinstance(value, dict):
            value = value.get(seg)
        elif isinstance(value, list) and seg.isascii() and seg.isdigit() and int(seg) < len(value):
            value = value[int(seg)]
        else:
            return None
    return value


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson cannot write (integers beyond 64 bits): the standard library can
        return json.dumps(value, default=str, separators=(",", ":"))


def render(value: Any, resolve: Callable[[Ref], Any], depth: int = 0) -> Any:
    """`value` with every reference replaced (a deep copy; the input is not changed)."""
    if depth > MAX_DEPTH:
        raise ExprError(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        parts = parse(value)
        if len(parts) == 1 and isinstance(parts[0], Ref):
            return resolve(parts[0])
        return "".join(p if isinstance(p, str) else as_text(resolve(p)) for p in parts)
    if isinstance(value, dict):
        return {k: render(v, resolve, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, resolve, depth + 1) for v in value]
    return value


@dataclass(frozen=True)
class Condition:
    """A step's `if`: one reference, maybe negated."""

    ref: Ref
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> Condition:
        m = CONDITION.fullmatch(text)
        if not m:
            raise ExprError(f'{text!r}: expected one expression, "${{name.field}}" or "not ${{name.field}}"')
        return cls(parse_ref(m.group(2)[2:-1]), bool(m.group(1)))

    def holds(self, resolve: Callable[[Ref], Any]) -> bool:
        return bool(resolve(self.ref)) != self.negate


# -- static checks of paths against declared types ------------------------------------------------------


def walk_type(tp: Any, path: tuple[str, ...]) -> str | None:
    """Why `path` cannot exist in a value of type `tp` (a pydantic model, a typing annotation), or None.

    Used before anything runs: `${decision.titel}` is an error, `${run.files_changed.0}` is not.
    """
    for i, seg in enumerate(path):
        where = ".".join(path[:i]) or "the output"
        tp = _strip_optional(tp)
        if tp is Any or tp is object:
            return None
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = tp.model_fields
            if seg not in fields:
                known = ", ".join(sorted(fields)[:20])
                return f"{where} has no field {seg!r} (it has: {known})"
            tp = fields[seg].annotation
        elif origin is dict or tp is dict:
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        elif origin in (list, tuple) or tp in (list, tuple):
            if not seg.isdigit():
                return f"{where} is a list: {seg!r} is not an index (write .0, .1, ...)"
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        else:
            name = getattr(tp, "__name__", str(tp))
            return f"{where} is a {name}: it has no field {seg!r}"
    return None


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0]
        return Any  # a real union: anything its members have may be there
    if origin is typing.Literal:
        return type(typing.get_args(tp)[0])
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(tp)[0])
    return tp

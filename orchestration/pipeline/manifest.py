"""The shape of a pipeline: steps and manifest files, as pydantic models.

Only the structure lives here (what `op`, `with`, `as`, `if` and `timeout_s` are), so that the config layer
can read an inline `pipeline` or a manifest file without knowing the operations. What an operation accepts
and returns, and whether the references between steps hold, is checked one layer up
(`orchestration.pipeline.check`), where the registry of operations is known.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from orchestration.config import WorkspaceConfig

# Names a step's `as` may not take: the built-in roots of substitution.
RESERVED_NAMES = frozenset({"cycle", "workspace", "date", "env"})
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
OP_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
# Semantic versioning 2.0.0 (https://semver.org), the regular expression the standard suggests.
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
MAX_STEPS = 50


class Step(BaseModel):
    """One step: an operation, its arguments, the name of its output, and when it runs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    op: str = Field(description="the operation, e.g. shell.run")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="the operation's arguments; strings may hold ${name.path}"
    )
    as_: str | None = Field(default=None, alias="as", description="a name for this step's output, unique")
    if_: str | None = Field(default=None, alias="if", description='one expression: "${tests.ok}" or "not ${tests.ok}"')
    timeout_s: int | None = Field(
        default=None, gt=0, description="this step's own limit, never beyond what is left of the cycle budget"
    )

    @field_validator("op")
    @classmethod
    def _op(cls, v: str) -> str:
        if not OP_NAME.fullmatch(v):
            raise ValueError("expected an operation name such as shell.run")
        return v

    @field_validator("as_")
    @classmethod
    def _as(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not NAME.fullmatch(v):
            raise ValueError("expected a name of letters, digits, '_' or '-', starting with a letter or '_'")
        if v in RESERVED_NAMES:
            raise ValueError(f"{v!r} is a built-in name ({', '.join(sorted(RESERVED_NAMES))})")
        return v

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True) | {"op": self.op}


Steps = list[Step]


def check_count(v: list[Step]) -> list[Step]:
    if not v:
        raise ValueError("a pipeline needs at least one step")
    if len(v) > MAX_STEPS:
        raise ValueError(f"at most {MAX_STEPS} steps")
    return v


class Manifest(BaseModel):
    """A pipeline manifest file: its steps and what they are for."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    schema_: str | None = Field(default=None, alias="$schema", description="a JSON Schema for editors; ignored")
    id: str = Field(default="pipeline", description="a short name, e.g. fix-then-test")
    version: str = Field(default="1.0.0", description="semantic version of the manifest, e.g. 1.2.0")
    title: str = ""
    description: str = ""
    pipeline: list[Step] = Field(description="the steps, run in order")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v):
            raise ValueError("expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not SEMVER.fullmatch(v):
            raise ValueError("expected a semantic version such as 1.0.0")
        return v

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, v: list[Step]) -> list[Step]:
        return check_count(v)


def is_bare_manifest(data: Any) -> bool:
    """A file with `pipeline` and no `workspace`: a manifest, not a workspace config."""
    return isinstance(data, dict) and "pipeline" in data and "workspace" not in data


# The default pipeline: analyze, decide, execute, publish, as a manifest like any other.
DEFAULT_STEPS: list[dict[str, Any]] = [
    {"op": "session.analyze", "as": "insights"},
    {"op": "orchestrate.decide", "as": "decision"},
    {"op": "agent.execute", "as": "run"},
    {"op": "pr.create", "as": "pr"},
]


def default_steps() -> list[Step]:
    return [Step.model_validate(s) for s in DEFAULT_STEPS]


def steps_of(cfg: WorkspaceConfig) -> list[Step]:
    """The config's pipeline, or the default one (a manifest file was put inline when the config loaded)."""
    if isinstance(cfg.pipeline, list):
        return cfg.pipeline
    return default_steps()

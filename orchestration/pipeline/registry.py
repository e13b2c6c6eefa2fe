"""The registry of pipeline operations: the only list of what a step's `op` may name.

Validation, `orchestrate plan`, `orchestrate schema`, the Celery tasks (`orchestrate.op.<op>`) and
`run --local` all read `OPS`. Each operation is one class in a module under orchestration/pipeline/ops/,
registered with `@register` at import time; reading the registry first imports every such module.

An operation declares:

- `name` (the `op`), `stage` (what its events carry as `stage`), a one-line `summary`;
- `Args`, the pydantic model of its `with` (unknown arguments are errors), and `Output`, the model of what
  it returns: later steps may reference exactly these fields;
- `worktree`: it reads or writes the cycle's worktree (it runs on the host that holds it);
- `always`: it also runs for a cycle that has already ended failed, timed out or cancelled (pr.create: the
  work is pushed either way; http.notify: the webhook hears how it ended); never for a skipped cycle;
- `in_dry_run`: it runs in a dry run (`run --dry-run` only analyzes and decides: nothing else runs);
- `needs(args, cfg)`: the permissions it would use, checked against the config before anything runs
  (with the raw, unsubstituted arguments) and again at run time on the substituted ones;
- `limit_s(args, cfg)`: Celery's soft time limit for its task (the op's own timeouts come first);
- `run(step, args)`: does the work and returns an `Output`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from orchestration.config import WorkspaceConfig
    from orchestration.models import CycleContext
    from orchestration.pipeline.manifest import Step
    from orchestration.policy import HostPolicy
    from orchestration.services import Services


class Args(BaseModel):
    """Base of every operation's argument model: unknown arguments are errors."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


A = TypeVar("A", bound=Args)
Out = TypeVar("Out", bound=BaseModel)


class StepFailed(Exception):
    """The step could not do its work (the cycle ends failed / step_failed, its work kept). `output`, when
    given, is still recorded: a later step that runs anyway (http.notify) can read what happened."""

    def __init__(self, message: str, output: BaseModel | None = None) -> None:
        super().__init__(message)
        self.output = output


class StepHandOff(Exception):
    """The step must run again elsewhere: on `queue` (the fallback agent's), with the context as it stands.
    The Celery layer sends it there; `run --local` runs it again in this process."""

    def __init__(self, queue: str, message: str) -> None:
        super().__init__(message)
        self.queue = queue


class StepDenied(Exception):
    """The step's substituted arguments need what the config or this host does not grant (the cycle ends
    failed / policy_denied, its work kept)."""


@dataclass
class StepRun:
    """What an operation's `run` gets: the cycle, its services and config, which step this is, its deadline
    (the step's own `timeout_s` within the cycle's), and an `emit` that tags events with the step."""

    ctx: CycleContext
    svc: Services
    cfg: WorkspaceConfig
    index: int
    step: Step
    deadline: float
    emit: Callable[[str, dict[str, Any]], None]


class Operation(Generic[A, Out]):
    name: ClassVar[str]
    stage: ClassVar[str]
    summary: ClassVar[str] = ""
    Args: ClassVar[type[Args]]
    Output: ClassVar[type[BaseModel]]
    worktree: ClassVar[bool] = False
    always: ClassVar[bool] = False
    in_dry_run: ClassVar[bool] = False  # runs in `run --dry-run` (which only looks and decides)
    # Celery's soft limit for steps that do not say otherwise (seconds; clipped to the cycle budget).
    default_limit_s: ClassVar[int] = 300

    def needs(self, args: dict[str, Any], cfg: WorkspaceConfig, policy: HostPolicy | None) -> list[tuple[str, str]]:
        """What the arguments would use that the config (and, given `policy`, this host's ORCH_ALLOW) does
        not grant, as (argument or "", message naming the missing permission). Before the run `with` may
        still hold `${...}`: check what is literal; at run time every value is substituted."""
        return []

    def check(self, args: dict[str, Any], before: list[str], cfg: WorkspaceConfig | None) -> list[tuple[str, str]]:
        """Problems that depend on the steps before this one (`before`: their ops) or on the config, as
        (argument or "", message)."""
        return []

    def uses(self, args: dict[str, Any], cfg: WorkspaceConfig | None) -> list[str]:
        """The permissions it uses, for `orchestrate plan`."""
        return []

    def limit_s(self, step: Step, cfg: WorkspaceConfig) -> int:
        own = step.timeout_s or self.default_limit_s
        return max(1, min(own, cfg.budget.cycle_s))

    def run(self, step: StepRun, args: A) -> Out:
        raise NotImplementedError


class Registry(Mapping[str, Operation[Any, Any]]):
    """op name → operation; reading it first imports every module of orchestration/pipeline/ops/."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation[Any, Any]] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module("orchestration.pipeline.ops")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{info.name}")

    def __getitem__(self, name: str) -> Operation[Any, Any]:
        self._load()
        return self._ops[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._ops, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)))

    def __len__(self) -> int:
        self._load()
        return len(self._ops)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._ops


# The order `plan`, `schema` and the README list them in: the order a cycle usually runs them.
ORDER = (
    "session.analyze",
    "orchestrate.decide",
    "agent.execute",
    "shell.run",
    "git.commit",
    "pr.create",
    "http.notify",
)

OPS = Registry()

T = TypeVar("T", bound=type[Operation[Any, Any]])


def register(cls: T) -> T:
    """Class decorator: adds one instance of the operation to `OPS`."""
    if cls.name in OPS._ops:
        raise ValueError(f"operation {cls.name!r} is registered twice")
    OPS._ops[cls.name] = cls()
    return cls

"""The agent registry: everything Orchestrate knows about one agent CLI, in one `AgentSpec` per agent.

The runner, the decision, the worker's queues, the host policy and the session analyzer all look agents up
here (`AGENTS`); none of them names an agent. The config layer below keeps only what a config file needs:
the agents' names and their config models (`AGENT_CONFIGS` in orchestration/config.py).

Adding an agent CLI takes two steps:

1. One entry in `AGENT_CONFIGS` (orchestration/config.py): its name and a config model, a subclass of
   `AgentConfigBase` (which brings `command`, `model` and `env`) that gives `command` a default (the
   program looked up on PATH) and adds the agent's own settings. The name is the JSON key of its section
   under `agents`, and what `agents.allow`, `agents.prefer`, events and reports call it; the section then
   validates like the others.
2. One new module under orchestration/agents/ that builds its `AgentSpec` and calls `register` at import
   time. Every public module of this package is imported the first time the registry is read, so nothing
   else lists the agents; a name in `AGENT_CONFIGS` that no module registers is an error at that moment.

The spec's fields:

- `name`: the agent's name, the same as its key in `AGENT_CONFIGS`.
- `config`: its config model (the class in `AGENT_CONFIGS`); `spec.section(cfg)` is a workspace config's
  section for this agent, typed as that model.
- `env`: the worker's environment variables the CLI gets on top of `BASE_ENV` (its endpoint, credential and
  settings variables), as an `EnvGrant`. Anything else reaches the agent only through `agents.<name>.env`.
- `argv`: `(command, cfg, prompt, worktree) -> argv`, the headless command line. `command` is already
  resolved to an executable. The prompt must come last, behind `--`, so that it is never read as a flag or
  a subcommand. The CLI must write one JSON event per line on stdout; stdin is closed, the working
  directory is the worktree.
- `stream`: `(RunContext) -> AgentStream`, the parser of that stdout. `feed` gets each line and answers
  with a `Verdict` (`FINAL` on the agent's last event, `STOP_COST` once `current_cost()` reaches
  `budget.max_cost_usd`); it fills the run's `RunTally` (success, session, tokens, files, summary) and
  emits the `agent.*` events. `poll` is called between lines, for usage read from elsewhere (Codex's
  rollout); return None when there is nothing to read.
- `sessions` (optional): a `SessionSource` telling the analyzer where the agent's own session files are and
  how to read one into `SessionStats`; the analyzer reports it under the agent's name. Its directory is a
  field of the `sessions` config, which a new agent adds to `Sessions` in orchestration/config.py. None:
  the analyzer does not read this agent's sessions.
- `bypass` (optional): `(section) -> (field, value) | None`, the setting of a section that turns the
  agent's own sandbox or permission checks off. A config using it needs `ORCH_ALLOW=bypass`.
- `shell` (optional): `(section) -> reason | None`, why a section lets the agent run shell commands;
  `orchestrate validate` warns when it does and ORCH_AGENT_USER is not set.

Derived: `queue` (`agent.<name>`, the Celery queue its execute stage goes to; `orchestrate worker` listens
on it when it finds `default_command`, the default of the config model's `command`, on PATH).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from orchestration.agents.base import Emit, EnvGrant, RunTally
from orchestration.agents.process import Verdict
from orchestration.config import AGENT_CONFIGS, AgentConfigBase, Sessions, WorkspaceConfig

if TYPE_CHECKING:
    from orchestration.sessions._common import SessionStats, Workspace

C = TypeVar("C", bound=AgentConfigBase)


class AgentStream(Protocol):
    """Reads one run's stdout, a line at a time, into the run's tally and the hub's events."""

    def feed(self, line: bytes) -> Verdict: ...
    def current_cost(self) -> float: ...
    def poll(self) -> Verdict | None: ...


@dataclass(frozen=True)
class RunContext:
    """What a stream parser is made from: the config, the worktree, the agent's own environment, where
    events go, and the tally it fills."""

    cfg: WorkspaceConfig
    worktree: Path
    env: dict[str, str]
    emit: Emit
    tally: RunTally


class SessionReader(Protocol):
    """Reads one session file into keyed SessionStats, resumably (the analyzer caches it between runs)."""

    st: SessionStats

    def read(self, ws: Workspace, start: int = 0, pos: list[int] | None = None) -> None: ...
    def result(self) -> SessionStats: ...


def _no_key(_path: str) -> str | None:
    return None


@dataclass(frozen=True)
class SessionSource:
    """Where an agent keeps its session files and how the analyzer reads them."""

    # the directory, from the `sessions` config
    directory: Callable[[Sessions], str]
    # (directory, skipped counter) -> every candidate file with its mtime
    find: Callable[[str, Counter[str]], list[tuple[str, float]]]
    # (path, mtime) -> a reader for that file
    reader: Callable[[str, float], SessionReader]
    # the session a file belongs to, from its path alone (None: cannot tell before parsing)
    path_key: Callable[[str], str | None] = _no_key
    # True: several files may make one session (Claude's subagents); False: a repeated session is a copy
    files_share_sessions: bool = False


def _never(_section: Any) -> None:
    return None


@dataclass(frozen=True)
class AgentSpec(Generic[C]):
    """One agent CLI; see the module docstring for what each field means."""

    name: str
    config: type[C]
    env: EnvGrant
    argv: Callable[[str, WorkspaceConfig, str, Path], list[str]]
    stream: Callable[[RunContext], AgentStream]
    sessions: SessionSource | None = None
    bypass: Callable[[C], tuple[str, str] | None] = _never
    shell: Callable[[C], str | None] = _never

    def __post_init__(self) -> None:
        default = self.config.model_fields["command"].default
        if not isinstance(default, str) or not default:
            raise ValueError(f"agent {self.name!r}: {self.config.__name__}.command needs a default program name")

    @property
    def queue(self) -> str:
        return queue_name(self.name)

    @property
    def default_command(self) -> str:
        return str(self.config.model_fields["command"].default)

    def section(self, cfg: WorkspaceConfig) -> C:
        """This agent's section of a workspace config."""
        section = cfg.agents.section(self.name)
        if not isinstance(section, self.config):
            raise TypeError(f"agents.{self.name} is a {type(section).__name__}, not a {self.config.__name__}")
        return section


def queue_name(agent: str) -> str:
    """The Celery queue of an agent's execute stage."""
    return f"agent.{agent}"


class Registry(MutableMapping[str, AgentSpec[Any]]):
    """Agent name → spec, in the order of AGENT_CONFIGS. Reading it first imports every public module of
    orchestration/agents (which is how the agent modules register themselves)."""

    def __init__(self) -> None:
        self._specs: dict[str, AgentSpec[Any]] = {}
        self._loaded = False
        self._loading = False

    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            package = importlib.import_module(__name__.rpartition(".")[0])
            for info in pkgutil.iter_modules(package.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package.__name__}.{info.name}")
        finally:
            self._loading = False
        for name, model in AGENT_CONFIGS.items():
            spec = self._specs.get(name)
            if spec is None:
                raise RuntimeError(f"agent {name!r} has a config model but no module under orchestration/agents/")
            if spec.config is not model:
                raise RuntimeError(f"agent {name!r}: its spec's config is not AGENT_CONFIGS[{name!r}]")
        order = [*AGENT_CONFIGS, *(name for name in self._specs if name not in AGENT_CONFIGS)]
        self._specs = {name: self._specs[name] for name in order}
        self._loaded = True

    def __getitem__(self, name: str) -> AgentSpec[Any]:
        self._load()
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"no agent named {name!r} (known: {', '.join(self._specs)})") from None

    def __setitem__(self, name: str, spec: AgentSpec[Any]) -> None:
        if name != spec.name:
            raise ValueError(f"the spec of {spec.name!r} registered as {name!r}")
        self._specs[name] = spec

    def __delitem__(self, name: str) -> None:
        del self._specs[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._specs))

    def __len__(self) -> int:
        self._load()
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._specs


AGENTS = Registry()


def register(spec: AgentSpec[C]) -> AgentSpec[C]:
    """Adds an agent's spec (its module calls this at import time); returns it."""
    if spec.name in AGENTS._specs and AGENTS._specs[spec.name] is not spec:
        raise ValueError(f"agent {spec.name!r} is registered twice")
    AGENTS[spec.name] = spec
    return spec

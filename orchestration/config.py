"""Workspace config: pydantic models, loading, and errors that name the JSON path."""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, cast

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
from orchestration.pipeline.manifest import Manifest, Step, check_count  # noqa: E402 - below config: structure only

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Variables an agent never receives, whatever a config says: the worker's GitHub credentials, Orchestrate's
# own settings, and the broker / result-backend / Redis URLs and passwords.
NEVER_FOR_AGENTS: frozenset[str] = frozenset(
    {
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "BROKER_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
    }
)
NEVER_FOR_AGENTS_PREFIXES: tuple[str, ...] = ("ORCH_", "CELERY_")


def never_for_agents(name: str) -> bool:
    """True for a variable an agent must never get (compared case-insensitively)."""
    upper = name.upper()
    return upper in NEVER_FOR_AGENTS or upper.startswith(NEVER_FOR_AGENTS_PREFIXES)


_REF_FORBIDDEN = frozenset("~^:?*[\\")


def ref_name_problem(name: str, *, prefix: bool = False) -> str | None:
    """Why git's check-ref-format would refuse `name` as a branch name, or None when it is fine.

    With `prefix`, `name` is the start of branch names (`pr.branch_prefix`): it may be empty or end with '/'.
    """
    if not name:
        return None if prefix else "must not be empty"
    if name.startswith("-"):
        return "must not start with '-' (git would read it as an option)"
    if " " in name or _CONTROL.search(name):
        return "must not contain spaces or control characters"
    bad = sorted(set(name) & _REF_FORBIDDEN)
    if bad:
        return f"must not contain {', '.join(repr(c) for c in bad)}"
    if ".." in name:
        return "must not contain '..'"
    if "@{" in name:
        return "must not contain '@{'"
    if name == "@":
        return "must not be '@' alone"
    if "//" in name or name.startswith("/"):
        return "must not start with '/' or contain '//'"
    if name.endswith("."):
        return "must not end with '.'"
    if name.endswith("/") and not prefix:
        return "must not end with '/'"
    for part in name.removesuffix("/").split("/"):
        if part.startswith("."):
            return f"no '/'-separated part may start with '.' ({part!r} does)"
        if part.endswith(".lock"):
            return f"no '/'-separated part may end with '.lock' ({part!r} does)"
    return None


def _ref_name(v: str) -> str:
    problem = ref_name_problem(v)
    if problem:
        raise ValueError(problem)
    return v


def _cli_arg(v: str) -> str:
    """A value passed to an agent CLI as one argument: never an option, never a line break."""
    if v.startswith("-"):
        raise ValueError("must not start with '-' (the CLI would read it as an option)")
    if _CONTROL.search(v):
        raise ValueError("must not contain control characters")
    return v


def _tool(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return _cli_arg(v)


def _command(v: str) -> str:
    _cli_arg(v)
    if not v or ("/" in v and not v.startswith("/")):
        raise ValueError("expected a program name found on PATH (no '/') or an absolute path")
    return v


def _env_name(v: str) -> str:
    if not ENV_NAME.fullmatch(v):
        raise ValueError("expected a variable name: letters, digits and '_', not starting with a digit")
    return v


def _agent_env_key(v: str) -> str:
    _env_name(v)
    if never_for_agents(v):
        raise ValueError(f"{v} is never passed to an agent (it would hand over the worker's credentials or settings)")
    return v


def _agent_env_value(v: str) -> str:
    for ref in ENV_REF.findall(v):
        if never_for_agents(ref):
            raise ValueError(
                f"${{env.{ref}}}: {ref} is never passed to an agent (it would hand over the worker's "
                "credentials or settings), even when listed in env_allow"
            )
    return v


def _label(v: str) -> str:
    if not v:
        raise ValueError("must not be empty")
    if len(v) > 100:
        raise ValueError(f"must be at most 100 characters, not {len(v)}")
    return _cli_arg(v)


# A GitHub login: letters, digits and single hyphens, at most 39; an app's bot account ends in `[bot]`.
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}(?:\[bot\])?")


def _login(v: str) -> str:
    if not LOGIN.fullmatch(v):
        raise ValueError("expected a GitHub login: letters, digits and single hyphens, at most 39 characters")
    return v


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def parse_network_entry(entry: str) -> tuple[str, int | None]:
    """`host` or `host:port` as (lower-cased host, port or None); raises ValueError saying what is wrong."""
    host, sep, port_text = entry.partition(":")
    port: int | None = None
    if sep:
        if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"the port must be a number from 1 to 65535, not {port_text!r}")
        port = int(port_text)
    if re.fullmatch(r"[0-9.]+", host):
        octets = host.split(".")
        if len(octets) != 4 or not all(o.isdigit() and int(o) <= 255 and o == str(int(o)) for o in octets):
            raise ValueError(f"{host!r} is not a valid IPv4 address")
    elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"expected host or host:port, the host made of letters, digits, '-' and '.', not {host!r}")
    return host.lower().rstrip("."), port


def _network_entry(v: str) -> str:
    parse_network_entry(v)
    return v


RefName = Annotated[str, AfterValidator(_ref_name)]
CliArg = Annotated[str, AfterValidator(_cli_arg)]
Tool = Annotated[str, AfterValidator(_tool)]
Command = Annotated[str, AfterValidator(_command)]
EnvName = Annotated[str, AfterValidator(_env_name)]
AgentEnv = dict[Annotated[str, AfterValidator(_agent_env_key)], Annotated[str, AfterValidator(_agent_env_value)]]
Label = Annotated[str, AfterValidator(_label)]
Login = Annotated[str, AfterValidator(_login)]
NetworkEntry = Annotated[str, AfterValidator(_network_entry)]


class Strict(BaseModel):
    # Built on first use, not at import: commands that read no config start faster.
    # Numbers are StrictInt / StrictFloat field by field: a config written by hand must not have `true` read as
    # 1 or "5" as 5, while a float field still takes an integer (5 for 5.0). Strings, lists and nested sections
    # keep the default (lax) mode, which callers building sections from Python values rely on.
    model_config = ConfigDict(extra="forbid", validate_default=True, defer_build=True)


class WorkspaceSection(Strict):
    repo: str = Field(min_length=1)
    base_branch: RefName = "main"
    remote: str = "origin"

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if v.startswith("-"):
            raise ValueError("must not start with '-' (git would read it as an option)")
        if _CONTROL.search(v):
            raise ValueError("must not contain control characters")
        helper = re.match(r"([A-Za-z0-9][A-Za-z0-9+.-]*)::", v)
        if helper:
            raise ValueError(f"the '{helper.group(1)}::' remote-helper form is refused (it can run commands)")
        if re.match(r"^([a-z][a-z0-9+.-]*://([^/@]*@)?|[^/:@]+@)-", v, re.IGNORECASE):
            raise ValueError("the host must not start with '-' (ssh would read it as an option)")
        return v

    @field_validator("remote")
    @classmethod
    def _remote(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise ValueError(
                "expected a git remote name: letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return _ref_name(v)

    @property
    def is_url(self) -> bool:
        return bool(re.match(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", self.repo))


class Window(Strict):
    start: str = "00:00"
    end: str = "23:59"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        # Exactly HH:MM (24-hour, local to schedule.timezone): compared as text, so no other shape is read.
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError(f"expected HH:MM (00:00 to 23:59), got {v!r}")
        return v


class Schedule(Strict):
    cron: str | None = None
    timezone: str = "UTC"
    window: Window | None = None
    # A random delay before a scheduled cycle starts, up to this many seconds (within the window and budget).
    jitter_s: StrictInt = Field(default=0, ge=0)
    # A fire missed while beat or the workers were down: `skip` it, or `catch_up` with one cycle at the next
    # chance inside the window (`run` is read as `catch_up`).
    on_missed: Literal["skip", "catch_up"] = "skip"

    @field_validator("on_missed", mode="before")
    @classmethod
    def _on_missed(cls, v: Any) -> Any:
        return "catch_up" if v == "run" else v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        # RecursionError: a key of hundreds of '/'-separated parts (zoneinfo imports one package per part)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, RecursionError):
            raise ValueError(f"unknown timezone {v!r}") from None
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from orchestration import schedule  # Celery's crontab parser: loaded only for a config with a cron

        problem = schedule.problem(v)
        if problem:
            raise ValueError(problem)
        return v


class Price(Strict):
    input_per_mtok: StrictFloat = Field(ge=0)
    output_per_mtok: StrictFloat = Field(ge=0)
    cached_per_mtok: StrictFloat = Field(default=0.0, ge=0)


class Budget(Strict):
    cycle_s: StrictInt = Field(default=1800, gt=0)
    max_turns: StrictInt = Field(default=40, gt=0)
    max_cost_usd: StrictFloat = Field(default=5.0, gt=0)
    daily_cost_usd: StrictFloat = Field(default=25.0, gt=0)
    idle_timeout_s: StrictInt = Field(default=300, gt=0)
    prices: dict[str, Price] = Field(default_factory=dict)


class AgentConfigBase(Strict):
    """What every agent's section under `agents` has. `command`: the CLI, a program name looked up on PATH
    or an absolute path; each agent's model gives it a default, which is also the name `orchestrate worker`
    looks for to tell whether the agent is installed. `model`: passed to the CLI when set. `env`: variables
    added to the agent's minimal environment (`${env.NAME}` reads a name listed in `env_allow`)."""

    command: Command
    model: CliArg | None = None
    env: AgentEnv = Field(default_factory=dict)


class ClaudeAgent(AgentConfigBase):
    command: Command = "claude"
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"] = "acceptEdits"
    allowed_tools: list[Tool] = Field(default_factory=list)
    disallowed_tools: list[Tool] = Field(default_factory=list)


class CodexAgent(AgentConfigBase):
    command: Command = "codex"
    sandbox: Literal["read-only", "workspace-write", "danger-full-access"] = "workspace-write"


# The agents this version knows, in order: each one's name (the JSON key of its section under `agents`, and
# what `agents.allow`, `agents.prefer`, `sessions.providers`, events, reports and the `agent.<name>` queue
# call it) and its config model. The first one is the default of `agents.prefer`. Everything else about an
# agent (command line, event parser, environment, session files) is in its module under
# orchestration/agents/, which registers it with orchestration.agents.registry.
AGENT_CONFIGS: dict[str, type[AgentConfigBase]] = {"claude-code": ClaudeAgent, "codex": CodexAgent}
AGENT_NAMES: tuple[str, ...] = tuple(AGENT_CONFIGS)

if TYPE_CHECKING:
    AgentName = str
else:
    AgentName = Literal[AGENT_NAMES]


def section_field(agent: str) -> str:
    """The attribute that holds an agent's section (`claude-code` → `claude_code`)."""
    return agent.replace("-", "_")


class AgentsBase(Strict):
    """`agents`: which agents a cycle may run, the one it prefers, and one section per agent. The model
    itself is made from a table of agents by `agents_model` (`Agents` from AGENT_CONFIGS)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True, defer_build=True)

    # the table this model was made from: agent name → config model
    configs: ClassVar[dict[str, type[AgentConfigBase]]] = {}

    # typed here, made to accept only the table's names by `agents_model`
    allow: list[str] = Field(default_factory=list)
    prefer: str = ""

    @model_validator(mode="after")
    def _prefer_allowed(self) -> AgentsBase:
        if self.prefer not in self.allow:
            raise ValueError(f"prefer {self.prefer!r} is not in allow {self.allow}")
        return self

    def section(self, agent: str) -> AgentConfigBase:
        """The config section of an agent; KeyError for a name this model has no section for."""
        value = getattr(self, section_field(agent), None) if agent in self.configs else None
        if not isinstance(value, AgentConfigBase):
            raise KeyError(f"no config section for agent {agent!r}")
        return value

    def command_for(self, agent: str) -> str:
        return self.section(agent).command

    def env_for(self, agent: str) -> dict[str, str]:
        return self.section(agent).env


def agents_model(configs: dict[str, type[AgentConfigBase]]) -> type[AgentsBase]:
    """The `agents` model for a table of agents: `allow` [all of them] and `prefer` [the first] accept only
    their names, and each agent's section is a field whose JSON key is the agent's name."""
    names = tuple(configs)
    name_type: Any = cast(Any, Literal)[names]
    fields: dict[str, Any] = {
        "allow": (list[name_type], Field(default_factory=lambda: list(names), min_length=1)),
        "prefer": (name_type, names[0]),
    }
    for name, section in configs.items():
        attr = section_field(name)
        fields[attr] = (section, Field(default_factory=section, alias=name if attr != name else None))
    model = create_model("Agents", __base__=AgentsBase, __module__=__name__, **fields)
    model.configs = dict(configs)
    return model


if TYPE_CHECKING:
    Agents = AgentsBase
else:
    Agents = agents_model(AGENT_CONFIGS)


class Sessions(Strict):
    providers: list[AgentName] = Field(default_factory=lambda: list(AGENT_NAMES))
    claude_dir: str = "~/.claude"
    codex_dir: str = "~/.codex"
    since_days: StrictInt = Field(default=14, gt=0)
    max_sessions: StrictInt = Field(default=200, gt=0)


class Focus(Strict):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class LLM(Strict):
    base_url: str = "http://localhost:11434/v1"
    model: str = "qwen2.5-coder:7b"
    api_key_env: EnvName = DEFAULT_API_KEY_ENV
    timeout_s: StrictFloat = Field(default=60, gt=0)


class DecisionConfig(Strict):
    backend: Literal["heuristic", "llm", "auto"] = "auto"
    min_confidence: StrictFloat = Field(default=0.5, ge=0, le=1)
    avoid_repeat_days: StrictInt = Field(default=7, ge=0)
    llm: LLM = Field(default_factory=LLM)


class PR(Strict):
    enabled: bool = True
    draft: bool = True
    branch_prefix: str = "agent/orchestration/"
    base: RefName | None = None
    repo: str | None = None
    labels: list[Label] = Field(default_factory=list)
    require_changes: bool = True
    open_on_failure: bool = False

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        part = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
        if v is not None and not re.fullmatch(rf"({part}/)?{part}/{part}", v):
            raise ValueError("expected OWNER/NAME or HOST/OWNER/NAME, each part starting with a letter or digit")
        return v

    @field_validator("branch_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        problem = ref_name_problem(v, prefix=True)
        if problem:
            raise ValueError(problem)
        return v


class Issues(Strict):
    """Open issues of the PR repository that carry `label` are task candidates. Only issues opened by
    `authors` (when empty: by accounts with write access to the repository) are read at all; their
    text is untrusted input, quoted to the agent as data."""

    enabled: bool = False
    label: Label = "orchestrate"
    authors: list[Login] = Field(default_factory=list)
    comment: bool = Field(default=True, description="one comment on the issue linking the PR")


class Permissions(Strict):
    write: list[str] = Field(default_factory=lambda: ["**"])
    deny_write: list[str] = Field(default_factory=lambda: [".github/**", ".gitmodules", ".gitattributes"])
    push: bool = True
    open_pr: bool = True
    # true, or the names of the programs shell.run may start (argv[0], found on PATH)
    shell: bool | list[str] = False
    # hosts an agent may reach, as "host" (any port) or "host:port"
    network: list[NetworkEntry] = Field(default_factory=list)

    @field_validator("shell", mode="before")
    @classmethod
    def _shell(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if not isinstance(v, list):
            raise ValueError("expected true, false or a list of program names")
        for i, name in enumerate(v):
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*", name):
                raise ValueError(
                    f"[{i}] {orjson.dumps(name).decode()}: expected a bare program name (letters, digits, '.', '_', "
                    "'+' or '-'; no '/' or spaces; not starting with '-' or '.')"
                )
        return v

    @field_validator("network", mode="before")
    @classmethod
    def _legacy_network(cls, v: Any) -> Any:
        if v is False:
            return []
        if v is True:
            raise ValueError('true is not accepted: list the hosts an agent may reach, e.g. ["api.example.com:443"]')
        return v


def slugify(text: str, max_len: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "workspace"


class WorkspaceConfig(Strict):
    id: str = ""
    workspace: WorkspaceSection
    schedule: Schedule = Field(default_factory=Schedule)
    budget: Budget = Field(default_factory=Budget)
    sessions: Sessions = Field(default_factory=Sessions)
    goals: list[str] = Field(default_factory=list)
    focus: Focus = Field(default_factory=Focus)
    agents: Agents = Field(default_factory=Agents)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    pr: PR = Field(default_factory=PR)
    permissions: Permissions = Field(default_factory=Permissions)
    issues: Issues = Field(default_factory=Issues)
    env_allow: list[EnvName] = Field(default_factory=list)
    pipeline: list[Step] | str | None = Field(
        default=None,
        description="null: the default pipeline; a list of steps; or a manifest file's path, relative to this file",
    )
    _manifest: Manifest | None = PrivateAttr(default=None)

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, v: list[Step] | str | None) -> list[Step] | str | None:
        if isinstance(v, str) and not v.strip():
            raise ValueError("expected the path of a manifest file, a list of steps, or null")
        return check_count(v) if isinstance(v, list) else v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v):
            raise ValueError("id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _derive(self) -> WorkspaceConfig:
        if not self.id:
            name = self.workspace.repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            self.id = slugify(name.removesuffix(".git"))
        problems = []
        for agent in self.agents.configs:
            for key, value in self.agents.env_for(agent).items():
                for ref in ENV_REF.findall(value):
                    if ref not in self.env_allow:
                        problems.append(
                            f"agents.{agent}.env.{key}: reads ${{env.{ref}}}, which is not listed in env_allow"
                        )
        key_env = self.decision.llm.api_key_env
        if key_env != DEFAULT_API_KEY_ENV and key_env not in self.env_allow:
            problems.append(
                f"decision.llm.api_key_env: {key_env} is not listed in env_allow (its value is sent to "
                f"decision.llm.base_url {self.decision.llm.base_url}); list it there if that is intended"
            )
        if problems:
            # One line per problem, each already starting with its JSON path (see format_validation_error).
            raise ValueError("\n".join(problems))
        return self

    @property
    def pr_base(self) -> str:
        return self.pr.base or self.workspace.base_branch

    def repo_path(self) -> Path:
        return Path(self.workspace.repo).expanduser()


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one readable line per problem, each with its JSON path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__("\n".join(f"{source}: {e}" for e in errors))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # a dict key was refused: the path already ends with that key
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # integers beyond 64 bits
        return repr(value)


_NUMBER_KINDS = {"int_type": "an integer", "float_type": "a number"}
_NUMERIC_TEXT = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in _NUMBER_KINDS:
            kind = _NUMBER_KINDS[err["type"]]
            if isinstance(value, bool):
                msg = f"expected {kind}, not a boolean"
            elif isinstance(value, str):
                hint = " (write the number without quotes)" if _NUMERIC_TEXT.fullmatch(value) else ""
                msg = f"expected {kind}, not a string{hint}"
            else:
                msg = f"expected {kind}"
        shown = "" if err["type"] in ("missing",) else f" (got {_json(value)[:80]})"
        if err["type"] == "extra_forbidden" or isinstance(value, dict):
            shown = ""
        if not loc and re.match(r"[\w.\[\]-]+: ", msg):
            lines.extend(msg.splitlines())  # whole-config checks name each path themselves
            continue
        lines.append(f"{_path(loc)}: {msg}{shown}")
    return lines


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> WorkspaceConfig:
    """A config from parsed JSON. A `pipeline` naming a manifest file is read (relative to `base_dir`, the
    config file's directory) and put inline, so that a cycle carries the steps it was started with."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(root): expected a JSON object, got {type(data).__name__}"])
    try:
        cfg = WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None
    if isinstance(cfg.pipeline, str):
        path = Path(cfg.pipeline).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            manifest = load_manifest(path)
        except ConfigError as exc:
            raise ConfigError(source, [f"pipeline: {exc.source}: {line}" for line in exc.errors]) from None
        cfg.pipeline = manifest.pipeline
        cfg._manifest = manifest
    return cfg


def read_json(path: Path) -> Any:
    """A JSON file's content; ConfigError (naming the file) when it is missing, unreadable or not JSON."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(str(path), [f"(root): invalid JSON: {exc}"]) from None


def parse_manifest(data: Any, source: str = "<manifest>") -> Manifest:
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(root): expected a JSON object, got {type(data).__name__}"])
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    return parse_manifest(read_json(p), str(p))


def load_config(path: str | Path) -> WorkspaceConfig:
    p = Path(path)
    return parse_config(read_json(p), str(p), base_dir=p.parent)


def load_config_dir(directory: str | Path) -> tuple[list[tuple[Path, WorkspaceConfig]], list[ConfigError]]:
    """Every *.json under the directory: the valid ones, and the errors of the others (never raises)."""
    good: list[tuple[Path, WorkspaceConfig]] = []
    bad: list[ConfigError] = []
    d = Path(directory)
    if not d.is_dir():
        return good, [ConfigError(str(d), ["config directory does not exist"])]
    seen: dict[str, Path] = {}
    for f in sorted(d.glob("*.json")):
        try:
            cfg = load_config(f)
        except ConfigError as exc:
            bad.append(exc)
            continue
        if cfg.id in seen:
            bad.append(ConfigError(str(f), [f"id: {cfg.id!r} is already used by {seen[cfg.id]}"]))
            continue
        seen[cfg.id] = f
        good.append((f, cfg))
    return good, bad


def expand_env(value: str, allowed: list[str], environ: dict[str, str]) -> str:
    """Substitute ${env.NAME} for names in env_allow; others were refused at validation."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return environ.get(name, "") if name in allowed else m.group(0)

    return ENV_REF.sub(sub, value)

"""Records that cross stage boundaries: cycle context, insights, decision, results, report, event.

Everything here is JSON-serializable (Celery uses the JSON serializer only) and validated on the way in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_ts(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime (naive ones are taken as UTC), else None: written by
    other programs (session files, gh, records), so anything unreadable is None, never an exception."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Model(BaseModel):
    # Built on first use, not at import: commands that never validate a record start faster.
    model_config = ConfigDict(extra="ignore", defer_build=True)


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def ended(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class Reason(StrEnum):
    """Why a cycle ended the way it did (every end but `succeeded` has one)."""

    LOCKED = "locked"
    OUTSIDE_WINDOW = "outside_window"
    DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
    NO_AGENT_AVAILABLE = "no_agent_available"
    NO_TASK = "no_task"
    AGENT_FAILED = "agent_failed"
    DEADLINE = "deadline"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    IDLE_TIMEOUT = "idle_timeout"
    COST_LIMIT = "cost_limit"
    STAGE_ERROR = "stage_error"
    POLICY_DENIED = "policy_denied"
    EXPIRED = "expired"  # a step's message expired in the queue before a worker took it
    STEP_FAILED = "step_failed"  # a pipeline step failed (shell.run with check, a step's own error)
    DRY_RUN = "dry_run"


class StopReason(StrEnum):
    """Why the supervisor stopped an agent process (None in a result: it ended by itself)."""

    DEADLINE = "deadline"
    IDLE_TIMEOUT = "idle_timeout"
    COST_LIMIT = "cost_limit"
    CANCELLED = "cancelled"
    NO_EXIT_AFTER_FINAL = "no_exit_after_final"
    SPAWN_FAILED = "spawn_failed"
    AGENT_NOT_FOUND = "agent_not_found"


class Tokens(Model):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


class Unfinished(Model):
    """A recent session that ended on a failure or an interruption: work someone may want finished."""

    provider: str
    session_id: str
    at: str | None = None
    reason: Literal["error", "interrupted"]
    failure: str | None = None  # the tool or command that failed last
    last_prompt: str = ""


class ProviderInsights(Model):
    sessions: int = 0
    turns: int = 0
    tool_calls: int = 0
    tokens: Tokens = Field(default_factory=Tokens)
    cost_usd: float | None = None
    skipped: dict[str, int] = Field(default_factory=dict)
    files: dict[str, int] = Field(default_factory=dict)
    tools: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict)
    goals: list[str] = Field(default_factory=list)
    first_at: str | None = None
    last_at: str | None = None
    interruptions: int = 0
    abandoned: int = 0  # sessions that ended on a failed tool call or command
    repeated_failures: dict[str, int] = Field(default_factory=dict)  # failed twice or more
    unfinished: list[Unfinished] = Field(default_factory=list)  # most recent first
    by_session: dict[str, Tokens] = Field(default_factory=dict)  # tokens per session with any usage


class SessionRef(Model):
    """One agent session, as evidence: which tool wrote it, its id, when it last did something."""

    provider: str
    session_id: str
    at: str | None = None


class Work(Model):
    """One piece of unfinished work in the session histories, its signals merged: a command that kept
    failing, the sessions it failed in, the request those sessions served, the files they read and edited,
    the last error output and where the agent left it. An interrupted request is one too."""

    kind: Literal["failing", "interrupted"]
    target: str | None = None  # what failed: the command as run (options dropped), with its directory
    command: str | None = None  # the last failing command in full (bounded)
    subjects: list[str] = Field(default_factory=list)  # the failing tests or files, from the command and output
    failures: int = 0  # failed runs of the target
    runs: int = 0  # all runs of the target
    abandoned: bool = False  # a session ended on this failure
    sessions: list[SessionRef] = Field(default_factory=list)  # most recent first
    first_at: str | None = None
    last_at: str | None = None
    request: str = ""  # the person's own words in the session the work served
    edited: list[str] = Field(default_factory=list)  # files the sessions edited, most often first
    read: list[str] = Field(default_factory=list)  # files they only read
    error: str = ""  # the end of the last failure's output
    last_message: str = ""  # what the agent said last in that session


class Insights(ProviderInsights):
    """What people did with their agents in this repository (the analyzer's output)."""

    providers: dict[str, ProviderInsights] = Field(default_factory=dict)
    work: list[Work] = Field(default_factory=list)  # unfinished work, most recent first
    fixed: list[str] = Field(default_factory=list)  # commands (as named in `failures`) that failed, then passed


class Evidence(Model):
    """One fact a decision rests on, numbered (`E1`, `E2`, ...) so that an LLM's answer can cite it and the
    PR can show it: a failing command, its error output, a request, the files involved, a session."""

    id: str = ""
    kind: Literal["failure", "error", "request", "files", "message", "goal", "backlog", "chore", "issue"]
    text: str
    sessions: list[SessionRef] = Field(default_factory=list)
    count: int | None = None


class Decision(Model):
    task: str
    title: str
    agent: str
    rationale: str
    confidence: float = Field(ge=0, le=1)
    source: Literal["llm", "heuristic"] = "heuristic"
    op_hash: str
    priority: int = 0
    estimated_s: int = 0
    fallback_reason: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)  # what the task was chosen on
    issue: int | None = None  # the tracker issue the task resolves (its PR says `Fixes #N`)
    source_errors: dict[str, str] = Field(default_factory=dict)  # sources skipped (e.g. issues: rate_limited)


class AgentTokens(Model):
    input: int = 0
    output: int = 0
    cached: int = 0


class AgentResult(Model):
    status: Literal["succeeded", "failed", "timed_out", "cancelled"] = "failed"
    exit_code: int | None = None
    session_id: str | None = None
    num_turns: int = 0
    cost_usd: float = 0.0
    tokens: AgentTokens = Field(default_factory=AgentTokens)
    files_changed: list[str] = Field(default_factory=list)
    summary: str = ""
    stop_reason: str | None = None
    commit: str | None = None
    events: int = 0  # events parsed from the agent's stream
    worked: bool = False  # the model answered at all (tokens used) or a tool was called
    fallback_from: str | None = None  # the agent that failed to start, when this run is the fallback
    fallback_reason: str | None = None


class PRResult(Model):
    status: Literal["created", "exists", "skipped", "failed"] = "skipped"
    url: str | None = None
    number: int | None = None
    draft: bool | None = None
    reason: str | None = None
    pushed: bool = False  # the branch reached the remote (internal: not in the published report)
    comment: str | None = None  # the issue comment linking the PR: posted, exists, or why not (internal)


class StepStatus(StrEnum):
    PENDING = "pending"  # not reached yet (reported as skipped once the cycle ends)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepReport(Model):
    """One pipeline step in the report: which op, its output's name, how it ended and how long it took."""

    model_config = ConfigDict(extra="ignore", defer_build=True, populate_by_name=True)

    op: str
    as_: str | None = Field(default=None, alias="as")
    status: StepStatus = StepStatus.PENDING
    duration_s: float | None = None
    reason: str | None = None


class Fallback(Model):
    """An agent step handed to the other agent after the first never got going."""

    step: int
    agent: str
    from_agent: str
    reason: str


class WorkerBeat(Model):
    """What a live worker says of itself every few seconds (expires when it stops saying it)."""

    host: str
    node: str = ""
    pid: int = 0
    queues: list[str] = Field(default_factory=list)
    at: float = 0.0
    # The broker's delivery tags of the messages it has taken and not acknowledged: what it is on or about to
    # start. A message of a live cycle that no live worker holds belongs to a dead one and is given back.
    held: list[str] = Field(default_factory=list)


class TaskRecord(Model):
    """One decided task in a workspace's history: what dedupe and the agent ranking read."""

    cycle_id: str = ""
    op_hash: str
    title: str = ""
    agent: str = ""
    status: str = ""
    at: float = 0.0


class CycleContext(Model):
    """Travels from stage to stage as the chain's argument; each stage adds its output."""

    cycle_id: str
    workspace: str
    config: dict[str, Any]
    trigger: Literal["manual", "schedule", "local"] = "manual"
    queued_at: str | None = None
    started_at: str | None = None
    deadline: float | None = None  # unix time
    lock_token: str | None = None
    status: Status = Status.QUEUED
    reason: Reason | None = None
    dry_run: bool = False
    ignore_window: bool = True
    decision: Decision | None = None
    branch: str | None = None
    base_sha: str | None = None  # the base commit, pinned before the agent ran
    worktree: str | None = None
    host: str | None = None  # the host holding the worktree: later steps are sent to its queue
    agent: AgentResult | None = None
    pr: PRResult | None = None
    error: str | None = None
    steps: list[StepReport] = Field(default_factory=list)  # one per pipeline step, in order
    outputs: dict[str, Any] = Field(default_factory=dict)  # step index → its output (JSON), for substitution
    step: int | None = None  # the step running now: its events carry its index and name
    spent_usd: float = 0.0  # what every agent run of this cycle cost together
    pushed_sha: str | None = None  # the commit publish last handled (pushed, or refused for good)
    fallback: Fallback | None = None  # an agent step handed to the other agent
    handoff: str | None = None  # set by a step that must run again on this queue (consumed by the caller)
    waiting_on: str | None = None  # the queue the next step was sent to, while no step runs
    waiting_since: float | None = None

    @property
    def ended(self) -> bool:
        return self.status.ended


class CycleReport(Model):
    cycle_id: str
    workspace: str
    status: Status
    reason: Reason | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    decision: Decision | None = None
    agent: AgentResult | None = None
    branch: str | None = None
    pr: PRResult | None = None
    steps: list[StepReport] = Field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """The published report: the record's internal bookkeeping left out, fallbacks only when they happened."""
        decision_hidden = {"priority", "estimated_s"}
        if not (self.decision and self.decision.fallback_reason):
            decision_hidden.add("fallback_reason")
        if not (self.decision and self.decision.issue is not None):
            decision_hidden.add("issue")
        if not (self.decision and self.decision.source_errors):
            decision_hidden.add("source_errors")
        agent_hidden = {"stop_reason", "commit", "events", "worked"}
        if not (self.agent and self.agent.fallback_from):
            agent_hidden |= {"fallback_from", "fallback_reason"}
        exclude: dict[str, Any] = {"decision": decision_hidden, "agent": agent_hidden, "pr": {"pushed", "comment"}}
        return self.model_dump(mode="json", by_alias=True, exclude=exclude)


class RunningStage(Model):
    """Who runs a cycle's current stage (start, a pipeline step, finish), on which host and since when: a cycle
    past its deadline is not stuck while that very process still runs the stage within the stage's own limit."""

    host: str
    runner: str  # identity (`pid:starttime`) of the process running the stage
    started: float  # unix time


class CycleRecord(Model):
    """What the state keeps per cycle: the context as last saved, who runs its agent, and its report.

    Written only through `State`; the flat fields a reader of the Redis hash sees (status, reason, branch,
    times) are derived from the context there, never set on their own.
    """

    ctx: CycleContext
    host: str | None = None  # the worker host holding the worktree and the agent
    runner: str | None = None  # identity (`pid:starttime`) of the worker process watching the agent
    agent_pgid: int | None = None  # the agent's process group while it runs
    # Identity (`pid:starttime`) of that group's leader: its group is signalled only while this very process
    # lives, never a later group that reused the number.
    agent_identity: str | None = None
    stage: RunningStage | None = None  # the stage running now, while one runs
    finished_at: str | None = None
    report: CycleReport | None = None

    @property
    def cycle_id(self) -> str:
        return self.ctx.cycle_id

    @property
    def workspace(self) -> str:
        return self.ctx.workspace

    @property
    def status(self) -> Status:
        return self.ctx.status

    @property
    def live(self) -> bool:
        """Neither ended nor finished: a cycle some worker should still be carrying."""
        return not self.finished_at and not self.ctx.status.ended

    def summary(self) -> CycleReport:
        """The report, or for a cycle still under way one made from its context."""
        if self.report is not None:
            return self.report
        c = self.ctx
        return CycleReport(
            cycle_id=c.cycle_id,
            workspace=c.workspace,
            status=c.status,
            reason=c.reason,
            started_at=c.started_at,
            decision=c.decision,
            agent=c.agent,
            branch=c.branch,
            pr=c.pr,
            steps=c.steps,
        )


EventKind = Literal[
    "cycle.queued",
    "cycle.started",
    "cycle.skipped",
    "cycle.finished",
    "stage.started",
    "stage.finished",
    "stage.failed",
    "decision.made",
    "agent.started",
    "agent.message",
    "agent.tool_call",
    "agent.tool_result",
    "agent.command",
    "agent.file_change",
    "agent.usage",
    "agent.heartbeat",
    "agent.finished",
    "pr.opened",
    "pr.skipped",
    "stage.skipped",
    "notify.sent",
]


class Event(Model):
    cycle_id: str
    workspace: str
    seq: int
    ts: str
    stage: str
    kind: EventKind
    data: dict[str, Any] = Field(default_factory=dict)

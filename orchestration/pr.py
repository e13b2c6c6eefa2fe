"""The publish stage: commit, permission check, push, and find-or-open the draft PR.

Plain functions, no Celery. `publish` never raises: every outcome is a `PRResult` with a reason, because a
publish failure must not lose the work (the branch is pushed before any `gh` call) nor crash a worker.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestration.config import WorkspaceConfig
from orchestration.gh import (
    NO_DEADLINE,
    Deadline,
    GhBadOutput,
    GhNotAuthenticated,
    auth_args,
    auth_refused,
    parse_json,
    repo_args,
    run_gh,
    scrub,
)
from orchestration.git import GitError, Tree, blob_text, changed_files, commit_all, git, out, raw_diff
from orchestration.issues import ISSUE_PR_MARKER
from orchestration.models import AgentResult, Decision, Evidence, PRResult, Status
from orchestration.permissions import Change, check_changes, parse_raw_diff
from orchestration.permissions import check_permissions as check_permissions
from orchestration.redact import default_redactor, fenced, strip_control

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]

PUSH_TIMEOUT_S = 60.0
PUSH_ATTEMPTS = 3
PUSH_BACKOFF_S = (2.0, 5.0)
CREATE_BACKOFF_S = 3.0
MARKER = "<!-- orchestrate:cycle={cycle_id} -->"
# The hidden line of the one comment an issue gets per PR (a later cycle on the same PR finds it).
COMMENT_MARKER = "<!-- orchestrate:pr={number} -->"
UNFINISHED_PREFIX = "[unfinished] "
MAX_TITLE = 240  # GitHub refuses titles over 256 characters
MAX_TEXT = 20_000  # keeps the body well under GitHub's 65,536-character limit
MAX_FILES_LISTED = 100
MAX_FILES_IN_REASON = 10

PR_FIELDS = "number,url,state,isDraft"
VIEW_FIELDS = "number,url,isDraft"
# ASCII digits, at most 18: a longer run is no PR number (and int() refuses runs over 4300 digits).
_PR_URL = re.compile(r"(https?://\S+/pull/([0-9]{1,18}))\s*$")
_REJECTED = (
    "[rejected]",
    "[remote rejected]",
    "non-fast-forward",
    "fetch first",
    "stale info",
    "updates were rejected",
)
_PERMANENT = (
    "authentication failed",
    "permission denied",
    "could not read username",
    "repository not found",
    "does not appear to be a git repository",
    "terminal prompts disabled",
    "src refspec",
    "the requested url returned error: 403",
    "the requested url returned error: 401",
)


@dataclass(frozen=True)
class RetryPolicy:
    """The pauses before publish retries a transient failure: between push attempts (the last value
    repeats), and before the one retry of `gh pr create`."""

    push_backoff_s: tuple[float, ...] = PUSH_BACKOFF_S
    create_backoff_s: float = CREATE_BACKOFF_S

    def push_delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (0-based)."""
        return self.push_backoff_s[min(attempt, len(self.push_backoff_s) - 1)] if self.push_backoff_s else 0.0


DEFAULT_RETRY = RetryPolicy()


def _code(text: str) -> str:
    """An inline code span that survives backticks in the path."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (truncated)"


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def _shown_name(name: str) -> str:
    """A file name on one line of a code block: backslashes and control characters (a newline, an ESC)
    shown as escapes, so a name can neither start a new line nor carry a terminal sequence."""
    shown: list[str] = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            shown.append("\\\\")
        elif ch in "\n\r\t":
            shown.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            shown.append(f"\\x{code:02x}")
        else:
            shown.append(ch)
    return "".join(shown)


def render_body(
    *,
    cycle_id: str,
    decision: Decision,
    agent: AgentResult | None,
    cycle_status: Status,
    duration_s: float,
    files: Sequence[str],
    notes: str | None = None,
) -> str:
    """The PR body: what was asked, why, what it cost, what changed, and the marker that ties it to the cycle.

    Everything that came from people or agents (task, rationale, file names) sits inside code fences
    longer than any backtick run in it, so none of it renders as markdown: no issue-closing keyword, no
    image, no mention, no heading. Secrets are masked before anything is clipped, and the whole body once more.
    """
    red = default_redactor()
    task = _clip(red.text(decision.task.strip()))
    rationale = _clip(red.text(decision.rationale.strip()))
    lines = [
        f"Opened by Orchestrate, cycle `{cycle_id}`.",
        "",
    ]
    if cycle_status != Status.SUCCEEDED:
        lines += [f"> **Unfinished:** the cycle ended `{cycle_status.value}`; review with care.", ""]
    lines += ["### Task", "", *fenced(task), ""]
    lines += ["### Rationale", "", *fenced(rationale), ""]
    if decision.evidence:
        lines += ["### Evidence", "", "What the task was chosen on, from the agent sessions in this repository:", ""]
        lines += [*fenced(_clip(red.text(_evidence_text(decision.evidence)))), ""]
    if notes and notes.strip():
        lines += ["### Notes", "", *fenced(_clip(red.text(notes.strip()))), ""]
    lines += ["### Run", "", "| | |", "| --- | --- |"]
    lines.append(f"| Agent | {_code(decision.agent)}" + (f" ({agent.status})" if agent else "") + " |")
    lines.append(f"| Cycle status | `{cycle_status.value}` |")
    lines.append(f"| Duration | {_duration(duration_s)} |")
    if agent:
        lines.append(f"| Turns | {agent.num_turns} |")
        lines.append(f"| Cost | ${agent.cost_usd:.2f} |")
        t = agent.tokens
        lines.append(f"| Tokens | {t.input:,} in · {t.output:,} out · {t.cached:,} cached |")
    else:
        lines.append("| Turns / cost / tokens | not recorded |")
    lines.append(f"| Decision | {decision.source}, confidence {decision.confidence:.2f} |")
    lines += ["", f"### Files changed ({len(files)})", ""]
    if files:
        lines += fenced("\n".join(_shown_name(red.text(f)) for f in files[:MAX_FILES_LISTED]))
    if len(files) > MAX_FILES_LISTED:
        lines.append(f"… and {len(files) - MAX_FILES_LISTED} more")
    if not files:
        lines.append("_none_")
    if decision.issue is not None:
        lines += ["", f"Fixes #{decision.issue}"]
    lines += ["", marker(cycle_id, decision.issue), ""]
    return red.text("\n".join(lines))


def marker(cycle_id: str, issue: int | None = None) -> str:
    """The hidden line that ties a PR to its cycle (and to the issue it resolves: see `issues`)."""
    return MARKER.format(cycle_id=cycle_id) if issue is None else ISSUE_PR_MARKER.format(cycle_id=cycle_id, issue=issue)


def _evidence_text(evidence: Sequence[Evidence]) -> str:
    """Each piece of evidence as a short block: its id and kind, the sessions it came from, its text."""
    blocks = []
    for e in evidence:
        where = ", ".join(
            f"{s.provider} {s.session_id[:8]}" + (f" {s.at[:10]}" if s.at else "") for s in e.sessions[:5]
        )
        head = f"{e.id} {e.kind}" + (f" ({where})" if where else "")
        blocks.append(head + "\n" + "\n".join("  " + line for line in e.text.strip().splitlines()))
    return "\n\n".join(blocks)


def _one_line(text: str) -> str:
    """Secrets masked, terminal controls gone, whitespace runs (newlines too) collapsed to one space."""
    return " ".join(strip_control(default_redactor().text(text)).split())


def pr_title(decision: Decision, cycle_status: Status, cycle_id: str) -> str:
    """One line, bounded, `[unfinished] ` for a cycle that did not succeed (open_on_failure)."""
    title = _one_line(decision.title) or f"Orchestrate cycle {cycle_id}"
    if cycle_status != Status.SUCCEEDED:
        title = UNFINISHED_PREFIX + title
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def commit_message(decision: Decision, cycle_id: str, agent_status: str = "succeeded") -> str:
    """Every commit orchestrate makes: the title on one line (masked, no controls) and the cycle trailer;
    a run that did not succeed gets a `WIP:` commit that says so."""
    title = _one_line(decision.title) or f"Orchestrate cycle {cycle_id}"
    if agent_status == "succeeded":
        return f"{title}\n\nOrchestrate-Cycle: {cycle_id}\n"
    return (
        f"WIP: {title} (agent {agent_status}, work saved by orchestrate)\n\n"
        f"The agent did not finish; this commit keeps what it had written.\n\n"
        f"Orchestrate-Cycle: {cycle_id}\n"
    )


def _agent_status(cycle_status: Status) -> str:
    """What a commit made at publish says of the run: a cycle that did not succeed leaves a WIP commit."""
    return "succeeded" if cycle_status is Status.SUCCEEDED else cycle_status.value


def _as_pr(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise GhBadOutput(f"expected an object, got {type(item).__name__}")
    number, url = item.get("number"), item.get("url")
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise GhBadOutput(f"bad number {number!r}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise GhBadOutput(f"bad url {url!r}")
    draft = item.get("isDraft")
    state = item.get("state")
    return {
        "number": number,
        "url": url,
        "draft": draft if isinstance(draft, bool) else None,
        "state": state if isinstance(state, str) else "",
    }


def _find_pr(
    gh: str, cfg: WorkspaceConfig, worktree: Path, branch: str, until: Deadline = NO_DEADLINE
) -> dict[str, Any] | None:
    """The PR whose head is this branch, in any state (open first, then the newest); None when there is none.

    Raises `GhBadOutput` on unparsable output, `RuntimeError` when gh fails.
    """
    args = ["pr", "list", "--head", branch, "--state", "all", "--json", PR_FIELDS, *repo_args(cfg)]
    proc = run_gh(gh, args, worktree, until=until)
    if auth_refused(proc):
        raise GhNotAuthenticated(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"gh_pr_list_failed: {scrub(proc.stderr or proc.stdout)}")
    data = parse_json(proc.stdout)
    if not isinstance(data, list):
        raise GhBadOutput(f"expected a list, got {type(data).__name__}")
    prs = [_as_pr(item) for item in data]
    if not prs:
        return None
    return sorted(prs, key=lambda p: (p["state"].upper() == "OPEN", p["number"]), reverse=True)[0]


def _view_pr(
    gh: str, cfg: WorkspaceConfig, worktree: Path, ref: str, until: Deadline = NO_DEADLINE
) -> dict[str, Any] | None:
    """Read the PR back; None when gh cannot find it (a create that printed a URL but made nothing)."""
    proc = run_gh(gh, ["pr", "view", ref, "--json", VIEW_FIELDS, *repo_args(cfg)], worktree, until=until)
    if auth_refused(proc):
        raise GhNotAuthenticated(proc.stderr)
    if proc.returncode != 0:
        log.warning("gh pr view %s failed: %s", ref, scrub(proc.stderr or proc.stdout))
        return None
    return _as_pr(parse_json(proc.stdout))


def _parse_created_url(text: str) -> tuple[str, int] | None:
    for line in reversed(text.strip().splitlines()):
        m = _PR_URL.search(line.strip())
        if m:
            return m.group(1), int(m.group(2))
    return None


def _push(
    tree: Tree, remote: str, branch: str, retry: RetryPolicy = DEFAULT_RETRY, until: Deadline = NO_DEADLINE
) -> str | None:
    """Push the branch, retrying transient failures; None on success, else a reason. Never forces."""
    last = ""
    for attempt in range(PUSH_ATTEMPTS):
        try:
            refspec = f"refs/heads/{branch}:refs/heads/{branch}"
            git(["push", "--no-verify", "--", remote, refspec], tree, timeout=until.left(PUSH_TIMEOUT_S))
            return None
        except GitError as exc:
            last = exc.stderr
        low = last.lower()
        if any(k in low for k in _REJECTED):
            return f"push_rejected: {scrub(last)}"
        if any(k in low for k in _PERMANENT):
            return f"push_failed: {scrub(last)}"
        if attempt + 1 < PUSH_ATTEMPTS:
            delay = retry.push_delay(attempt)
            if until.no_time_for(delay):
                break
            log.warning(
                "push of %s failed (attempt %d), retrying in %.0fs: %s", branch, attempt + 1, delay, scrub(last)
            )
            time.sleep(delay)
    return f"push_failed: {scrub(last)}"


def _safe_emit(emit: Emit, kind: str, data: dict[str, Any]) -> None:
    """The hub is best effort here: a Redis hiccup must not turn a published PR into a failed stage."""
    try:
        emit(kind, data)
    except Exception:  # any emitter failure is logged, never raised
        log.exception("could not emit %s", kind)


class _Run:
    """One publish attempt: its inputs, whether the branch reached the remote, and the events it reports."""

    def __init__(
        self,
        tree: Tree,
        branch: str,
        cfg: WorkspaceConfig,
        gh: str,
        emit: Emit,
        retry: RetryPolicy = DEFAULT_RETRY,
        until: Deadline = NO_DEADLINE,
    ) -> None:
        self.tree, self.branch, self.cfg, self.gh, self.emit = tree, branch, cfg, gh, emit
        self.retry, self.until = retry, until
        self.worktree = tree.work_tree
        self.pushed = False

    def skipped(self, reason: str) -> PRResult:
        return self._not_opened("skipped", reason)

    def failed(self, reason: str) -> PRResult:
        return self._not_opened("failed", reason)

    def _not_opened(self, status: Literal["skipped", "failed"], reason: str) -> PRResult:
        """Every way publish ends without a PR: logged, reported as `pr.skipped` (status tells which)."""
        (log.info if status == "skipped" else log.warning)("publish of %s %s: %s", self.branch, status, reason)
        _safe_emit(
            self.emit,
            "pr.skipped",
            {"status": status, "reason": reason, "branch": self.branch, "pushed": self.pushed},
        )
        return PRResult(status=status, reason=reason)

    def opened(self, created: bool, pr: dict[str, Any]) -> PRResult:
        status = "created" if created else "exists"
        data = {"status": status, "url": pr["url"], "number": pr["number"], "draft": pr["draft"], "branch": self.branch}
        if pr.get("state"):
            data["state"] = pr["state"]
        _safe_emit(self.emit, "pr.opened", data)
        return PRResult(status=status, url=pr["url"], number=pr["number"], draft=pr["draft"])

    def comment(self, issue: int | None, result: PRResult) -> PRResult:
        """With `issues.comment`, one comment on the issue the PR resolves, linking it: a later cycle on the
        same PR finds the comment (its hidden line names the PR) and writes none. Best effort: the PR is
        open whatever happens here."""
        if issue is None or not self.cfg.issues.comment or result.number is None:
            return result
        try:
            result.comment = self._comment(issue, result)
        except subprocess.TimeoutExpired:
            result.comment = "failed: gh timed out"
        except (GhBadOutput, OSError) as exc:
            result.comment = f"failed: {scrub(str(exc), 120)}"
        if result.comment.startswith("failed"):
            log.warning("comment on issue #%s: %s", issue, result.comment)
        return result

    def _comment(self, issue: int, result: PRResult) -> str:
        hidden = COMMENT_MARKER.format(number=result.number)
        args = ["issue", "view", str(issue), "--json", "comments", *repo_args(self.cfg)]
        proc = run_gh(self.gh, args, self.worktree, until=self.until)
        if proc.returncode != 0:
            return f"failed: {scrub(proc.stderr or proc.stdout, 120)}"
        data = parse_json(proc.stdout)
        comments = data.get("comments") if isinstance(data, dict) else None
        if not isinstance(comments, list):
            raise GhBadOutput("gh issue view printed no comments list")
        if any(isinstance(c, dict) and hidden in str(c.get("body", "")) for c in comments):
            return "exists"
        kind = "a draft pull request" if result.draft else "a pull request"
        body = f"Orchestrate opened {kind} for this issue: {result.url}\n\n{hidden}\n"
        args = ["issue", "comment", str(issue), "--body-file=-", *repo_args(self.cfg)]
        proc = run_gh(self.gh, args, self.worktree, input_text=body, until=self.until)
        return "posted" if proc.returncode == 0 else f"failed: {scrub(proc.stderr or proc.stdout, 120)}"

    def find(self) -> dict[str, Any] | None:
        return _find_pr(self.gh, self.cfg, self.worktree, self.branch, self.until)

    def create(self, title: str, body: str, base: str, labels: list[str]) -> subprocess.CompletedProcess[str]:
        # `--flag=value`: a value can never be read as another flag.
        args = ["pr", "create", f"--title={title}", "--body-file=-", f"--base={base}", f"--head={self.branch}"]
        if self.cfg.pr.draft:
            args.append("--draft")
        args += [f"--label={label}" for label in labels]
        return run_gh(self.gh, [*args, *repo_args(self.cfg)], self.worktree, input_text=body, until=self.until)


def publish(
    *,
    tree: Tree,
    branch: str,
    cfg: WorkspaceConfig,
    cycle_id: str,
    decision: Decision,
    agent: AgentResult | None,
    cycle_status: Status,
    duration_s: float,
    base_ref: str,
    emit: Emit,
    gh: str = "gh",
    retry: RetryPolicy = DEFAULT_RETRY,
    notes: str | None = None,
    propose: bool = True,
    deadline: float | None = None,
) -> PRResult:
    """Commit, check, push, then find-or-open the PR. Idempotent: a second run reuses the PR it finds.

    Never raises; the branch is pushed before anything that depends on gh, so the work is safe remotely
    even when gh is missing, logged out or broken. `retry` sets the pauses before retrying a push or a
    `gh pr create` that failed transiently. `notes` is a section of the PR body (fenced: it may carry agent
    output); without `propose` it stops once the branch is pushed (a pipeline without a PR step). With a
    `deadline` (epoch seconds) every push and gh call ends by then (at least `MIN_CALL_S` each), whatever
    the remote or gh do.
    """
    run = _Run(tree, branch, cfg, gh, emit, retry, Deadline(deadline))
    try:
        result = _publish(run, cycle_id, decision, agent, cycle_status, duration_s, base_ref, notes, propose)
    except subprocess.TimeoutExpired as exc:
        result = run.failed(f"gh_timeout: {' '.join(str(a) for a in exc.cmd[1:3])}")
    except GhNotAuthenticated as exc:
        log.info("gh is not authenticated: %s", scrub(str(exc)))
        result = run.skipped("gh_not_authenticated")
    except GhBadOutput as exc:
        log.warning("unusable gh output for %s: %s", branch, exc)
        result = run.failed("gh_bad_output")
    except (GitError, OSError) as exc:
        result = run.failed(f"publish_error: {scrub(str(exc))}")
    except Exception as exc:  # the stage contract: a reason, never an exception
        log.exception("publish of %s crashed", branch)
        result = run.failed(f"publish_error: {type(exc).__name__}: {scrub(str(exc))}")
    result.pushed = run.pushed  # whatever came after, a push that went through is reported
    return result


def _publish(
    run: _Run,
    cycle_id: str,
    decision: Decision,
    agent: AgentResult | None,
    cycle_status: Status,
    duration_s: float,
    base_ref: str,
    notes: str | None = None,
    propose: bool = True,
) -> PRResult:
    cfg, tree, work_tree, branch = run.cfg, run.tree, run.worktree, run.branch

    # 1. Commit whatever the agent left uncommitted; the push below must carry all of it. Every git call
    #    goes through the tree's own admin dir and guard, never through the work tree's `.git`.
    try:
        head_branch = out(["rev-parse", "--abbrev-ref", "HEAD"], tree)
        if head_branch != branch:
            return run.failed(f"branch_mismatch: worktree is on {head_branch!r}, not {branch!r}")
        commit_all(tree, commit_message(decision, cycle_id, _agent_status(cycle_status)))
    except GitError as exc:
        return run.failed(f"commit_failed: {scrub(exc.stderr)}")

    # 2. What the branch changes relative to the base commit pinned before the agent ran.
    try:
        files = changed_files(tree, base_ref)
        # --no-renames: a rename out of a denied directory counts as a change to the denied path too.
        changes = parse_raw_diff(raw_diff(tree, base_ref))
    except GitError as exc:
        return run.failed(f"diff_failed: {scrub(exc.stderr)}")
    if not files and cfg.pr.require_changes:
        return run.skipped("no_changes")

    # 3. Permissions: a forbidden change blocks the push and the PR, and the report names the files.
    def read_link(change: Change) -> str | None:
        return blob_text(tree, change.new_sha)

    denied = [f"{d.path} ({d.why})" for d in check_changes(changes, cfg.permissions, read_link)]
    in_raw = {c.path for c in changes}
    denied += [f"{f} (unreadable diff entry)" for f in files if f not in in_raw]
    if denied:
        names = list(dict.fromkeys(denied))
        shown = ", ".join(names[:MAX_FILES_IN_REASON])
        more = f" (+{len(names) - MAX_FILES_IN_REASON} more)" if len(names) > MAX_FILES_IN_REASON else ""
        return run.skipped(f"permission_denied: {shown}{more}")
    if not cfg.permissions.push:
        return run.skipped("push_disabled")

    # 4. Push (never forced): from here on the work is safe remotely whatever gh does.
    problem = _push(tree, cfg.workspace.remote, branch, run.retry, run.until)
    if problem:
        return run.failed(problem)
    run.pushed = True

    if not propose:
        return run.skipped("no_pr_step")
    if not cfg.pr.enabled or not cfg.permissions.open_pr:
        return run.skipped("pr_disabled")
    if cycle_status != Status.SUCCEEDED and not cfg.pr.open_on_failure:
        return run.skipped(f"cycle_{cycle_status.value}")

    # 5. gh: authenticated?
    try:
        auth = run_gh(run.gh, ["auth", "status", *auth_args(cfg)], work_tree, until=run.until)
    except FileNotFoundError:
        return run.skipped("gh_not_found")
    except PermissionError as exc:
        return run.skipped(f"gh_not_found: {exc.strerror}")
    if auth.returncode != 0:
        log.info("gh auth status: %s", scrub(auth.stderr or auth.stdout))
        return run.skipped("gh_not_authenticated")

    # 6. Reuse a PR this branch already has (a retried publish, or a PR someone opened by hand).
    try:
        existing = run.find()
    except RuntimeError as exc:
        return run.failed(str(exc))
    if existing:
        return run.comment(decision.issue, run.opened(False, existing))

    # 7. Create, retrying once on a transient failure; "already exists" means a concurrent or earlier
    #    create won, so look it up instead of opening a second one.
    title = pr_title(decision, cycle_status, cycle_id)
    body = render_body(
        cycle_id=cycle_id,
        decision=decision,
        agent=agent,
        cycle_status=cycle_status,
        duration_s=duration_s,
        files=files,
        notes=notes,
    )
    labels = list(cfg.pr.labels)
    transient_retry = True
    while True:
        try:
            proc = run.create(title, body, cfg.pr_base, labels)
            error = "" if proc.returncode == 0 else (proc.stderr or proc.stdout or f"exit {proc.returncode}")
        except subprocess.TimeoutExpired:
            proc, error = None, "timed out"
        if proc is not None and proc.returncode == 0:
            break
        if proc is not None and auth_refused(proc):
            raise GhNotAuthenticated(error)
        if "already exists" in error:
            try:
                existing = run.find()
            except RuntimeError as exc:
                return run.failed(str(exc))
            if existing:
                return run.comment(decision.issue, run.opened(False, existing))
            return run.failed(f"gh_pr_create_failed: {scrub(error)}")
        if labels and "label" in error.lower():
            log.warning("gh pr create refused labels %s, retrying without: %s", labels, scrub(error))
            labels = []
            continue
        if not transient_retry or run.until.no_time_for(run.retry.create_backoff_s):
            return run.failed(f"gh_pr_create_failed: {scrub(error)}")
        transient_retry = False
        log.warning("gh pr create failed, retrying once: %s", scrub(error))
        time.sleep(run.retry.create_backoff_s)

    parsed = _parse_created_url(proc.stdout)
    if parsed is None:
        raise GhBadOutput(f"no PR URL in gh pr create output: {proc.stdout[-200:]!r}")
    url, number = parsed

    # 8. Believe it when gh can read it back.
    seen = _view_pr(run.gh, cfg, work_tree, str(number), run.until)
    if seen is None or seen["number"] != number:
        return run.failed(f"pr_not_found_after_create: gh pr create printed {url}, gh pr view cannot find it")

    # 9. The issue it resolves gets one comment linking it.
    return run.comment(decision.issue, run.opened(True, seen))

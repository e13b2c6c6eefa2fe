"""Tasks from the team's issue tracker: open issues carrying the configured label become candidates.

An issue's text comes from whoever can open an issue, so it is untrusted like a session file, and it is
read only when its author may write to the repository: the listing asks for numbers, authors and dates
alone (`gh issue list --json number,author,createdAt`); an issue is viewed (`gh issue view`) only when
its author is in `issues.authors` or, when that list is empty, has write access (`gh api` on the
collaborator permission), and of its comments only those by such authors are kept. An issue that already
has an open PR from orchestrate is passed over, and so is one whose PR closed less than
`avoid_repeat_days` ago. Any gh failure skips the whole source with a reason; the decision goes on
with the other sources.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from orchestration.config import LOGIN, WorkspaceConfig
from orchestration.gh import Deadline, GhBadOutput, auth_refused, parse_json, repo_args, run_gh, scrub
from orchestration.models import Model, parse_ts

log = logging.getLogger(__name__)

LIST_LIMIT = 50  # labelled open issues listed per decision
MAX_READ = 5  # issues viewed per decision (oldest first): one becomes the task, the rest are runners-up
MAX_COMMENTS = 10
MAX_BODY_CHARS = 4000
MAX_COMMENT_CHARS = 1500
SOURCE_BUDGET_S = 60.0  # all gh calls of one decision together
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
# The hidden line of an orchestrate PR that works on an issue: written into the PR body by publish, read back
# here to find the issues that already have a PR.
ISSUE_PR_MARKER = "<!-- orchestrate:cycle={cycle_id} issue={issue} -->"
ISSUE_MARKER = re.compile(r"<!-- orchestrate:cycle=[A-Za-z0-9._-]+ issue=([0-9]{1,9}) -->")


class IssueComment(Model):
    author: str
    body: str


class TrackedIssue(Model):
    """One issue read into a candidate: only ever an issue whose author passed the author rule."""

    number: int
    title: str
    body: str = ""
    url: str = ""
    author: str
    created_at: str = ""
    comments: list[IssueComment] = Field(default_factory=list)


class PassedOver(Model):
    what: str  # "#12", or a candidate's title
    reason: str


class SourceReport(Model):
    """What one source of candidates gave: the candidates' titles, what it passed over and why, and the
    error that made it give nothing (a gh failure, for the issue tracker)."""

    candidates: list[str] = Field(default_factory=list)
    passed_over: list[PassedOver] = Field(default_factory=list)
    error: str | None = None


class SourceError(Exception):
    """The issue tracker cannot be read now (the reason goes into the decision's sources)."""


def read_issues(
    cfg: WorkspaceConfig, repo: Path | None, deadline: float | None = None, gh: str = "gh", now: float | None = None
) -> tuple[list[TrackedIssue], SourceReport]:
    """The issues to take up, oldest first, and the report of the issue source. Never raises."""
    report = SourceReport()
    if repo is None and not cfg.pr.repo:
        report.error = "issues need pr.repo when the workspace is given by URL"
        return [], report
    cwd = repo if repo is not None else Path(tempfile.gettempdir())
    budget = time.time() + SOURCE_BUDGET_S
    reader = _Reader(cfg, cwd, gh, Deadline(min(deadline, budget) if deadline else budget))
    try:
        issues = reader.issues(report, now or time.time())
    except SourceError as exc:
        report.error = str(exc)
        report.passed_over = []
        return [], report
    return issues, report


class _Reader:
    def __init__(self, cfg: WorkspaceConfig, cwd: Path, gh: str, until: Deadline) -> None:
        self.cfg, self.cwd, self.gh, self.until = cfg, cwd, gh, until
        self.allowed_authors = {a.lower() for a in cfg.issues.authors}
        self.permission: dict[str, str] = {}  # login -> why it may not write ("" when it may)

    def call(self, args: list[str], what: str) -> Any:
        """One gh call whose output is JSON; every failure becomes a SourceError with a short reason."""
        try:
            proc = run_gh(self.gh, args, self.cwd, until=self.until)
        except FileNotFoundError:
            raise SourceError("gh_not_found") from None
        except PermissionError as exc:
            raise SourceError(f"gh_not_found: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise SourceError(f"gh_timeout: {what}") from None
        if proc.returncode != 0:
            raise SourceError(_failure(proc, what))
        try:
            return parse_json(proc.stdout)
        except GhBadOutput:
            raise SourceError(f"gh_bad_output: {what} did not print JSON") from None

    def issues(self, report: SourceReport, now: float) -> list[TrackedIssue]:
        cfg = self.cfg
        listed = self.call(
            [
                "issue",
                "list",
                "--label",
                cfg.issues.label,
                "--state",
                "open",
                "--json",
                "number,author,createdAt",
                "--limit",
                str(LIST_LIMIT),
                *repo_args(cfg),
            ],
            "gh issue list",
        )
        if not isinstance(listed, list):
            raise SourceError("gh_bad_output: gh issue list did not print a list")
        entries = sorted((e for e in (_listed(x) for x in listed) if e is not None), key=lambda e: (e[2], e[0]))
        eligible: list[tuple[int, str]] = []
        for number, login, _created in entries:
            why_not = self.may_not_write(login)
            if why_not:
                report.passed_over.append(PassedOver(what=f"#{number}", reason=why_not))
            else:
                eligible.append((number, login))
        if not eligible:
            return []
        taken = self.issues_with_prs(now)
        out: list[TrackedIssue] = []
        for number, login in eligible:
            if number in taken:
                report.passed_over.append(PassedOver(what=f"#{number}", reason=taken[number]))
                continue
            if len(out) >= MAX_READ:
                report.passed_over.append(PassedOver(what=f"#{number}", reason="not read: enough issues this time"))
                continue
            issue = self.view(number, login)
            if issue is not None:
                out.append(issue)
        return out

    def may_not_write(self, login: str) -> str:
        """ "" when `login` passes the author rule, else why not."""
        if self.allowed_authors:
            return "" if login.lower() in self.allowed_authors else f"opened by {login}, who is not in issues.authors"
        if login not in self.permission:
            self.permission[login] = self._permission(login)
        return self.permission[login]

    def _permission(self, login: str) -> str:
        if not LOGIN.fullmatch(login):
            return "the author's login is not a valid GitHub login"
        repo = self.cfg.pr.repo
        parts = repo.split("/") if repo else []
        path = "/".join(parts[-2:]) if parts else "{owner}/{repo}"  # gh fills these from the checkout's remote
        host = ["--hostname", parts[0]] if len(parts) == 3 else []
        try:
            data = self.call(["api", *host, f"repos/{path}/collaborators/{login}/permission"], "gh api (permission)")
        except SourceError as exc:
            if str(exc).startswith("repository_not_found"):  # GitHub's 404 for an account it does not know
                return f"opened by {login}, whose access could not be read"
            raise
        if not isinstance(data, dict):
            raise SourceError("gh_bad_output: gh api (permission) did not print an object")
        permission, role = data.get("permission"), data.get("role_name")
        if permission in WRITE_PERMISSIONS or role in WRITE_PERMISSIONS:
            return ""
        shown = permission if isinstance(permission, str) and permission.isalpha() else "none"
        return f"opened by {login}, who has no write access ({shown[:20]})"

    def issues_with_prs(self, now: float) -> dict[int, str]:
        """Issue number -> why it is not taken now: an open PR from orchestrate works on it, or one closed
        less than avoid_repeat_days ago."""
        data = self.call(
            [
                "pr",
                "list",
                "--state",
                "all",
                "--limit",
                "100",
                "--json",
                "number,state,body,closedAt",
                *repo_args(self.cfg),
            ],
            "gh pr list",
        )
        if not isinstance(data, list):
            raise SourceError("gh_bad_output: gh pr list did not print a list")
        since = now - self.cfg.decision.avoid_repeat_days * 86400
        out: dict[int, str] = {}
        for pr in data:
            if not isinstance(pr, dict) or not isinstance(pr.get("body"), str):
                continue
            m = ISSUE_MARKER.search(pr["body"])
            number = pr.get("number")
            if m is None or not isinstance(number, int):
                continue
            issue = int(m.group(1))
            state = str(pr.get("state", "")).upper()
            if state == "OPEN":
                out[issue] = f"has an open PR #{number} from orchestrate"
            elif issue not in out:
                closed = parse_ts(pr.get("closedAt"))
                if closed is not None and closed.timestamp() >= since:
                    out[issue] = f"its PR #{number} closed less than {self.cfg.decision.avoid_repeat_days} days ago"
        return out

    def view(self, number: int, login: str) -> TrackedIssue | None:
        data = self.call(
            ["issue", "view", str(number), "--json", "number,title,body,url,author,comments", *repo_args(self.cfg)],
            f"gh issue view {number}",
        )
        if not isinstance(data, dict) or data.get("number") != number:
            raise SourceError(f"gh_bad_output: gh issue view {number} did not describe that issue")
        author = _author(data.get("author"))
        if author is None or author.lower() != login.lower():
            return None  # the listing and the issue disagree: read nothing
        comments: list[IssueComment] = []
        raw = data.get("comments")
        for c in (raw if isinstance(raw, list) else [])[-3 * MAX_COMMENTS :]:
            who = _author(c.get("author")) if isinstance(c, dict) else None
            body = c.get("body") if isinstance(c, dict) else None
            if who is None or not isinstance(body, str) or self.may_not_write(who):
                continue  # a comment by someone who may not write is never read into a prompt
            comments.append(IssueComment(author=who, body=body[:MAX_COMMENT_CHARS]))
        title, body, url = data.get("title"), data.get("body"), data.get("url")
        return TrackedIssue(
            number=number,
            title=title[:300] if isinstance(title, str) else f"issue {number}",
            body=body[:MAX_BODY_CHARS] if isinstance(body, str) else "",
            url=url if isinstance(url, str) and url.startswith(("https://", "http://")) else "",
            author=author,
            comments=comments[-MAX_COMMENTS:],
        )


def _listed(item: Any) -> tuple[int, str, str] | None:
    if not isinstance(item, dict):
        return None
    number, author, created = item.get("number"), _author(item.get("author")), item.get("createdAt")
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0 or author is None:
        return None
    return number, author, created if isinstance(created, str) else ""


def _author(value: Any) -> str | None:
    login = value.get("login") if isinstance(value, dict) else None
    return login if isinstance(login, str) and login else None


def _failure(proc: subprocess.CompletedProcess[str], what: str) -> str:
    """gh's failure as a short reason: not authenticated, rate limited, no such repository, or its words."""
    text = proc.stderr or proc.stdout or f"exit {proc.returncode}"
    low = text.lower()
    if auth_refused(proc) or "gh auth login" in low or "not logged in" in low:
        return f"gh_not_authenticated: {what}"
    if "rate limit" in low:
        return f"rate_limited: {what}"
    if "could not resolve to a repository" in low or "http 404" in low or "not found" in low:
        return f"repository_not_found: {what}: {scrub(text, 160)}"
    return f"gh_failed: {what}: {scrub(text, 160)}"

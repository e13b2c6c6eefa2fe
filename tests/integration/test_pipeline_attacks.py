"""Pipeline steps on the trust boundary: what an agent leaves in the worktree and what substitution puts in a
step's arguments must never get a command out of the worktree, run a program or reach a host the config
and this host do not grant, follow a redirect elsewhere, or leak a header value or a worker credential.

Whole cycles on real repositories and real processes (a stand-in agent, `shell.run` programs, loopback
webhook servers): in this process with local state (`cycle.start` → `run_step` each step → `finish`, as
`run --local` does), or through the `orchestrate` CLI where its output and exit code are the point.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration import cycle
from orchestration.config import WorkspaceConfig, parse_config
from orchestration.deployment import config_problems
from orchestration.hub import LocalHub
from orchestration.models import CycleReport
from orchestration.policy import HostPolicy, policy_problems
from orchestration.services import Services
from orchestration.settings import get_settings
from orchestration.state import LocalState
from tests.fixtures.webhook_server import WebhookServer
from tests.helpers import AGENT_USER, ROOT, ensure_agent_user, make_repo, orchestrate

pytestmark = pytest.mark.integration

AGENT = ROOT / "tests" / "fixtures" / "planting_agent.py"
PY3 = "python3"  # a bare name found on PATH, as a permissions.shell list requires
# A command that writes a file named `pwned` in its working directory.
PWN = "import pathlib; pathlib.Path('pwned').write_text('ran here')"
# A command that writes its whole environment, as JSON, to argv[1] and prints it.
DUMP_ENV = "import json, os, sys; text = json.dumps(dict(os.environ)); open(sys.argv[1], 'w').write(text); print(text)"
GH_TOKEN = "ghp_" + "A1b2C3d4" * 5
REDIS_PW = "hunter2-redis-pw"


@pytest.fixture(autouse=True)
def host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is the worker: its ceiling allows shell and loopback hosts, and it holds credentials
    that no command may see."""
    monkeypatch.setenv("ORCH_ALLOW", "shell,network:127.0.0.1")
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    monkeypatch.setenv("GITHUB_TOKEN", "gho_" + "Z9y8X7w6" * 5)
    monkeypatch.setenv("ORCH_REDIS_URL", f"redis://:{REDIS_PW}@127.0.0.1:1/0")
    monkeypatch.setenv("ORCH_SERVE_TOKEN", "serve-token-0123456789")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://orch:rabbit-pw-123@127.0.0.1:1//")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-not-for-commands-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-for-commands-0123456789abcdef")
    get_settings.cache_clear()


def set_allow(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ORCH_ALLOW", value)
    get_settings.cache_clear()


def make_config(
    tmp: Path,
    steps: list[dict[str, Any]],
    *,
    shell: bool | list[str] = False,
    network: list[str] | None = None,
    env_allow: list[str] | None = None,
    agent_env: dict[str, str] | None = None,
) -> WorkspaceConfig:
    repo, _bare = make_repo(tmp)
    return parse_config(
        {
            "id": "attack",
            "workspace": {"repo": str(repo)},
            "goals": ["Add a feature file"],
            "sessions": {"claude_dir": str(tmp / "none"), "codex_dir": str(tmp / "none")},
            "decision": {"backend": "heuristic"},
            "agents": {"allow": ["claude-code"], "claude-code": {"command": str(AGENT), "env": agent_env or {}}},
            "pr": {"enabled": False},
            "permissions": {"shell": shell, "network": network or []},
            "env_allow": env_allow or [],
            "pipeline": steps,
        }
    )


def local_services(tmp: Path) -> Services:
    sd = tmp / "sd"
    return Services(state=LocalState(sd / "local"), hub=LocalHub(sd / "events"), state_dir=sd)


class Run:
    """One whole cycle's report, every step's output, and its events."""

    def __init__(self, report: CycleReport, outputs: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.report, self.outputs, self.events = report, outputs, events

    @property
    def failed_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == "stage.failed"]

    def steps(self) -> list[tuple[str | None, str, str | None]]:
        return [(s.as_, s.status.value, s.reason) for s in self.report.steps]


def run_cycle(cfg: WorkspaceConfig, svc: Services, *, valid: bool = True) -> Run:
    """What `run --local` does, keeping each step's output. With `valid`, the config passes every check made
    before anything runs: what follows is caught only at run time."""
    if valid:  # what `orchestrate validate` and `run` check
        settings = get_settings()
        assert config_problems(cfg, settings) + policy_problems(cfg, HostPolicy.from_settings(settings)) == []
    ctx = cycle.start(cycle.enqueue(svc, cfg), svc)
    assert isinstance(cfg.pipeline, list)
    for index in range(len(cfg.pipeline)):
        ctx = cycle.run_step(ctx, svc, index)
    outputs = dict(ctx.outputs)
    report = cycle.finish(ctx, svc)
    assert isinstance(svc.hub, LocalHub)
    events = [json.loads(line) for line in svc.hub.path(report.cycle_id).read_text().splitlines()]
    return Run(report, outputs, events)


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside every worktree, under /tmp, that the agent points its links at."""
    path = Path(tempfile.mkdtemp(prefix="outside-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- 1. the working directory -------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cwd", ["out", "sub/deep", "up", "out/nested"])
def test_cwd_through_a_planted_symlink_is_denied_and_nothing_runs(tmp_path: Path, outside: Path, cwd: str) -> None:
    (outside / "nested").mkdir()
    links = {"out": str(outside), "sub/deep": str(outside), "up": "../.."}
    cfg = make_config(
        tmp_path,
        [
            {"op": "agent.execute", "as": "run", "with": {"prompt": "add a feature"}},
            {"op": "shell.run", "as": "tests", "with": {"command": [PY3, "-c", PWN], "cwd": cwd}},
            {"op": "shell.run", "as": "later", "with": {"command": [PY3, "-c", PWN]}},
        ],
        shell=["python3"],
        agent_env={"LINKS": json.dumps(links)},
    )
    svc = local_services(tmp_path)
    run = run_cycle(cfg, svc)

    assert run.report.status.value == "failed" and run.report.reason == "policy_denied"
    assert run.steps() == [("run", "succeeded", None), ("tests", "failed", "policy_denied"), ("later", "skipped", None)]
    [failed] = run.failed_events
    assert failed["stage"] == "shell" and failed["data"]["as"] == "tests"
    assert "outside the worktree" in failed["data"]["error"]
    # The command never ran: not out there, and not anywhere else either.
    assert list(outside.rglob("pwned")) == [] and list(tmp_path.rglob("pwned")) == []
    assert not [e for e in run.events if e["kind"] == "agent.command"]
    # The agent's ordinary work is still saved on the cycle branch.
    assert run.report.branch


@pytest.mark.timeout(60)
def test_cwd_through_a_symlink_inside_the_worktree_runs_there(tmp_path: Path) -> None:
    """The control: a link that stays inside the worktree is an ordinary directory."""
    cfg = make_config(
        tmp_path,
        [
            {"op": "agent.execute", "as": "run", "with": {"prompt": "add a feature"}},
            {
                "op": "shell.run",
                "as": "where",
                "with": {"command": [PY3, "-c", "import os; print(os.getcwd())"], "cwd": "inner"},
            },
        ],
        shell=["python3"],
        agent_env={"WRITE": "docs/feature.txt", "LINKS": json.dumps({"inner": "docs"})},
    )
    svc = local_services(tmp_path)
    run = run_cycle(cfg, svc)
    assert run.report.status.value == "succeeded", run.events
    assert run.outputs["1"]["ok"] is True
    worktree = (svc.state_dir / "worktrees" / run.report.cycle_id).resolve()
    assert run.outputs["1"]["stdout"].strip() == str(worktree / "docs")


# -- 2. the program -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("source", ["env", "output"])
def test_program_from_substitution_must_be_in_the_shell_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """permissions.shell lists python3; argv[0] comes from `${env.PROG}` or an earlier step's stdout, which no
    check before the run can read. At run time it is `touch`: denied, and nothing was touched."""
    marker = tmp_path / "touched"
    touch = "touch"  # a bare name on PATH, as a list grant requires: only the list itself is missing it
    assert shutil.which(touch)
    monkeypatch.setenv("PROG", touch)
    if source == "env":
        steps = [{"op": "shell.run", "as": "evil", "with": {"command": ["${env.PROG}", str(marker)]}}]
    else:
        steps = [
            {"op": "shell.run", "as": "probe", "with": {"command": [PY3, "-c", f"print({touch!r}, end='')"]}},
            {"op": "shell.run", "as": "evil", "with": {"command": ["${probe.stdout}", str(marker)]}},
        ]
    cfg = make_config(tmp_path, steps, shell=["python3"], env_allow=["PROG"])
    run = run_cycle(cfg, local_services(tmp_path))

    assert run.report.status.value == "failed" and run.report.reason == "policy_denied"
    assert run.steps()[-1] == ("evil", "failed", "policy_denied")
    [failed] = run.failed_events
    assert "'touch' is not in permissions.shell" in failed["data"]["error"]
    assert not marker.exists()
    assert [e["data"]["as"] for e in run.events if e["kind"] == "agent.command"] == (
        [] if source == "env" else ["probe"]
    )


# -- 3. the host --------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("template", ["http://${env.HOOK_HOST}:{port}/x", "${env.HOOK_URL}"])
def test_notify_host_from_substitution_must_be_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str
) -> None:
    """127.0.0.1 is granted (config and host); the substituted URL names 127.0.0.2, which is not: denied at
    run time, and the server listening there hears nothing."""
    with WebhookServer(host="127.0.0.2") as other:
        monkeypatch.setenv("HOOK_HOST", "127.0.0.2")
        monkeypatch.setenv("HOOK_URL", other.url("/x"))
        url = template.replace("{port}", str(other.port))
        cfg = make_config(
            tmp_path,
            [{"op": "http.notify", "as": "hook", "with": {"url": url, "json": {"a": 1}, "retries": 0}}],
            network=[f"127.0.0.1:{other.port}"],
            env_allow=["HOOK_HOST", "HOOK_URL"],
        )
        run = run_cycle(cfg, local_services(tmp_path))
        assert other.requests == []
    assert run.report.status.value == "failed" and run.report.reason == "policy_denied"
    assert run.steps() == [("hook", "failed", "policy_denied")]
    [failed] = run.failed_events
    assert failed["stage"] == "notify" and "127.0.0.2" in failed["data"]["error"]
    assert not [e for e in run.events if e["kind"] == "notify.sent"]


# -- 4. redirects -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("status", "elsewhere"), [(307, "port"), (308, "port"), (302, "port"), (307, "host")])
def test_notify_never_follows_a_redirect_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, elsewhere: str
) -> None:
    """Both 127.0.0.1 ports are granted; the webhook redirects to the other port (or to 127.0.0.2): the target
    hears nothing, the step's output says ok false with the redirect's status."""
    if elsewhere == "host":
        # 127.0.0.2 is granted too, by the config and by this host: the redirect is refused only for leaving.
        set_allow(monkeypatch, "shell,network:127.0.0.1,network:127.0.0.2")
    with (
        WebhookServer(host="127.0.0.1" if elsewhere == "port" else "127.0.0.2") as target,
        WebhookServer(status=status, location=target.url("/stolen")) as hop,
    ):
        cfg = make_config(
            tmp_path,
            [
                {
                    "op": "http.notify",
                    "as": "hook",
                    "with": {
                        "url": hop.url("/hook"),
                        "json": {"secret": "payload"},
                        "headers": {"Authorization": "Bearer not-for-the-target"},
                        "retries": 0,
                    },
                }
            ],
            network=["127.0.0.1", "127.0.0.2"] if elsewhere == "host" else ["127.0.0.1"],
        )
        run = run_cycle(cfg, local_services(tmp_path))
        assert len(hop.requests) == 1
        assert target.requests == []
    assert run.outputs["0"] == {"status_code": status, "ok": False}
    assert run.steps() == [("hook", "failed", f"HTTP {status}")]
    [sent] = [e["data"] for e in run.events if e["kind"] == "notify.sent"]
    assert (sent["status_code"], sent["ok"], sent["attempts"]) == (status, False, 1)


@pytest.mark.timeout(60)
def test_notify_follows_a_307_to_the_same_host_and_port(tmp_path: Path) -> None:
    """The control: a redirect that stays on the same scheme, host and port is followed, body and all."""
    with WebhookServer(status=307, only="/hook") as hook:
        hook.location = hook.url("/moved")
        cfg = make_config(
            tmp_path,
            [{"op": "http.notify", "as": "hook", "with": {"url": hook.url("/hook"), "json": {"n": 1}, "retries": 0}}],
            network=[hook.netloc],
        )
        run = run_cycle(cfg, local_services(tmp_path))
    assert run.outputs["0"] == {"status_code": 200, "ok": True}
    assert [(r.path, r.body) for r in hook.requests] == [("/hook", {"n": 1}), ("/moved", {"n": 1})]


# -- 5. header values ---------------------------------------------------------------------------------


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ORCH_STATE_DIR=str(tmp / "state"), PYTHONPATH=str(ROOT), **extra)
    return env


def everything_written(tmp: Path, *outputs: str) -> str:
    """The CLI's output and every file under its state dir (events, records, logs, worktrees)."""
    files = [p.read_bytes().decode(errors="replace") for p in (tmp / "state").rglob("*") if p.is_file()]
    return "\n".join([*outputs, *files])


@pytest.mark.timeout(90)
def test_header_values_are_never_logged(tmp_path: Path) -> None:
    """Headers from `${env.NAME}` go to the server, and nowhere else: not in events, the report, the CLI's
    output or any file of the state dir; on success, on a 5xx with a retry, on a refused connection and on
    a redirect. One name looks like a secret (the redactor knows it), one does not."""
    token = "hooktok-" + uuid.uuid4().hex
    sig = "sigvalue" + uuid.uuid4().hex
    headers = {"Authorization": "Bearer ${env.HOOK_TOKEN}", "X-Hook-Sig": "${env.HOOK_SIG}"}
    with (
        WebhookServer() as ok,
        WebhookServer(status=503) as broken,
        WebhookServer(status=307, only="/hop") as hop,
    ):
        hop.location = hop.url("/landed")
        closed = WebhookServer().start()
        closed.stop()  # a port nobody listens on any more
        steps = [
            {"op": "http.notify", "as": f"n{i}", "with": {"url": url, "headers": headers, "retries": retries}}
            for i, (url, retries) in enumerate(
                [(ok.url("/ok"), 0), (broken.url("/down"), 1), (closed.url("/gone"), 0), (hop.url("/hop"), 0)]
            )
        ]
        cfg = tmp_path / "hook.json"
        repo, _ = make_repo(tmp_path)
        cfg.write_text(
            json.dumps(
                {
                    "id": "headers",
                    "workspace": {"repo": str(repo)},
                    "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
                    "permissions": {"network": ["127.0.0.1"]},
                    "env_allow": ["HOOK_TOKEN", "HOOK_SIG"],
                    "pipeline": steps,
                }
            )
        )
        env = cli_env(tmp_path, HOOK_TOKEN=token, HOOK_SIG=sig, ORCH_ALLOW="network:127.0.0.1")
        proc = orchestrate(["run", str(cfg), "--local", "--json"], env, timeout=60)
    report = json.loads(proc.stdout)
    assert [s["status"] for s in report["steps"]] == ["succeeded", "failed", "failed", "succeeded"], report
    # The servers did get the values...
    for server, n in ((ok, 1), (broken, 2), (hop, 2)):
        assert len(server.requests) == n, (server.url(), server.requests)
        for req in server.requests:
            assert req.headers["Authorization"] == f"Bearer {token}" and req.headers["X-Hook-Sig"] == sig
    # ... and nothing else ever saw them.
    written = everything_written(tmp_path, proc.stdout, proc.stderr)
    assert "notify.sent" in written  # the events are in there
    assert token not in written and sig not in written


@pytest.mark.timeout(60)
@pytest.mark.parametrize("url", ["{hook}/x?s=${env.HOOK_QUERY}", "${env.HOOK_URL}"])
def test_a_url_that_cannot_be_sent_fails_the_step_without_showing_its_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """A substituted URL that cannot be sent: a query (where tokens go) holding a space, which http.client
    refuses with an error quoting the URL; or an ftp:// URL, which the argument's model refuses. The step fails
    (step_failed), and the secret is shown nowhere: not in events, the record or any file."""
    secret = uuid.uuid4().hex
    with WebhookServer() as hook:
        monkeypatch.setenv("HOOK_QUERY", f"sig {secret}")
        monkeypatch.setenv("HOOK_URL", f"ftp://{hook.netloc}/x?s={secret}")
        cfg = make_config(
            tmp_path,
            [{"op": "http.notify", "as": "hook", "with": {"url": url.replace("{hook}", hook.url("")), "retries": 0}}],
            network=[hook.netloc],
            env_allow=["HOOK_QUERY", "HOOK_URL"],
        )
        svc = local_services(tmp_path)
        run = run_cycle(cfg, svc)
        assert hook.requests == []
    assert run.report.status.value == "failed" and run.report.reason == "step_failed", run.events
    [failed] = run.failed_events
    assert failed["data"]["as"] == "hook" and "url" in failed["data"]["error"]
    files = [p.read_bytes().decode(errors="replace") for p in svc.state_dir.rglob("*") if p.is_file()]
    assert not [f for f in files if secret in f]


# -- 6. this host's ceiling ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_shell_without_shell_in_orch_allow_is_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    repo, _ = make_repo(tmp_path)
    cfg = tmp_path / "shell.json"
    cfg.write_text(
        json.dumps(
            {
                "id": "noshell",
                "workspace": {"repo": str(repo)},
                "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
                "permissions": {"shell": True},
                "pipeline": [
                    {
                        "op": "shell.run",
                        "with": {"command": [PY3, "-c", "open(__import__('sys').argv[1], 'w')", str(marker)]},
                    }
                ],
            }
        )
    )
    env = cli_env(tmp_path, ORCH_ALLOW="network:127.0.0.1")
    validated = orchestrate(["validate", str(cfg)], env, timeout=30)
    assert validated.returncode == 2, validated.stdout + validated.stderr
    assert "permissions.shell" in validated.stdout and 'ORCH_ALLOW lacks "shell"' in validated.stdout
    ran = orchestrate(["run", str(cfg), "--local", "--json"], env, timeout=30)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert 'ORCH_ALLOW lacks "shell"' in ran.stderr
    assert not marker.exists()
    assert not (tmp_path / "state" / "worktrees").exists() or not any((tmp_path / "state" / "worktrees").iterdir())
    # With "shell" allowed the same file is fine: the refusal was the host's.
    ok = orchestrate(["validate", str(cfg)], dict(env, ORCH_ALLOW="shell"), timeout=30)
    assert ok.returncode == 0, ok.stdout


@pytest.mark.timeout(60)
def test_shell_refused_at_run_time_by_the_host_that_runs_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle started where ORCH_ALLOW had "shell"; the host that runs the step (another worker) does not
    allow it: the step checks again, ends the cycle policy_denied, and the command never runs."""
    marker = tmp_path / "ran"
    cfg = make_config(
        tmp_path,
        [
            {"op": "shell.run", "as": "first", "with": {"command": [PY3, "-c", "print('fine')"]}},
            {
                "op": "shell.run",
                "as": "second",
                "with": {"command": [PY3, "-c", PWN.replace("'pwned'", repr(str(marker)))]},
            },
        ],
        shell=["python3"],
    )
    svc = local_services(tmp_path)
    ctx = cycle.start(cycle.enqueue(svc, cfg), svc)
    ctx = cycle.run_step(ctx, svc, 0)
    set_allow(monkeypatch, "network:127.0.0.1")
    ctx = cycle.run_step(ctx, svc, 1)
    report = cycle.finish(ctx, svc)
    assert report.status.value == "failed" and report.reason == "policy_denied"
    assert [(s.as_, s.status.value, s.reason) for s in report.steps] == [
        ("first", "succeeded", None),
        ("second", "failed", "policy_denied"),
    ]
    assert not marker.exists()
    assert isinstance(svc.hub, LocalHub)
    events = [json.loads(line) for line in svc.hub.path(report.cycle_id).read_text().splitlines()]
    [failed] = [e for e in events if e["kind"] == "stage.failed"]
    assert failed["data"]["as"] == "second" and 'ORCH_ALLOW lacks "shell"' in failed["data"]["error"]


# -- 7. the command's environment ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_commands_get_the_minimal_environment(tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    cfg = make_config(
        tmp_path,
        [
            {
                "op": "shell.run",
                "as": "dump",
                "with": {"command": [PY3, "-c", DUMP_ENV, str(dump)], "env": {"EXTRA": "1"}},
            }
        ],
        shell=["python3"],
    )
    run = run_cycle(cfg, local_services(tmp_path))
    assert run.report.status.value == "succeeded", run.events
    seen = json.loads(dump.read_text())
    for name in ("GH_TOKEN", "GITHUB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CELERY_BROKER_URL"):
        assert name not in seen, name
    assert not [k for k in seen if k.upper().startswith(("ORCH_", "CELERY_"))]
    assert not [k for k, v in seen.items() if REDIS_PW in v or "rabbit-pw-123" in v or GH_TOKEN in v]
    assert seen["EXTRA"] == "1" and "PATH" in seen and "HOME" in seen
    assert GH_TOKEN not in run.outputs["0"]["stdout"] and REDIS_PW not in run.outputs["0"]["stdout"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["env", "argv"])
@pytest.mark.parametrize("name", ["GH_TOKEN", "ORCH_REDIS_URL"])
def test_worker_credentials_never_reach_a_command_through_env_allow(tmp_path: Path, where: str, name: str) -> None:
    """Agents never get GH_TOKEN or ORCH_* even through `${env.NAME}` with the name in env_allow (the config
    is refused); a `shell.run` command runs code the agent wrote (its tests), so it must not either: refused
    before the run, and at run time (a worker does not trust the sender's validation)."""
    dump = tmp_path / "env.json"
    ref = "${env." + name + "}"
    args: dict[str, Any] = {"command": [PY3, "-c", DUMP_ENV, str(dump)]}
    if where == "env":
        args["env"] = {"LEAK": ref}
    else:
        args["command"].append(ref)
    cfg = make_config(tmp_path, [{"op": "shell.run", "as": "t", "with": args}], shell=["python3"], env_allow=[name])
    problems = config_problems(cfg, get_settings())
    assert any(name in p for p in problems), problems
    run = run_cycle(cfg, local_services(tmp_path), valid=False)
    assert run.report.status.value == "failed" and run.report.reason == "policy_denied", run.events
    assert not dump.exists()


# Run as the agent user, a command reports who it is and what of the worker it can reach.
WHO_AM_I = """
import json, os, sys
def attempt(action):
    try:
        return action()
    except OSError as exc:
        return "denied: " + str(exc.strerror)
def append(path):
    with open(path, "a") as fh:
        fh.write("# written by the command\\n")
    return "written"
def parent_environ():
    with open(f"/proc/{os.getppid()}/environ", "rb") as fh:
        return fh.read().decode(errors="replace")
report = {
    "uid": os.getuid(),
    "home": os.environ.get("HOME"),
    "parent_environ": attempt(parent_environ),
    "clone_config": attempt(lambda: append(sys.argv[2])),
    "worktree": attempt(lambda: append("feature.txt")),
}
with open(sys.argv[1], "w") as fh:
    json.dump(report, fh)
"""


@pytest.mark.timeout(60)
def test_commands_run_as_the_agent_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ORCH_AGENT_USER a command runs as the agents do: unprivileged, unable to read the worker's
    environment (where GH_TOKEN is) or write the clone's git config, able to work in its worktree."""
    if os.geteuid() != 0:
        pytest.fail("this test creates an OS user and needs root (CI and the dev machines run as root)")
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.fail("/usr/bin/python3 is needed: the agent user cannot run the venv's python under /root")
    user = ensure_agent_user()
    shared = Path(tempfile.mkdtemp(prefix="orch-cmd-"))  # pytest's tmp is private to root
    try:
        os.chmod(shared, 0o711)
        state_dir = shared / "state"
        state_dir.mkdir(mode=0o711)
        drop = shared / "drop"
        drop.mkdir()
        os.chmod(drop, 0o777)
        monkeypatch.setenv("ORCH_AGENT_USER", AGENT_USER)
        monkeypatch.setenv("ORCH_STATE_DIR", str(state_dir))
        get_settings.cache_clear()
        clone_config = state_dir / "mirrors" / "attack" / ".git" / "config"
        cfg = make_config(
            tmp_path,
            [
                {
                    "op": "shell.run",
                    "as": "who",
                    "with": {
                        "command": ["/usr/bin/python3", "-c", WHO_AM_I, str(drop / "who.json"), str(clone_config)]
                    },
                }
            ],
            shell=True,  # a path as argv[0] needs `true`: a list grants programs by name only
        )
        svc = Services(state=LocalState(state_dir / "local"), hub=LocalHub(state_dir / "events"), state_dir=state_dir)
        run = run_cycle(cfg, svc)
        assert run.report.status.value == "succeeded", run.events
        seen = json.loads((drop / "who.json").read_text())
        assert seen["uid"] == user.pw_uid and seen["home"] == user.pw_dir
        assert seen["parent_environ"] == "denied: Permission denied", seen["parent_environ"][:200]
        assert seen["clone_config"] == "denied: Permission denied" and clone_config.exists()
        assert seen["worktree"] == "written"
        assert b"written by the command" not in clone_config.read_bytes()
    finally:
        shutil.rmtree(shared, ignore_errors=True)

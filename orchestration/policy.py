"""The host's ceiling on what any workspace config may grant (ORCH_ALLOW), and the agent-shell warning.

`ORCH_ALLOW` is a comma list of tokens:

- `bypass`: a config may turn an agent's own sandbox or permission checks off (each agent's spec says which
  setting does: Claude Code's `bypassPermissions` permission mode, Codex's `danger-full-access` sandbox);
- `shell`: a config may set `permissions.shell`;
- `network:<host>` (any port) or `network:<host>:<port>`: `permissions.network` may name that host (and port).

Empty means nothing beyond the defaults is allowed. Pure: no I/O, no environment reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from orchestration.agents.registry import AGENTS
from orchestration.config import WorkspaceConfig, parse_network_entry

if TYPE_CHECKING:
    from orchestration.settings import Settings

TOKENS_HELP = "bypass, shell, network:<host> or network:<host>:<port>"


@dataclass(frozen=True)
class HostPolicy:
    """What this host lets configs grant; `network` holds (lower-case host, port or None for any port)."""

    bypass: bool = False
    shell: bool = False
    network: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, text: str) -> HostPolicy:
        """Read an ORCH_ALLOW value; raises ValueError naming the first token it cannot use."""
        bypass = shell = False
        network: set[tuple[str, int | None]] = set()
        for raw in text.split(","):
            token = raw.strip()
            if not token:
                continue
            if token == "bypass":
                bypass = True
            elif token == "shell":
                shell = True
            elif token.startswith("network:"):
                try:
                    network.add(parse_network_entry(token.removeprefix("network:")))
                except ValueError as exc:
                    raise ValueError(f"ORCH_ALLOW token {token!r}: {exc}") from None
            else:
                raise ValueError(f"unknown ORCH_ALLOW token {token!r} (known: {TOKENS_HELP})")
        return cls(bypass=bypass, shell=shell, network=frozenset(network))

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        return cls.parse(settings.allow)

    def allows_network(self, host: str, port: int | None) -> bool:
        """`network:<host>` allows any port of host, `network:<host>:<port>` only that port."""
        host = host.lower().rstrip(".")
        return (host, None) in self.network or (port is not None and (host, port) in self.network)


def _refused(path: str, value: str, lacks: str) -> str:
    return f"{path}: {value} is not allowed on this host (ORCH_ALLOW lacks {lacks})"


def policy_problems(cfg: WorkspaceConfig, policy: HostPolicy) -> list[str]:
    """What `cfg` would use beyond the host's ceiling; one line per problem, each starting with its JSON path."""
    problems = []
    for spec in AGENTS.values():
        bypass = spec.bypass(spec.section(cfg)) if spec.name in cfg.agents.allow else None
        if bypass is not None and not policy.bypass:
            setting, value = bypass
            problems.append(_refused(f"agents.{spec.name}.{setting}", value, '"bypass"'))
    shell = cfg.permissions.shell
    if shell not in (False, []) and not policy.shell:
        problems.append(_refused("permissions.shell", orjson.dumps(shell).decode(), '"shell"'))
    for i, entry in enumerate(cfg.permissions.network):
        host, port = parse_network_entry(entry)
        if not policy.allows_network(host, port):
            lacks = f'"network:{host}"' if port is None else f'"network:{host}" or "network:{host}:{port}"'
            problems.append(_refused(f"permissions.network[{i}]", entry, lacks))
    return problems


def shell_warning(cfg: WorkspaceConfig, settings: Settings) -> str | None:
    """A warning when `cfg` gives an agent a shell while the agents run as the worker's own OS user."""
    if settings.agent_user:
        return None
    shells = []
    for spec in AGENTS.values():
        reason = spec.shell(spec.section(cfg)) if spec.name in cfg.agents.allow else None
        if reason is not None:
            shells.append(f"{spec.name} ({reason})")
    if cfg.permissions.shell not in (False, []):
        shells.append("shell.run steps (permissions.shell)")
    if not shells:
        return None
    return (
        f"{' and '.join(shells)} can run shell commands while ORCH_AGENT_USER is unset: they run commands as "
        "the worker's OS user and can read anything that user can (SSH keys, tokens, other workspaces). "
        "Set ORCH_AGENT_USER to a separate unprivileged user."
    )

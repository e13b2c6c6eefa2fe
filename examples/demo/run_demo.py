"""One real cycle on a laptop with no servers and no API key: `make demo`.

It makes a small demo repository (with a local bare repository as its remote), starts the scripted model
API from the test fixtures on 127.0.0.1 (so the real `claude` CLI runs offline), writes a workspace config,
and runs `orchestrate run CONFIG --local`. The agent's change ends up on a branch of the demo remote.
To run against your own repository and a real model, see the README's "Your own repository".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fixtures.anthropic_server import ScriptedAnthropic, claude_env, write_file_script  # noqa: E402


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()  # noqa: S603


def make_demo_repo(base: Path) -> tuple[Path, Path]:
    bare, work = base / "remote.git", base / "calculator"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=base)
    git("init", "-q", "-b", "main", str(work), cwd=base)
    (work / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (work / "README.md").write_text("# calculator\n")
    env = {
        "GIT_AUTHOR_NAME": "Demo",
        "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "Demo",
        "GIT_COMMITTER_EMAIL": "demo@localhost",
    }
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "initial"], cwd=work, check=True, env={**os.environ, **env})
    git("remote", "add", "origin", str(bare), cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return work, bare


def main() -> int:
    claude = ROOT / "node_modules" / ".bin" / "claude"
    if not claude.exists():
        print("the claude CLI is not installed: run `make install` (npm ci) first", file=sys.stderr)
        return 2
    base = ROOT / ".state" / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S")
    base.mkdir(parents=True)
    repo, bare = make_demo_repo(base)
    config = base / "calculator.json"
    config.write_text(
        json.dumps(
            {
                "id": "calculator",
                "workspace": {"repo": str(repo)},
                "budget": {"cycle_s": 300, "max_cost_usd": 1.0},
                "sessions": {
                    "claude_dir": str(base / "home" / ".claude"),
                    "codex_dir": str(base / "home" / ".codex"),
                },
                "goals": ["Add a subtract function to calc.py with a test"],
                "agents": {"allow": ["claude-code"], "claude-code": {"command": str(claude)}},
            },
            indent=2,
        )
    )
    script = write_file_script(
        "calc.py",
        "def add(a, b):\n    return a + b\n\n\ndef subtract(a, b):\n    return a - b\n",
        final_text="Added subtract() to calc.py.",
    )
    with tempfile.TemporaryDirectory(prefix="cc-") as tmp, ScriptedAnthropic(script=script) as model:
        env = {**os.environ, **claude_env(model.base_url, base / "home", tmpdir=tmp)}
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{ROOT / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}"
        env["ORCH_STATE_DIR"] = str(base / "state")
        print(f"demo repository: {repo}\nconfig: {config}\nscripted model API: {model.base_url}\n")
        code = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "orchestration.cli", "run", str(config), "--local"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads/agent", cwd=bare)
    if branches:
        print(f"\nbranches on the demo remote {bare}:\n  {branches}")
        print(f"see the change: git --git-dir {bare} show {branches.splitlines()[-1]}")
    return code


if __name__ == "__main__":
    sys.exit(main())

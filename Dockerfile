# One image for worker, beat and flower. The agent CLIs come from the npm registry, pinned in package.json.
FROM python:3.11-slim
# git for worktrees; gh opens the PRs and is git's credential helper for https pushes (orchestrate passes
# `credential.helper=!gh auth git-credential` on each push, so GH_TOKEN in the environment is all it needs);
# tini is PID 1, so that agent processes orphaned by a dying worker child are reaped, never left as zombies.
RUN apt-get update && apt-get install -y --no-install-recommends git gh tini nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
ENV PATH="/app/node_modules/.bin:${PATH}"
COPY pyproject.toml README.md beat_schedule.py ./
COPY orchestration ./orchestration
COPY tasks ./tasks
RUN pip install --no-cache-dir .
# `orchestrate` runs the services; `agent` is there for ORCH_AGENT_USER=agent (a worker that drops to it runs
# as root: see compose.yaml).
RUN useradd --create-home orchestrate && useradd --create-home agent
USER orchestrate
ENV ORCH_STATE_DIR=/home/orchestrate/state ORCH_CONFIG_DIR=/config
ENTRYPOINT ["/usr/bin/tini", "--"]

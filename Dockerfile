# One image for worker, beat and flower. The agent CLIs come from the npm registry, pinned in package.json.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
ENV PATH="/app/node_modules/.bin:${PATH}"
COPY pyproject.toml README.md beat_schedule.py ./
COPY orchestration ./orchestration
COPY tasks ./tasks
RUN pip install --no-cache-dir .
RUN useradd --create-home orchestrate
USER orchestrate
ENV ORCH_STATE_DIR=/home/orchestrate/state ORCH_CONFIG_DIR=/config

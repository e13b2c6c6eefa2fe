# Two commands on a fresh machine:  `make demo` (install + one local cycle)  and  `make test` (whole suite, with coverage).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE    := node_modules/.installed
# The browser the web monitor's browser test drives (through Playwright, which downloads no browser here).
CHROMIUM ?= /usr/bin/chromium

.PHONY: install demo test lint clean bytecode browser

# The project's own modules compiled ahead: every `orchestrate` command, worker and test process starts from
# bytecode, also where PYTHONDONTWRITEBYTECODE keeps Python from caching it (quick when nothing changed).
install: $(STAMP) $(NODE) bytecode

bytecode: $(STAMP)
	$(BIN)/python -m compileall -q orchestration tasks

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium for the browser test: installed with apt-get when missing and we are root, else a clear
# message saying how to get it.
browser: $(CHROMIUM)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the browser test needs Chromium at $(CHROMIUM): as root on Debian/Ubuntu run" \
			"'apt-get update && apt-get install -y chromium', or pass CHROMIUM=/path/to/chromium" >&2; \
		exit 1; \
	fi
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is still missing after installing chromium" >&2; exit 1; }

demo: install
	$(BIN)/python examples/demo/run_demo.py

test: install browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q --cov --cov-report=term:skip-covered

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules .state .coverage .coverage.*

# Two commands on a fresh machine:  `make demo` (install + one local cycle)  and  `make test` (whole suite, with coverage).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE    := node_modules/.installed

.PHONY: install demo test lint clean bytecode

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

demo: install
	$(BIN)/python examples/demo/run_demo.py

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --cov --cov-report=term:skip-covered

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules .state .coverage .coverage.*

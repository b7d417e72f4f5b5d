# The two quick-start commands: `make demo` (the upgrade on a fresh embedded demo database) and
# `make test` (the whole test suite, as CI runs it). Both set up everything they need first.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO   ?= demo.db
APPOINTMENTS ?= 200000

.PHONY: demo test lint venv system-packages clean

$(BIN)/setup-tool: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/setup-tool

system-packages:
	scripts/install-system-packages

demo: venv
	$(BIN)/setup-tool demo $(DEMO) --appointments $(APPOINTMENTS) --overwrite
	@# 4 is "done, action required": the demo has a user who switched the preference off.
	$(BIN)/setup-tool upgrade --database-url sqlite:///$(DEMO) --yes --report demo-report.html \
		|| [ $$? -eq 4 ]

lint: venv
	$(BIN)/ruff check setup_tool tests benchmarks migrations
	$(BIN)/ruff format --check setup_tool tests benchmarks migrations
	$(BIN)/mypy

test: system-packages lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) dist build test-output $(DEMO) demo-report.html setup-tool-*.log \
		setup-tool-*-report.* *.setup-tool.lock

# The two quick-start commands: `make demo` (the upgrade on a fresh embedded demo database) and
# `make test` (the whole test suite, as CI runs it). Both set up everything they need first,
# including the Debian packages (scripts/install-system-packages: only what is missing, never an
# upgrade, no recommended extras; without root or sudo it names what to ask an administrator for).
#
# `make wheelhouse` builds the offline kit for Windows servers (dist/setup-tool-*-windows-x64.zip).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO   ?= demo.db
APPOINTMENTS ?= 200000

.PHONY: demo test lint venv system-packages venv-packages wheelhouse clean mutation

$(BIN)/setup-tool: pyproject.toml
	@# Debian ships Python's venv module apart (python3.X-venv): install it first if missing.
	PYTHON=$(PYTHON) scripts/install-system-packages demo
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/setup-tool

venv-packages:
	PYTHON=$(PYTHON) scripts/install-system-packages demo

system-packages:
	PYTHON=$(PYTHON) scripts/install-system-packages test

demo: venv
	$(BIN)/setup-tool demo $(DEMO) --appointments $(APPOINTMENTS) --overwrite
	@# 4 is "done, action required": the demo has a user who switched the preference off.
	$(BIN)/setup-tool upgrade --database-url sqlite:///$(DEMO) --yes --report demo-report.html \
		|| [ $$? -eq 4 ]

lint: venv
	$(BIN)/ruff check setup_tool tests benchmarks migrations scripts/build_wheelhouse.py
	$(BIN)/ruff format --check setup_tool tests benchmarks migrations scripts/build_wheelhouse.py
	$(BIN)/mypy
	$(BIN)/shellcheck scripts/install-system-packages

test: system-packages lint
	$(BIN)/pytest

mutation: venv
	$(BIN)/python scripts/mutation.py

wheelhouse: venv
	$(BIN)/python scripts/build_wheelhouse.py --out dist

clean:
	rm -rf $(VENV) dist build test-output $(DEMO) demo-report.html setup-tool-*.log \
		setup-tool-*-report.* *.setup-tool.lock

# The handful of targets people type. `make up` works on a fresh machine (Debian/Ubuntu, as root
# or with the system packages already installed): it makes the venv and starts the stack.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up down status test test-unit lint bench venv clean-stack

$(BIN)/agentwatch: pyproject.toml
	@command -v java >/dev/null && command -v mvn >/dev/null || bash deploy/local/install-system-packages.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/agentwatch

up: venv
	$(BIN)/agentwatch up

down:
	$(BIN)/agentwatch down

status:
	$(BIN)/agentwatch status

test: venv
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest tests/unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-stack: down
	rm -rf .stack

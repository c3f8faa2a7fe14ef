# The two commands a new user runs are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# two stamps: `make run` installs only what running needs; the test and lint tools come
# with `make test` / `make check` (the dev extra)
STAMP     := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test check fmt bench bench-rest bench-inbound system-deps install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

install: $(STAMP)

## Start postroom on the embedded SQLite database in ./.postroom
run: $(STAMP)
	$(BIN)/postroom serve

## Install everything the tests need, then run the whole suite
test: system-deps $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Debian packages for the real mail servers (Postfix, Dovecot, Exim, Cyrus IMAP); needs root
system-deps:
	bash scripts/install-system-deps.sh

## Format check, lint, types
check: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

fmt: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(DEV_STAMP)
	$(BIN)/python bench/outbound.py

## REST send speed beside the Python API, SQLite and PostgreSQL (bench/rest.py --help)
bench-rest: $(DEV_STAMP)
	$(BIN)/python bench/rest.py $(BENCH_ARGS)

## IMAP first sync beside a bare imaplib fetch, SQLite and PostgreSQL (bench/inbound.py --help)
bench-inbound: $(STAMP)
	$(BIN)/python bench/inbound.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

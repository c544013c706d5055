# The two commands: `make demo` and `make test`. Both set everything up from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test setup fetch lint protos bench clean browser

demo: fetch
	$(BIN)/facerec demo

test: fetch lint
	$(BIN)/pytest -q

setup: $(STAMP) browser

# The gateway's browser tests drive Debian's chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

fetch: setup
	$(BIN)/facerec fetch

# ruff, then the types (mypy --strict on the packages, pyproject's [tool.mypy]), then the import rule
# (import-linter's contracts in pyproject: layers, no cycles, no grpc in domain code).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(CURDIR) $(BIN)/mypy
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports

protos: setup
	$(BIN)/python -m facerec.protogen

clean:
	rm -rf $(VENV) .pytest_cache

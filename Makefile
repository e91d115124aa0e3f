# wechat-token: every target bootstraps what it needs from nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.13; use pyenv's 3.13 when present, the same interpreter sam build needs.
PY313_BIN := $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13.*/bin))
PYTHON ?= $(if $(PY313_BIN),$(PY313_BIN)/python3,python3)
VENV := .venv
VENV_SAM := .venv-sam
# checkov pins an old boto3, so it gets its own venv too.
VENV_CHECKOV := .venv-checkov
CHECKOV_VERSION := 3.3.30
BIN := $(VENV)/bin
SAM := $(VENV_SAM)/bin/sam
SAM_PATH := $(if $(PY313_BIN),$(PY313_BIN):,)$(PATH)

.PHONY: help venv sam-venv checkov-venv node node-layer node-test lint typecheck template security build pytest test demo bench clean

help:
	@echo "make demo   - run the refresher and a consumer against the local WeChat simulator and a local DynamoDB"
	@echo "make test   - lint, type-check, validate and build the SAM app, then run every test"
	@echo "make bench  - run the benchmarks in bench/ and write bench/results.md"

$(BIN)/.installed: requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"' \
	  || { echo "error: $(PYTHON) is older than 3.11; install python 3.13 (pyenv install 3.13)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@
venv: $(BIN)/.installed

$(VENV_SAM)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(VENV_SAM)
	$(VENV_SAM)/bin/pip install -q --upgrade pip
	$(VENV_SAM)/bin/pip install -q -r requirements-sam.txt
	touch $@
sam-venv: $(VENV_SAM)/.installed

$(VENV_CHECKOV)/.installed-$(CHECKOV_VERSION):
	rm -rf $(VENV_CHECKOV)
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install -q --upgrade pip
	$(VENV_CHECKOV)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@
checkov-venv: $(VENV_CHECKOV)/.installed-$(CHECKOV_VERSION)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@
node: node_modules/.installed

# The Node.js consumer layer's development install (its tests, types and benchmark peers).
NODE_LAYER := layers/wechat_token_node
$(NODE_LAYER)/node_modules/.installed: $(NODE_LAYER)/package.json $(NODE_LAYER)/package-lock.json
	cd $(NODE_LAYER) && npm ci --no-audit --no-fund --loglevel=error
	touch $@
node-layer: $(NODE_LAYER)/node_modules/.installed

# The Node.js layer's type declarations, then its unit tests (node --test, aws-sdk-client-mock).
# Its integration tests run under pytest (tests/integration/test_node_layer.py).
node-test: node-layer
	$(NODE_LAYER)/node_modules/.bin/tsc -p $(NODE_LAYER)/test/types
	node --test $(NODE_LAYER)/test/unit/*.test.mjs

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy layers/wechat_token/wechat_token tools/wechat_token_ops functions simulator local_aws scripts bench
	$(BIN)/mypy functions/platform_callback/app.py

template: venv sam-venv
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

# IaC scan: every skipped check carries its reason next to the resource (.checkov.yaml).
security: checkov-venv
	$(VENV_CHECKOV)/bin/checkov --config-file .checkov.yaml

build: sam-venv
	@test -n "$(PY313_BIN)" || { echo "error: sam build needs python3.13 on PATH: install it with 'pyenv install 3.13' (Docker-free build)"; exit 1; }
	PATH="$(SAM_PATH)" SAM_CLI_TELEMETRY=0 $(SAM) build

pytest: venv node node-layer
	@java -version >/dev/null 2>&1 || { echo "error: Java 17+ is needed for DynamoDB Local integration tests"; exit 1; }
	$(BIN)/pytest

test: lint typecheck template security build node-test pytest

demo: venv build
	$(BIN)/python scripts/demo.py

$(BIN)/.installed-bench: requirements-bench.txt $(BIN)/.installed
	$(BIN)/pip install -q -r requirements-bench.txt
	touch $@

bench: venv node node-layer build $(BIN)/.installed-bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(VENV_SAM) $(VENV_CHECKOV) node_modules $(NODE_LAYER)/node_modules .aws-sam .demo

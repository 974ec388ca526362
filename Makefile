# One entry point for set-up, the demo, the tests and the checks.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-quick test-deep lint typecheck unit bench bench-smoke clean mutation

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m emulator.demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

# The suite mostly waits (deadlines it waits out, servers, subprocesses): pytest-xdist runs it in
# TEST_WORKERS processes, more than the cores. Bytecode caches are kept for the tests (a worker that
# compiled the suite afresh, as with PYTHONDONTWRITEBYTECODE set, spends seconds more of CPU). worksteal:
# an idle worker takes queued tests from a busy one, so the long tests do not end the run on one worker.
TEST_WORKERS ?= 4
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The whole suite checks the infrastructure tools and the Lambda zip too: both are built first, once
# (then only when their inputs change), so that `make unit` works on a fresh clone as `make test` does.
unit: $(STAMP) infra-tools package
	$(PYTEST)

# The quick loop (at most a minute on 2 idle cores): leaves out what waits or starts processes by design,
# the reliability matrices (tests/reliability), the tests marked slow and those marked process (docs/testing.md).
QUICK_SELECTION := not slow and not reliability and not process

test-quick: $(STAMP)
	$(PYTEST) -m "$(QUICK_SELECTION)"

# The whole suite with the property runs at their full example counts (docs/testing.md): 10,000 hostile
# inputs per entrypoint instead of 1,000, 3,000 generated execution IDs instead of 300.
test-deep: $(STAMP) infra-tools package
	TEST_DEPTH=deep $(PYTEST)

test: lint typecheck infra-check unit bench-smoke

# Benchmarks (docs/benchmarks.md). The full run writes bench/results/latest.json (a few minutes);
# the smoke only proves the bench still runs: it fails on a crash, never on a missed target.
bench: $(STAMP)
	$(PY) -m bench

bench-smoke: $(STAMP)
	$(PY) -m bench --quick --json bench/results/tmp-smoke.json

# Mutation testing (docs/reliability.md): mutmut on each module against the tests that cover it, one module
# at a time (all by default; `make mutation MODULES="policy events"` for some). Slow: never part of `make test`.
MODULES ?=
MUTATION_CHILDREN ?= 1

mutation: $(STAMP)
	$(PY) tools/mutation.py --max-children $(MUTATION_CHILDREN) $(MODULES)

clean:
	rm -rf $(VENV) $(INFRA_VENV) .mypy_cache .ruff_cache .pytest_cache build dist

# ---- Deployment (infra/, docs/deploying.md): the Lambda zip, the Cognite function folder, offline checks.
# The check tools live in .venv-infra/ (separate environments: checkov and cognite-toolkit pin
# conflicting versions, and neither may touch the project's pins); pip's cache stays in the repo.
INFRA_VENV := .venv-infra
INFRA_AWS := $(INFRA_VENV)/aws
INFRA_TOOLKIT := $(INFRA_VENV)/toolkit
INFRA_PIP_ENV := PIP_CACHE_DIR=$(CURDIR)/$(INFRA_VENV)/pip-cache PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: package cognite-function infra-tools infra-check deploy-check

infra-tools: $(INFRA_AWS)/.installed $(INFRA_TOOLKIT)/.installed

$(INFRA_AWS)/.installed: infra/requirements-infra.txt
	rm -rf $(INFRA_AWS)
	$(PYTHON) -m venv $(INFRA_AWS)
	$(INFRA_PIP_ENV) $(INFRA_AWS)/bin/python -m pip install --quiet -r infra/requirements-infra.txt
	touch $@

$(INFRA_TOOLKIT)/.installed: infra/requirements-toolkit.txt
	rm -rf $(INFRA_TOOLKIT)
	$(PYTHON) -m venv $(INFRA_TOOLKIT)
	$(INFRA_PIP_ENV) $(INFRA_TOOLKIT)/bin/python -m pip install --quiet -r infra/requirements-toolkit.txt
	touch $@

# dist/lambda.zip: requirements.txt for Lambda (Linux x86_64, CPython 3.11) + handler.py + workflow_retry/.
# Rebuilt when one of those (or the script) changed: building it takes a minute or more (pip asks the index,
# compiles and zips 6,000 files), and the same inputs give the same zip.
LAMBDA_SOURCES := handler.py requirements.txt infra/scripts/package_lambda.py \
	$(shell find workflow_retry -type f -not -path '*/__pycache__/*' -not -name '*.pyc')

package: dist/lambda.zip

dist/lambda.zip: $(LAMBDA_SOURCES)
	$(INFRA_PIP_ENV) $(PYTHON) infra/scripts/package_lambda.py --out dist/lambda.zip

# The Toolkit module's code folder, copied from handler.py, workflow_retry/ and requirements.txt.
cognite-function:
	$(PYTHON) infra/scripts/build_function_folder.py

infra-check: infra-tools package cognite-function
	$(INFRA_AWS)/bin/python infra/scripts/check_sam_template.py
	$(INFRA_TOOLKIT)/bin/python infra/scripts/check_toolkit_build.py
	$(PYTHON) infra/scripts/check_function_package.py --venv $(INFRA_VENV)/runtime

# Before a deploy: fails, naming each, on values still to fill in (<...>, the example project, an unset
# ${IDP_FUNCTION_CLIENT_SECRET}) in infra/cognite/config.*.yaml and infra/aws/samconfig.toml.
# `make deploy-check ONLY=cognite` or `ONLY=aws` checks one. CI proves it fails on the shipped example
# (tests/infra/test_deploy_check.py); it is not part of `make test`, where the example must stay an example.
deploy-check: $(STAMP)
	$(PY) infra/scripts/check_deploy_config.py $(if $(ONLY),--only $(ONLY))

# Developer tasks. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.package-lock.json
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (each with Redis databases of its own).
PYTEST_WORKERS ?= 3
# The locks: exact versions with hashes, resolved for every platform and
# Python >= 3.11 (`make lock` refreshes them from the ranges in pyproject.toml).
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --no-emit-index-url --quiet

.PHONY: run test lint format migrate token bench fuzz lock canary clean vendor dashboard ops-check

# Everything comes from the dev lock, hash-checked, nothing resolved here; the hub
# itself is installed editable, built by the locked setuptools.
$(STAMP): $(DEV_LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -e .
	touch $(STAMP)

# The stock JavaScript client the tests drive the hub with (skipped where there is no npm).
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the JavaScript client tests will be skipped"; \
	fi

## vendor: copy the browser libraries' dist files into web/vendor/ from the versions
## tests/js/package-lock.json pins (web/vendor/README.md); commit them with the lock
vendor: $(JS_STAMP)
	cp tests/js/node_modules/socket.io-client/dist/socket.io.esm.min.js \
		tests/js/node_modules/socket.io-client/dist/socket.io.esm.min.js.map web/vendor/
	cp tests/js/node_modules/socket.io-client/LICENSE web/vendor/LICENSE.socket.io-client
	cp tests/js/node_modules/perfect-freehand/dist/esm/index.mjs web/vendor/perfect-freehand.js
	cp tests/js/node_modules/perfect-freehand/dist/esm/index.mjs.map web/vendor/index.mjs.map
	cp tests/js/node_modules/perfect-freehand/LICENSE web/vendor/LICENSE.perfect-freehand

## run: start one hub on the embedded default (SQLite file in var/, in-memory state)
run: $(STAMP)
	$(BIN)/python -m realtime serve

## test: run the whole suite (Postgres and Redis tests skip if those are down, unless CI=true)
test: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

## lint: ruff, mypy --strict and the layers contract (lint-imports)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy docs/ops/dashboard.py
	$(BIN)/lint-imports

## bench: the hub against a bare python-socketio relay, 20 sessions x 5 students x 10 Hz
bench: $(STAMP)
	$(BIN)/python -m loadtest relay --sessions 20 --students 5 --rate 10 --seconds 20 \
		--target hub --target baseline

## fuzz: the long fuzzing run (10,000 payloads per event; docs/reliability.md)
fuzz: $(STAMP) $(JS_STAMP)
	flock /tmp/bench.lock $(BIN)/python -m tests.fuzz --per-event 10000 --batch 100 --compare-every 2

## lock: the two locks again from pyproject.toml, keeping every pin that still fits
## (a new dependency, a changed range); UPGRADE=--upgrade takes the newest allowed
lock: $(STAMP)
	$(COMPILE) $(UPGRADE) -o $(LOCK)
	$(COMPILE) $(UPGRADE) --extra dev -c $(LOCK) -o $(DEV_LOCK)

## canary: lint and the whole suite on the newest versions the ranges allow, in a
## throwaway venv (RESOLUTION=lowest-direct tries the lower bounds instead)
canary: $(STAMP)
	.ci/canary $(RESOLUTION)

## dashboard: docs/ops/hub-dashboard.json again from its generator, docs/ops/dashboard.py
dashboard: $(STAMP)
	$(BIN)/python docs/ops/dashboard.py > docs/ops/hub-dashboard.json

## ops-check: promtool checks the alert rules and runs their unit tests (Debian: prometheus)
ops-check:
	promtool check rules docs/ops/alerts.yml
	promtool test rules docs/ops/alerts.test.yml

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## migrate: apply database migrations to HUB_DATABASE_URL and exit
migrate: $(STAMP)
	$(BIN)/python -m realtime migrate

## token: mint a development token, e.g. make token ARGS="--sub t1 --role TUTOR --center c1"
token: $(STAMP)
	@$(BIN)/python -m realtime token $(ARGS)

clean:
	rm -rf $(VENV) tests/js/node_modules .pytest_cache .mypy_cache .ruff_cache test-results

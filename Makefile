# Developer tasks. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.package-lock.json
PYTEST_ARGS ?=

.PHONY: run test lint format migrate token bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The stock JavaScript client the tests drive the hub with (skipped where there is no npm).
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the JavaScript client tests will be skipped"; \
	fi

## run: start one hub on the embedded default (SQLite file in var/, in-memory state)
run: $(STAMP)
	$(BIN)/python -m realtime serve

## test: run the whole suite (Postgres and Redis tests skip if those are down, unless CI=true)
test: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy --strict
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: the hub against a bare python-socketio relay, 20 sessions x 5 students x 10 Hz
bench: $(STAMP)
	$(BIN)/python -m loadtest relay --sessions 20 --students 5 --rate 10 --seconds 20 \
		--target hub --target baseline

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

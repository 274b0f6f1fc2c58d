# Cache Quest backend. `make run` and `make test` are all a newcomer needs; `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SAVES ?= 1
LEADERBOARD ?= 1
PYTEST_ARGS ?=
# Compose v2 where installed, else docker-compose (v1.29, Debian's); the project names are set here.
COMPOSE_BIN = $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
PROJECT ?= cache-quest
CLUSTER_PROJECT ?= cache-quest-cluster
COMPOSE = $(COMPOSE_BIN) -p $(PROJECT) -f deploy/compose.yml
COMPOSE_CLUSTER = $(COMPOSE_BIN) -p $(CLUSTER_PROJECT) -f deploy/compose.cluster.yml

BENCH_ARGS ?=
BENCH_INSTALLED := $(VENV)/.bench-installed
ARGS ?= list

.PHONY: help install run run-cluster test test-fast sdk-types bench bench-instructions bench-loaded deadletters lint typecheck format up down up-cluster down-cluster logs ps clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml web/package-lock.json clients/js/package-lock.json
	@echo "==> creating $(VENV) and installing the project (first run takes a minute)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@echo "==> installing the game's JavaScript packages (web/)"
	@npm ci --prefix web --no-audit --no-fund --loglevel=error
	@echo "==> installing the JavaScript client's build tools (clients/js/)"
	@npm ci --prefix clients/js --no-audit --no-fund --loglevel=error
	@touch $@

install: $(INSTALLED) ## create the virtual environment and install everything
	@[ -n "$$REDIS_URL" ] || $(PY) -m devtools.redis_stack --check

run: install ## run Redis (unless REDIS_URL is set), the gateway on PORT (3000) and the workers
	@$(PY) -m devtools.stack --saves $(SAVES) --leaderboard $(LEADERBOARD)

run-cluster: install ## the same on a local 3-master Redis Cluster (ports 7000-7002, data in .data/redis-cluster/)
	@$(PY) -m devtools.stack --cluster --saves $(SAVES) --leaderboard $(LEADERBOARD)

test: install lint typecheck ## lint, type-check and run every test against real Redis, processes and browser
	@bash devtools/ensure_chromium.sh
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## the tests without the slow fault-injection and browser ones
	@$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

sdk-types: install ## regenerate the JavaScript client's types (clients/js/src/openapi.d.ts) from the gateway's OpenAPI
	@mkdir -p .cache
	@$(PY) -m devtools.openapi > .cache/openapi.json
	@clients/js/node_modules/.bin/openapi-typescript .cache/openapi.json --output clients/js/src/openapi.d.ts

$(BENCH_INSTALLED): $(INSTALLED) pyproject.toml bench/baseline-node/package-lock.json
	@echo "==> installing the benchmark's extras (matplotlib, py-spy, wrk, the Node baseline)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@npm ci --prefix bench/baseline-node --no-audit --no-fund --loglevel=error
	@touch $@

bench: install $(BENCH_INSTALLED) ## benchmark beside the baselines: a table, bench-results/ (JSON, PNG), docs/benchmarks.md; BENCH_ARGS="--compare main" also beside main
	@bash bench/ensure_wrk.sh
	@$(PY) -m bench $(BENCH_ARGS)

bench-instructions: install ## the gateway's CPU instructions per request (callgrind, needs valgrind); BENCH_ARGS="--compare main"
	@$(PY) -m bench.measure.instructions $(BENCH_ARGS)

bench-loaded: install $(BENCH_INSTALLED) ## the gateway's or Redis's instructions per request under a wrk load (callgrind); BENCH_ARGS="--compare main --process redis"
	@bash bench/ensure_wrk.sh
	@$(PY) -m bench.measure.loaded $(BENCH_ARGS)

deadletters: $(INSTALLED) ## inspect, replay or drop dead letters: ARGS="list" (default), "show ID", "replay ID", "drop ID"
	@$(PY) -m devtools.deadletters $(ARGS)

lint: install ## ruff: lint and format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: install ## ruff: fix what can be fixed
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

typecheck: install ## mypy --strict
	@$(VENV)/bin/mypy

up: ## docker compose (v2 or docker-compose): Redis 8, the gateway and SAVES/LEADERBOARD workers; PROJECT=cache-quest
	$(COMPOSE) up --build -d --scale saves=$(SAVES) --scale leaderboard=$(LEADERBOARD)

down: ## docker compose: stop and remove the stack (the Redis volume stays)
	$(COMPOSE) down

up-cluster: ## docker compose: a 3-master Redis 8 cluster, the gateway and SAVES/LEADERBOARD workers; CLUSTER_PROJECT=cache-quest-cluster
	$(COMPOSE_CLUSTER) up --build -d --scale saves=$(SAVES) --scale leaderboard=$(LEADERBOARD)

down-cluster: ## docker compose: stop and remove the cluster stack (the nodes' volumes stay)
	$(COMPOSE_CLUSTER) down

logs: ## docker compose: follow the logs
	$(COMPOSE) logs -f

ps: ## docker compose: list the containers
	$(COMPOSE) ps

clean: ## remove the virtual environment, caches and test artifacts (not .data/)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache test-artifacts web/node_modules clients/js/node_modules

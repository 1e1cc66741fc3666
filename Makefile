# imagemesh — local stack and checks. `make` (or `make help`) lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY      := .venv/bin/python
STACK   := $(PY) tools/stack
UV      := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: help venv deps test-deps infra up up-observability down status logs parking audit lint typecheck test fuzz bench bench-memory clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: ## create/refresh .venv from uv.lock (installs uv if missing)
	@command -v uv >/dev/null 2>&1 || python3 -c 'import uv' 2>/dev/null || { \
	  python3 -m pip --version >/dev/null 2>&1 || python3 tools/stack deps --pip; \
	  python3 -m pip install --quiet uv \
	  || python3 -m pip install --quiet --user --break-system-packages uv; }
	$(UV) sync --all-packages --frozen

deps: ## install missing system (apt) and node (npm ci) packages for the stack
	python3 tools/stack deps

test-deps: ## deps + what the tests need (chromium, chromium-driver, real photos)
	python3 tools/stack deps --test

infra: venv ## start + provision RabbitMQ, PouchDB Server (CouchDB) and moto (S3)
	$(STACK) infra

up: venv ## infra + the four services; prints the URLs when all are ready (IMAGEPROC_REPLICAS=2 scales out)
	$(STACK) up

up-observability: up ## up + Prometheus (Debian's package) on :9090 scraping every service's /metrics
	$(STACK) up-observability

down: ## stop everything the stack started (data stays in .stack/)
	python3 tools/stack down

status: ## table of components, pids and readiness
	@python3 tools/stack status || true

logs: ## follow all logs under .stack/logs (NAME=rabbitmq for one)
	python3 tools/stack logs $(NAME)

parking: venv ## list, inspect and re-publish parked messages (ARGS="show ID" / ARGS="republish --all")
	$(STACK) parking $(or $(ARGS),list)

audit: venv ## provenance completeness check: jobs without a whole trail, outputs without provenance (ARGS="--json")
	$(STACK) audit $(ARGS)

lint: ## ruff check + ruff format --check
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck: ## mypy (strict, see pyproject.toml)
	.venv/bin/mypy

.PHONY: check
check: ## fast loop, no server: lint, typecheck and the tests that need none (under 2 min)
	$(MAKE) lint
	$(MAKE) typecheck
	IMAGEMESH_TESTS_NO_SERVERS=1 IMAGEMESH_TESTS_QUICK=1 .venv/bin/pytest -m "not needs_servers" -q

test: venv test-deps ## venv + deps + infra, then pytest, lint and typecheck
	$(STACK) infra
	.venv/bin/pytest
	$(MAKE) lint
	$(MAKE) typecheck

fuzz: venv ## fuzz uploads and AMQP messages in process (MINUTES per target, default 10; TARGET=name)
	$(PY) -m tests.fuzz --minutes $(or $(MINUTES),10) $(if $(TARGET),--target $(TARGET))

bench: venv ## imagemesh vs raw pyvips vs thumbor, end to end (restarts the stack's services) -> benchmarks/results/
	$(UV) sync --all-packages --frozen --group bench
	$(PY) -m benchmarks.bench $(ARGS)

bench-memory: venv ## worker memory (24 MP JPEG peak RSS, allocator) + libvips tuning -> benchmarks/results/memory.md
	$(PY) -m benchmarks.memory

clean: down ## stop the stack and delete .stack, .venv and tools/node_modules
	rm -rf .stack .venv tools/node_modules

# Kibamail: `make demo` and `make test` are all a new machine needs.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)
UV_RUN := uv run --frozen --no-sync

.PHONY: help deps demo up down status test test-unit test-fast lint format \
        image bench-warehouse bench-mta bench-mta-connections bench-api bench-pipelines bench-models bench-dmarc bench-validation \
        bench-bounces bench-self-service

help:
	@echo "make demo    - install, start the embedded stack, send 1,000 emails end to end, print a summary"
	@echo "make test    - install, start what tests need, run every test, stop everything"
	@echo "make up/down - keep the stack running / stop it;  make test-unit - fast unit tests only"
	@echo "make image   - build the container image (buildah, TAG=kibamail:x to name it)"
	@echo "make bench-* - benchmarks (warehouse, mta, api, pipelines, models, dmarc, validation, bounces, self-service)"

deps:
	@bash infra/scripts/install.sh

demo: deps
	$(UV_RUN) kibamail demo

up: deps
	$(UV_RUN) kibamail up

down:
	$(UV_RUN) kibamail down

status:
	$(UV_RUN) kibamail status

# Tests first (so one lint slip does not hide test results), then lint and the import
# contracts (pyproject's [tool.importlinter]); all must pass.
test: deps
	$(UV_RUN) pytest; status=$$?; $(UV_RUN) ruff check . || status=1; \
	$(UV_RUN) ruff format --check . || status=1; \
	$(UV_RUN) lint-imports || status=1; $(UV_RUN) mypy || status=1; exit $$status

test-unit: deps
	$(UV_RUN) pytest -m unit

lint:
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) lint-imports
	$(UV_RUN) mypy

format:
	$(UV_RUN) ruff format .
	$(UV_RUN) ruff check --fix .

# The container image (infra/deploy/image): buildah over a debootstrap root, no registry;
# a few minutes, so not part of `make test` (its manifests and scripts are checked there).
image:
	@KIBAMAIL_INSTALL_IMAGE_TOOLS=1 bash infra/scripts/install.sh
	bash infra/deploy/image/build.sh $(TAG)

bench-warehouse: deps
	$(UV_RUN) python -m bench.warehouse

bench-mta: deps
	$(UV_RUN) python -m bench.mta

bench-mta-connections: deps
	$(UV_RUN) python -m bench.mta --mode connections

bench-api: deps
	$(UV_RUN) python -m bench.api

bench-pipelines: deps
	$(UV_RUN) python -m bench.pipelines

bench-models: deps
	$(UV_RUN) python -m bench.models

bench-dmarc: deps
	$(UV_RUN) python -m bench.dmarc

bench-validation: deps
	$(UV_RUN) python -m bench.validation

bench-bounces: deps
	$(UV_RUN) python -m bench.bounces

bench-self-service: deps
	$(UV_RUN) python -m bench.self_service

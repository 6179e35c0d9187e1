# Quick start: `make run` serves the service, `make test` runs the checks and the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run PORT=8080 HOST=0.0.0.0`
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run serve test check lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	CDS_AUTH=off CDS_PREVIEW=on CDS_LOG_FORMAT=$${CDS_LOG_FORMAT:-text} $(BIN)/uvicorn cds_service.app:app --host $(HOST) --port $(PORT) --no-server-header

# Production: one worker per CPU (CDS_WORKERS), uvloop + httptools, slow-client limits (README).
serve: $(STAMP)
	$(BIN)/python -m cds_service.serve

check: $(STAMP)
	$(BIN)/ruff check cds_service tests bench
	$(BIN)/ruff format --check cds_service tests bench
	$(BIN)/mypy cds_service

format: $(STAMP)
	$(BIN)/ruff format cds_service tests bench
	$(BIN)/ruff check --fix cds_service tests bench

test: check
	$(BIN)/pytest

# Benchmark on this machine (< 3 min); `make bench BENCH_ARGS=--smoke` or `--profile`.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
